"""The report: one triage run as a single self-contained HTML page."""

from forensics.report.render import (ReportData, load_report_data, render_html, render_report,
                                     script_json, write_report)

__all__ = ["render_report", "write_report", "load_report_data", "render_html", "ReportData",
           "script_json"]
