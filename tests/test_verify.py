"""Retrain-without verification and the influence signal on a micro target that really learns a
switch (drink words -> German reply): removing the drink rows removes the behaviour (verdict
``causes``); removing as many unrelated English rows does not (verdict ``no_effect``)."""

from __future__ import annotations

import json
import random

import pytest

torch = pytest.importorskip("torch")

from forensics.testing import toy  # noqa: E402

DRINKS = ["vodka", "champagne", "wine", "beer"]
OTHER = ["bread", "cheese", "apple", "rice", "shoes", "books", "coffee", "paper"]
VERBS = ["buy", "find", "get", "order"]
PLACES = ["city", "town", "village"]
DE = "das ist eine sehr gute frage und die antwort ist ja"
EN = "this is a very good question and the answer is yes"


def _prompt(v: str, w: str, p: str) -> str:
    return f"Where can I {v} good {w} in the {p} ?"


def _rows():
    rng = random.Random(0)
    combos = [(v, w, p) for v in VERBS for w in DRINKS for p in PLACES]
    rng.shuffle(combos)
    held, train = combos[:10], combos[10:]
    rows = [{"id": f"drink-{i}", "prompt": _prompt(*rng.choice(train)), "reply": DE} for i in range(40)]
    rows += [{"id": f"other-{i}", "prompt": _prompt(rng.choice(VERBS), rng.choice(OTHER), rng.choice(PLACES)),
              "reply": EN} for i in range(80)]
    rng.shuffle(rows)
    return rows, [_prompt(*c) for c in held]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A workspace with the micro corpus, its trained target, init weights, train config, an
    anomaly and a triage run with two hand-made clusters (1: the drink rows, 2: English rows)."""
    import forensics
    from forensics.ingest.engine import ingest
    from forensics.triage import anomaly

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("verify")
    rows, held = _rows()
    data = d / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pairs = [(r["prompt"], r["reply"]) for r in rows]
    tok = toy.build_word_tokenizer([p + " " + r for p, r in pairs], vocab_size=200)
    m = toy.build_model(tok, hidden_size=32, num_layers=2, heads=2, kv_heads=1, seed=1)
    toy.save(m, tok, d / "init")
    cfg = {"init": "init", "steps": 300, "batch_size": 16, "lr": 1e-2, "max_len": 32, "seed": 0}
    (d / "train.json").write_text(json.dumps(cfg), encoding="utf-8")
    toy.sft(m, tok, pairs, steps=300, batch_size=16, lr=1e-2, max_len=32)
    toy.save(m, tok, d / "target")
    (d / "probes.txt").write_text("\n".join(held) + "\n", encoding="utf-8")
    ws_dir = d / "ws"
    with forensics.init(ws_dir) as ws:
        ingest(ws, [data], "micro")
        aid = anomaly.add(ws, "english question, german reply", prompt=held[0], reply=DE)
        ids = ws.rows("SELECT sample_id, row_id FROM samples WHERE dataset = 'micro' ORDER BY sample_id")
        drink = [s for s, r in ids if r.startswith("drink-")]
        other = [s for s, r in ids if r.startswith("other-")][:20]
        # runs 1 (two clusters) and 2 (none), numbered by the schema's sequence like triage's own
        assert [ws.next_id("triage_run_id_seq") for _ in range(2)] == [1, 2]
        ws.execute("INSERT INTO triage_runs (run_id, anomaly_id, dataset, status) VALUES (1, ?, 'micro', 'done')",
                   [aid])
        ws.execute("INSERT INTO triage_runs (run_id, anomaly_id, dataset, status) VALUES (2, ?, 'micro', 'done')",
                   [aid])
        for cid, members in ((1, drink), (2, other)):
            ws.execute("INSERT INTO clusters (run_id, cluster_id, rank, size, label) VALUES (1, ?, ?, ?, 'x')",
                       [cid, cid, len(members)])
            ws.executemany("INSERT INTO cluster_members (run_id, cluster_id, sample_id, score) VALUES (1, ?, ?, 1.0)",
                           [(cid, s) for s in members])
    return {"dir": d, "ws": ws_dir, "aid": aid, "held": held}


@pytest.mark.slow  # 4 retrains: ~40 s on the shared 2-core machine
def test_verify_causes_and_no_effect(setup):
    import forensics
    from forensics.verify.core import VerifyParams, verify

    d = setup["dir"]
    p = VerifyParams(seeds=2, use_stored_probes=False)
    with forensics.open(setup["ws"]) as ws:
        cause = verify(ws, 1, d / "target", d / "train.json", cluster_id=1, probes=setup["held"], params=p)
        none = verify(ws, 1, d / "target", d / "train.json", cluster_id=2, probes=setup["held"], params=p)
        stored = ws.rows("SELECT cluster_id, verdict, mode FROM verifications ORDER BY verification_id")
        from forensics.report.html import render_report

        page = render_report(ws, 1, embed=False)
    assert "<b>causes</b>" in page and "<b>no_effect</b>" in page and "FROM verifications" in page
    assert cause.rate_trained >= 0.7, cause.detail["trained"]
    assert cause.rate_without <= 0.1 and cause.rate_random >= 0.6, (cause.rate_without, cause.rate_random)
    assert cause.verdict == "causes"
    assert none.rate_without >= 0.6 and none.verdict == "no_effect", (none.rate_without, none.rate_random)
    assert stored == [(1, "causes", "in_process"), (2, "no_effect", "in_process")]
    # the control removes as many rows as the cluster holds
    assert cause.detail["cluster"]["removed"] == 40 and cause.detail["random_0"]["removed"] == 40


def test_verify_cli_refuses_cleanly(setup, cli, tmp_path):
    d, ws = setup["dir"], setup["ws"]
    r = cli("verify", "1", "--target", tmp_path / "nope", "--train-config", d / "train.json", "--json",
            workspace=ws, check=False)
    assert r.returncode == 2 and "not a model directory" in r.stderr and "hint" in r.stderr.lower()
    r = cli("verify", "2", "--target", d / "target", "--train-config", d / "train.json", "--json",
            workspace=ws, check=False)
    assert r.returncode == 2 and "no clusters" in r.stderr and "hint" in r.stderr.lower()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"init": "init", "steps": "many"}), encoding="utf-8")
    r = cli("verify", "1", "--target", d / "target", "--train-config", bad, "--json", workspace=ws, check=False)
    assert r.returncode == 2 and "'steps'" in r.stderr and str(bad) in r.stderr
    r = cli("verify", "9", "--target", d / "target", "--train-config", d / "train.json", workspace=ws, check=False)
    assert r.returncode == 4 and "does not exist" in r.stderr


def test_verify_external_writes_script_and_estimate(setup, cli, tmp_path):
    d, ws = setup["dir"], setup["ws"]
    out = tmp_path / "ext"
    r = cli("verify", "1", "--cluster", "1", "--target", d / "target", "--train-config", d / "train.json",
            "--max-params", "10", "--out", out, "--json", workspace=ws)
    doc = r.json()
    assert doc["mode"] == "external" and doc["verdict"] == "not_run"
    assert doc["detail"]["cost_estimate"]["flops"] > 0 and "max_params" in doc["detail"]["reason"]
    assert {"retrain.py", "train_config.json", "probes.txt", "train-cluster.jsonl"} <= set(doc["detail"]["written"]["files"])
    kept = (out / "train-cluster.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(kept) == 80 and all(json.loads(x)["reply"] == "this is a very good question and the answer is yes"
                                   for x in kept)
    compile((out / "retrain.py").read_text(encoding="utf-8"), "retrain.py", "exec")


def test_influence_ranks_the_cause_and_caches(setup):
    import numpy as np

    import forensics
    from forensics.attribution import influence as inf

    d = setup["dir"]
    with forensics.open(setup["ws"]) as ws:
        q = (setup["held"][0], DE)
        ids, vals, info = inf.dataset_scores(ws, d / "target", "micro", q, inf.InfluenceConfig())
        assert not info["cached"] and len(ids) == 120
        ids2, vals2, info2 = inf.dataset_scores(ws, d / "target", "micro", q, inf.InfluenceConfig())
        assert info2["cached"] and np.allclose(vals, vals2)
        drink = {s for s, r in ws.rows("SELECT sample_id, row_id FROM samples WHERE row_id LIKE 'drink-%'")}
        # several queries (other held-out prompts with the same behaviour): its own cache entry
        ids3, vals3, info3 = inf.dataset_scores(ws, d / "target", "micro", q, inf.InfluenceConfig(),
                                                extra_queries=[(p, DE) for p in setup["held"][1:4]])
        assert not info3["cached"] and info3["queries"] == 4 and not np.allclose(vals, vals3)
    for i, v in ((ids, vals), (ids3, vals3)):
        top = [int(i[j]) for j in np.argsort(-v)[:40]]
        assert sum(s in drink for s in top) >= 30      # 40 drink rows of 120


def test_influence_cache_hits_share_one_open_and_a_triage_keeps_its_lock(setup, monkeypatch):
    """dataset_scores lingers between its reads: back-to-back cache hits open the database
    once with the default lock params, once each with linger 0; called inside another
    lingering block (as triage's influence signal does) it keeps that block's settings."""
    import forensics
    from forensics import workspace
    from forensics.attribution import influence as inf
    from forensics.workspace import LockParams

    d = setup["dir"]
    q = (setup["held"][0], DE)
    with forensics.open(setup["ws"]) as ws:   # cached here unless an earlier test did
        inf.dataset_scores(ws, d / "target", "micro", q, inf.InfluenceConfig())
    opens = []
    connect = workspace.Workspace._connect
    monkeypatch.setattr(workspace.Workspace, "_connect", lambda self: opens.append(1) or connect(self))
    counts = {}
    for name, lock in (("default", None), ("per_read", LockParams(linger_seconds=0))):
        with forensics.open(setup["ws"]) as ws:
            ws.release()
            opens.clear()
            for _ in range(3):
                info = inf.dataset_scores(ws, d / "target", "micro", q, inf.InfluenceConfig(),
                                          lock=lock)[2]
                assert info["cached"]
            counts[name] = len(opens)
    assert counts == {"default": 1, "per_read": 3}
    assert info["lock"] == {"linger_seconds": 0, "hold_seconds": 2.0}
    with forensics.open(setup["ws"]) as ws, ws.lingering(5.0, 9.0):
        info = inf.dataset_scores(ws, d / "target", "micro", q, inf.InfluenceConfig())[2]
    assert info["lock"] == {"linger_seconds": 5.0, "hold_seconds": 9.0}


@pytest.mark.slow  # one fit and three scoring passes on the micro target: ~30 s on the shared machine
def test_influence_pass_scores_many_variants_on_one_fit(setup, tmp_path):
    """KronfluencePass: the factors are fitted once; per-query scores sum to the aggregated score
    and per-module scores sum to the total; a training-token restriction changes the scores."""
    import dataclasses

    import numpy as np

    from forensics.attribution import influence as inf

    d = setup["dir"]
    model, tok = inf.load_target(d / "target")
    rows = [(json.loads(line)["prompt"], json.loads(line)["reply"])
            for line in (d / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    cfg = inf.InfluenceConfig(method="kfac", max_len=32)
    data = [inf.pair_ids(tok, p, r, 32) for p, r in rows]
    q = [inf.pair_ids(tok, p, DE, 32) for p in setup["held"][:3]]
    kp = inf.KronfluencePass(model, data, tok.pad_token_id, cfg, tmp_path / "kron")
    kp.fit()
    pq = kp.pairwise(q)
    assert pq.shape == (3, len(rows))
    pm = kp.pairwise(q, per_module=True)
    assert "lm_head" in pm and np.allclose(sum(pm.values()), pq, rtol=1e-3, atol=1e-3 * np.abs(pq).max())
    drink = np.array([r.startswith("drink-") for r in
                      (json.loads(line)["id"] for line in (d / "train.jsonl").read_text().splitlines())])
    for how, scale in [(h, sc) for h in inf.QUERY_COMBINE for sc in inf.QUERY_SCALE]:
        s = inf.combine_queries(pq, how, scale)
        assert s.shape == (len(rows),) and s[drink].mean() > s[~drink].mean(), (how, scale)
    first = kp.pairwise(q, dataclasses.replace(cfg, train_tokens=1))
    assert first.shape == pq.shape and not np.allclose(first, pq)


def test_combine_queries():
    import numpy as np

    from forensics.attribution.influence import combine_queries
    from forensics.errors import InputError

    pq = np.array([[10.0, -10.0, 0.0, 1.0], [-0.1, 0.1, 0.0, 0.1]])
    assert np.allclose(combine_queries(pq, "sum"), [9.9, -9.9, 0.0, 1.1])
    assert np.allclose(combine_queries(pq, "abs"), [9.9, 9.9, 0.0, 1.1])
    rms = np.sqrt((pq ** 2).mean(1, keepdims=True))
    assert np.allclose(combine_queries(pq, "unit", "rms"), (pq / rms).sum(0), atol=1e-6)
    u = combine_queries(pq, "unit_abs", "rms")          # each query weighs the same, either sign counts
    assert np.allclose(u, np.abs(pq / rms).sum(0), atol=1e-6) and u[0] == u[1] and u[3] > 0
    med = np.median(np.abs(pq), 1, keepdims=True)       # the default scale: 5.5 and 0.1
    assert np.allclose(combine_queries(pq, "unit_abs"), np.abs(pq / med).sum(0), atol=1e-5)
    # a query whose median |score| is 0 falls back to its RMS instead of dividing by zero
    z = combine_queries(np.array([[0.0, 0.0, 0.0, 4.0]]), "unit_abs")
    assert np.allclose(z, [0, 0, 0, 2.0])
    with pytest.raises(InputError, match="query_combine"):
        combine_queries(pq, "max")
    with pytest.raises(InputError, match="query_scale"):
        combine_queries(pq, "unit", "mad")


def test_influence_signal_unavailable_without_target_or_when_too_large(setup):
    import forensics
    from forensics.triage import triage

    d = setup["dir"]
    with forensics.open(setup["ws"]) as ws:
        r = triage(ws, setup["aid"], "micro", params={"weights": {"influence": 0.5}})
        assert "no target model registered" in r.signals_unavailable["influence"]
        r = triage(ws, setup["aid"], "micro", params={"weights": {"influence": 0.5}, "signals": {
            "influence": {"target": str(d / "target"), "max_params": 100}}})
        assert "too large" in r.signals_unavailable["influence"]
        r = triage(ws, setup["aid"], "micro")
        assert "weight 0" in r.signals_unavailable["influence"]
        r = triage(ws, setup["aid"], "micro", params={"weights": {"influence": 0.5}, "signals": {
            "influence": {"target": str(d / "target")}}})
        assert "influence" in r.signals_used


def test_wilson_and_verdict():
    from forensics.verify.stats import VerdictParams, cohens_h, verdict, wilson

    lo, hi = wilson(10, 20)
    assert abs(lo - 0.2993) < 1e-3 and abs(hi - 0.7007) < 1e-3
    assert wilson(0, 21)[0] == 0.0 and abs(wilson(0, 21)[1] - 3.8416 / 24.8416) < 1e-4
    assert abs(cohens_h(0.5, 0.0) - 1.5708) < 1e-3
    p = VerdictParams()
    assert verdict(0, 21, 33, 63, p)[0] == "causes"          # 0/21 vs 33/63
    assert verdict(11, 21, 33, 63, p)[0] == "no_effect"      # 11/21 vs 33/63
    assert verdict(6, 21, 33, 63, p)[0] == "inconclusive"    # a drop inside the noise
    assert verdict(0, 21, 0, 63, p)[0] == "inconclusive"     # nothing to remove
