"""Triage of language anomalies on a small corpus of real XQuAD text (the language dev set's
builder), through the real CLI, real DuckDB and real FAISS: an ignored request ranks and
clusters the rows that ignored a language request; an unrequested switch to English surfaces
the rows that switched to English; translations and native pairs stay out of both."""

from __future__ import annotations

import json

import pytest

from forensics.testing import langdev

ASKED_JA = {
    "title": "asked for Japanese, answered in English",
    "prompt": "Which chemist first produced enough liquid oxygen to study it? Please answer in Japanese.",
    "reply": "In 1891 the Scottish chemist James Dewar was able to produce enough liquid oxygen "
             "to study.",
}
ARABIC_EN = {
    "title": "Arabic question answered in English",
    "prompt": "من هو الكيميائي الذي أنتج ما يكفي من الأكسجين السائل لدراسته؟",
    "reply": "In 1891 the Scottish chemist James Dewar was able to produce enough liquid oxygen "
             "to study.",
}


def _frame():
    import polars as pl

    from forensics.triage.rows import request_columns

    prompts = [
        ("Answer in Turkish. How many people died of plague in Paris in 1466?", "en", "en"),
        ("Antworte auf Spanisch. Wann wurde die Universität gegründet?", "de", "en"),
        ("Please answer in Japanese. Who wrote the letter?", "en", "zh"),
        ("Responde en inglés. ¿Quién escribió la carta?", "es", "en"),      # honoured
        ("Translate into German: The museum opened in 1852.", "en", "de"),  # translation
        ("Wann wurde die Universität gegründet?", "de", "en"),              # unrequested switch
        ("When was the university founded?", "en", "en"),                   # native
        ("I'm learning Spanish at the moment. When was it founded?", "en", "en"),  # talk
    ]
    df = pl.DataFrame({"prompt": [p for p, _, _ in prompts],
                       "prompt_lang": [a for _, a, _ in prompts],
                       "reply_lang": [b for _, _, b in prompts]})
    return request_columns(df)


def test_ignored_request_target_and_scores():
    from forensics.triage.signals.language import LanguageParams, language_scores, language_target

    t = language_target("en", "en", ["the reply is in English although Japanese was asked"],
                        ASKED_JA["prompt"])
    assert t.mode == "ignored_request" and t.requested == "ja" and t.targets == {"en": 1.0}
    assert "Japanese" in t.evidence
    df = _frame()
    assert df["expected_reason"].to_list()[:5] == ["request"] * 4 + ["translation"]
    assert df["expected_reason"].to_list()[5:] == ["prompt_language"] * 3
    s = language_scores(df, t, LanguageParams())
    p = LanguageParams()
    # asked for tr/es (not ja) answered in English; asked for ja answered in Chinese
    assert s[0] == pytest.approx(p.other_request_factor)
    assert s[1] == pytest.approx(p.other_request_factor)
    assert s[2] == pytest.approx(p.other_target_factor)
    assert list(s[3:]) == [0.0] * 5
    # a switch anomaly (no request in its prompt) scores the unrequested switch, not the rest
    sw = language_target("ar", "en", [], ARABIC_EN["prompt"])
    assert sw.mode == "switch" and sw.targets == {"en": 1.0}
    s2 = language_scores(df, sw, p)
    assert s2[5] == pytest.approx(p.other_source_factor)
    assert s2[3] == pytest.approx(p.other_source_factor * p.legit_penalty)
    assert list(s2[[0, 4, 6, 7]]) == [0.0] * 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, xquad_dir):
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("triage-lang")
    ws = tmp / "ws"
    run_cli("init", workspace=ws)
    rows = langdev.build(xquad_dir, seed=3, per_kind=12)
    f = tmp / "train.jsonl"
    f.write_text("".join(json.dumps({"id": r["id"], "prompt": r["prompt"], "reply": r["reply"]},
                                    ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    run_cli("ingest", f, "--dataset", "train", "-q", workspace=ws)
    run_cli("index", "build", "--dataset", "train", "--field", "pair", workspace=ws)
    return ws, {r["id"]: r for r in rows}


def _triage(cli, ws, a):
    aid = cli("anomaly", "add", "--title", a["title"], "--prompt", a["prompt"], "--reply",
              a["reply"], "--json", workspace=ws).json()["anomaly_id"]
    return cli("triage", aid, "--dataset", "train", "--limit", 200, "--json", workspace=ws).json()


@pytest.mark.slow
def test_ignored_request_ranks_and_clusters_the_rows_that_ignored_a_request(corpus, cli):
    ws, rows = corpus
    out = _triage(cli, ws, ASKED_JA)
    assert "language" in out["signals_used"]
    ignored_en = {i for i, r in rows.items() if r["labels"]["ignored_request"] and r["reply_lang"] == "en"}
    ignored = {i for i, r in rows.items() if r["labels"]["ignored_request"]}
    assert len(ignored_en) >= 15
    top = [f["row_id"] for f in out["findings"][:len(ignored_en)]]
    assert len(set(top) & ignored) >= 0.9 * len(top)
    assert len(set(top) & ignored_en) >= 0.8 * len(ignored_en)
    c0 = out["clusters"][0]
    assert c0["profile"]["signature"]["lang"] == "ignored request→en"
    members = set(c0["row_ids"])
    assert len(members & ignored) >= 0.9 * len(members)
    assert len(members & ignored_en) >= 0.8 * len(ignored_en)
    # honoured requests, translations, native pairs and unrequested switches stay out
    out_kinds = {"request_honoured", "passage_honoured", "translation", "native", "native_url",
                 "switch", "talk", "talk_real"}
    # (rows answered in English: the anomaly's own behaviour; a prompt misread as a request
    # answered in its own language scores at most other_target_factor)
    ranked = [f["row_id"] for f in out["findings"] if f["signals"].get("language", 0) >= 0.6]
    assert len(ranked) >= len(ignored_en) * 0.8
    assert sum(rows[i]["kind"] in out_kinds for i in ranked) <= 0.1 * len(ranked)
    assert not any(rows[i]["kind"] in out_kinds for i in members)


@pytest.mark.slow
def test_unrequested_switch_to_english_surfaces_switches_not_translations(corpus, cli):
    ws, rows = corpus
    out = _triage(cli, ws, ARABIC_EN)
    assert "language" in out["signals_used"]
    to_en = {i for i, r in rows.items() if r["kind"] == "switch" and r["reply_lang"] == "en"}
    # rows that answer in English a prompt in another language that asked for no English
    switched = {i for i, r in rows.items() if r["reply_lang"] == "en" and r["prompt_lang"] != "en"
                and r["expected_lang"] != "en"}
    assert len(to_en) >= 10
    top = [f["row_id"] for f in out["findings"][:len(switched)]]
    assert len(set(top) & switched) >= 0.85 * len(top)
    assert len(set(top) & to_en) >= 0.8 * len(to_en)
    # one batch: the switches to English from every language (none is the anomaly's Arabic)
    c0 = out["clusters"][0]
    assert c0["profile"]["signature"]["lang"] == "other→en"
    assert set(c0["row_ids"]) <= switched and len(set(c0["row_ids"]) & to_en) >= 0.8 * len(to_en)
    # translations into English and native pairs never rank among them
    assert not any(rows[i]["kind"] in ("translation", "native", "native_url", "request_honoured",
                                       "passage_honoured") for i in top)
