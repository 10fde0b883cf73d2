"""Step 1 of the grounding judgement (:mod:`forensics.triage.grounding`, whose docstring
states the contract): where a prompt's context passage is and what the user's turn is, and
the token normalisation the judgement compares passages and replies with."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.grounding import GroundingParams

_PARA = re.compile(r"\n\s*\n")
TOKEN = re.compile(r"\d+(?:[.,]\d+)*\w*|\w+(?:['’]\w+)*")
_OPEN_QUOTES = "\"“«„'‘"
_CLOSE_QUOTES = "\"”»“'’"
# the first opening quotation mark to the last closing one (a quote inside the passage
# does not cut it; across lines: a quotation cut into lines, triple quotes)
_QUOTED = re.compile(r"[\"“«„](.+)[\"”»“]", re.S)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """scikit-learn's English stopword list (a maintained list, not one of ours)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=1 << 16)
def norm(tok: str) -> str:
    """A token lower-cased, possessive dropped, thousands separators dropped from numbers."""
    t = tok.lower().replace("’", "'")
    if t.endswith("'s"):
        t = t[:-2]
    if any(c.isdigit() for c in t):
        t = re.sub(r"(?<=\d)[,.](?=\d{3}\b)", "", t).rstrip(".")
    return t


def key(tok: str, p: "GroundingParams") -> str:
    """The compare key of a normalised token: its first ``stem_chars`` characters (numbers
    whole)."""
    return tok[:p.stem_chars] if p.stem_chars > 0 and not any(c.isdigit() for c in tok) else tok


def content(tokens: list[str], p: "GroundingParams") -> list[str]:
    """The content tokens (normalised, no stopwords, at least ``min_word_chars`` or a digit)."""
    stop = stopwords()
    return [t for t in (norm(x) for x in tokens)
            if t and t not in stop and (len(t) >= p.min_word_chars or any(c.isdigit() for c in t))]


def _marked(parts: list[str]) -> list[bool]:
    """Which parts the prompt presents as quoted material: a ``>`` quoted block, a part
    wholly inside quotation marks, or a part right after one that ends with a colon (a
    label or an introduction: "Source:", "Here is the excerpt:") or is a heading."""
    out = []
    for i, x in enumerate(parts):
        prev = parts[i - 1].rstrip() if i else ""
        out.append(x.startswith(">") or (x[:1] in _OPEN_QUOTES and x[-1:] in _CLOSE_QUOTES)
                   or prev.endswith(":") or (prev.startswith("#") and "\n" not in prev))
    return out


def _quotation(text: str, p: "GroundingParams") -> re.Match | None:
    """The quotation of ``text`` (first opening mark to last closing one) when it holds
    ``min_context_words`` content words, else ``None``."""
    m = _QUOTED.search(text)
    if m is None or len(content(TOKEN.findall(m.group(1)), p)) < p.min_context_words:
        return None
    return m


def _split_quote(text: str, p: "GroundingParams") -> list[str]:
    """A one-line prompt cut around its quotation: [before, quoted span, after] (empty
    parts dropped) when it has one (:func:`_quotation`), else ``[text]``."""
    m = _quotation(text, p)
    if m is None:
        return [text]
    return [x.strip() for x in (text[:m.start()], m.group(0), text[m.end():]) if x.strip()]


def _quoted_passage(text: str, p: "GroundingParams") -> tuple[str, str] | None:
    """No part is long enough: with ``quoted_passages`` the quotation of ``text`` (one cut
    into lines, one inside a question) is the passage, the text around it the user's turn."""
    m = _quotation(text, p) if p.quoted_passages else None
    if m is None:
        return None
    return m.group(1).strip(' \n"'), (text[:m.start()] + " " + text[m.end():]).strip()


def context_passage(prompt: str | None, p: "GroundingParams") -> tuple[str, str] | None:
    """(context passage, the user's turn) of ``prompt`` (step 1 of the grounding module's
    docstring), or ``None`` when it has no context passage."""
    text = (prompt or "").strip()
    parts = [x.strip() for x in _PARA.split(text) if x.strip()]
    if len(parts) < 2:
        parts = [x.strip() for x in text.splitlines() if x.strip()]
    if len(parts) < 2 and p.quoted_passages:
        parts = _split_quote(text, p)
    if len(parts) < 2:
        return None
    sizes = [len(content(TOKEN.findall(x), p)) for x in parts]
    if p.question_turn and not all(x.endswith("?") for x in parts):
        # a part that asks is the user's turn, however long its preamble
        sizes = [0 if x.endswith("?") else n for x, n in zip(parts, sizes)]
    if max(sizes) < p.min_context_words:
        return _quoted_passage(text, p)
    near = [n >= p.passage_share * max(sizes) for n in sizes]
    marked = _marked(parts) if p.quoted_passages else [False] * len(parts)
    # quoted material nearly as long as the longest part is the passage wherever it sits;
    # else the first part nearly as long as the longest: a claim that restates a one-sentence
    # passage is as long as the passage, and documents come before the user's turn
    best = next((i for i in range(len(parts)) if near[i] and marked[i]), None)
    if best is None:
        best = near.index(True)
    passage = "\n".join(ln.lstrip(">").strip() for ln in parts[best].splitlines())
    return passage, "\n\n".join(x for i, x in enumerate(parts) if i != best)


__all__ = ["TOKEN", "stopwords", "norm", "key", "content", "context_passage"]
