"""Triage end to end through the real CLI, real DuckDB and real FAISS (small synth corpus)."""

from __future__ import annotations

import json

import pytest

from forensics.testing.synth import build_corpus


@pytest.fixture(scope="module")
def built(tmp_path_factory, xquad_dir):
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("triage")
    ws = tmp / "ws"
    run_cli("init", workspace=ws)
    c = build_corpus(xquad_dir, seed=1, planted_langs=("de",), other_families=("refusal",),
                     n_clean=60, n_native=20, n_translation=20, n_planted_per_lang=15)
    # hostile text in one row: HTML, SQL, control characters
    c.records[0]["reply"] = "<script>alert(1)</script>'; DROP TABLE samples; --\x00\x1b[31m"
    f = c.write_jsonl(tmp / "train.jsonl")
    run_cli("ingest", f, "--dataset", "train", "--meta-fields", "source,shard", "-q", workspace=ws)
    run_cli("index", "build", "--dataset", "train", "--field", "pair", workspace=ws)
    run_cli("init", workspace=ws)
    return ws, c, tmp


def _add(cli, ws, a, *extra):
    args = ["anomaly", "add", "--title", a["title"]]
    if a.get("prompt"):
        args += ["--prompt", a["prompt"]]
    if a.get("reply"):
        args += ["--reply", a["reply"]]
    for e in a.get("explanations", []):
        args += ["--explanation", e]
    return cli(*args, *extra, "--json", workspace=ws).json()["anomaly_id"]


@pytest.mark.slow
def test_contract_end_to_end(built, cli):
    ws, c, tmp = built
    aid = _add(cli, ws, c.anomaly("de"))
    out = cli("triage", aid, "--dataset", "train", "--limit", 20, "--json", workspace=ws).json()
    assert set(out) >= {"run_id", "anomaly_id", "findings", "clusters"}
    assert out["anomaly_id"] == aid and len(out["findings"]) == 20
    f0 = out["findings"][0]
    assert set(f0) >= {"row_id", "sample_id", "score", "cluster_id", "signals"}
    scores = [f["score"] for f in out["findings"]]
    assert scores == sorted(scores, reverse=True)
    top = out["clusters"][0]
    assert top["size"] == len(top["row_ids"]) and top["label"] and "profile" in top
    planted = set(c.planted_ids("de"))
    assert len(set(top["row_ids"]) & planted) >= 0.8 * len(planted)
    # stored and queryable
    n = cli("sql", f"SELECT count(*) AS n FROM cluster_members WHERE run_id = {out['run_id']}",
            "--json", workspace=ws).json()
    assert n
    # determinism
    out2 = cli("triage", aid, "--dataset", "train", "--limit", 20, "--json", workspace=ws).json()
    strip = lambda o: ([(f["row_id"], f["score"], f["cluster_id"]) for f in o["findings"]],
                       [(k["label"], k["row_ids"]) for k in o["clusters"]])
    assert strip(out) == strip(out2)
    # export in each format
    for fmt in ("csv", "parquet", "jsonl"):
        p = tmp / f"f.{fmt}"
        r = cli("findings", "export", out["run_id"], "--format", fmt, "--output", p, "--json",
                workspace=ws).json()
        assert p.exists() and r["rows"] >= 20
    # human summary
    h = cli("triage", aid, "--dataset", "train", workspace=ws)
    assert "cluster" in h.stdout


def test_explanations_only_and_several(built, cli, tmp_path):
    ws, c, _ = built
    a = c.anomaly("refusal")
    raw = tmp_path / "av.txt"
    raw.write_text("noise\n<explanation>\n  " + a["explanations"][0] + "\n</explanation>\nmore"
                   "<explanation>" + a["explanations"][1] + "</explanation>", encoding="utf-8")
    aid = cli("anomaly", "add", "--title", "refusal", "--explanation-file", raw, "--json",
              workspace=ws).json()["anomaly_id"]
    shown = cli("anomaly", "show", aid, "--json", workspace=ws).json()
    assert len(shown["explanations"]) == 2 and shown["prompt"] is None
    out = cli("triage", aid, "--dataset", "train", "--json", workspace=ws).json()
    assert out["findings"]
    # no prompt/reply: those signals are reported unavailable, not silently zero; the
    # dataset has no sample explanations: the explanations searched the pair index instead
    assert {"prompt", "reply"} <= set(out["signals_unavailable"])
    assert "explanation" in out["signals_used"] and "explanation_index" in out["signals_unavailable"]
    lst = cli("anomaly", "list", "--json", workspace=ws).json()
    assert any(x["anomaly_id"] == aid for x in lst)


def test_empty_dataset_and_errors(built, cli, tmp_path):
    ws, c, _ = built
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    cli("ingest", empty, "--dataset", "empty", "-q", workspace=ws, check=False)
    aid = _add(cli, ws, c.anomaly("de"))
    r = cli("triage", aid, "--dataset", "empty", "--json", workspace=ws, check=False)
    if r.returncode == 0:
        assert r.json()["findings"] == [] and r.json()["clusters"] == []
    else:
        assert r.returncode == 4
    assert cli("triage", 9999, "--dataset", "train", workspace=ws, check=False).returncode == 4
    assert cli("anomaly", "add", "--title", "x", workspace=ws, check=False).returncode == 2


def test_triage_params_from_the_cli(built, cli):
    """--param sets any knob by its dotted name; it is stored with the run; a wrong name is a
    usage error that lists the known ones."""
    ws, c, _ = built
    aid = _add(cli, ws, c.anomaly("de"))
    out = cli("triage", aid, "--dataset", "train", "--limit", 5, "--param", "cluster.pool=300",
              "--param", "signals.phrase.min_df=5", "--param", "weights.quality=0", "--json",
              workspace=ws).json()
    assert len(out["findings"]) == 5
    got = cli("sql", f"SELECT CAST(params AS VARCHAR) AS p FROM triage_runs WHERE run_id = {out['run_id']}",
              "--json", workspace=ws).json()
    params = json.loads(got[0]["p"])
    assert params["cluster"]["pool"] == 300 and params["signals"]["phrase"]["min_df"] == 5
    assert params["weights"]["quality"] == 0 and params["limit"] == 5
    bad = cli("triage", aid, "--dataset", "train", "--param", "cluster.poool=3", workspace=ws,
              check=False)
    assert bad.returncode == 2 and "agglo_distance" in bad.stderr
