"""One real `examples/demo.py --rows N` run per pytest session, shared by the test modules that
need a triaged workspace (tests/test_demo.py, tests/test_report_triage.py).

Why: building that workspace (ingest, two pipelines, index build, anomaly, triage, report:
about ten CLI subprocesses) is the expensive part of both modules; each used to build its own.
The first caller runs the demo under pytest's session base temp directory and records its
output; later callers in the same session reuse it. A module that mutates the workspace
beyond what a demo re-run does works on a copy (:func:`copy_workspace`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_ROWS = 400


def run_demo(tmp: Path, tag: str, rows: int = DEMO_ROWS) -> tuple[subprocess.CompletedProcess, dict]:
    """Run examples/demo.py into ``tmp/ws`` (report ``tmp/report.html``); its summary JSON."""
    summary = tmp / f"summary-{tag}.json"
    env = {**os.environ, "COLUMNS": "160",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--workspace", str(tmp / "ws"),
         "--report", str(tmp / "report.html"), "--rows", str(rows), "--summary-json", str(summary)],
        capture_output=True, text=True, env=env, timeout=900, cwd=str(REPO))
    assert summary.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(summary.read_text())


def shared_demo(tmp_path_factory) -> tuple[Path, dict]:
    """(directory holding ``ws/`` and ``report.html``, record of the first run: returncode,
    stdout, stderr, summary). Built once per session."""
    root = tmp_path_factory.getbasetemp() / f"demo-shared-{DEMO_ROWS}"
    record = root / "first-run.json"
    if not record.exists():
        if root.exists():  # a half-built attempt (the first run failed): start clean
            shutil.rmtree(root)
        root.mkdir(parents=True)
        proc, summary = run_demo(root, "1")
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                   "stderr": proc.stderr, "summary": summary}), encoding="utf-8")
        tmp.replace(record)
    return root, json.loads(record.read_text(encoding="utf-8"))


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of a workspace directory (DuckDB file + indexes/; paths inside are
    relative to the workspace, so the copy is self-contained)."""
    shutil.copytree(src, dst)
    return dst
