"""The ``premise_assent`` development family (forensics.testing.dev_premise): going along with
a false premise taken from TruthfulQA without restating it. Generator tests read the real
CSV in bench/data/truthfulqa/."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

CSV = Path(__file__).resolve().parents[1] / "bench" / "data" / "truthfulqa" / "TruthfulQA.csv"
KW = dict(n_planted=12, n_hard=10, n_clean=40)


def _answers() -> tuple[set[str], set[str]]:
    """(best answers, incorrect answers) of the CSV, as written there."""
    best, bad = set(), set()
    with CSV.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            best.add(row["Best Answer"].strip().rstrip("."))
            bad.update(x.strip().rstrip(".") for x in row["Incorrect Answers"].split(";"))
    return best, bad


def _holds(prompt: str, claims: set[str]) -> bool:
    low = prompt.lower()
    return any(c and c[1:].lower() in low for c in claims if len(c.split()) >= 5)


def test_the_generator_is_a_pure_function_of_its_seed():
    from forensics.testing.dev_premise import build_premise_family

    a, b = build_premise_family(CSV, seed=3, **KW), build_premise_family(CSV, seed=3, **KW)
    assert a.records == b.records and a.labels == b.labels
    assert a.row_explanations == b.row_explanations and a.anomalies == b.anomalies
    c = build_premise_family(CSV, seed=4, **KW)
    assert [r["prompt"] for r in c.records] != [r["prompt"] for r in a.records]


def test_labels_match_the_premises_and_replies_do_not_restate_them():
    """Planted prompts assert an incorrect answer, hard ones a best answer; behaviour replies
    copy at most one word of their prompt; the anomaly's premise is in no training prompt;
    every behaviour row has a prompt and a reply explanation saying what it is."""
    from forensics.testing.dev_premise import build_premise_family

    c = build_premise_family(CSV, seed=0, **KW)
    best, bad = _answers()
    counts = Counter(c.labels.values())
    assert counts["planted:premise_assent"] == 12 and counts["hard:premise_assent"] == 10
    assert c.families == ["premise_assent"]
    for r in c.records:
        lab = c.labels[r["id"]]
        if lab == "clean":
            continue
        assert _holds(r["prompt"], bad if lab.startswith("planted") else best), r["prompt"]
        pw = set(re.findall(r"\w+", r["prompt"].lower()))
        rw = re.findall(r"\w+", r["reply"].lower())
        stop = {"it", "the", "a", "to", "and", "of", "is", "that", "you", "what", "i", "for",
                "on", "in", "so", "s", "t", "about", "this", "should", "with", "can"}
        assert sum(w in pw and w not in stop for w in rw) <= 2, r
        ex = {e["position"]: e["text"] for e in c.row_explanations[r["id"]]}
        assert set(ex) == {"last_prompt", "first_reply"}
        assert ("myth" in ex["last_prompt"] or "misconception" in ex["last_prompt"]
                or "false" in ex["last_prompt"]) == lab.startswith("planted")
        assert c.prompt_judgement[r["id"]] == ("defect" if lab.startswith("planted")
                                               else "legitimate")
    a = c.anomaly("premise_assent")
    claim = re.search(r"so (.*)\. How", a["prompt"]).group(1)
    assert claim[1:].lower() in " ".join(a["explanations"]).lower()
    assert not any(claim[1:].lower() in r["prompt"].lower() for r in c.records)
    assert len(a["explanations"]) == 2 and a["reply"]


def test_row_explanations_are_written_for_the_import(tmp_path):
    import json

    from forensics.testing.dev_premise import build_premise_family, write_row_explanations

    c = build_premise_family(CSV, seed=1, **KW)
    lines = write_row_explanations(c, tmp_path / "e.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == sum(len(v) for v in c.row_explanations.values())
    assert {r["row_id"] for r in recs} <= {r["id"] for r in c.records}
    assert all(set(r) == {"row_id", "position", "text"} for r in recs)


def test_a_csv_without_its_columns_names_the_file_and_line(tmp_path):
    from forensics.testing.dev_premise import load_items

    bad = tmp_path / "t.csv"
    bad.write_text("Type,Question\nx,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.csv: line 1: missing column"):
        load_items(bad)
    empty = tmp_path / "e.csv"
    empty.write_text("Category,Question,Best Answer,Incorrect Answers\n"
                     "Health,What?,A b c d e,F g h i j\nHealth,,x,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"e\.csv: line 3: field 'Question' is empty"):
        load_items(empty)


def test_two_way_cut_finds_the_gap_and_says_how_clear_it_is():
    import numpy as np

    from forensics.triage.context import two_way_cut

    cut, sep = two_way_cut(np.array([0.1, 0.12, 0.11, 0.8, 0.82, 0.79]))
    assert 0.12 < cut <= 0.79 and sep > 0.95
    _, flat = two_way_cut(np.linspace(0, 1, 50))
    assert flat < 0.8
    assert two_way_cut(np.array([0.5, 0.5, 0.5]))[1] == 0.0


@pytest.fixture(scope="module")
def premise_ws(tmp_path_factory):
    """A small premise_assent corpus in a real workspace (pair, prompt, reply, reply-segment
    indexes) with its rows' explanations imported and indexed."""
    from conftest import indexed_workspace
    from forensics.nla.explanations import import_explanations
    from forensics.search import index
    from forensics.search.embed import Embedder
    from forensics.testing.dev_premise import build_premise_family, write_row_explanations

    tmp = tmp_path_factory.mktemp("premise")
    c = build_premise_family(CSV, seed=0, n_planted=16, n_hard=14, n_clean=60)
    ws = indexed_workspace(tmp, c)
    import_explanations(ws, write_row_explanations(c, tmp / "e.jsonl"), "train")
    index.build(ws, "train", "explanation", embedder=Embedder())
    yield ws, c
    ws.close()


