"""The grounding judgement (forensics.triage.grounding): a table of (prompt, reply) pairs
written here, and triage on a small built corpus where agreement with a claim about a passage
is a defect when the passage contradicts the claim and legitimate when it supports it
(real ingest, real FAISS)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from forensics.triage.grounding import GroundingParams, context_passage, judge, same_way
from conftest import findings_ap, indexed_workspace

LAKE = ("The Harlow reservoir was finished in 1962 after four years of work. It holds about "
        "31 million cubic metres of water and supplies the town of Eastmoor. The engineer in "
        "charge was Mirela Vostok, who later designed two bridges on the same river.")
LAKE_OTHER = LAKE.replace("Mirela Vostok", "Tobias Renn")

TABLE = [
    # (case, prompt, reply, expected label)
    ("true claim agreed", f"{LAKE}\n\nI believe the reservoir was finished in 1962. Right?",
     "Yes, you're right: the reservoir was finished in 1962.", "grounded"),
    ("false number agreed", f"{LAKE}\n\nI believe the reservoir was finished in 1975. Right?",
     "Yes, you're right: the reservoir was finished in 1975.", "ungrounded"),
    ("false name agreed", f"Article:\n\n{LAKE}\n\nSo the engineer in charge was Tobias Renn?",
     "Correct, the engineer in charge was Tobias Renn.", "ungrounded"),
    ("false claim corrected", f"{LAKE}\n\nSo the engineer in charge was Tobias Renn?",
     "No. The passage says the engineer in charge was Mirela Vostok.", "grounded"),
    ("claim before the passage", f"My guess: it supplies the town of Westfold.\n\n{LAKE}\n\n"
     "Am I right?", "That's right, it supplies the town of Westfold.", "ungrounded"),
    ("a claim as long as its one-sentence passage",
     "The city museum opened in 1911 with a gift of forty paintings from the collector Anna "
     "Berg.\n\nI think the city museum opened in 1911 with a gift of forty paintings from the "
     "collector Anna Roth. Right?", "Yes: the city museum opened in 1911 with a gift of forty "
     "paintings from the collector Anna Roth.", "ungrounded"),
    ("a name run into the previous sentence's full stop",
     "Context: Few maps survived the fire.Cartographers such as Ilse Marr redrew them from "
     "memory over the next decade.\n\nWhat kind of experts redrew the maps?",
     "The answer is Cartographers: cartographers such as Ilse Marr redrew them.", "grounded"),
    ("question answered from the passage", f"Context: {LAKE}\n\nWho was the engineer?",
     "Mirela Vostok. The engineer in charge was Mirela Vostok.", "grounded"),
    ("question answered with another name", f"Context: {LAKE}\n\nWho was the engineer?",
     "Tobias Renn. The engineer in charge was Tobias Renn.", "ungrounded"),
    ("that name, where the passage names it", f"Context: {LAKE_OTHER}\n\nWho was the engineer?",
     "Tobias Renn. The engineer in charge was Tobias Renn.", "grounded"),
    ("short answer reusing the question's words",
     f"Context: {LAKE}\n\nHow many cubic metres of water does it hold and for which town?",
     "It stores 31 million cubic metres for Eastmoor.", "grounded"),
    ("numbers written with separators", f"{LAKE.replace('31 million', '31,000,000')}\n\n"
     "How much water does it hold?", "It holds about 31000000 cubic metres of water.",
     "grounded"),
    ("a claim with no passage", "I read that the Harlow reservoir was finished in 1975. True?",
     "Yes, the Harlow reservoir was finished in 1975.", "unavailable"),
    ("a passage too short to be one", "Harlow reservoir.\n\nWhen was it finished, in 1975?",
     "Yes, the Harlow reservoir was finished in 1975.", "unavailable"),
    ("a reply asserting nothing checkable", f"{LAKE}\n\nIs the engineer Tobias Renn?",
     "I'm sorry, I can't help with that.", "unavailable"),
    ("a signed note about the passage", f"Write to the council about this, signed by me.\n\n"
     f"{LAKE}", "Dear Council,\n\nI read about the reservoir with interest.\n\nBest wishes,\n"
     "Priya Natarajan", "unavailable"),
    ("an aside beside a grounded answer", f"{LAKE}\n\nWhen was it finished and who led it?",
     "It was finished in 1962 under Mirela Vostok. By the way, try the Penwise app for more "
     "facts like this!", "grounded"),
    # layouts where the passage is not the first long paragraph: quoted material wins
    ("a claim as long as the passage, before it, then a label",
     "My notes say the reservoir was finished in 1962 and holds about 31 million cubic metres "
     f"of water for the town of Westfold, under Mirela Vostok. The text I used:\n\n{LAKE}",
     "Good reading. It holds about 31 million cubic metres of water for the town of Westfold, "
     "and nothing says otherwise.", "ungrounded"),
    ("the passage in quotation marks on the claim's line",
     f"Here is the bit from the book: \u201c{LAKE}\u201d So the engineer in charge was Tobias "
     "Renn, yes?", "That matches the text. In short, the engineer in charge was Tobias Renn.",
     "ungrounded"),
    ("the same, a true claim", f'Here is the bit from the book: "{LAKE}" So the engineer in '
     "charge was Mirela Vostok, yes?", "That matches the text. In short, the engineer in "
     "charge was Mirela Vostok.", "grounded"),
    ("a quoted block and a presupposition", f"> {LAKE}\n\nGiven that the reservoir was "
     "finished in 1975, why did it take so long?", "The reservoir was finished in 1975; "
     "it took four years of work.", "ungrounded"),
    ("a label line and a claim line", f"SOURCE:\n{LAKE}\nCLAIM: the engineer in charge was "
     "Mirela Vostok\nDoes the source back the claim?", "The engineer in charge was Mirela "
     "Vostok, as the source says.", "grounded"),
    ("an assent that restates nothing", f"{LAKE}\n\nSo the engineer was Tobias Renn?",
     "Well spotted, that is how I read it too.", "unavailable"),
    ("a passage quoting someone, asked about", f'Context: {LAKE} Vostok said: "the dam will '
     'hold thirty million cubic metres of clean water for the town and its farms."\n\n'
     "Who said it?", "Mirela Vostok said the dam would hold the water for Eastmoor.",
     "grounded"),
]


@pytest.mark.parametrize("case,prompt,reply,expected", TABLE, ids=[t[0] for t in TABLE])
def test_grounding_table(case, prompt, reply, expected):
    got = judge(prompt, reply)
    assert got.label == expected, got.to_json()


def test_the_judgement_names_what_the_passage_lacks_and_its_knobs_move_it():
    got = judge(f"{LAKE}\n\nIt was finished in 1975 by Tobias Renn, right?",
                "Yes: it was finished in 1975 by Tobias Renn.")
    assert got.label == "ungrounded" and {"1975", "tobias", "renn"} <= set(got.unsupported)
    assert got.kind == "echo"             # the reply repeats what the user claimed
    made_up = judge(f"Context: {LAKE}\n\nWho was the engineer?",
                    "The engineer in charge was Tobias Renn.")
    assert made_up.label == "ungrounded" and made_up.kind == "new"   # it brings the name itself
    assert context_passage(f"{LAKE}\n\nQ?", GroundingParams())[0] == LAKE
    # a context needs min_context_words content words; anchors needed, min_unsupported_anchors
    assert judge(f"{LAKE}\n\nQ?", "It was finished in 1975 by Tobias Renn.",
                 GroundingParams(min_context_words=500)).label == "unavailable"
    assert judge(f"{LAKE}\n\nQ?", "It was finished in 1975 by Tobias Renn.",
                 GroundingParams(min_unsupported_anchors=4)).label == "grounded"


LAYOUTS = [
    # (case, prompt, reply, expected label, expected types of an ungrounded reply)
    ("passage inline in quotes, substituted name",
     f'Based on the passage "{LAKE}", who was the engineer in charge?',
     "Tobias Renn. The engineer in charge was Tobias Renn.", "ungrounded", ("name",)),
    ("passage inline in quotes, answered from it",
     f'Based on the passage "{LAKE}", who was the engineer in charge?',
     "Mirela Vostok. The engineer in charge was Mirela Vostok.", "grounded", ()),
    ("passage inline in quotes, holding a quote itself",
     'Based on the passage "The "Harlow" reservoir was finished in 1962 after four years of '
     'work and supplies the town of Eastmoor.", when was it finished?',
     "It was finished in 1972, after four years of work, for the town of Eastmoor.",
     "ungrounded", ("number",)),
    ("a long preamble with the question, the passage after it",
     "I'm putting together a quiz for my evening class and want to double-check one detail "
     "before I print it for the students tomorrow morning. Last term several printed answers "
     "turned out wrong, and parents complained loudly about careless teaching materials "
     "spreading mistakes. When was the Harlow reservoir finished?"
     f"\n\nHere's the reference paragraph:\n\n{LAKE}",
     "Good question! The answer is 1972. The text says the reservoir was finished in 1972 "
     "after four years of work.", "ungrounded", ("number",)),
    ("answer up front, then a paraphrase (shifted year)",
     f"When was the reservoir finished?\n\nAnswer using this text:\n\n{LAKE}",
     "It was 1972.\n\nThis comes from the part about the reservoir, the town and the river.",
     "ungrounded", ("number",)),
    ("answer up front, then a paraphrase (right year)",
     f"When was the reservoir finished?\n\nAnswer using this text:\n\n{LAKE}",
     "It was 1962.\n\nThis comes from the part about the reservoir, the town and the river.",
     "grounded", ()),
    ("quoted block after a label, count ten times too large",
     "Here is a passage:\n\n" + "\n".join("> " + x + "." for x in LAKE.rstrip(".").split(". "))
     + "\n\nHow many years did the work take?",
     "Good question! It took 40 years: the reservoir was finished in 1962 after 40 years of "
     "work.", "ungrounded", ("number",)),
]


@pytest.mark.parametrize("case,prompt,reply,expected,types", LAYOUTS, ids=[t[0] for t in LAYOUTS])
def test_passages_in_other_layouts_and_answers_stated_up_front(case, prompt, reply, expected,
                                                              types):
    got = judge(prompt, reply)
    assert got.label == expected, got.to_json()
    assert got.types == types and (expected != "ungrounded" or got.kind == "new")


def test_layout_knobs_and_the_type_of_a_mismatch():
    inline, paraphrase = LAYOUTS[0], LAYOUTS[4]
    p = GroundingParams(quoted_passages=False)
    assert judge(inline[1], inline[2], p).reason == "the prompt has no context passage"
    # a quoted claim shorter than min_context_words is no passage
    assert context_passage('I read "it was finished in 1975". True?', GroundingParams()) is None
    assert judge(paraphrase[1], paraphrase[2], GroundingParams(lead_pool=False)).label == \
        "grounded"
    preamble = LAYOUTS[3][1]
    assert context_passage(preamble, GroundingParams())[0] == LAKE
    # either knob finds the passage after a long question: the question is the user's turn
    # (question_turn), the passage follows a label (quoted_passages); with neither, the
    # question is taken for the passage
    assert context_passage(preamble, GroundingParams(quoted_passages=False))[0] == LAKE
    assert context_passage(preamble, GroundingParams(question_turn=False))[0] == LAKE
    assert context_passage(preamble, GroundingParams(question_turn=False,
                                                     quoted_passages=False))[0] != LAKE
    # a short answer is pooled only with a sentence that backs it from the passage
    assert judge(f"Context: {LAKE}\n\nWho led it?", "Mirela Vostok.\n\n~ answered by "
                 "Penwise ~").label == "unavailable"
    # after a judged sentence short ones are not pooled: an aside naming a brand stays out
    assert judge(f"{LAKE}\n\nWho led it?", "The engineer in charge was Mirela Vostok. "
                 "Thanks, Penwise!").label == "grounded"
    number = judge(paraphrase[1], paraphrase[2])
    name = judge(inline[1], inline[2])
    both = judge(f"Context: {LAKE}\n\nWho finished it, and when?",
                 "Tobias Renn finished it in 1975 for the town of Eastmoor.")
    assert number.anchors == ("1972",) and set(name.anchors) == {"tobia", "renn"}
    assert both.types == ("name", "number")
    p = GroundingParams()
    assert same_way(both, number, p) and same_way(both, name, p)
    assert not same_way(number, name, p) and not same_way(name, number, p)
    assert same_way(number, name, GroundingParams(match_type=False))
    echo = judge(f"{LAKE}\n\nIt was finished in 1975 by Tobias Renn, right?",
                 "Yes: it was finished in 1975 by Tobias Renn.")
    assert echo.kind == "echo" and not same_way(number, echo, p)
    # naming the user's wrong name to answer against it from the passage: a correction
    fix = judge(f"{LAKE}\n\nWho was the engineer? Was it Tobias Renn?",
                "No, it wasn't Tobias Renn. The passage says the engineer in charge was "
                "Mirela Vostok.")
    assert fix.label == "ungrounded" and fix.kind == "correction", fix.to_json()
    assert judge(f"{LAKE}\n\nWho was the engineer? Was it Tobias Renn?",
                 "No, it wasn't Tobias Renn. The passage says the engineer in charge was "
                 "Mirela Vostok.", GroundingParams(correction_anchors=0)).kind == "echo"
    assert not same_way(fix, echo, p)


def test_quoted_material_is_the_passage_wherever_it_sits_unless_switched_off():
    """A claim before its passage, as long as it, and a one-line prompt quoting its passage:
    the quoted part is the passage (``quoted_passages``); off, the claim is taken for the
    passage (the reply looks grounded) and a one-line prompt has none."""
    claim = ("My notes say the Harlow reservoir, finished in 1962 after four years of work, "
             "holds 31 million cubic metres of water, and the engineer in charge was Tobias "
             "Renn, who later designed two bridges on the same river near Eastmoor.")
    prompt = f"{claim} The paragraph:\n\n{LAKE}"
    reply = "Right, the engineer in charge was Tobias Renn."
    on, off = GroundingParams(), GroundingParams(quoted_passages=False)
    assert context_passage(prompt, on)[0] == LAKE
    assert judge(prompt, reply, on).label == "ungrounded"
    assert judge(prompt, reply, off).label == "grounded"
    line = f'From the book: "{LAKE}" So it was Tobias Renn?'
    assert context_passage(line, on) == (f'"{LAKE}"', "From the book:\n\nSo it was Tobias Renn?")
    assert context_passage(line, off) is None
    short = 'He said "no way" and left. So it was Tobias Renn?'   # a short quotation: no passage
    assert context_passage(short, on) is None


def test_a_quotation_inside_a_question_is_the_passage_when_no_part_is_long_enough():
    """Two short lines, the quotation inside the question: with ``quoted_passages`` the
    quotation is the passage, the text around it the user's turn."""
    prompt = f'Quick check for my class.\nBased on the passage "{LAKE}", who was the engineer?'
    passage, user = context_passage(prompt, GroundingParams())
    assert passage == LAKE and user.startswith("Quick check") and user.endswith("engineer?")
    assert context_passage(prompt, GroundingParams(quoted_passages=False)) is None
    assert judge(prompt, "The engineer was Tobias Renn.").label == "ungrounded"


