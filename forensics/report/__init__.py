"""The report: one triage run as a single self-contained HTML page.

``data`` reads the run back (clusters, rows, metadata, the 2-D map); ``html`` renders and
escapes it; ``assets/`` holds the page's CSS and JS.
"""

from forensics.report.data import ReportData, load_report_data
from forensics.report.html import render_html, render_report, script_json, write_report

__all__ = ["render_report", "write_report", "load_report_data", "render_html", "ReportData",
           "script_json"]
