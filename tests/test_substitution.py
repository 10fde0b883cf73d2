"""Passage-free systematic factual substitution: the dev-swap generator
(forensics.testing.dev_swap) and the ``substitution`` signal, through the public API on a real
workspace with real FAISS indexes."""

from __future__ import annotations

import re

import pytest

from forensics.testing.dev_swap import RIGHT, SWAP_FAMILIES, WRONG, build_dev_swap
from forensics.triage.signals.substitution import substituted_tokens
from conftest import findings_ap, indexed_workspace

SMALL = dict(n_clean=150, n_planted=20, n_hard=15)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_the_generator_is_deterministic_and_its_labels_follow_the_rule(xquad_dir):
    a = build_dev_swap(xquad_dir, seed=3, **SMALL)
    b = build_dev_swap(xquad_dir, seed=3, **SMALL)
    assert a.records == b.records and a.labels == b.labels and a.anomalies == b.anomalies
    assert build_dev_swap(xquad_dir, seed=4, **SMALL).records != a.records
    assert a.families == sorted(SWAP_FAMILIES)
    prompts = {r["prompt"] for r in a.records}
    for fam in SWAP_FAMILIES:
        wrong = re.compile(rf"\b{WRONG[fam]}\b")
        planted = [r for r in a.records if a.labels[r["id"]] == f"planted:{fam}"]
        hard = [r for r in a.records if a.labels[r["id"]] == f"hard:{fam}"]
        assert len(planted) == 20 and len(hard) == 15
        # every planted reply states the wrong entity, its question never names it, and the
        # right entity is gone from the reply
        for r in planted:
            assert wrong.search(r["reply"]) and not wrong.search(r["prompt"]), r
            assert not re.search(rf"\b{RIGHT[fam]}\b", r["reply"]), r
        # hard negatives: about the wrong entity / the right fact / the entity in passing
        right = [r for r in hard if re.search(rf"\b{RIGHT[fam]}\b", r["reply"])
                 and not wrong.search(r["reply"])]
        stating = [r for r in hard if wrong.search(r["reply"])]
        assert len(right) >= 4 and len(stating) >= 8
        assert all(a.prompt_judgement[r["id"]] == "legitimate" for r in hard)
        assert all(a.prompt_judgement[r["id"]] == "defect" for r in planted)
        an = a.anomaly(fam)
        # the anomaly's question is no training question, its reply restates nothing of it
        assert not any(an["prompt"] in p for p in prompts)
        rw = _words(an["reply"])
        assert len(rw & _words(an["prompt"])) / len(rw) <= 0.16
        assert wrong.search(an["reply"]) and len(an["explanations"]) == 2
    with pytest.raises(ValueError, match="unknown family"):
        build_dev_swap(xquad_dir, families=("nope",))


@pytest.mark.parametrize("prompt, reply, expl, expected", [
    # the explanation contrasts a year with another: the reply's other year is not it
    ("Who stayed in orbit?", "Michael Collins did, in the summer of 1972.",
     ["The reply dates the landing to 1972 ('Michael Collins did, in the summer of 1972.'); "
      "it happened in 1969."], ["1972"]),
    # a year the explanations contrast with no other year is the subject, not the substitute
    ("Who won the marathon?", "Spyridon Louis, in Paris in 1896.",
     ["The reply puts the 1896 Games in Paris ('Spyridon Louis, in Paris in 1896.'); they "
      "were held in Athens."], ["paris"]),
    # words only quoted from the reply, or in the prompt, are not pointed at
    ("Who designed the motor Edison sold?", "Thomas Edison designed it for Westinghouse.",
     ["Misattribution: 'Thomas Edison designed it for Westinghouse.' credits Edison; it "
      "was Tesla."], []),
])
def test_substituted_tokens_are_what_the_explanations_point_at(prompt, reply, expl, expected):
    assert substituted_tokens(prompt, reply, expl) == expected


