"""Structural evidence for the ``segment`` signal: rows whose code carries a comment line in
the same role as the anomaly's behaviour segment (:mod:`forensics.triage.codeshape`).

When the anomaly's behaviour segment is a comment line of a fenced code block, at a
position in ``shape_positions``, outside every statement and not about the code's identifiers
(``first:top:foreign``, ``last:top:foreign``...), the rows of the dataset whose replies
hold a fenced block are lexed and those with a comment line of the same shape are the
**shape rows**. Why: a format quirk in code written in many wordings shares no words, but
it shares its place in the code, which ordinary comments (about the code, inside it) do not.

Guards, each a knob of :class:`~forensics.triage.signals.segment.SegmentSignalParams`:

* the shape must be a quirk, not the dataset's style: shape rows at most ``shape_max_share`` of
  the rows with code; above it (most code answers have a lead-in or a closing note) the
  **style contrast** (``shape_style_share`` > 0, :func:`_style_scores`) decides which shape
  rows show the behaviour: their lines compared with the centred behaviour query, the lines
  at that place their own background; shape rows below its cut lack the behaviour. Unless
  the text cut already takes ``shape_style_text_share`` of the shape rows: the shape is then
  common because the behaviour is, and the text members carry it (no shape evidence);
* text similarity still counts: a shape row's comment must reach cosine ``shape_z`` robust
  standard deviations above the background median (and ``shape_min_cos``) to the behaviour
  query; a comment nothing like any wording of a remark stays out;
* context: a shape row whose own prompt names its comment's words (idf-weighted share at
  least ``asked_share``), or whose comment is close to its own prompt (``prompted_cos`` /
  ``prompted_margin``), was asked for it: "same behaviour, other context".

* wording support (:func:`unsupported_wordings`, run by the signal after the context
  judgements): a member only the shape found, whose recurring wording no exemplar of the
  behaviour supports (``shape_support_cos``, ``shape_support_min_rows``) and the explanations
  do not describe (``shape_support_desc_quantile``), lacks the behaviour.

Cost: only anomalies with such a behaviour segment pay it. Each row's comment lines are
lexed once and stored (:mod:`forensics.triage.shapecache`; the first such triage of a dataset
pays one pygments lex per distinct fenced reply, 1.2-1.5 ms per fenced reply of about 130
characters at load 8 on 2 cores, measured on the dev-families code replies; later triages lex
only rows added or changed since); one embedding per distinct shape-row comment.
(A pre-check lexing only the line at the shape's position was measured slower on such
replies: lexer calls, not text length, dominate.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.signals.base import SignalContext
    from forensics.triage.signals.segment import SegmentSignalParams


@dataclass
class ShapeEvidence:
    """Per-row arrays over the dataset (``member``, ``other``: bool; ``cos``: the shape
    comment's cosine to the behaviour query, -inf for rows without one; ``lacks``: rows whose
    reply holds no comment of the shape, in code or without code: they lack the behaviour)
    and a summary. ``lacks`` is all False when the shape gave no evidence (none found, or style)."""

    member: np.ndarray
    other: np.ndarray
    cos: np.ndarray
    lacks: np.ndarray
    summary: dict = field(default_factory=dict)
    comment: dict = field(default_factory=dict)   # shape row position -> its comment line
    style: bool = False                           # the shape is the dataset's style (contrasted)


_MARKER_POSITIONS = ("eol", "call", "unused", "before", "after")


def _lines_of(reply: str, params: "SegmentSignalParams", marker: bool) -> list:
    """Comment lines, or marker lines (``eol`` / ``call`` / ``after``), of ``reply``."""
    from forensics.triage.codeshape import comment_lines, marker_lines

    fn = marker_lines if marker else comment_lines
    return fn(reply, tuple(params.shape_fallback_lexers), params.shape_min_word_chars)


def anomaly_shape(reply: str, behaviour: str, params: "SegmentSignalParams") -> str | None:
    """The shape of the anomaly's behaviour segment when it is a comment line that qualifies
    (see the module docstring), or a marker line (an end-of-line comment, a call that only
    passes a string, the prose line after the fence) whose position is in
    ``shape_positions``, else ``None``."""
    b = behaviour.strip()
    for cl in _lines_of(reply, params, False):
        if cl.text == b and cl.foreign and cl.top_level \
                and cl.position in params.shape_positions:
            return cl.shape
    if not any(p in _MARKER_POSITIONS for p in params.shape_positions):
        return None
    for cl in _lines_of(reply, params, True):
        if cl.foreign and cl.position in params.shape_positions and b and (
                b in (cl.text, cl.line) or (cl.position in ("before", "after") and b in cl.line)):
            return cl.shape
    return None


def _idf_named_share(context: "SignalContext", comment: str, prompt: str) -> float:
    """Share of the comment's words (weighted by their idf over the dataset's prompts) that
    its row's prompt names."""
    words = {w for w in re.findall(r"\w+", comment.lower()) if len(w) > 1}
    if not words:
        return 0.0
    pw = set(re.findall(r"\w+", (prompt or "").lower()))
    n = max(1, context.n)
    wt = {w: math.log((n + 1) / (1 + context.hits_prompt.df(w))) for w in words}
    total = sum(wt.values())
    return sum(v for w, v in wt.items() if w in pw) / total if total > 0 else 0.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def two_class_split(values: np.ndarray) -> float | None:
    """The threshold between the two classes of ``values`` with the largest between-class
    variance (Otsu's method, over every split between distinct values), or ``None`` when all
    values are equal."""
    v = np.sort(np.asarray(values, np.float64))
    n = len(v)
    if n < 2 or v[0] == v[-1]:
        return None
    csum = np.cumsum(v)
    k = np.arange(1, n)                       # sizes of the lower class
    lo_mean = csum[:-1] / k
    hi_mean = (csum[-1] - csum[:-1]) / (n - k)
    between = k * (n - k) * (hi_mean - lo_mean) ** 2
    between[v[1:] == v[:-1]] = -1.0           # splits only between distinct values
    i = int(np.argmax(between))
    return float((v[i] + v[i + 1]) / 2)


