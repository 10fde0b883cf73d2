"""The language development set: built from XQuAD text only, labels consistent with how each
row was made, dev and check splits disjoint, and the committed file what the builder makes."""

from __future__ import annotations

import json
from pathlib import Path

from forensics.testing import langdev
from forensics.testing import langdev_phrasings as ph

REPO = Path(__file__).resolve().parents[1]


def test_rows_are_real_text_with_consistent_labels(xquad_dir):
    rows = langdev.build(xquad_dir, per_kind=16)
    xq = langdev.load(xquad_dir)
    paragraphs = {l: {it.context for it in d.values()} for l, d in xq.items()}
    questions = {l: {it.question for it in d.values()} for l, d in xq.items()}
    assert {r["reply_lang"] for r in rows} <= set(langdev.LANGS)
    for r in rows:
        k, lab = r["kind"], r["labels"]
        assert set(lab) == set(langdev.FINDINGS)
        assert lab["unrequested_switch"] == (k == "switch")
        assert lab["ignored_request"] == k.endswith("_ignored")
        assert lab["mixed_language"] == k.startswith("mixed_")
        if k.endswith("_ignored") or k.endswith("_honoured") or k == "translation":
            assert (r["reply_lang"] == r["expected_lang"]) == (not k.endswith("_ignored"))
        if k in ("passage_honoured", "passage_ignored", "translation"):
            # the reply is a whole XQuAD paragraph in its language, never the prompt's own
            assert r["reply"] in paragraphs[r["reply_lang"]] and r["reply"] not in r["prompt"]
        if k in ("native", "switch", "talk_real") or k.startswith("mixed_"):
            assert r["prompt"] in questions[r["prompt_lang"]]
        if k == "switch":
            assert r["reply_lang"] != r["prompt_lang"] == r["expected_lang"]
        assert r["setting"] == ("monolingual" if r["expected_lang"] == r["prompt_lang"]
                                else "cross-lingual")


def test_splits_share_no_article_and_no_phrasing(xquad_dir):
    rows = langdev.build(xquad_dir, per_kind=16)
    xq = langdev.load(xquad_dir)
    art = {s: {xq["en"][r["source"]["xquad_id"]].article for r in rows if r["split"] == s}
           for s in ("dev", "check")}
    assert art["dev"] and art["check"] and not art["dev"] & art["check"]
    tpl = {s: {r["template"] for r in rows if r["split"] == s and r["template"]}
           for s in ("dev", "check")}
    assert tpl["dev"] and tpl["check"] and not tpl["dev"] & tpl["check"]
    for pools in (ph.REQUEST, ph.INLINE, ph.PASSAGE, ph.TRANSLATE, ph.TALK):
        for pool in pools.values():
            assert not set(ph.split_pool(pool, "dev")) & set(ph.split_pool(pool, "check"))


def test_committed_file_is_the_builders_output(xquad_dir):
    committed = [json.loads(l) for l in
                 (REPO / "bench" / "data" / "langdev.jsonl").read_text(encoding="utf-8").splitlines()]
    assert committed == langdev.build(xquad_dir)
    assert (REPO / "bench" / "data" / "LICENSE-CC-BY-SA-4.0.txt").exists()
