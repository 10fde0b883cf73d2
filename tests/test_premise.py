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