def _style_scores(lines: np.ndarray, anchor: np.ndarray, expl: np.ndarray,
                  params: "SegmentSignalParams") -> tuple[np.ndarray, float]:
    """(per shape row: its line's centred cosine to the centred behaviour query, the cut).

    The shape rows' lines (one vector per row: a line repeated in many rows weighs as much)
    are centred on their mean, so what every line at that place shares (a short closing note)
    drops out and what sets a line apart stays. The query is the anomaly's behaviour segment
    mixed with the explanations (weight ``explanation_weight``), centred the same way, then
    moved ``feedback_rounds`` times to the centroid of itself and the lines above the best
    two-class split of the rows' centred cosines (Otsu's: the split with the largest
    between-class variance; a median and MAD would be degenerate over lines repeated
    verbatim in many rows). The cut: ``shape_style_share`` of the anomaly's own line's
    centred cosine to the final query."""
    mean = lines.mean(axis=0)
    lc = _unit(lines - mean)
    q = anchor
    if len(expl) and params.explanation_weight > 0:
        q = _unit((1 - params.explanation_weight) * anchor
                  + params.explanation_weight * _unit(expl.mean(axis=0)))
    qc = _unit(q - mean)
    for _ in range(params.feedback_rounds):
        s = lc @ qc
        split = two_class_split(s)
        if split is None:
            break
        m = s > split
        qc = _unit(np.vstack([qc[None, :], lc[m]]).mean(axis=0))
    own = float(_unit(anchor - mean) @ qc)
    return lc @ qc, params.shape_style_share * own