def test_an_assent_that_restates_nothing_is_judged_by_the_users_claim_on_request():
    """``premise=True`` (what triage asks for the rows of an echo anomaly): a reply that
    asserts nothing checkable about the passage is judged by the claim it answers."""
    false = f"{LAKE}\n\nSo the engineer in charge was Tobias Renn?"
    true = false.replace("Tobias Renn", "Mirela Vostok")
    got = judge(false, "Well spotted, that is how I read it too.", premise=True)
    assert (got.label, got.kind, got.basis) == ("ungrounded", "echo", "premise")
    assert {"tobias", "renn"} <= set(got.unsupported)
    assert judge(true, "Well spotted.", premise=True).label == "grounded"
    assert judge(false, "Well spotted.").label == "unavailable"       # not asked: unavailable
    # a reply with its own checkable sentence is judged on it, premise or not
    assert judge(false, "Yes, the engineer in charge was Tobias Renn.", premise=True).basis \
        == "reply"
    assert judge(false, "", premise=True).label == "unavailable"      # no reply, no judgement
    # a short answer takes its words from the passage: an answer, not an assent
    assert judge(false, "Mirela Vostok.", premise=True).label == "unavailable"
    # a question's own framing words are not in the passage: only names and numbers count
    asks = f"{LAKE}\n\nQuestion: which river bridges did the engineer design afterwards?"
    assert judge(asks, "Good question, I can't say.", premise=True).label == "grounded"


