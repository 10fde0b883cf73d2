"""Agreement with a false claim on the claim's topic, in a dataset where many replies open with
a pleasantry (forensics.testing.dev_assent): the generator, the ``opening`` signal's member
re-cut and the dataset's statements judging the claims. Real workspace, real indexes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "bench" / "data" / "truthfulqa" / "TruthfulQA.csv"
XQ = ROOT.parent / "shared" / "data" / "xquad"


def _build(seed: int = 0, **kw):
    from forensics.testing.dev_assent import build_dev_assent

    return build_dev_assent(CSV, XQ, seed=seed, **kw)


def test_the_generator_is_a_pure_function_of_its_seed_and_labels_every_row():
    a, b, c = _build(0, n_clean=40, n_planted=8, n_hard=6), \
        _build(0, n_clean=40, n_planted=8, n_hard=6), _build(1, n_clean=40, n_planted=8, n_hard=6)
    assert a.records == b.records and a.labels == b.labels
    assert a.records != c.records
    assert {r["id"] for r in a.records} == set(a.labels)
    fam = [r for r in a.records if a.labels[r["id"]].endswith(":assent_topic")]
    assert sum(a.labels[r["id"]] == "planted:assent_topic" for r in fam) == 8
    assert sum(a.labels[r["id"]] == "hard:assent_topic" for r in fam) == 6
    for r in fam:
        # the reply names words of the claim without copying a run of it
        first = re.split(r"(?<=[.!?])\s+", r["reply"], maxsplit=1)[0]
        assert len(first.split()) <= 5
    an = a.anomalies["assent_topic"]
    assert an["prompt"] and an["reply"] and len(an["explanations"]) == 2


def test_content_words_are_the_longest_words_in_claim_order():
    from forensics.testing.dev_assent import content_words

    assert content_words("Drinking coffee will stunt your growth") == ["Drinking", "coffee"]
    assert content_words("The water in Germany and Norway") == ["water", "Germany", "Norway"][1:]
    assert content_words("It is so") == []


@pytest.fixture(scope="module")
def assent_ws(tmp_path_factory):
    """dev-assent rows (no row explanations; half the clean answers after a pleasantry; 40
    questions, so the clean rows answer most claims) in a real workspace with its indexes."""
    from conftest import indexed_workspace

    c = _build(0, n_clean=60, n_planted=20, n_hard=16, opener_share=0.5, n_items=40,
               other_families=("footer",))
    ws = indexed_workspace(tmp_path_factory.mktemp("assent"), c)
    yield ws, c
    ws.close()


def _opening_members(ws, run_id) -> int:
    from forensics import triage

    return int(triage.load_run(ws, run_id)["summary"]["opening_members"])


def test_openings_most_rows_share_are_cut_again_to_the_batch(assent_ws):
    """The pleasantries that open many clean answers sit on the upper side of the first cut of
    the opening scores: cut again, the members are a minority of the dataset and mostly the
    rows agreeing with their user; without the re-cut they would be a third of it."""
    from conftest import triage_anomaly
    from forensics import triage

    ws, c = assent_ws
    n = len(c.records)
    beh = {r for r, l in c.labels.items() if l.endswith(":assent_topic")}
    res = triage_anomaly(ws, c, "assent_topic")
    members = _opening_members(ws, res.run_id)
    assert 8 <= members <= 0.2 * n, (members, n)
    top = set(res.clusters[0]["row_ids"])
    assert len(top & beh) >= 0.7 * len(top), (len(top & beh), len(top))
    raw = triage_anomaly(ws, c, "assent_topic", {"signals": {"opening": {"member_recuts": 0}}})
    assert _opening_members(ws, raw.run_id) > 0.2 * n
    # members that do not go along with their user (an answer in an odd form) and stay above
    # the share are the dataset's opening style: none join
    style = triage_anomaly(ws, c, "assent_topic",
                           {"signals": {"opening": {"member_recuts": 0, "along_quantile": 0.0}}})
    summary = triage.load_run(ws, style.run_id)["summary"]
    assert summary["opening_members"] == 0 and summary["opening_is_the_norm"]


def test_the_dataset_states_true_claims_through_the_framing_of_prompts_and_replies(assent_ws):
    """The batch's prompts frame each claim alike ("a podcast claimed that ...") and the
    dataset's answers carry their own stock words ("in short", "as far as the evidence
    goes"): neither keeps an answer from stating a true claim, so rows agreeing with a true
    claim the dataset states leave the batch (and only they); with both framings counted as
    the claim's words, fewer rows are judged so."""
    from conftest import triage_anomaly

    ws, c = assent_ws
    on = triage_anomaly(ws, c, "assent_topic")
    got = on.signals_unavailable["context_dataset"]
    stated = int(got.split("states the claim of ")[1].split(" ")[0])
    off = triage_anomaly(ws, c, "assent_topic",
                         {"consistency": {"reply_common_share": 0.0, "batch_framing_rows": 0}})
    got_off = off.signals_unavailable["context_dataset"]
    stated_off = int(got_off.split("states the claim of ")[1].split(" ")[0])
    assert stated >= 3 and stated > stated_off, (got, got_off)
    none = triage_anomaly(ws, c, "assent_topic", {"consistency": {"enabled": False}})
    left = set(none.clusters[0]["row_ids"]) - set(on.clusters[0]["row_ids"])
    assert left and sum(c.labels[r] == "hard:assent_topic" for r in left) >= 0.8 * len(left), \
        {r: c.labels[r] for r in left}