def shape_evidence(context: "SignalContext", oi, pidx, shape: str, query: np.ndarray,
                   bg: np.ndarray, own_rel: float, params: "SegmentSignalParams",
                   anchor: np.ndarray | None = None, expl: np.ndarray | None = None,
                   text_member: np.ndarray | None = None) -> ShapeEvidence:
    """The shape rows of the dataset for the anomaly's ``shape`` (see the module docstring);
    ``query`` the behaviour query vector, ``bg`` background segment vectors, ``own_rel`` the
    anomaly's behaviour segment's cosine to the anomaly's prompt, ``anchor`` the behaviour
    segment's own vector and ``expl`` the explanations' vectors (the style contrast),
    ``text_member`` the rows the text cut already takes (per dataset row)."""
    from forensics.triage.shapecache import shape_rows

    n = context.n
    marker = shape.split(":", 1)[0] in _MARKER_POSITIONS
    member = np.zeros(n, bool)
    other = np.zeros(n, bool)
    cos = np.full(n, -np.inf)
    lacks = np.zeros(n, bool)
    found, code_rows, lexed = shape_rows(context.ws, context.dataset, shape,
                                         params.shape_fallback_lexers,
                                         params.shape_min_word_chars, marker)
    pos = context.position
    hits: list[tuple[int, str, str]] = [  # (row position, comment, prompt)
        (pos[sid], text, prompt) for sid, text, prompt in found if sid in pos]
    summary = {"segment_shape": shape, "segment_shape_code_rows": code_rows,
               "segment_shape_lexed": lexed, "segment_shape_rows": len(hits)}
    if not hits:
        return ShapeEvidence(member, other, cos, lacks, summary)
    style = len(hits) > params.shape_max_share * code_rows
    rows = np.array([j for j, _, _ in hits], np.int64)
    # a shape common because the behaviour is (the text cut already takes most of its rows)
    # is no style to contrast against: the text members carry it
    taken = float(text_member[rows].mean()) if text_member is not None else 0.0
    if style and (params.shape_style_share <= 0 or anchor is None
                  or taken >= params.shape_style_text_share):
        summary["segment_shape_note"] = (f"{len(hits)} of {code_rows} code replies have a "
                                         f"{shape} comment: the dataset's style, not a quirk")
        return ShapeEvidence(member, other, cos, lacks, summary)
    texts = sorted({t for _, t, _ in hits})
    tv = context.indexes.embed(oi, texts)
    vec_of = dict(zip(texts, tv))
    if style:
        # the shape is the dataset's style: its own lines are the background
        c, cut = _style_scores(np.vstack([vec_of[t] for _, t, _ in hits]), anchor,
                               np.zeros((0, len(anchor))) if expl is None else expl, params)
        summary["segment_shape_note"] = (f"{len(hits)} of {code_rows} code replies have a "
                                         f"{shape} line: the dataset's style; lines told "
                                         f"apart by their centred cosine")
    else:
        by_text = dict(zip(texts, tv @ query))
        s = bg @ query if len(bg) else np.zeros(1)
        med = float(np.median(s))
        sd = max(float(np.median(np.abs(s - med))) * 1.4826, 1e-3)
        z = params.shape_marker_z if marker else params.shape_z
        cut = max(med + z * sd, params.shape_min_cos)
        c = np.array([by_text[t] for _, t, _ in hits])
    cos[rows] = c
    ok = c >= cut
    named: dict[tuple[str, str], bool] = {}   # (comment, prompt) repeated: read once
    # the comments' words' prompt postings in one read (not one per word)
    context.hits_prompt.load_tokens({w for t in texts for w in re.findall(r"\w+", t.lower())
                                     if len(w) > 1})
    asked = np.array([named[t, p] if (t, p) in named else
                      named.setdefault((t, p), _idf_named_share(context, t, p) >= params.asked_share)
                      for _, t, p in hits], bool)
    if pidx is not None:
        have = np.isin(context.sample_ids[rows], pidx.ids())
        rel = np.zeros(len(rows))
        if have.any():
            pv = pidx.vectors(context.sample_ids[rows][have])
            cv = np.vstack([vec_of[t] for (_, t, _), h in zip(hits, have) if h])
            rel[have] = (pv * cv).sum(axis=1)
        asked |= rel >= max(params.prompted_cos, own_rel + params.prompted_margin)
    member[rows[ok & ~asked]] = True
    other[rows[ok & asked]] = True
    lacks[:] = True   # a reply without a comment of the shape (or without code) lacks it
    # (where the shape is the style, a line at its place unlike the behaviour lacks it too)
    lacks[rows[ok] if style else rows] = False
    summary.update(segment_shape_cut=round(cut, 4), segment_shape_members=int(member.sum()),
                   segment_shape_asked=int(other.sum()))
    return ShapeEvidence(member, other, cos, lacks, summary, {j: t for j, t, _ in hits}, style)