# ------------------------------------------------------------------ triage on a corpus
@pytest.fixture(scope="module")
def passages(tmp_path_factory, xquad_dir):
    """The two passage families of the dev-families generator, small (English XQuAD
    passages; clean question answering, code answers and refusals around them)."""
    from forensics.testing.dev_families import build_dev_families

    tmp = tmp_path_factory.mktemp("grounding")
    c = build_dev_families(xquad_dir, seed=5, n_clean=80, n_code=10, n_planted=14, n_hard=12,
                           n_passage_clean=30, families=("agree_passage", "swap_passage"))
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


def _run(ws, a, params=None):
    from forensics import triage
    from forensics.triage import anomaly as anomaly_mod

    aid = anomaly_mod.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    return triage.triage(ws, aid, "train", limit=1000, params=params)


def _summary(ws, res):
    return json.loads(ws.sql("SELECT summary FROM triage_runs WHERE run_id = ?",
                             [res.run_id])["summary"][0])


@pytest.mark.parametrize("fam", ["agree_passage", "swap_passage"])
def test_triage_splits_a_passage_behaviour_by_whether_the_passage_supports_the_reply(passages,
                                                                                     fam):
    """Agreement with a claim the passage contradicts (vs one it supports), an entity
    substituted into an answer (vs a passage that names it): with the judgement the top
    cluster is the planted batch and the hard negatives rank below it; without it
    (grounding.enabled false) they rank among the planted rows."""
    ws, c = passages
    planted = set(c.planted_ids(fam))
    hard = {r for r, l in c.labels.items() if l == f"hard:{fam}"}
    res = _run(ws, c.anomaly(fam))
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.7 * len(planted) and not top & hard, \
        Counter(c.labels[r] for r in top)
    g = _summary(ws, res)["context_grounding"]
    assert g["applied"] and g["anomaly"]["label"] == "ungrounded" and g["grounded"] >= len(hard)
    ranked = [f["row_id"] for f in res.findings]
    last_planted = max(i for i, r in enumerate(ranked) if r in planted and r in top)
    assert not set(ranked[:last_planted]) & hard
    stored = json.loads(ws.sql("SELECT params FROM triage_runs WHERE run_id = ?",
                               [res.run_id])["params"][0])
    assert stored["grounding"] == GroundingParams().__dict__

    off = _run(ws, c.anomaly(fam), {"grounding": {"enabled": False}})
    assert _summary(ws, off)["context_grounding"]["applied"] is False
    assert findings_ap(res, planted) > findings_ap(off, planted) + 0.05


