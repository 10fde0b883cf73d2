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


@pytest.fixture(scope="module")
def premise_plain(tmp_path_factory):
    """premise_assent rows (no row explanations) in a real workspace with its indexes."""
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
    on = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    assert "opening" in on.signals_used
    off = _triage(ws, a["title"], a["prompt"], a["reply"], a["explanations"],
                  {"weights": {"opening": 0.0}, "signals": {"opening": {"members": False}}})
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
