"""Per-segment language of a reply: which languages a reply is written in, and where.

``reply_languages(reply, identifier=None, min_words=4) -> ReplyLanguages``.

1. Non-language material is blanked out (replaced by spaces, so offsets stay those of the
   reply): fenced (```/~~~) and indented code blocks, inline code, URLs, e-mail addresses,
   numbers, HTML/XML tags, LaTeX math and markdown markup.
2. Fast path: the whole cleaned reply is detected once (or its language is passed in); when it
   is one short line (``SegmentKnobs.fast_max_chars``), confident (``fast_min_conf``) and
   written in one script family, it is one segment and nothing is split.
3. Otherwise the reply is cut into lines, and long lines or lines mixing scripts into sentences;
   segments shorter than ``min_words`` words (a CJK/Thai character counts as half a word) are
   not judged, nor are segments whose language id is below ``segment_min_conf``. All segments of
   a reply go to the identifier in one batch.

``shares`` are by characters of the judged segments (a CJK character counts two, see
``weight``); ``main`` is the language with the largest share (``whole`` when no segment could be
judged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"(?ms)^[ \t]*(```|~~~)[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)")
_INDENTED = re.compile(r"(?m)(?:(?<=\n\n)|\A)(?:(?: {4}|\t)(?![ \t]*(?:[-*+•]|\d+[.)])\s)[^\n]*(?:\n|\Z))+")
_INLINE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"')\]]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]{1,200}\$|\\\[.*?\\\]|\\\(.*?\\\)", re.S)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_NUM = re.compile(r"[+-]?\d(?:[\d.,:/'’-]*\d)?[%°]?")  # a sentence's closing period stays
_MARKUP = re.compile(r"[#*_>|=~\[\]{}()<>\\/^+\-•·…\"“”«»„]+")
_SENT = re.compile(r"[^.!?。！？؟]+(?:[.!?。！？؟]+|$)")
_WORD = re.compile(r"[^\W\d_]+")
_NOSPACE = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


@dataclass
class SegmentKnobs:
    """Thresholds of :func:`reply_languages` (documented in docs/pipelines.md)."""

    fast_max_chars: int = 400      # whole-reply detection alone for one-line replies up to this
    fast_min_conf: float = 0.9     # ... when its confidence reaches this
    mixed_script_share: float = 0.1  # a second script family above this share forces a split
    max_segment_chars: int = 300   # lines longer than this are cut into sentences
    segment_min_conf: float = 0.5  # segments below this confidence are not judged
    max_chars: int = 20000         # only the reply's first this-many characters are read


@dataclass
class ReplyLanguages:
    """Languages of a reply: ``main`` (largest share), ``shares`` (by characters of judged
    segments), ``segments`` ((start, end, lang) judged, offsets into the reply), ``whole``
    (whole-reply detection) and ``split`` (False when the fast path decided)."""

    main: str | None
    shares: dict[str, float]
    segments: list[tuple[int, int, str]]
    whole: str | None
    whole_conf: float = 0.0
    split: bool = False
    confs: list[float] = field(default_factory=list)


def _blank(text: str, rx: re.Pattern) -> str:
    return rx.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def clean(reply: str) -> str:
    """The reply with code, URLs, e-mails, numbers, math and markup replaced by spaces (same
    length and line structure, so offsets into the result are offsets into the reply)."""
    t = reply
    if "```" in t or "~~~" in t:
        t = _blank(t, _FENCE)
    if "    " in t or "\t" in t:
        t = _blank(t, _INDENTED)
    if "`" in t:
        t = _blank(t, _INLINE)
    for rx, probe in ((_URL, ("http", "www.", "ftp")), (_EMAIL, ("@",)), (_MATH, ("$", "\\")),
                      (_TAG, ("<",))):
        if any(p in t for p in probe):
            t = _blank(t, rx)
    t = _NUM.sub(lambda m: " " * len(m.group(0)), t)
    return _MARKUP.sub(lambda m: " " * len(m.group(0)), t)


def n_words(text: str) -> float:
    """Words, with a CJK/Thai/Hangul character counting as half a word."""
    ns = len(_NOSPACE.findall(text))
    return len(_WORD.findall(_NOSPACE.sub(" ", text))) + ns / 2


def _mixed_script(text: str, share: float) -> bool:
    letters = sum(1 for c in text if c.isalpha())
    if not letters:
        return False
    latin = len(_LATIN.findall(text))
    other = letters - latin
    return min(latin, other) > share * letters


def weight(text: str) -> int:
    """Characters that carry language, a CJK/Thai/Hangul character counting two (it carries
    about as much text as two to three Latin letters); spaces do not count."""
    return sum(1 for c in text if not c.isspace()) + len(_NOSPACE.findall(text))


def split_segments(text: str, max_chars: int,
                   mixed_script_share: float = 0.1) -> list[tuple[int, int]]:
    """(start, end) of lines; long lines and lines mixing scripts cut into sentences; blank
    stretches dropped."""
    out = []
    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if not line.strip():
            continue
        if len(line) <= max_chars and not _mixed_script(line, mixed_script_share):
            out.append((start, end))
            continue
        for m in _SENT.finditer(line):
            if m.group(0).strip():
                out.append((start + m.start(), start + m.end()))
    return out


def reply_languages(reply: str, identifier=None, min_words: int = 4,
                    knobs: SegmentKnobs | None = None,
                    whole: tuple[str | None, float] | None = None) -> ReplyLanguages:
    """Languages of ``reply`` per segment (see the module docstring).

    ``identifier``: anything with ``detect(texts) -> [LangResult]`` (default: the shared
    fastText identifier of :mod:`forensics.language.detect`). ``whole``: a (lang, confidence)
    already known for the whole reply (ingest's language id), to skip that detection.
    """
    k = knobs or SegmentKnobs()
    if identifier is None:
        from forensics.language.detect import get_identifier

        identifier = get_identifier()
    text = clean((reply or "")[:k.max_chars])
    if not text.strip():
        return ReplyLanguages(None, {}, [], None)
    if whole is None:
        r = identifier.detect([text])[0]
        whole = (r.lang, r.confidence)
    wl, wc = whole
    body = text.strip()
    if (len(body) <= k.fast_max_chars and "\n" not in body and wc >= k.fast_min_conf
            and not _mixed_script(body, k.mixed_script_share)):
        if wl is None or n_words(body) < min_words:
            return ReplyLanguages(None, {}, [], wl, wc)
        a = len(text) - len(text.lstrip())
        return ReplyLanguages(wl, {wl: 1.0}, [(a, a + len(body), wl)], wl, wc, False, [wc])
    spans = [(a, b) for a, b in split_segments(text, k.max_segment_chars, k.mixed_script_share)
             if n_words(text[a:b]) >= min_words]
    res = identifier.detect([text[a:b] for a, b in spans]) if spans else []
    segs, confs, chars = [], [], {}
    for (a, b), r in zip(spans, res):
        if r.lang is None or r.confidence < k.segment_min_conf:
            continue
        seg = text[a:b]
        a2 = a + len(seg) - len(seg.lstrip())
        b2 = a + len(seg.rstrip())
        segs.append((a2, b2, r.lang))
        confs.append(r.confidence)
        chars[r.lang] = chars.get(r.lang, 0) + weight(seg)
    total = sum(chars.values())
    if not total:
        return ReplyLanguages(wl if n_words(body) >= min_words else None, {}, [], wl, wc, True)
    shares = {lang: n / total for lang, n in sorted(chars.items(), key=lambda x: -x[1])}
    main = next(iter(shares))
    return ReplyLanguages(main, shares, segs, wl, wc, True, confs)


__all__ = ["ReplyLanguages", "SegmentKnobs", "reply_languages", "clean", "split_segments",
           "n_words", "weight"]