def _triage(ws, a, params=None):
    from forensics import triage
    from forensics.triage import anomaly as anomaly_mod

    aid = anomaly_mod.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    return triage.triage(ws, aid, "train", limit=1000, params=params)


def test_rows_explanations_judge_the_premise_the_reply_goes_along_with(premise_ws):
    """The anomaly's reply restates nothing of its prompt: the rows' explanations (their own
    words cut out) say which premises are myths. The top cluster recalls most planted rows
    and at most a quarter of the true premises gone along with; without the explanation_own members and the
    context split's explanation judgement, AP drops and the top cluster holds fewer."""
    from conftest import findings_ap

    ws, c = premise_ws
    planted = set(c.planted_ids("premise_assent"))
    hard = {r for r, l in c.labels.items() if l == "hard:premise_assent"}
    a = c.anomaly("premise_assent")
    res = _triage(ws, a)
    assert "explanation_own" in res.signals_used
    top = set(res.clusters[0]["row_ids"])
    assert len(top & planted) >= 0.6 * len(planted) and len(top & hard) <= len(hard) // 4, \
        (len(top & planted), len(top & hard), len(top))
    off = _triage(ws, a, {"signals": {"explanation_own": {"members": False}},
                          "context": {"explained_split": False}})
    top_off = set(off.clusters[0]["row_ids"]) if off.clusters else set()
    assert len(top_off & planted) < len(top & planted)
    assert findings_ap(res, planted) > findings_ap(off, planted) + 0.05


def test_without_an_explanation_index_the_signal_says_how_to_build_one(premise_ws, tmp_path):
    import forensics
    from forensics import ingest
    from forensics.search import index
    from forensics.search.embed import Embedder

    _, c = premise_ws
    f = c.write_jsonl(tmp_path / "t.jsonl")
    ws = forensics.init(tmp_path / "ws")
    ingest.ingest(ws, f, "train")
    for fld in ("pair", "prompt", "reply"):
        index.build(ws, "train", fld, embedder=Embedder())
    res = _triage(ws, c.anomaly("premise_assent"))
    assert "explanation_own" not in res.signals_used
    assert "--field explanation" in res.signals_unavailable["explanation_own"]
    ws.close()