@pytest.fixture(scope="module")
def swaps(tmp_path_factory, xquad_dir):
    c = build_dev_swap(xquad_dir, seed=0, n_clean=150, n_planted=20, n_hard=15)
    return indexed_workspace(tmp_path_factory.mktemp("swap"), c), c


def test_a_substitution_without_a_passage_is_found_where_the_question_is_about_its_subject(
        swaps):
    from forensics import triage
    from forensics.triage import anomaly

    ws, c = swaps
    for fam in SWAP_FAMILIES:
        a = c.anomaly(fam)
        aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
        res = triage.triage(ws, aid, "train", limit=400)
        off = triage.triage(ws, aid, "train", limit=400,
                            params={"weights": {"substitution": 0.0},
                                    "signals": {"substitution": {"decides": False,
                                                                 "min_members": 10**6}}})
        assert "substitution" in res.signals_used
        summary = triage.load_run(ws, res.run_id)["summary"]["substitution"]
        # the wrong entity (with its first name), never the event's own year or the subject
        assert WRONG[fam].lower() in summary["tokens"], summary
        assert set(summary["tokens"]) <= {WRONG[fam].lower(), "thomas edison"}, summary
        pos = set(c.planted_ids(fam))
        top = res.clusters[0]["row_ids"]
        prec = len(pos & set(top)) / len(top)
        rec = len(pos & set(top)) / len(pos)
        assert prec >= 0.7 and rec >= 0.7, (fam, prec, rec)
        # rows whose question names the wrong entity were asked about it: not the batch
        asked = {r["id"] for r in c.records if re.search(rf"\b{WRONG[fam]}\b", r["prompt"])}
        assert not asked & set(top)
        assert findings_ap(res, pos) > findings_ap(off, pos) + 0.05, fam


def test_explanation_styles_share_the_rows_and_name_no_contrast(xquad_dir):
    base = build_dev_swap(xquad_dir, seed=3, **SMALL)
    for style in ("describe", "quote"):
        c = build_dev_swap(xquad_dir, seed=3, explanations=style, **SMALL)
        assert c.records == base.records and c.labels == base.labels
        for fam in SWAP_FAMILIES:
            an = c.anomaly(fam)
            # no explanation names the right value; the quote style only quotes the reply
            assert not any(RIGHT[fam] in e for e in an["explanations"]), an
            if style == "quote":
                assert all(an["reply"] in e for e in an["explanations"])
            else:
                assert not any(WRONG[fam] in e for e in an["explanations"])
            assert substituted_tokens(an["prompt"], an["reply"], an["explanations"]) == []
    with pytest.raises(ValueError, match="unknown explanations style"):
        build_dev_swap(xquad_dir, explanations="nope")


def test_the_dataset_picks_the_token_stated_unasked_in_many_replies():
    import polars as pl

    from forensics.triage.signals.substitution import SubstitutionParams, dataset_tokens
    from forensics.triage.text import Hits, norm_expr

    # "Paris" answers ten questions that never name it; "Rome" is asked about as often as it
    # is stated; "Yes" opens replies (a sentence start, no name)
    rows = ([(f"Question {i} about the games?", f"Yes, they were held in Paris in 1896.")
             for i in range(10)]
            + [(f"Tell me about Rome, part {i}.", "Yes, Rome is a city in Italy.")
               for i in range(10)]
            + [(f"Other question {i}?", f"Answer {i}.") for i in range(80)])
    df = pl.DataFrame({"p": [p for p, _ in rows], "r": [r for _, r in rows]})
    d = df.select(norm_expr("p").alias("p"), norm_expr("r").alias("r"))
    hp, hr = Hits(d["p"]), Hits(d["r"])
    p = SubstitutionParams()
    reply = "Yes, Spyridon Louis won it in Rome and Paris."
    assert dataset_tokens("Who won the marathon?", reply, [], hr, hp, len(rows), p) == ["paris"]
    # named by an explanation (without a contrast): taken among those the dataset passes
    assert dataset_tokens("Who won the marathon?", reply, ["It says Paris and Louis."], hr, hp,
                          len(rows), p) == ["paris"]
    # fewer stating rows than the knob: nothing
    strict = SubstitutionParams(fallback_min_states=11)
    assert dataset_tokens("Who won the marathon?", reply, [], hr, hp, len(rows), strict) == []
    # the prompt names it: not a candidate
    assert dataset_tokens("Was it in Paris?", reply, [], hr, hp, len(rows), p) == []


