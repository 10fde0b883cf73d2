"""Language identification on short texts (real models, no mocks)."""

from __future__ import annotations

import json

import pytest

from forensics.language import detect as langid
from forensics.errors import UsageError

XQUAD_LANGS = ["en", "de", "es", "zh", "vi", "tr", "el", "ro"]
HELD_OUT = ["ru", "uk", "ar", "hi", "ja", "ko", "fr", "it", "pt", "nl", "pl", "sv", "cs", "th",
            "id", "he", "fa"]


def test_default_candidate_set_is_broad():
    assert set(XQUAD_LANGS + HELD_OUT) <= set(langid.DEFAULT_LANGUAGES)


def test_xquad_questions_per_language(xquad_dir):
    texts, gold = [], []
    for lang in XQUAD_LANGS:
        data = json.loads((xquad_dir / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        qs = [qa["question"] for p in data["data"][0]["paragraphs"] for qa in p["qas"]][:25]
        texts += qs
        gold += [lang] * len(qs)
    res = langid.detect(texts)
    for lang in XQUAD_LANGS:
        pairs = [(r.lang, g) for r, g in zip(res, gold) if g == lang]
        acc = sum(a == b for a, b in pairs) / len(pairs)
        assert acc >= 0.9, (lang, acc)


@pytest.mark.parametrize("text,lang", [
    ("Привіт, як справи? Що ти робиш сьогодні?", "uk"),
    ("Как дела? Что ты делаешь сегодня?", "ru"),
    ("こんにちは、お元気ですか？", "ja"),
    ("안녕하세요, 잘 지내세요?", "ko"),
    ("مرحبا كيف حالك اليوم؟", "ar"),
    ("नमस्ते, आप कैसे हैं?", "hi"),
    ("สวัสดีครับ วันนี้อากาศดีมาก", "th"),
    ("שלום, מה שלומך היום?", "he"),
    ("سلام، حال شما امروز چطور است؟", "fa"),
    ("Bonjour, comment allez-vous ?", "fr"),
    ("Olá, como você está hoje?", "pt"),
    ("Hallo, hoe gaat het vandaag met je?", "nl"),
])
def test_held_out_languages_short_texts(text, lang):
    r = langid.detect([text])[0]
    assert r.lang == lang and 0.5 < r.confidence <= 1.0


def test_empty_and_restricted_and_threshold():
    res = langid.detect(["", None, "   ", "What is the capital of France?"])
    assert [r.lang for r in res] == [None, None, None, "en"]
    # a restricted candidate set never answers outside it (None when no candidate fits)
    only = langid.detect(["Как дела? Что ты делаешь сегодня?", "Wie spät ist es?"], ["en", "de"])
    assert {r.lang for r in only} <= {"en", "de", None} and only[1].lang == "de"
    strict = langid.LanguageIdentifier(min_confidence=0.99).detect(["How do I cook borscht?"])[0]
    assert strict.lang is None and 0 <= strict.confidence < 0.99


def test_unknown_codes_rejected():
    with pytest.raises(UsageError, match="xx"):
        langid.validate_languages(["en", "xx"])
    with pytest.raises(UsageError):
        langid.LanguageIdentifier(["en"])


def test_lingua_backend_small_set():
    ident = langid.LanguageIdentifier(["en", "de", "fr"], backend="lingua")
    res = ident.detect(["Wie spät ist es heute Abend?", "Where is the train station?", ""])
    assert [r.lang for r in res] == ["de", "en", None]