_SIGN = re.compile(r"^\s*(#+|//+|--+|/\*+|<!--|;+|%+)\s*|\s*(\*+/|-->)\s*$")


def wording(comment: str) -> str:
    """A comment line without its comment syntax (``# end`` and ``-- end`` are one wording)."""
    return _SIGN.sub("", comment).strip() or comment


def unsupported_wordings(shape: ShapeEvidence, candidates: np.ndarray, support: np.ndarray,
                         anchor: str, desc: list[str], embed, params: "SegmentSignalParams"
                         ) -> np.ndarray:
    """Per dataset row: a shape member among ``candidates`` (the members the shape alone
    found) whose comment's wording is **unsupported** and recurs: no exemplar of the
    behaviour comes ``shape_support_cos`` close to it (the exemplars: the anomaly's
    behaviour line ``anchor`` and the comments of the shape rows in ``support``, the rows the
    text cut found and those asked for the behaviour), and at least ``shape_support_min_rows``
    candidates carry the same wording. A wording the explanations describe is supported
    too: its best cosine to a sentence of ``desc`` (the explanations' description) reaches
    the ``shape_support_desc_quantile`` quantile of the exemplars' (a tag the anomaly's
    explanations name as a tag, in a wording no request happened to produce). Why: the
    behaviour's wordings are the ones the text finds, the ones a request produces and the
    ones its description names; an ordinary comment at the same place ("runs in linear
    time") is none of these, and recurs as the dataset's own comment; a wording seen once
    gives no such evidence and stays. A shape that is the dataset's style is left alone (the
    style contrast already told its lines apart). Wordings are compared without their comment syntax
    (:func:`wording`); ``anchor`` is the anomaly's behaviour line, ``embed`` embeds texts."""
    out = np.zeros(len(support), bool)
    if params.shape_support_cos <= 0 or not shape.comment or shape.style:
        return out
    cand = {j: wording(t) for j, t in shape.comment.items() if candidates[j]}
    if not cand:
        return out
    ex = sorted({wording(anchor)} | {wording(t) for j, t in shape.comment.items() if support[j]})
    texts = sorted(set(cand.values()) - set(ex))
    if not texts:
        return out
    v = embed(ex + texts + desc)
    ev, tv, dv = v[:len(ex)], v[len(ex):len(ex) + len(texts)], v[len(ex) + len(texts):]
    near = dict(zip(texts, (tv @ ev.T).max(axis=1)))
    described = dict.fromkeys(texts, False)
    if len(dv) and params.shape_support_desc_quantile < 1.0:
        level = float(np.quantile((ev @ dv.T).max(axis=1), params.shape_support_desc_quantile))
        described = dict(zip(texts, (tv @ dv.T).max(axis=1) >= level))
    weak: dict[str, list[int]] = {}
    for j, t in cand.items():
        if t in near and float(near[t]) < params.shape_support_cos and not described[t]:
            weak.setdefault(t, []).append(j)
    for rows in weak.values():
        if len(rows) >= params.shape_support_min_rows:
            out[rows] = True
    return out


__all__ = ["ShapeEvidence", "anomaly_shape", "shape_evidence", "two_class_split",
           "unsupported_wordings"]
