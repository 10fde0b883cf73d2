"""The report over a run made by the real `forensics triage` (not rows written with SQL):
the anomaly/triage contract and the page agree, and `triage --report` writes the page.

The workspace is a copy of the session's shared demo workspace (tests/demo_shared.py: the
demo's own CLI chain init -> ingest -> pipelines -> index build -> anomaly add, on a stratified
400-row slice of the shipped corpus); this module runs `triage --report` and `report` on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from demo_shared import DEMO_ROWS, copy_workspace, shared_demo

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"

pytestmark = pytest.mark.slow  # shared demo build (once per session) + triage + report


def test_report_of_a_real_triage_run(tmp_path, tmp_path_factory):
    import forensics

    root, rec = shared_demo(tmp_path_factory)
    # this test needs the demo's workspace up to the stored anomaly (the demo's own pass mark
    # is test_demo's business)
    built = {x["name"]: x["status"] for x in rec["summary"]["steps"]}
    assert built.get("index build") == "ok" and built.get("anomaly add") == "ok", \
        rec["stdout"][-3000:] + rec["stderr"][-3000:]
    ws = copy_workspace(root / "ws", tmp_path / "ws")
    dataset = f"demo-{DEMO_ROWS}"
    labels = {json.loads(x)["id"]: json.loads(x)["label"]
              for x in (DATA / "demo_labels.jsonl").read_text().splitlines() if x}
    with forensics.open(ws, read_only=True) as w:
        aid = w.one("SELECT max(anomaly_id) FROM anomalies")[0]
        runs_before = w.one("SELECT count(*) FROM triage_runs")[0]
    out = tmp_path / "t.html"
    tri = run_cli("triage", str(aid), "--dataset", dataset, "--json", "--report", out,
                  workspace=ws).json()
    assert out.exists(), "triage --report did not write the page"
    page = out.read_text(encoding="utf-8")
    # the page shows the run's clusters in the run's order, with every member counted
    m = re.search(r'id="report-data">(.*?)</script>', page, re.S)
    data = json.loads(m.group(1))
    assert data["run_id"] == tri["run_id"]
    assert [c["cluster_id"] for c in data["clusters"]][:5] == [c["cluster_id"] for c in tri["clusters"]][:5]
    assert data["clusters"][0]["members"] == len(tri["clusters"][0]["row_ids"])
    # the top cluster's rows in the page are the planted batch, mostly
    top_rows = [r["id"] for r in data["rows"] if r["c"] == data["clusters"][0]["cluster_id"]]
    planted = sum(labels[r] == "planted:de" for r in top_rows)
    assert planted / len(top_rows) >= 0.7
    # the map read the vectors from the FAISS index the CLI built
    res = run_cli("report", str(tri["run_id"]), "--output", tmp_path / "r.html", "--json",
                  workspace=ws).json()
    assert res["map_source"].startswith("the pair index")
    assert res["map_points"] > 10
    # the copy was private: the shared workspace did not get this run
    with forensics.open(root / "ws", read_only=True) as w:
        assert w.one("SELECT count(*) FROM triage_runs")[0] == runs_before
