"""The report over a run made by the real `forensics triage` (not rows written with SQL):
the anomaly/triage contract and the page agree, and `triage --report` writes the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"

pytestmark = pytest.mark.slow  # index build + triage + report: several model loads


def _has_command(name: str) -> bool:
    return run_cli(name, "--help", check=False).returncode == 0


def test_report_of_a_real_triage_run(tmp_path):
    if not (_has_command("triage") and _has_command("anomaly")):
        pytest.skip("this build has no `forensics triage` / `forensics anomaly` command yet")
    # a 300-row slice of the shipped demo corpus (shuffled, so every kind of row is in it)
    lines = (DATA / "demo_corpus.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = {json.loads(x)["id"]: json.loads(x)["label"]
              for x in (DATA / "demo_labels.jsonl").read_text().splitlines() if x}
    ws = tmp_path / "ws"
    run_cli("init", workspace=ws)
    run_cli("ingest", train, "--dataset", "d", "--id-field", "id", "--prompt-field", "prompt",
            "--reply-field", "reply", "--meta-fields", "source,shard", workspace=ws)
    run_cli("index", "build", "--dataset", "d", workspace=ws)
    a = json.loads((DATA / "demo_anomalies.json").read_text(encoding="utf-8"))["de"]
    aid = run_cli("anomaly", "add", "--title", a["title"], "--prompt", a["prompt"], "--reply",
                  a["reply"], "--explanation-file", REPO / "examples" / "anomaly_explanation.txt",
                  "--json", workspace=ws).json()["anomaly_id"]
    out = tmp_path / "t.html"
    tri = run_cli("triage", str(aid), "--dataset", "d", "--json", "--report", out,
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