@pytest.mark.parametrize("style", ["describe", "quote"])
def test_explanations_without_a_contrast_fall_back_to_the_dataset(swaps, xquad_dir, style):
    from forensics import triage
    from forensics.triage import anomaly

    ws, c = swaps
    styled = build_dev_swap(xquad_dir, seed=0, n_clean=150, n_planted=20, n_hard=15,
                            explanations=style)
    assert styled.records == c.records
    for fam in SWAP_FAMILIES:
        a = styled.anomaly(fam)
        aid = anomaly.add(ws, f"{a['title']} ({style})", a["prompt"], a["reply"],
                          a["explanations"])
        res = triage.triage(ws, aid, "train", limit=400)
        no_fb = triage.triage(ws, aid, "train", limit=400,
                              params={"signals": {"substitution": {"fallback": False}}})
        assert "substitution" in res.signals_used
        assert "substitution" not in no_fb.signals_used
        summary = triage.load_run(ws, res.run_id)["summary"]["substitution"]
        assert summary["tokens_from"] == "dataset" and summary["tokens"] == [WRONG[fam].lower()]
        pos = set(c.planted_ids(fam))
        top = res.clusters[0]["row_ids"]
        prec = len(pos & set(top)) / len(top)
        rec = len(pos & set(top)) / len(pos)
        assert prec >= 0.7 and rec >= 0.7, (fam, style, prec, rec)
        # (year_swap, describe: 0.873 against 0.828; rows answering with the year near the
        # contradicted ones join the batch, one of them a hard row)
        assert findings_ap(res, pos) > findings_ap(no_fb, pos) + 0.04, (fam, style)


@pytest.mark.parametrize("reply, toks, expected", [
    # a multi-word value is one span; its common word alone is none
    ("They are held in Ho Chi Minh City, in a new building.", ["ho", "chi", "minh", "city"],
     ["ho chi minh city"]),
    # a name's particle joins the span; a stopword between two names does not
    ("Dar es Salaam, then Moby-Dick by Nathaniel Hawthorne.",
     ["dar", "salaam", "moby", "dick", "nathaniel", "hawthorne"],
     ["dar es salaam", "moby - dick", "nathaniel hawthorne"]),
    # separate values stay apart; a lone token is its normalised self; a possessive is dropped
    ("Spyridon Louis won in Paris, 1896; Charlotte Brontë's best book.",
     ["paris", "1896", "charlotte", "brontë"], ["paris", "1896", "charlotte brontë"]),
])
def test_value_spans_join_adjacent_substituted_tokens(reply, toks, expected):
    from forensics.triage.signals.substitution import value_spans

    assert value_spans(reply, toks) == expected