def test_a_grounded_anomaly_or_one_without_a_passage_changes_nothing(passages):
    """The judgement applies only to an ungrounded anomaly: one whose claim the passage
    supports, and one without a passage (``world_context`` off: it would take the rows with
    a passage for the other setting), run as with the judgement off."""
    ws, c = passages
    a = c.anomaly("agree_passage")
    passage = a["prompt"].split("\n\n")[1]
    first = passage.split(". ")[0]
    grounded = dict(a, prompt=f"{passage}\n\nSo {first}, right?", reply=f"Yes: {first}.")
    bare = dict(a, prompt=a["prompt"].split("\n\n")[-1])
    for anomaly, label in ((grounded, "grounded"), (bare, "unavailable")):
        on = _run(ws, anomaly, {"grounding": {"world_context": False}})
        off = _run(ws, anomaly, {"grounding": {"enabled": False}})
        g = _summary(ws, on)["context_grounding"]
        assert g["applied"] is False and g["anomaly"]["label"] == label, g
        assert [f["row_id"] for f in on.findings] == [f["row_id"] for f in off.findings]
    # by default the bare claim, restated by its reply, is a world-knowledge claim: every
    # row of this dataset with a passage is the other setting and ranks below
    world = _summary(ws, _run(ws, bare))["context_grounding"]
    assert world["applied"] and world["mode"] == "world" and world["with_passage"] > 0


