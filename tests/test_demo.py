"""`make demo` on a small subset: the real CLI chain from JSONL to report, run twice (the
second run must reuse everything and add nothing). The first run is the session's shared demo
workspace (tests/demo_shared.py), which tests/test_report_triage.py also uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo_shared import DEMO_ROWS, run_demo, shared_demo

pytestmark = pytest.mark.slow  # two demo runs: ~1 min on 2 cores


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    return shared_demo(tmp_path_factory)


def _counts(ws_path: Path) -> dict:
    import forensics

    with forensics.open(ws_path, read_only=True) as ws:
        return {"samples": ws.one("SELECT count(*) FROM samples")[0],
                "anomalies": ws.one("SELECT count(*) FROM anomalies")[0],
                "quality_findings": ws.one("SELECT count(*) FROM quality_findings")[0],
                "triage_runs": ws.one("SELECT count(*) FROM triage_runs")[0],
                "embedding_cache": ws.one("SELECT count(*) FROM embedding_cache")[0]}


def test_demo_finds_the_planted_batch_and_writes_the_report(first_run):
    tmp, rec = first_run
    s = rec["summary"]
    steps = {x["name"]: x["status"] for x in s["steps"]}
    assert rec["returncode"] == 0 and s["ok"], (steps, rec["stdout"][-4000:], rec["stderr"][-4000:])
    assert s["precision"] >= 0.7 and s["recall"] >= 0.8
    assert steps["planted batch is the top cluster"] == "ok"
    page = Path(s["report"]).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<svg id="map"' in page
    # every command is shown as the user would type it
    assert "$ forensics --workspace" in rec["stdout"] and " triage " in rec["stdout"]


def test_demo_rerun_is_idempotent(first_run):
    tmp, rec = first_run
    before = _counts(tmp / "ws")
    proc, s = run_demo(tmp, "2")
    assert proc.returncode == 0 and s["ok"], proc.stdout[-4000:]
    detail = {x["name"]: x["detail"] for x in s["steps"]}
    assert detail["ingest"].startswith("0 rows added")
    assert "reused" in detail["index build"]
    assert "already stored" in detail["anomaly add"]
    after = _counts(tmp / "ws")
    assert before["samples"] == after["samples"] == DEMO_ROWS
    assert before["anomalies"] == after["anomalies"] == 1
    assert before["quality_findings"] == after["quality_findings"] > 0  # pipelines reused
    assert before["embedding_cache"] == after["embedding_cache"] > 0    # nothing embedded twice
    assert after["triage_runs"] == before["triage_runs"] + 1            # a new run, same anomaly
    assert s["run_id"] > rec["summary"]["run_id"]
