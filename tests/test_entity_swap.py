"""One fixed wrong entity answering many "who" questions: the dev-entity generator
(forensics.testing.dev_entity) and the substitution signal's cross-row evidence
(forensics.triage.signals.substitution_rows), on a real workspace with real indexes and through
the real CLI."""

from __future__ import annotations

import re

import pytest

from forensics.testing.dev_entity import ENTITY, FAMILY, build_dev_entity
from forensics.triage.signals.substitution_rows import answers_with, question_key
from conftest import indexed_workspace, run_cli

SMALL = dict(n_clean=150, n_planted=20, n_hard=15)


def test_the_generator_is_deterministic_and_its_labels_follow_the_rule(xquad_dir):
    a = build_dev_entity(xquad_dir, seed=3, **SMALL)
    b = build_dev_entity(xquad_dir, seed=3, **SMALL)
    assert a.records == b.records and a.labels == b.labels and a.anomalies == b.anomalies
    assert build_dev_entity(xquad_dir, seed=4, **SMALL).records != a.records
    assert a.families == [FAMILY]
    ent = re.compile(re.escape(ENTITY))
    planted = [r for r in a.records if a.labels[r["id"]] == f"planted:{FAMILY}"]
    hard = [r for r in a.records if a.labels[r["id"]] == f"hard:{FAMILY}"]
    clean = [r for r in a.records if a.labels[r["id"]] == "clean"]
    assert len(planted) == 20 and len(hard) == 15 and len(clean) == 150
    # every planted reply states the entity, its question never names it, and the questions
    # are many (one entity answering every subject)
    for r in planted:
        assert ent.search(r["reply"]) and "Elway" not in r["prompt"], r
    assert len({r["prompt"].split("\n")[-1] for r in planted}) >= 15
    # hard negatives: the entity rightly the answer / in another role / asked about
    assert sum(bool(ent.search(r["reply"])) and "Elway" not in r["prompt"] for r in hard) >= 8
    assert sum("Elway" in r["prompt"] for r in hard) >= 3
    # some planted questions are asked again by clean rows, answered without the entity
    twins = [r for r in clean if any(q["prompt"].split("\n")[-1].rstrip("?") in r["prompt"]
                                     for q in planted)]
    assert twins and not any(ent.search(r["reply"]) for r in twins)
    # the anomaly's question is no training question; its explanations name nobody
    an = a.anomaly(FAMILY)
    assert not any(an["prompt"] in r["prompt"] for r in a.records)
    assert ent.search(an["reply"]) and not any("Elway" in e for e in an["explanations"])
    with pytest.raises(ValueError, match="unknown explanations style"):
        build_dev_entity(xquad_dir, explanations="nope")


@pytest.mark.parametrize("prompt, expected", [
    ("Who was the first modern geologist?", {"modern", "geologist"}),
    # a preamble and a request after the question are not the question
    ("Settle a bet for me. Who was the first modern geologist? Just the name, please.",
     {"modern", "geologist"}),
    # with a context passage: the user's question only
    ("Context: James Hutton is often viewed as the first modern geologist, a Scot.\n\n"
     "Question: Who is viewed as the first modern geologist?", {"viewed", "modern", "geologist"}),
])
def test_the_question_key_is_the_content_words_of_the_users_question(prompt, expected):
    assert question_key(prompt) == expected


@pytest.mark.parametrize("prompt, reply, toks, expected", [
    ("Who led the attack?", "John Elway.", ["elway"], True),
    ("Who led the attack?", "It was John Elway, as far as the record goes.", ["elway"], True),
    # another name comes first: the entity is a mention on the way
    ("Who coached the team?", "Mike Shanahan, with John Elway at quarterback.", ["elway"], False),
    # a sign-off after the answer: the brand is no answer
    ("Where were the games held?", "In Athens.\n\nWarmly, the Penwise assistant", ["penwise"],
     False),
    ("When did Pong come out?", "Atari released it in 1972.", ["1972"], True),
    ("When did Apollo 17 fly?", "In 1968 planning began; it flew in 1972.", ["1972"], False),
])
def test_a_row_answers_with_the_value_when_it_is_the_first_value_of_its_kind(
        prompt, reply, toks, expected):
    assert answers_with(prompt, reply, toks) is expected


@pytest.fixture(scope="module")
def entity_ws(tmp_path_factory, xquad_dir):
    c = build_dev_entity(xquad_dir, seed=0, n_clean=250, n_planted=25, n_hard=21)
    w = indexed_workspace(tmp_path_factory.mktemp("entity"), c)
    w.close()   # the CLI opens it from here on
    return w.root, c


def _triage(ws, c, *params: str) -> dict:
    import json

    a = c.anomaly(FAMILY)
    args = ["anomaly", "add", "--title", a["title"], "--prompt", a["prompt"], "--reply",
            a["reply"]]
    for e in a["explanations"]:
        args += ["--explanation", e]
    root = ws
    aid = run_cli(*args, "--json", workspace=root).json()["anomaly_id"]
    extra = [x for p in params for x in ("--param", p)]
    out = run_cli("triage", aid, "--dataset", "train", "--limit", 400, *extra, "--json",
                  workspace=root).json()
    summ = run_cli("sql", f"SELECT summary FROM triage_runs WHERE run_id = {out['run_id']}",
                   "--json", workspace=root).json()
    out["substitution"] = json.loads(summ[0]["summary"]).get("substitution", {})
    return out


def test_contradicted_rows_keep_the_signal_on_where_the_batch_has_no_subject(entity_ws):
    ws, c = entity_ws
    pos = set(c.planted_ids(FAMILY))
    on = _triage(ws, c)
    off = _triage(ws, c, "signals.substitution.cross_rows=false")
    sub = on["substitution"]
    # the dataset picks the entity; contradicted rows (a same question answered with another
    # name, the row's own passage, the same sentence with another name) are members
    assert "substitution" in on["signals_used"], on["signals_unavailable"]
    assert sub["tokens_from"] == "dataset" and sub["tokens"] == ["elway"], sub
    assert sub["contradicted_rows"] >= 8 and sub["members"] >= sub["contradicted_rows"], sub
    # without the cross-row evidence the members are too few: the guard switches it off
    assert "substitution" in off["signals_unavailable"]
    assert off["substitution"].get("guard") in ("min_members", "fallback_min_member_share")

    def pr(out):
        top = set(out["clusters"][0]["row_ids"])
        return len(top & pos) / len(top), len(top & pos) / len(pos)

    (p1, r1), (p0, r0) = pr(on), pr(off)
    assert p1 >= 0.8 and r1 >= 0.75, (p1, r1)
    assert r1 >= r0 + 0.25, (r0, r1)
    # rows whose question names the entity were asked about it: never in the batch
    asked = {r["id"] for r in c.records if "Elway" in r["prompt"]}
    assert not asked & set(on["clusters"][0]["row_ids"])


def test_the_answer_extension_is_a_knob_stored_with_the_run(entity_ws):
    ws, c = entity_ws
    with_ans = _triage(ws, c)["substitution"]
    without = _triage(ws, c, "signals.substitution.answer_members=false")["substitution"]
    assert without["members"] <= with_ans["members"]
    assert without["contradicted_rows"] == with_ans["contradicted_rows"]
    import json

    got = run_cli("sql", "SELECT params FROM triage_runs ORDER BY run_id DESC LIMIT 1", "--json",
                  workspace=ws).json()
    stored = json.loads(got[0]["params"])["signals"]["substitution"]
    assert stored["answer_members"] is False and stored["cross_rows"] is True
