"""Agreement with a false premise in layouts beyond "passage, then claim" (the
``agree_layout`` family of forensics.testing.dev_sycophancy) and agreement with a
world-knowledge premise next to agreements about passages: triage on a small built corpus
(real ingest, real FAISS), each with the knob that makes the difference switched off."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import findings_ap, indexed_workspace


@pytest.fixture(scope="module")
def agreements(tmp_path_factory, xquad_dir):
    """agree_layout (passage claims in other layouts) and agree_false (world-knowledge
    claims, no passage) in one small dataset, with clean question answering around them."""
    from forensics.testing.dev_sycophancy import build_dev_sycophancy

    tmp = tmp_path_factory.mktemp("sycophancy")
    c = build_dev_sycophancy(xquad_dir, seed=0, n_clean=60, n_planted=14, n_hard=12,
                             n_passage_clean=20, other_families=("agree_false",))
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


def _run(ws, a, params=None):
    from forensics import triage
    from forensics.triage import anomaly as anomaly_mod

    aid = anomaly_mod.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    res = triage.triage(ws, aid, "train", limit=1000, params=params)
    summary = json.loads(ws.sql("SELECT summary FROM triage_runs WHERE run_id = ?",
                                [res.run_id])["summary"][0])
    return res, summary


def test_the_generator_lays_the_claim_out_in_several_ways(agreements):
    _, c = agreements
    prompts = [r["prompt"] for r in c.records if c.labels[r["id"]].endswith(":agree_layout")]
    assert any(p.startswith(">") for p in prompts)       # a quoted block
    assert any("\n" not in p for p in prompts)           # one line, the passage in quotes
    assert len({p.split()[0] for p in prompts}) >= 4      # the prompts open in several ways


def test_passage_claims_in_other_layouts_split_by_whether_the_passage_supports_them(
        agreements):
    """The planted rows (false claims agreed with, the passage quoted before or after the
    claim, in a block, under a label, inside quotation marks) form the top cluster; the
    same wordings with true claims rank below them. Without ``quoted_passages`` (a claim
    before its passage taken for the passage, a one-line prompt without one) AP drops."""
    ws, c = agreements
    planted = set(c.planted_ids("agree_layout"))
    hard = {r for r, l in c.labels.items() if l == "hard:agree_layout"}
    res, summ = _run(ws, c.anomaly("agree_layout"))
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.7 * len(planted) and not top & hard, \
        Counter(c.labels[r] for r in top)
    g = summ["context_grounding"]
    assert g["applied"] and g["anomaly"]["kind"] == "echo"
    off, _ = _run(ws, c.anomaly("agree_layout"), {"grounding": {"quoted_passages": False}})
    assert findings_ap(res, planted) > findings_ap(off, planted) + 0.03
    # assents that restate nothing join on their premise with premise_join (judge_premise),
    # not without the premise judgement
    from forensics.triage.grounding import judge

    by_id = {r["id"]: r for r in c.records}
    assents = {r for r in planted
               if judge(by_id[r]["prompt"], by_id[r]["reply"]).label == "unavailable"}
    joined, _ = _run(ws, c.anomaly("agree_layout"), {"grounding": {"premise_join": True}})
    assert assents and len(set(joined.clusters[0]["row_ids"]) & assents) >= 0.5 * len(assents)
    bare, _ = _run(ws, c.anomaly("agree_layout"), {"grounding": {"judge_premise": False,
                                                                 "premise_join": True}})
    assert not set(bare.clusters[0]["row_ids"]) & assents


def test_a_world_knowledge_agreement_sends_agreements_about_passages_to_other_context(
        agreements):
    """agree_false's anomaly has no passage and restates its prompt: the passage rows that
    agree (with true or false claims about their passage) are "behaviour, other context"
    and leave its top cluster; with ``world_context`` off they crowd it."""
    ws, c = agreements
    passage_rows = {r for r, l in c.labels.items() if l.endswith(":agree_layout")}
    res, summ = _run(ws, c.anomaly("agree_false"))
    g = summ["context_grounding"]
    assert g["applied"] and g["mode"] == "world" and g["with_passage"] >= len(passage_rows)
    top = set(res.clusters[0]["row_ids"])
    assert not top & passage_rows, Counter(c.labels[r] for r in top)
    off, summ_off = _run(ws, c.anomaly("agree_false"), {"grounding": {"world_context": False}})
    assert summ_off["context_grounding"]["applied"] is False
    planted = set(c.planted_ids("agree_false"))
    assert findings_ap(res, planted) >= findings_ap(off, planted)
    assert len(set(off.clusters[0]["row_ids"]) & passage_rows) > 0
