"""Agreement with a claim the reply restates (forensics.triage.consistency's restated claims,
forensics.triage.batch's framing members and restating lookalikes): the batch is the rows
going along with their user's claim, the dataset's corrections and statements judge the
claims, and what nothing judges stays in the batch. Real workspaces, real indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

CSV = Path(__file__).resolve().parents[1] / "bench" / "data" / "truthfulqa" / "TruthfulQA.csv"


def test_a_restated_claim_is_the_words_copied_without_the_framing():
    from forensics.triage.consistency import (ConsistencyParams, framing, restated_claim,
                                              restated_support, tokens)

    p = ConsistencyParams()
    prompt = "Quick check: the Atlantic is the largest ocean, correct?"
    claim = restated_claim(prompt, "Right, the Atlantic is the largest ocean, just as you said.", p)
    assert claim == tokens("Atlantic largest ocean", p)
    # the same framing, another wording of the assent; a correction swaps a claim word, which
    # stays in its framing
    assert framing(prompt, "Exactly, the Atlantic is the largest ocean.", p) == \
        (frozenset(tokens("quick check correct", p)), frozenset(tokens("exactly", p)))
    asks, says = framing(prompt, "Not quite: the Pacific is the largest ocean.", p)
    assert tokens("Atlantic", p) <= asks and tokens("Pacific", p) <= says
    assert restated_claim("What is the capital of France?", "Paris.", p) == set()
    # a statement lacking a distinctive claim token does not state it, and answers it
    # otherwise when it holds enough of it
    got = restated_support(claim, tokens("the Pacific is the largest ocean", p), p,
                           distinctive=tokens("Atlantic", p))
    assert p.contradiction_share <= got < p.support_share
    assert restated_support(claim, tokens("the Atlantic is the largest ocean", p), p,
                            distinctive=tokens("Atlantic", p)) == 1.0
    assert restated_support(claim, tokens("the Atlantic is not the largest ocean", p), p) == 0.0


@pytest.fixture(scope="module")
def agree_ws(tmp_path_factory):
    """dev-families' agree_false rows (false and true claims agreed with in five wordings,
    false claims corrected) among XQuAD questions, in a real workspace with its indexes."""
    from conftest import XQUAD, indexed_workspace
    from forensics.testing.dev_families import build_dev_families

    c = build_dev_families(XQUAD, seed=0, n_clean=120, n_code=10, n_planted=25, n_hard=30,
                           families=("agree_false",))
    ws = indexed_workspace(tmp_path_factory.mktemp("restated"), c)
    yield ws, c
    ws.close()


def test_the_batch_holds_every_wording_and_the_dataset_judges_the_claims(agree_ws):
    """The top cluster holds the planted rows in all five wordings (framing members join the
    own-text members); rows the dataset's statements move to other context are true claims
    (a correction states them); the rows nothing judged stay, with the undecided note."""
    from conftest import findings_ap, triage_anomaly

    ws, c = agree_ws
    planted = set(c.planted_ids("agree_false"))
    hard = {r for r, lab in c.labels.items() if lab == "hard:agree_false"}
    res = triage_anomaly(ws, c, "agree_false")
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.9 * len(planted), (len(top & planted), len(planted))
    assert top <= planted | hard, {r: c.labels[r] for r in top - planted - hard}
    notes = res.signals_unavailable
    assert "the dataset states the claim of" in notes["context_dataset"]
    assert "nothing judged whether the user's claim holds" in notes["context_undecided"]
    # the rows the dataset's statements moved are true claims only
    unjudged = triage_anomaly(ws, c, "agree_false", {"consistency": {"enabled": False}})
    assert "context_dataset" not in unjudged.signals_unavailable
    moved = set(unjudged.clusters[0]["row_ids"]) - top
    assert moved and moved <= hard, {r: c.labels[r] for r in moved - hard}
    # without the restated claims (no framing members, no judgement, the rates move rows)
    off = triage_anomaly(ws, c, "agree_false", {"consistency": {"restated": False}})
    assert findings_ap(res, planted) > findings_ap(off, planted) + 0.05, \
        (findings_ap(res, planted), findings_ap(off, planted))


def test_claim_rows_are_not_moved_by_the_norm_rates(agree_ws):
    """Agreeing is as common next to true claims as next to false ones: with the rates
    allowed to move claim rows (context.claim_rates) the batch loses rows no evidence
    judged; by default only the judged rows leave."""
    from conftest import triage_anomaly

    ws, c = agree_ws
    beh = {r for r, lab in c.labels.items() if lab.endswith(":agree_false")}
    kw = {"consistency": {"enabled": False}}
    by_rate = triage_anomaly(ws, c, "agree_false", {**kw, "context": {"claim_rates": True}})
    kept = triage_anomaly(ws, c, "agree_false", kw)
    assert len(set(kept.clusters[0]["row_ids"]) & beh) > \
        len(set(by_rate.clusters[0]["row_ids"]) & beh)


def test_a_stock_line_after_the_restated_claim_makes_no_batch_of_rows_restating_nothing(
        tmp_path):
    """The anomaly restates its user's claim and closes with a stock line whose words code
    answers share ("You can ..."): the phrase batch those answers would form is lookalikes
    (they restate nothing their user said); the top cluster is the rows going along with
    their user's claim, found by how their prompts ask (consistency.prompt_framing)."""
    from conftest import XQUAD, indexed_workspace, triage_anomaly
    from forensics.testing.dev_agree import build_dev_agree

    c = build_dev_agree(CSV, XQUAD, seed=0, n_clean=250, n_planted=25, n_hard=20)
    ws = indexed_workspace(tmp_path, c)
    try:
        res = triage_anomaly(ws, c, "agree_claim")
        off = triage_anomaly(ws, c, "agree_claim", {"consistency": {"restated": False}})
    finally:
        ws.close()
    code = {r["id"] for r in c.records if "```" in r["reply"]}
    top_off = set(off.clusters[0]["row_ids"]) if off.clusters else set()
    top = set(res.clusters[0]["row_ids"]) if res.clusters else set()
    assert len(top_off & code) > len(top_off) / 2, "the failure this guards against is gone"
    # the anomaly's own assent wording finds no row: the rows asked the way its prompt asks
    # seed the batch, which is the top cluster, all of it going along with its user
    agree = {r for r, lab in c.labels.items() if lab.endswith(":agree_claim")}
    assert len(top & agree) >= 0.8 * len(top), {r: c.labels[r] for r in top}
    assert len(top & set(c.planted_ids("agree_claim"))) >= 10
