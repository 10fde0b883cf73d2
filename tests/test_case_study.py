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
