"""Per-segment reply language: the shipped splitter + fastText (``reply_languages``) against
lingua's ``detect_multiple_languages_of`` on the same mixed replies, in one process.

    nice -n 10 .venv/bin/python bench/language_segments.py [--n 200]

Replies: an XQuAD paragraph (de es zh el tr vi ro; CC-BY-SA) with one or two English
sentences (from a different English paragraph) placed as their own line, or inside the same
line. Shares (and the truth) count characters with ``segments.weight``. Prints the mean absolute error of the English share, the rate at which English is found
at all, and seconds per reply for each method; writes bench/results/language_segments.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

from forensics.language.segments import reply_languages, weight  # noqa: E402

XQUAD = shared_dir() / "data" / "xquad"
LANGS = ("de", "es", "zh", "el", "tr", "vi", "ro")
_SENT = re.compile(r"(?<=[.!?])\s+")


def paragraphs(lang: str) -> list[str]:
    data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    return [p["context"] for a in data["data"] for p in a["paragraphs"]]


def cases(n: int, seed: int = 0):
    rng = random.Random(seed)
    en = paragraphs("en")
    paras = {lang: paragraphs(lang) for lang in LANGS}
    for k in range(n):
        lang = LANGS[k % len(LANGS)]
        body = rng.choice(paras[lang])
        ens = _SENT.split(rng.choice(en))[: rng.choice((1, 2))]
        extra = " ".join(ens)
        inline = k % 2 == 1
        text = (body + " " + extra) if inline else (body + "\n\n" + extra)
        truth = weight(extra) / weight(text)
        yield lang, inline, text, truth


def lingua_shares(detector, text: str) -> dict[str, float]:
    res = detector.detect_multiple_languages_of(text)
    chars: dict[str, int] = {}
    for r in res:
        code = r.language.iso_code_639_1.name.lower()
        seg = text[r.start_index:r.end_index]
        chars[code] = chars.get(code, 0) + weight(seg)
    tot = sum(chars.values()) or 1
    return {k: v / tot for k, v in chars.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    from forensics.language.detect import DEFAULT_LANGUAGES

    langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in DEFAULT_LANGUAGES]
    det = LanguageDetectorBuilder.from_languages(*langs).build()
    data = list(cases(args.n))
    reply_languages("warm up the identifier with a sentence.")
    lingua_shares(det, "warm up the detector with a sentence.")
    out = {}
    for name, fn in (("segments_fasttext", lambda t: reply_languages(t).shares),
                     ("lingua_multiple", lambda t: lingua_shares(det, t))):
        err = {"line": [], "inline": []}
        found = {"line": 0, "inline": 0}
        main_ok = 0
        t = time.perf_counter()
        for lang, inline, text, truth in data:
            sh = fn(text)
            key = "inline" if inline else "line"
            err[key].append(abs(sh.get("en", 0.0) - truth))
            found[key] += sh.get("en", 0.0) > 0
            main_ok += bool(sh) and max(sh, key=sh.get) == lang
        dt = time.perf_counter() - t
        half = {k: len(v) for k, v in err.items()}
        out[name] = {"en_share_mae_line": round(sum(err["line"]) / half["line"], 4),
                     "en_share_mae_inline": round(sum(err["inline"]) / half["inline"], 4),
                     "en_found_line": round(found["line"] / half["line"], 4),
                     "en_found_inline": round(found["inline"] / half["inline"], 4),
                     "main_correct": round(main_ok / len(data), 4),
                     "ms_per_reply": round(1000 * dt / len(data), 2)}
        print(name, out[name], flush=True)
    out["lingua_over_segments_time"] = round(out["lingua_multiple"]["ms_per_reply"]
                                             / out["segments_fasttext"]["ms_per_reply"], 2)
    print(json.dumps(out, indent=1))
    write_result("language_segments", {"parameters": vars(args), **out})


if __name__ == "__main__":
    main()
