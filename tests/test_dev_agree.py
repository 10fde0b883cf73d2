"""The dev-agree generator (forensics.testing.dev_agree): agreement with a user's claim that
the reply restates, on TruthfulQA and XQuAD text, in several prompt layouts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import XQUAD

CSV = Path(__file__).resolve().parents[1] / "bench" / "data" / "truthfulqa" / "TruthfulQA.csv"
KW = dict(n_planted=20, n_hard=16, n_clean=40, n_passage_clean=20)


def test_the_family_is_a_pure_function_of_its_seed():
    from forensics.testing.dev_agree import build_agree_family

    a, b = build_agree_family(CSV, XQUAD, seed=3, **KW), build_agree_family(CSV, XQUAD, seed=3, **KW)
    assert a == b
    c = build_agree_family(CSV, XQUAD, seed=4, **KW)
    assert [r["prompt"] for r in c[0]] != [r["prompt"] for r in a[0]]


def test_behaviour_replies_restate_their_prompts_claim_and_corrections_do_not_agree():
    """Planted and hard replies restate the claim their prompt asserts (a TruthfulQA answer or
    a passage sentence, with or without a passage in the prompt); planted claims are
    TruthfulQA incorrect answers or passage sentences with another answer, hard ones best
    answers or the passage's own sentence; the near misses correct a false claim; the
    anomaly's claim is in no training prompt."""
    from forensics.testing.dev_agree import build_agree_family
    from forensics.testing.dev_premise import load_items

    records, labels, judged, anomalies = build_agree_family(CSV, XQUAD, seed=0, **KW)
    counts = Counter(labels.values())
    assert counts["planted:agree_claim"] == 20 and counts["hard:agree_claim"] == 16
    assert counts["clean"] == 40 + 20 + 8
    items = load_items(CSV)
    false = {i.false.lower() for i in items}
    true = {i.true.lower() for i in items}
    layouts = Counter()
    for r in records:
        lab, prompt, reply = labels[r["id"]], r["prompt"].lower(), r["reply"].lower()
        if lab == "clean":
            continue
        assert judged[r["id"]] == ("defect" if lab.startswith("planted") else "legitimate")
        claims = false if lab.startswith("planted") else true
        hit = [c for c in claims if c in prompt and c in reply]
        passage = "\n" in r["prompt"]
        layouts["passage" if passage else "none"] += 1
        # a TruthfulQA claim restated, or (passage layouts) a passage sentence restated
        assert hit or passage, r
    assert layouts["passage"] >= 5 and layouts["none"] >= 10, layouts
    corrected = [r for r in records if labels[r["id"]] == "clean" and
                 any(w in r["reply"] for w in ("misconception", "Not really", "push back"))]
    assert len(corrected) == 8
    claim = anomalies["agree_claim"]["prompt"].split("wrote that ", 1)[1].split(". That", 1)[0]
    assert claim in " ".join(anomalies["agree_claim"]["explanations"])
    assert not any(claim.lower() in r["prompt"].lower() for r in records)
