"""forensics.testing.synth: deterministic, labelled, hard negatives present, anomalies well-formed."""

from __future__ import annotations

import collections
import json

from forensics.language import detect as langid
from forensics.testing.synth import build_corpus


def test_deterministic_and_labelled(xquad_dir, tmp_path):
    kw = dict(seed=3, planted_langs=("de", "es"), other_families=("aside", "refusal"),
              n_clean=80, n_native=40, n_translation=30, n_planted_per_lang=20)
    a = build_corpus(xquad_dir, **kw)
    b = build_corpus(xquad_dir, **kw)
    assert a.records == b.records and a.labels == b.labels and a.anomalies == b.anomalies
    c = build_corpus(xquad_dir, **{**kw, "seed": 4})
    assert c.records != a.records
    counts = collections.Counter(a.labels.values())
    assert counts == {"clean": 80, "native": 40, "translation_request": 30, "planted:de": 20,
                      "planted:es": 20, "planted:aside": 20, "planted:refusal": 20}
    assert a.families == ["aside", "de", "es", "refusal"]
    assert len({r["id"] for r in a.records}) == len(a.records)
    p = a.write_jsonl(tmp_path / "c.jsonl")
    lines = p.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(a.records)
    assert set(json.loads(lines[0])) == {"id", "prompt", "reply", "source", "shard"}


def test_planted_rows_switch_language_and_negatives_exist(xquad_dir):
    c = build_corpus(xquad_dir, seed=0, planted_langs=("de",), n_clean=30, n_native=30,
                     n_translation=30, n_planted_per_lang=30)
    by = collections.defaultdict(list)
    for r in c.records:
        by[c.labels[r["id"]]].append(r)
    planted = by["planted:de"]
    det_p = langid.detect([r["prompt"] for r in planted])
    det_r = langid.detect([r["reply"] for r in planted])
    assert sum(p.lang == "en" for p in det_p) >= 27
    assert sum(r.lang == "de" for r in det_r) >= 27
    # hard negatives: German also appears legitimately (native pairs, translation requests)
    nat_r = langid.detect([r["reply"] for r in by["native"]])
    assert any(x.lang == "de" for x in nat_r)
    assert any("German" in r["prompt"] for r in by["translation_request"])
    # source informative but not a giveaway: planted sources also hold clean rows
    psrc = collections.Counter(r["source"] for r in planted)
    top = psrc.most_common(1)[0][0]
    assert any(r["source"] == top for r in by["clean"])


def test_anomalies_shape(xquad_dir):
    c = build_corpus(xquad_dir, seed=1, planted_langs=("zh",), other_families=("aside", "format"),
                     n_clean=10, n_native=10, n_translation=10, n_planted_per_lang=10, n_explanations=3)
    for fam in ("zh", "planted:zh", "aside", "format"):
        a = c.anomaly(fam)
        assert a["title"] and a["prompt"] and a["reply"]
        assert len(a["explanations"]) == 3
        for e in a["explanations"]:
            assert e.count("\n\n") == 2  # three paragraphs, like real decodes
    assert "Chinese" in c.anomaly("zh")["explanations"][0]


def test_row_writer_ids_sources_labels_and_judgements():
    """The dev generators' shared writer: ids are sha1("{seed}:{salt}{index}")[:10] after the
    prefix (a salt keeps two generators' ids apart), planted rows come mostly from the two
    vendor sources, behaviour rows get the prompt judgement, clean rows the clean topic."""
    import hashlib
    import random

    from forensics.testing.rows import RowWriter

    sources = ["s0", "s1", "s2", "s3", "s4"]
    w = RowWriter(7, "p", sources, "qa", random.Random(1))
    g = RowWriter(7, "p", sources, "passage", random.Random(1), salt="g")
    ids = [w.add("q", "a", lab) for lab in ["clean"] + ["planted:f"] * 200 + ["hard:f"]]
    assert ids[0] == "p" + hashlib.sha1(b"7:0").hexdigest()[:10]
    assert g.add("q", "a", "clean") == "p" + hashlib.sha1(b"7:g0").hexdigest()[:10] != ids[0]
    assert len(set(ids)) == len(ids) == len(w.records) == len(w.labels)
    assert [r["topic"] for r in (w.records[0], w.records[1], g.records[0])] == ["qa", "f", "passage"]
    planted_src = collections.Counter(r["source"] for r in w.records[1:201])
    assert set(planted_src) <= set(sources) and 0.7 < (planted_src["s1"] + planted_src["s2"]) / 200
    assert w.judgement == {**{i: "defect" for i in ids[1:201]}, ids[-1]: "legitimate"}
    # another stream for the source draws leaves the writer's own untouched
    state = w.rng.getstate()
    w.add("q", "a", "clean", random.Random(2))
    assert w.rng.getstate() == state
