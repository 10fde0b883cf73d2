"""Segments: a text split into the units a behaviour lives in (sentences, lines, code blocks).

A one-sentence behaviour (an unprompted aside, a signature, a marker comment) is diluted in the
embedding of a long reply; embedded alone, it is close to the same behaviour in other words.
:func:`split_segments` is the one splitter the segment indexes (``reply_segment``,
``prompt_segment``) and the triage ``segment`` signal share, so a query segment and an indexed
segment are cut the same way.

Rules, in order: a fenced code block (```` ``` ```` to ```` ``` ````) is cut into its lines
(``code_lines``; the fence lines themselves are dropped; with ``code_lines=False`` the block is
one segment), so a quirk inside code (a banner or marker comment) is a segment of its own; the
rest is split at line breaks, then after sentence ends (``. ! ?`` and their full-width forms followed
by white space, or a full-width end followed by anything); segments with fewer than
``min_words`` white-space separated tokens are dropped (a text without spaces, e.g. Chinese,
counts as ``len // 3`` tokens). A text longer than ``max_segments`` segments keeps its first and
last ``max_segments // 2`` (a behaviour tends to open or close a reply).

Segment ids pack the sample id and the segment's position: ``sample_id << SEGMENT_BITS | i``
(:func:`segment_id`, :func:`segment_sample`), so an index hit maps to its row by a shift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SPLIT_VERSION = 2                      # the splitter's rules (an index cut by another is stale)
SEGMENT_BITS = 10                      # positions per text in a packed id (not a knob: id layout)
_MAX_POSITIONS = 1 << SEGMENT_BITS

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_CODE_LIKE = re.compile(r"^(#|//|--|/\*)|[{}();=\[\]]|^(def|class|return|import|for|if|"
                        r"while|function|const|let|var|func|SELECT|FROM|WHERE)\b")
_SENT_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|(?<=[.!?][\"'”’)\]])\s+")


@dataclass
class SegmentParams:
    """How texts are cut into segments (recorded in a segment index's manifest ``params``;
    documented in docs/triage.md)."""

    min_words: int = 3                 # shorter segments are dropped
    max_segments: int = 64             # segments kept per text (first and last halves)
    code_lines: bool = True            # a fenced code block is cut into its lines

    def __post_init__(self) -> None:
        if not 1 <= self.max_segments <= _MAX_POSITIONS:
            raise ValueError(f"max_segments must be in 1..{_MAX_POSITIONS}")


def _words(s: str) -> int:
    n = len(s.split())
    return max(n, len(s) // 3) if n <= 1 else n


def split_segments(text: str | None, params: SegmentParams | None = None) -> list[str]:
    """``text`` cut into segments (see the module docstring), stripped, in order."""
    p = params or SegmentParams()
    if not text:
        return []
    out: list[str] = []
    pos = 0
    for m in _FENCE.finditer(text):
        out.extend(_prose(text[pos:m.start()]))
        block = m.group(0).strip()
        if block and p.code_lines:
            out.extend(_code_lines(block))
        elif block:
            out.append(block)
        pos = m.end()
    out.extend(_prose(text[pos:]))
    out = [s for s in out if _words(s) >= p.min_words]
    if len(out) > p.max_segments:
        half = p.max_segments // 2
        out = out[:half] + out[len(out) - (p.max_segments - half):]
    return out


def _prose(text: str) -> list[str]:
    segs = []
    for line in text.splitlines():
        for s in _SENT_END.split(line):
            s = s.strip()
            if s:
                segs.append(s)
    return segs


def is_code_segment(segment: str) -> bool:
    """Whether ``segment`` came from a code block's line (heuristic for a segment alone: it
    reads like code: a comment marker, brackets or an assignment, and no sentence end)."""
    t = segment.strip()
    return bool(_CODE_LIKE.search(t)) and not t.endswith((".", "!", "?"))


def _code_lines(block: str) -> list[str]:
    lines = block.splitlines()
    if lines and lines[0].startswith("```"):
        lines = lines[1:]
    if lines and lines[-1].strip().startswith("```"):
        lines = lines[:-1]
    return [ln.strip() for ln in lines if ln.strip()]


def segment_id(sample_id: int, position: int) -> int:
    """The packed id of segment ``position`` of sample ``sample_id``."""
    return (int(sample_id) << SEGMENT_BITS) | int(position)


def segment_sample(ids: np.ndarray) -> np.ndarray:
    """Sample ids of packed segment ids (vectorised; negative ids stay -1)."""
    ids = np.asarray(ids, np.int64)
    return np.where(ids >= 0, ids >> SEGMENT_BITS, -1)


def split_many(ids: np.ndarray, texts: list[str | None], params: SegmentParams | None = None
               ) -> tuple[np.ndarray, list[str]]:
    """Every text's segments with packed ids (``ids`` are the texts' sample ids), in id order."""
    out_ids: list[int] = []
    out_t: list[str] = []
    for sid, t in zip(ids.tolist(), texts):
        for i, s in enumerate(split_segments(t, params)):
            out_ids.append(segment_id(sid, i))
            out_t.append(s)
    return np.asarray(out_ids, np.int64), out_t


__all__ = ["SegmentParams", "split_segments", "is_code_segment", "SPLIT_VERSION", "split_many", "segment_id", "segment_sample",
           "SEGMENT_BITS"]