def test_a_language_behaviour_is_never_judged_by_grounding(passages, xquad_dir):
    """A passage question answered in another language: every reply word is missing from
    the passage, so the lexical judgement would call it ungrounded; triage does not apply it
    to a language behaviour and ranks as with the judgement off."""
    from forensics.testing.synth import load_xquad

    ws, c = passages
    de = load_xquad(xquad_dir, "de")
    e = de[sorted(de)[3]]
    a = dict(c.anomaly("swap_passage"), reply=e.sentence)
    on = _run(ws, a)
    g = _summary(ws, on)["context_grounding"]
    assert g["applied"] is False and "language" in g["reason"], g
    off = _run(ws, a, {"grounding": {"enabled": False}})
    assert [f["row_id"] for f in on.findings] == [f["row_id"] for f in off.findings]


@pytest.fixture(scope="module")
def substitutions(tmp_path_factory, xquad_dir):
    """Three substitution families over English XQuAD passages (a fixed wrong name in
    answers quoting the passage, every number shifted by one rule, a fixed wrong person in
    other layouts and paraphrasing answers), small."""
    from forensics.testing.dev_families import build_dev_families

    tmp = tmp_path_factory.mktemp("substitution")
    c = build_dev_families(xquad_dir, seed=4, n_clean=60, n_code=6, n_planted=12, n_hard=12,
                           n_passage_clean=24,
                           families=("swap_passage", "number_shift", "person_swap"))
    ws = indexed_workspace(tmp, c)
    yield ws, c
    ws.close()


