"""The ``opening`` triage signal (forensics.triage.signals.opening): rows whose reply opens the
way the anomaly's does (an assent in any wording) and not about their own prompt. Real
workspace, real indexes, the premise_assent corpus without explanations of its rows."""

from __future__ import annotations

from pathlib import Path

import pytest

CSV = Path(__file__).resolve().parents[1] / "bench" / "data" / "truthfulqa" / "TruthfulQA.csv"


def test_opening_is_the_first_sentence_whatever_its_length():
    from forensics.triage.signals.opening import opening

    assert opening("Absolutely. For a child I'd keep it simple.") == "Absolutely."
    assert opening("  Sure!  The rest follows.") == "Sure!"
    assert opening("Line one\nLine two. More.") == "Line one"
    assert opening("No sentence end") == "No sentence end"
    assert opening("") == "" and opening(None) == ""
    assert opening("x" * 50, max_chars=10) == "x" * 10


WHOLE = 0.35    # above the fixture's behaviour share: its members are not cut again


@pytest.fixture(scope="module")
def premise_plain(tmp_path_factory):
    """premise_assent rows (no row explanations) in a real workspace with its indexes. The
    behaviour rows (both contexts) are 31% of its rows, more than a batch is
    (``signals.opening.member_max_share``): the tests of the members' reach raise that share."""
    from conftest import indexed_workspace
    from forensics.testing.dev_premise import build_premise_family

    tmp = tmp_path_factory.mktemp("opening")
    c = build_premise_family(CSV, seed=0, n_planted=16, n_hard=14, n_clean=60)
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


def _triage(ws, title, prompt, reply, expl, params=None):
    from forensics import triage
    from forensics.triage import anomaly as anomaly_mod

    aid = anomaly_mod.add(ws, title, prompt, reply, expl)
    return triage.triage(ws, aid, "train", limit=1000, params=params)


def test_assent_openings_in_other_wordings_join_the_behaviour_batch(premise_plain):
    """The anomaly's assent opening finds the rows going along with their prompt's premise in
    other wordings: with the signal the behaviour rows (false and true premises alike: without
    world knowledge they are one behaviour) rank higher and the top cluster holds more of
    them than with its weight at 0."""
    from conftest import findings_ap

    ws, c = premise_plain
    a = c.anomaly("premise_assent")
    beh = {r for r, l in c.labels.items() if l != "clean"}
    # the dataset's treatment and statements (context steps 4d and 4c) split the behaviour
    # rows by context, which this measure (both contexts count) does not ask about: left out
    # of both runs
    same = {"treatment": {"enabled": False}, "consistency": {"enabled": False},
            "signals": {"opening": {"member_max_share": WHOLE}}}
    on = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"], same)
    assert "opening" in on.signals_used
    off = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"],
                  {**same, "weights": {"opening": 0.0},
                   "signals": {"opening": {"members": False}}})
    assert findings_ap(on, beh) > findings_ap(off, beh) + 0.05, \
        (findings_ap(on, beh), findings_ap(off, beh))
    top_on = set(on.clusters[0]["row_ids"]) if on.clusters else set()
    top_off = set(off.clusters[0]["row_ids"]) if off.clusters else set()
    assert len(top_on & beh) > len(top_off & beh), (len(top_on & beh), len(top_off & beh))
    assert len(top_on & beh) >= 0.8 * len(top_on)


def test_a_reply_restating_its_prompt_or_of_one_sentence_leaves_it_to_other_signals(
        premise_plain):
    ws, _ = premise_plain
    res = _triage(ws, "restates", "The Great Wall is visible from space, right?",
                  "Yes, the Great Wall is visible from space. Many astronauts say so.", [])
    assert "stance covers it" in res.signals_unavailable["opening"]
    res = _triage(ws, "one sentence", "Is the sky green?", "Good call, plan for it.", [])
    assert "one sentence" in res.signals_unavailable["opening"]


def test_replies_that_take_up_their_prompt_stay_out_of_the_opening_members(premise_plain):
    """A correction of the premise opens with a reaction to the user too ("Actually, that's a
    common misconception."), then states the facts on the prompt's topic: it does something
    else than going along, and the reply test keeps it out of the batch."""
    from forensics.testing.dev_premise import _CORRECTIONS

    ws, c = premise_plain
    a = c.anomaly("premise_assent")
    heads = tuple(x.split("{")[0].strip() for x in _CORRECTIONS)
    reply = {r["id"]: r["reply"] for r in c.records}
    corrected = {r for r in reply if c.labels[r] == "clean" and reply[r].startswith(heads)}
    assert corrected
    res = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    top = set(res.clusters[0]["row_ids"])
    assert not top & corrected
    loose = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"],
                    {"signals": {"opening": {"member_reply_margin": -1, "member_recuts": 0}},
                     "consistency": {"enabled": False},
                     # the treatment's answering check keeps them out too
                     "treatment": {"enabled": False}})
    assert set(loose.clusters[0]["row_ids"]) & corrected


def test_the_batch_says_its_context_is_undecided_and_the_dataset_judges_what_it_can(
        premise_plain, tmp_path):
    """Without explanations of the rows or a judge, the run says the context is undecided
    (summary and report); a row whose premise another row states as its answer is "other
    context" (the dataset's statements), and no row is judged so without such a statement."""
    from forensics import report

    ws, c = premise_plain
    a = c.anomaly("premise_assent")
    whole = {"signals": {"opening": {"member_max_share": WHOLE}}}
    res = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"], whole)
    notes = res.signals_unavailable
    assert "nothing judged whether the user's claim holds" in notes["context_undecided"]
    assert "the dataset states the claim of" in notes["context_dataset"]
    page = report.write_report(ws, res.run_id, tmp_path / "r.html", embed=False).read_text()
    assert "Context undecided." in page
    # the rows the dataset's statements moved: each has a clean reply stating its premise
    off = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"],
                  {**whole, "consistency": {"enabled": False}})
    assert "context_dataset" not in off.signals_unavailable

    # the dataset states the premise of some rows (true premises): they leave the batch,
    # and only they
    got = notes["context_dataset"]
    assert int(got.split("states the claim of ")[1].split(" ")[0]) >= 1, got
    left = set(off.clusters[0]["row_ids"]) - set(res.clusters[0]["row_ids"])
    assert left and all(c.labels[r] == "hard:premise_assent" for r in left), \
        {r: c.labels[r] for r in left}


def test_a_statement_states_a_claim_only_with_its_negations_and_comparatives():
    from forensics.triage.consistency import ConsistencyParams, support, tokens

    p = ConsistencyParams()
    claim = tokens("Since cracking your knuckles causes arthritis, what should I do?", p)
    assert support(claim, tokens("Cracking your knuckles causes arthritis.", p), p) == 1.0
    assert support(claim, tokens("Cracking your knuckles does not cause arthritis.", p), p) < 0.8
    more = tokens("I read that food got more affordable in Canada since 1970.", p)
    assert support(more, tokens("Food got less affordable in Canada since 1970.", p), p) < 0.8
    # a distinctive claim word the statement lacks: the claim says more than the statement
    three = tokens("The richest countries are Luxembourg, Ireland and Norway.", p)
    two = tokens("The richest countries are Luxembourg and Ireland.", p)
    assert support(three, two, p) == 1.0
    assert support(three, two, p, distinctive={"norwa"}) == 0.0
    assert support(three, two, p, distinctive={"norwa"}, question={"norwa"}) == 1.0
