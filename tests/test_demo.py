"""`make demo` on a small subset: the real CLI chain from JSONL to report, run twice (the
second run must reuse everything and add nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # several model loads: ~1-2 min on 2 cores


def run_demo(tmp: Path, tag: str) -> tuple[subprocess.CompletedProcess, dict]:
    summary = tmp / f"summary-{tag}.json"
    env = {**os.environ, "COLUMNS": "160",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--workspace", str(tmp / "ws"),
         "--report", str(tmp / "report.html"), "--rows", "400", "--summary-json", str(summary)],
        capture_output=True, text=True, env=env, timeout=900, cwd=str(REPO))
    assert summary.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(summary.read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    return tmp, *run_demo(tmp, "1")


def _counts(ws_path: Path) -> dict:
    import forensics

    with forensics.open(ws_path, read_only=True) as ws:
        return {"samples": ws.one("SELECT count(*) FROM samples")[0],
                "anomalies": ws.one("SELECT count(*) FROM anomalies")[0],
                "quality_findings": ws.one("SELECT count(*) FROM quality_findings")[0],
                "triage_runs": ws.one("SELECT count(*) FROM triage_runs")[0]}


def test_demo_finds_the_planted_batch_and_writes_the_report(first_run):
    tmp, proc, s = first_run
    steps = {x["name"]: x["status"] for x in s["steps"]}
    assert proc.returncode == 0 and s["ok"], (steps, proc.stdout[-4000:], proc.stderr[-4000:])
    assert s["precision"] >= 0.7 and s["recall"] >= 0.8
    assert steps["planted batch is the top cluster"] == "ok"
    page = Path(s["report"]).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<svg id="map"' in page
    # every command is shown as the user would type it
    assert "$ forensics --workspace" in proc.stdout and " triage " in proc.stdout


def test_demo_rerun_is_idempotent(first_run):
    tmp, proc1, s1 = first_run
    before = _counts(tmp / "ws")
    proc, s = run_demo(tmp, "2")
    assert proc.returncode == 0 and s["ok"], proc.stdout[-4000:]
    detail = {x["name"]: x["detail"] for x in s["steps"]}
    assert detail["ingest"].startswith("0 rows added")
    assert "reused" in detail["index build"]
    assert "already stored" in detail["anomaly add"]
    assert s["run_id"] == s1["run_id"] + 1      # a new triage run, same anomaly
    after = _counts(tmp / "ws")
    assert before["samples"] == after["samples"] == 400
    assert before["anomalies"] == after["anomalies"] == 1
    assert before["quality_findings"] == after["quality_findings"] > 0  # pipelines reused
    assert after["triage_runs"] == before["triage_runs"] + 1