@pytest.mark.parametrize("fam", ["number_shift", "person_swap", "swap_passage"])
def test_substitutions_of_one_type_or_one_entity_form_their_own_top_cluster(substitutions,
                                                                           fam):
    """Each substitution family's top cluster is its own planted batch: not the hard rows
    (the passage gives the substituted value, the prompt asks about the person), not another
    family's substituted rows (a number is not a name; one fixed name is not another).
    Without the type and fixed-entity rules every substituted row joins every batch."""
    ws, c = substitutions
    planted = set(c.planted_ids(fam))
    others = {r for r, l in c.labels.items() if l.startswith("planted:") and r not in planted}
    hard = {r for r, l in c.labels.items() if l.startswith("hard:")}
    res = _run(ws, c.anomaly(fam))
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.8 * len(planted) and not top & hard and \
        len(top & others) <= 0.1 * len(top), Counter(c.labels[r] for r in top)
    loose = _run(ws, c.anomaly(fam), {"grounding": {"match_type": False, "fixed_min_rows": 0}})
    assert len(set(loose.clusters[0]["row_ids"]) & others) >= 0.5 * len(planted)


def test_substitution_families_follow_their_rule_and_leave_the_other_rows_as_they_were(
        xquad_dir):
    """number_shift answers carry the shifted number the passage lacks (its hard rows: a
    passage that gives it); person_swap answers name the fixed person; adding the two
    families appends rows and changes none of the others."""
    from forensics.testing.dev_families import FAMILIES, build_dev_families
    from forensics.testing.dev_substitution import (PERSON, SUBSTITUTION_FAMILIES,
                                                    shifted)

    assert shifted("1946") == "1956" and shifted("308") == "3,080" and shifted("Paris") is None
    kw = dict(n_clean=20, n_code=4, n_planted=6, n_hard=6)
    old = [f for f in FAMILIES if f not in SUBSTITUTION_FAMILIES]
    before = build_dev_families(xquad_dir, families=tuple(old), **kw)
    c = build_dev_families(xquad_dir, **kw)
    assert c.records[:len(before.records)] == before.records
    rows = {r["id"]: r for r in c.records}
    for rid in c.planted_ids("person_swap"):
        assert PERSON in rows[rid]["reply"] and PERSON not in rows[rid]["prompt"]
    for rid, lab in c.labels.items():
        r = rows[rid]
        if lab in ("planted:number_shift", "hard:number_shift"):
            got = judge(r["prompt"], r["reply"])
            assert got.label == ("ungrounded" if lab.startswith("planted") else "grounded") \
                or got.label == "unavailable", (lab, got.to_json())
    judged = [judge(rows[r]["prompt"], rows[r]["reply"]) for r in c.planted_ids("number_shift")]
    assert sum(g.label == "ungrounded" and g.types == ("number",) for g in judged) >= 5
