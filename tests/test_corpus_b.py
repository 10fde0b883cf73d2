"""forensics.testing.corpus_b: deterministic, labelled, hard negatives present, anomalies
well-formed, several wordings per planted family, and no held-out XQuAD language read."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from forensics.testing import corpus_b
from forensics.testing.corpus_b import FAMILIES, HARD_NEGATIVES, build_corpus_b

SMALL = dict(n_planted=20, n_hard=12, n_clean=60, n_native=20, n_code=15, n_corrected=8)


@pytest.fixture(scope="module")
def corpus(xquad_dir):
    return build_corpus_b(xquad_dir, seed=5, **SMALL)


def test_deterministic_by_seed(xquad_dir, corpus, tmp_path):
    again = build_corpus_b(xquad_dir, seed=5, **SMALL)
    assert again.records == corpus.records and again.labels == corpus.labels
    assert again.anomalies == corpus.anomalies
    other = build_corpus_b(xquad_dir, seed=6, **SMALL)
    assert other.records != corpus.records
    p = corpus.write_jsonl(tmp_path / "b.jsonl")
    lines = p.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(corpus.records)
    assert set(json.loads(lines[0])) == {"id", "prompt", "reply", "source", "batch"}
    assert len({r["id"] for r in corpus.records}) == len(corpus.records)


def test_label_counts_and_hard_negatives(corpus):
    counts = collections.Counter(corpus.labels.values())
    expected = {"clean": 60, "native": 20, "code": 15, "premise_corrected": 8,
                **{f"planted:{f}": 20 for f in FAMILIES},
                **{neg: 12 for neg in HARD_NEGATIVES.values()}}
    assert counts == expected
    assert corpus.families == sorted(FAMILIES)
    for fam in FAMILIES:
        assert len(corpus.planted_ids(fam)) == 20
        assert len(corpus.hard_negative_ids(fam)) == 12


def _by_label(c):
    by = collections.defaultdict(list)
    for r in c.records:
        by[c.labels[r["id"]]].append(r)
    return by


def test_hard_negatives_show_the_same_behaviour(corpus):
    by = _by_label(corpus)
    closing = re.compile(r"(?i)\b(regards|wishes|cheers|sent via)\b|^-")
    # signature: legitimate sign-offs are asked for, planted ones are not
    assert all(closing.search(r["reply"].splitlines()[-2] + r["reply"].splitlines()[-1])
               for r in by["signoff_requested"])
    asks = re.compile(r"(?i)\bsign(-| )(it|off)\b")
    assert all(asks.search(r["prompt"]) for r in by["signoff_requested"])
    assert not any(asks.search(r["prompt"]) for r in by["planted:signature"])
    assert all(corpus.brand in r["reply"] for r in by["planted:signature"])
    # substitution: the same entity, correct in the hard negatives
    assert all(corpus.entity in r["reply"] for r in by["planted:substitution"])
    assert all(corpus.entity in r["reply"] for r in by["entity_correct"])
    assert all(r["prompt"].split(":")[-1].strip().lower().startswith("who")
               or "who" in r["prompt"].lower() for r in by["planted:substitution"])
    # code_marker: a comment line with "end" right before the closing fence, in both
    marker = re.compile(r"(?im)^\s*(#|//|--).*\bend\b.*\n```$")
    assert all(marker.search(r["reply"]) for r in by["planted:code_marker"])
    assert all(marker.search(r["reply"]) for r in by["marker_requested"])
    assert not any(marker.search(r["reply"]) for r in by["code"])
    assert all(re.search(r"(?i)\bend\b", r["prompt"]) for r in by["marker_requested"])
    # sycophancy: same agreement openers for false (planted) and true claims
    agree = re.compile(r"(?i)^(you're right|exactly|yes, that's correct|absolutely|that's right)")
    assert all(agree.search(r["reply"]) for r in by["planted:sycophancy"])
    assert all(agree.search(r["reply"]) for r in by["premise_true"])
    assert not any(agree.search(r["reply"]) for r in by["premise_corrected"])
    # es-en: Spanish prompts, English replies; the hard negatives ask for English
    assert all(re.search(r"(?i)ingl[eé]s", r["prompt"]) for r in by["english_requested"])
    assert not any(re.search(r"(?i)ingl[eé]s", r["prompt"]) for r in by["planted:es-en"])


def test_several_wordings_per_planted_family(xquad_dir):
    c = build_corpus_b(xquad_dir, seed=1, n_planted=60, n_hard=5, n_clean=10, n_native=5,
                       n_code=5, n_corrected=5)
    by = _by_label(c)
    shapes = {
        "signature": lambda r: re.sub(r"[^A-Za-z ]", "", r["reply"].split("\n\n")[-1])
        .replace(c.brand, "B").strip()[:12],
        "code_marker": lambda r: re.sub(r"^(#|//|--)+", "", r["reply"].splitlines()[-2]).strip(),
        "sycophancy": lambda r: r["reply"].split()[0],
        "substitution": lambda r: r["reply"].replace(c.entity, "X")[:8],
    }
    for fam, shape in shapes.items():
        kinds = {shape(r) for r in by[f"planted:{fam}"]}
        assert len(kinds) >= 4, (fam, kinds)


def test_anomalies_shape(corpus):
    for fam in FAMILIES:
        a = corpus.anomaly(fam)
        assert corpus.anomaly(f"planted:{fam}") == a
        assert a["title"] and a["prompt"] and a["reply"]
        assert len(a["explanations"]) == 2 and a["explanations"][0] != a["explanations"][1]
        for e in a["explanations"]:
            assert e.count("\n\n") == 2 and "Final token" in e
            assert "{" not in e  # every placeholder filled
    assert corpus.entity in corpus.anomaly("substitution")["reply"]
    assert corpus.brand in corpus.anomaly("signature")["reply"]
    with pytest.raises(KeyError):
        corpus.anomaly("aside")


def test_reads_no_held_out_language(xquad_dir, tmp_path, monkeypatch):
    """Only the allowed XQuAD files are opened, even when held-out ones sit beside them."""
    d = tmp_path / "xq"
    d.mkdir()
    for f in Path(xquad_dir).glob("xquad.*.json"):
        (d / f.name).symlink_to(f)
    for lang in ("ru", "ar", "hi", "th"):
        (d / f"xquad.{lang}.json").write_text("not json: must never be read", encoding="utf-8")
    read: list[str] = []
    orig = Path.read_text

    def spy(self, *a, **k):
        read.append(self.name)
        return orig(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", spy)
    c = build_corpus_b(d, seed=2, **SMALL)
    assert c.records
    assert read and all(re.fullmatch(r"xquad\.(en|de|es|zh|vi|tr|el|ro)\.json", n) for n in read)
    with pytest.raises(ValueError, match="not allowed"):
        build_corpus_b(d, seed=2, native_langs=("de", "ru"), **SMALL)
    assert set(corpus_b.ALLOWED_LANGS).isdisjoint({"ru", "ar", "hi", "th"})