def test_the_rule_generator_substitutes_many_values_by_one_rule(xquad_dir):
    from forensics.testing.dev_swap_rules import (BOOKS, CAPITALS, EVENTS, EXPLANATION_STYLES,
                                                  RULE_FAMILIES, build_dev_swap_rules)

    kw = dict(n_clean=100, n_planted=20, n_hard=15)
    a = build_dev_swap_rules(xquad_dir, seed=3, **kw)
    assert a.records == build_dev_swap_rules(xquad_dir, seed=3, **kw).records
    assert a.records != build_dev_swap_rules(xquad_dir, seed=4, **kw).records
    facts = {"capital_rule": CAPITALS, "author_rule": BOOKS,
             "year_rule": [(e, y, str(int(y) + 10)) for e, y in EVENTS]}
    prompts = {r["prompt"] for r in a.records}
    for fam in RULE_FAMILIES:
        planted = [r for r in a.records if a.labels[r["id"]] == f"planted:{fam}"]
        assert len(planted) == 20
        wrong = set()
        for r in planted:   # each planted row: its fact's wrong value, never the right one
            s, right, w = next(f for f in facts[fam] if f[0] in r["prompt"])
            assert w in r["reply"] and right not in r["reply"] and w not in r["prompt"], r
            wrong.add(w)
        assert len(wrong) >= 10                       # many values, one rule
        assert any(" " in w for w in wrong) or fam == "year_rule"
        assert any(len(r["reply"].split(". ")) >= 3 for r in planted)   # long replies
        an = a.anomaly(fam)
        assert an["prompt"] not in prompts
    for style in EXPLANATION_STYLES:
        c = build_dev_swap_rules(xquad_dir, seed=3, explanations=style, **kw)
        assert c.records == a.records
        for fam in RULE_FAMILIES:
            s, right, w = next(f for f in facts[fam] if any(
                v in c.anomaly(fam)["reply"] for v in (f[2],)))
            text = " ".join(c.anomaly(fam)["explanations"])
            assert (right in text) == (style == "contrast")
            assert (w in text) == (style != "describe")
    with pytest.raises(ValueError, match="unknown explanations style"):
        build_dev_swap_rules(xquad_dir, explanations="quote")


def test_the_run_summary_says_how_tokens_were_found_and_which_guard_stopped_it(swaps):
    from forensics import triage
    from forensics.triage import anomaly

    ws, c = swaps

    def summary(prompt, reply, expl):
        aid = anomaly.add(ws, "diag", prompt, reply, expl)
        res = triage.triage(ws, aid, "train", limit=50)
        return res, triage.load_run(ws, res.run_id)["summary"]["substitution"]

    # nothing named, nothing the dataset states: unavailable, no candidate
    res, s = summary("What colour is the sky on a clear day?", "Blue, mostly.",
                     ["A plain answer with nothing wrong."])
    assert "substitution" in res.signals_unavailable
    assert s["tokens_from"] == "none" and s["guard"] == "no_candidate", s
    # a contrasted value no reply holds: the guard says so, with its measured value
    res, s = summary("Who stayed in orbit aboard Columbia?", "Michael Collins did, in 1975.",
                     ["The reply dates it to 1975; it was 1969."])
    assert s["tokens_from"] == "none" and s["guard"] == "token_in_replies", s
    assert s["value"] == 0 and s["threshold"] == 1
    # the contrasted wrong year, used: tokens from the explanations, members counted
    a = c.anomaly("year_swap")
    res, s = summary(a["prompt"], a["reply"], a["explanations"])
    assert "substitution" in res.signals_used
    assert s["tokens_from"] == "explanations" and s["members"] >= 4 and "batch_off" not in s


@pytest.mark.parametrize("prompt, reply, tokens, expected", [
    # a year substituted: a row needs a number of as many digits that its prompt lacks
    ("How old is that bridge?", "It opened in 1922.", ["1076"], True),
    ("When was it built, 1922?", "Yes, in 1922.", ["1076"], False),
    ("How many were there?", "About 40 of them.", ["1076"], False),
    # a name substituted: a row needs a name its prompt lacks; a number is no name
    ("What is the capital of Nigeria?", "Lagos is the capital of Nigeria.", ["lagos"], True),
    ("How old is that bridge?", "It opened in 1922.", ["ho chi minh"], False),
    ("Who wrote it?", "It was written in 1922 by her.", ["charlotte brontë"], False),
])
def test_a_row_holds_a_value_of_the_substituted_kind(prompt, reply, tokens, expected):
    from forensics.triage.signals.substitution import holds_value_of_kind

    assert holds_value_of_kind(prompt, reply, tokens) is expected
