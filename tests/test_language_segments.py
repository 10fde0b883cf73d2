"""Per-segment reply language (forensics.language.segments) and the three findings of
check.mistranslation, on real text: XQuAD paragraphs (CC-BY-SA, ../shared/data/xquad; the same
paragraph in each language) as reply text."""

from __future__ import annotations

import json

import pytest

from forensics.language.detect import detect
from forensics.language.segments import SegmentKnobs, clean, reply_languages
from forensics.quality.checks.mistranslation import KINDS, MistranslationCheck
from forensics.quality.core import Batch

LANGS = ("en", "de", "es", "zh", "el", "tr", "vi", "ro")


@pytest.fixture(scope="module")
def paras(xquad_dir):
    """{lang: [context paragraph, ...]} with paragraph i parallel across languages."""
    out = {}
    for lang in LANGS:
        data = json.loads((xquad_dir / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        out[lang] = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    return out


def test_clean_blanks_non_language_material_and_keeps_offsets():
    r = ("Siehe https://example.org/a?b=1 oder schreib an info@example.org.\n"
         "```python\nprint('hello world, this is code')\n```\n"
         "Der Wert `x_max` ist 42,5 % höher. <b>Fett</b> und $x^2$.\n\n    for i in range(3): pass\n")
    c = clean(r)
    assert len(c) == len(r) and c.count("\n") == r.count("\n")
    for gone in ("https", "example", "print", "hello", "x_max", "42", "<b>", "x^2", "range"):
        assert gone not in c, gone
    for kept in ("Siehe", "oder", "schreib", "Der Wert", "höher", "Fett"):
        assert kept in c, kept


@pytest.mark.parametrize("lang", LANGS)
def test_single_language_paragraph(paras, lang):
    for text in paras[lang][:3]:
        r = reply_languages(text)
        assert r.main == lang and r.whole == lang
        assert r.shares[lang] >= 0.9, r.shares


@pytest.mark.parametrize("lang", [x for x in LANGS if x != "en"])
def test_mixed_paragraphs_give_both_languages(paras, lang):
    text = paras[lang][5] + "\n\n" + paras["en"][6]
    r = reply_languages(text)
    assert r.split
    assert set(r.shares) >= {lang, "en"}, r.shares
    assert min(r.shares[lang], r.shares["en"]) >= 0.2
    # segments are offsets into the reply, in order, tagged with their language
    assert all(0 <= a < b <= len(text) for a, b, _ in r.segments)
    en = [text[a:b] for a, b, lg in r.segments if lg == "en"]
    assert en and all(s in paras["en"][6] for s in en)


def test_boilerplate_header_and_footer_are_found(paras):
    de = paras["de"][2]
    text = ("Sure! Here is a detailed answer to your question:\n\n" + de
            + "\n\nI hope this helps. Let me know if you have any other questions!")
    r = reply_languages(text)
    assert r.main == "de" and r.whole == "de"
    en = [text[a:b] for a, b, lg in r.segments if lg == "en"]
    assert en[0].startswith("Sure! Here is") and en[-1].startswith("I hope this helps")


def test_code_urls_and_short_lines_are_not_evidence(paras):
    es = paras["es"][3]
    text = ("Claro.\n\n" + es + "\n\n```python\nfor item in items:\n    print('the value is', item)\n```\n"
            "See https://en.wikipedia.org/wiki/Main_Page for more.\n- OK\n- 2024\n")
    r = reply_languages(text)
    assert r.main == "es" and set(r.shares) == {"es"}, r.shares


def test_fast_path_for_a_short_confident_line():
    r = reply_languages("Der Rhein fließt durch mehrere Länder Europas.", whole=("de", 0.99))
    assert not r.split and r.main == "de" and r.shares == {"de": 1.0}
    # the same text with a low confidence is split and judged per segment
    r2 = reply_languages("Der Rhein fließt durch mehrere Länder Europas.", whole=("de", 0.4))
    assert r2.split and r2.main == "de"
    # too short to judge
    assert reply_languages("Ja, klar.").main is None
    k = SegmentKnobs(fast_max_chars=10)
    assert reply_languages("Der Rhein fließt durch mehrere Länder Europas.", knobs=k,
                           whole=("de", 0.99)).split


# ------------------------------------------------------------------ the check's three findings
def _run(rows, **kw):
    P = [p for p, _ in rows]
    R = [r for _, r in rows]
    pd, rd = detect(P), detect(R)
    b = Batch(0, {"sample_id": list(range(len(rows))), "prompt": P, "reply": R,
                  "prompt_lang": [x.lang for x in pd], "reply_lang": [x.lang for x in rd],
                  "prompt_lang_conf": [x.confidence for x in pd],
                  "reply_lang_conf": [x.confidence for x in rd]})
    _, f = MistranslationCheck(semantic=False, **kw).process(b)
    return {x.sample_id: x for x in f}


def test_three_findings_and_clean_negatives(paras):
    en, de, es, zh, tr = (paras[x] for x in ("en", "de", "es", "zh", "tr"))
    rows = [
        # 0 ignored request (request at the end)
        ("Write a 250 word essay about the history of this region. Use Turkish.", en[10]),
        # 1 ignored request (request at the start, German prompt)
        ("Antworte auf Spanisch: Was ist über die Geschichte dieser Region bekannt?", de[11]),
        # 2 unrequested switch: English question, German answer
        ("What is known about the history of this region? Answer in detail.", de[12]),
        # 3 mixed: German question, German answer with an English paragraph
        ("Was ist über die Geschichte dieser Region bekannt?", de[13] + "\n\n" + en[14]),
        # 4 request honoured (request in the middle)
        ("I need a summary of this region's history in Spanish because my class reads it.",
         es[15]),
        # 5 translation answered in the target language, source quoted first
        ("Translate into German:\n\n" + en[16], en[16] + "\n\n" + de[16]),
        # 6 native pairs
        ("Was ist über die Geschichte dieser Region bekannt?", de[17]),
        ("这个地区的历史是怎样的？", zh[18]),
        # 8 talks about a language: answer in the prompt's language
        ("Is Turkish hard to learn for someone who speaks English?", en[19]),
        # 9 request for Turkish honoured
        ("Bu bölgenin tarihini Türkçe anlat.", tr[20]),
    ]
    got = _run(rows)
    kinds = {i: f.group_id for i, f in got.items()}
    assert kinds == {0: "ignored_request", 1: "ignored_request", 2: "unrequested_switch",
                     3: "mixed_language"}, {i: f.detail for i, f in got.items()}
    assert set(kinds.values()) <= set(KINDS)
    d = got[0].detail
    assert d.startswith("ignored_request: expected tr (request: \"")
    assert "Use Turkish." in d and "observed en 100%" in d and "first offending segment (en)" in d
    assert got[0].severity == "error" and got[0].check == "mistranslation"
    assert "Antworte auf Spanisch" in got[1].detail and "observed de" in got[1].detail
    assert got[2].detail.startswith("unrequested_switch: expected en (prompt language; no request)")
    d = got[3].detail
    assert d.startswith("mixed_language: expected de (prompt language; no request); observed de ")
    assert ", en " in d and en[14][:40] in d and got[3].severity == "warning"


def test_mixed_share_knob(paras):
    de, en = paras["de"], paras["en"]
    rows = [("Was ist über die Geschichte dieser Region bekannt?",
             de[21] + "\n\n" + de[22] + "\n\nThis short closing note is written in English."),
            ("Was ist über die Geschichte dieser Region bekannt?", de[21] + "\n\n" + de[22])]
    got = _run(rows)                     # one English closing line is a finding by default
    assert list(got) == [0] and got[0].group_id == "mixed_language"
    assert "closing note" in got[0].detail
    assert _run(rows, mixed_share=0.2) == {}  # ... and not when the share must reach 20 %
    # a line of names is not evidence of another language
    names = ("Bloomberg LP Daniel Doctoroff, Credit Suisse Brady Dougan, Morningstar Joe "
             "Mansueto, Chicago Cubs Tom Ricketts")
    assert _run([(rows[0][0], de[21] + "\n\n" + names)]) == {}


def test_whole_reply_baseline_misses_requests_the_new_rule_finds(paras):
    rows = [("Write a 250 word essay about the history of this region. Use Turkish.",
             paras["en"][10]),
            ("What is known about the history of this region? Answer in detail.", paras["de"][12])]
    old = _run(rows, whole_reply=True)
    assert {i: f.group_id for i, f in old.items()} == {1: "unrequested_switch"}


def test_request_words_deep_inside_a_passage_are_content(paras):
    es = paras["es"]
    passage = es[30] + " Este himno se conoce en inglés por la traducción de su título. " + es[31]
    rows = [(passage + "\n\n¿Qué se sabe de esta región?", es[32])]
    assert _run(rows) == {}
    # the same words as the instruction at the end of the prompt are a request
    rows = [(es[30] + "\n\nResponde en inglés: ¿qué se sabe de esta región?", es[32])]
    assert _run(rows)[0].group_id == "ignored_request"


def test_a_reply_that_keeps_the_expected_language_is_mixed_not_switched(paras):
    de, en = paras["de"], paras["en"]
    q = "Was ist über die Geschichte dieser Region bekannt?"
    # a German paragraph, then a longer English answer: English is the main language, German
    # keeps more than mixed_expected_share (0.2) of the text
    mixed = de[23] + "\n\n" + en[24] + "\n\n" + en[25] + "\n\n" + en[26]
    sh = reply_languages(mixed).shares
    assert max(sh, key=sh.get) == "en" and 0.2 <= sh["de"] < 0.5, sh
    got = _run([(q, mixed), (q, en[24] + "\n\n" + en[25])])
    assert got[0].group_id == "mixed_language", got[0].detail
    assert got[1].group_id == "unrequested_switch", got[1].detail
    # ... not when the expected-language share must be larger than German holds here (then
    # the switch rule decides, whose pairwise re-check reads the German opening)
    got = _run([(q, mixed)], mixed_expected_share=0.95)
    assert all(f.group_id != "mixed_language" for f in got.values()), got


def test_a_short_header_in_another_language_is_mixed(paras):
    de = paras["de"]
    q = "Was ist über die Geschichte dieser Region bekannt?"
    reply = "What is known about this region?\n\n" + de[26] + "\n\n" + de[27]
    got = _run([(q, reply)])
    assert list(got) == [0] and got[0].group_id == "mixed_language", got
    assert "What is known" in got[0].detail
    assert _run([(q, reply)], mixed_min_chars=40) == {}  # the header is under 40 characters
