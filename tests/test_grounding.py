"""The grounding judgement (forensics.triage.grounding): a table of (prompt, reply) pairs
written here, and triage on a small built corpus where agreement with a claim about a passage
is a defect when the passage contradicts the claim and legitimate when it supports it
(real ingest, real FAISS)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from forensics.triage.grounding import GroundingParams, context_passage, judge
from conftest import indexed_workspace

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


def _ap(res, pos):
    ranked, hits, s = [f["row_id"] for f in res.findings], 0, 0.0
    for i, r in enumerate(ranked, 1):
        if r in pos:
            hits += 1
            s += hits / i
    return s / len(pos)


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
    assert _ap(res, planted) > _ap(off, planted) + 0.05


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
