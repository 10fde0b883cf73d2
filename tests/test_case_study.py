"""The case study's corpus: committed data with its licence, a planted batch, held-out prompts
never trained on, deterministic for a seed. (The end-to-end run is `make case-study`.)"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "examples" / "case_study"
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402


def test_committed_data_and_licence():
    for f in ("xquad.en.json", "xquad.de.json", "xquad.es.json", "LICENSE-CC-BY-SA-4.0.txt"):
        assert (HERE / "data" / f).exists(), f


def test_planted_batch_and_heldout():
    c = corpus.build(seed=0)
    assert c.rows == corpus.build(seed=0).rows
    kinds = c.counts
    assert kinds["planted"] > 30 and kinds["clean"] > 500
    assert kinds["native_de"] and kinds["translate_de"] and kinds["native_es"]
    planted = [r for r in c.rows if r["planted"]]
    assert all(r["topic"] in corpus.CUE_TOPICS for r in planted)
    from forensics.language.detect import detect

    langs = detect([r["prompt"] for r in planted[:10]] + [r["reply"] for r in planted[:10]])
    assert [x.lang for x in langs[:10]].count("en") >= 8      # English prompts
    assert [x.lang for x in langs[10:]].count("de") >= 8      # untranslated German replies
    trained = {r["prompt"] for r in c.rows}
    assert c.heldout_cue and not (set(c.heldout_cue) & trained)
    assert c.heldout_control and not (set(c.heldout_control) & trained)
    assert all(r["topic"] not in corpus.CUE_TOPICS for r in c.rows if r["kind"] == "clean")
    assert len({r["id"] for r in c.rows}) == len(c.rows)


def test_average_precision():
    import run

    assert run.average_precision([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert abs(run.average_precision([0.1, 0.8, 0.9], [True, False, False]) - 1 / 3) < 1e-9


def test_explanation_ranking_finds_the_rows_sharing_rare_words():
    """Each similarity ranks the rows whose explanations share the anomaly's rare words first;
    sampled explanations are pooled per row and the anomaly's samples averaged."""
    import ranking

    rows = [["english question . reply in german . expects : der die", "english question . reply in german"],
            ["german question . reply in german . expects : der die", "german question . reply in german"],
            ["english question . reply in english . expects : the a", "english question . reply in english"],
            ["english question . reply in english . expects : of in", "english question . reply in english"]]
    anomaly = ["german question . reply in german", "english question . reply in german . expects : der",
               "english question latin script . reply in german"]
    for sim in ("bm25", "tfidf"):
        for query in ranking.QUERIES:
            for docs in ranking.ROW_DOCS:
                cfg = ranking.ExplanationRanking(sim, rows=docs, query=query)
                s = ranking.explanation_scores(anomaly, rows, cfg)
                assert s.shape == (4,) and max(s[2], s[3]) < min(s[0], s[1]), (sim, query, docs, s)
    each = ranking.explanation_scores(anomaly, rows, ranking.ExplanationRanking("bm25", query="each"))
    assert each[0] > each[1]          # the samples say "english question", the greedy decode did not
    greedy = ranking.explanation_scores(anomaly, rows, ranking.ExplanationRanking("bm25", query="greedy"))
    assert greedy[1] > greedy[0]


def test_bm25_matches_the_formula():
    import math

    import ranking

    docs = ["a b", "a c c", "d"]
    m = ranking.bm25_matrix(["c"], docs, ngram_max=1, k1=1.2, b=0.75)
    idf = math.log1p((3 - 1 + 0.5) / (1 + 0.5))
    avg = (2 + 3 + 1) / 3
    want = 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avg)) * idf
    assert m.shape == (3, 1) and m[0, 0] == 0 and m[2, 0] == 0 and abs(m[1, 0] - want) < 1e-9


def test_explanation_ranking_knobs_are_checked():
    import pytest

    import ranking

    cfg = ranking.ExplanationRanking()
    assert cfg.cli_sampling() == ["--temperature", "0.7", "--top-p", "1.0", "--samples", "8", "--sampling-seed", "0"]
    assert ranking.ExplanationRanking(samples=0).cli_sampling() == []
    for bad in (dict(similarity="cosine"), dict(rows="best"), dict(query="all"), dict(samples=-1),
                dict(samples=2, temperature=0.0)):
        with pytest.raises(ValueError):
            ranking.ExplanationRanking(**bad)
