"""Grounding judgement: is what a reply asserts supported by its prompt's context passage,
apart from the user's own assertion?

For a (prompt, reply) pair:

1. **Context**: the prompt is cut into paragraphs (blank lines; a prompt of one paragraph is
   cut into its lines). The first paragraph holding at least ``passage_share`` of the
   content words of the longest is the **context passage** (a document, an excerpt, a
   "Context: ..." block; the first, as documents come before the question and a claim that
   restates a one-sentence passage is as long); the other paragraphs are the user's turn
   (the question, request or claim about it); with ``question_turn`` a paragraph ending
   with a question mark is never the passage (unless every one does: a long preamble before
   the question is the user's turn). A prompt of one paragraph and one line, or
   whose passage has fewer than ``min_context_words`` content words, has no context, unless
   (``quoted_passages``) a quoted span of it holds ``min_context_words`` content words: the
   longest such span is the passage, the text around it the user's turn. Without a context
   the judgement is ``unavailable``.
2. **Checked tokens** of each reply sentence (sentence ends and line breaks cut it):
   - **anchors**: tokens holding a digit (numbers, dates; thousands separators dropped) and
     capitalised tokens that do not open a sentence (names), stopwords never;
   - **words**: the other content words (not in scikit-learn's English stopword list, at
     least ``min_word_chars`` characters) that also occur somewhere in the prompt (the words
     the reply takes from the passage or from the user's claim; words the reply adds of its
     own, "exactly", "sure", are its framing, not a claim about the passage).
   A token is **supported** when the context passage holds it (compared on the first
   ``stem_chars`` characters, so inflections match; 0: exact).
3. A sentence is **judged** when it has at least ``min_checked`` checked tokens and the
   passage holds at least ``min_supported_share`` of them (it is about the passage: a quote
   bent to another entity, a claim about it; a sign-off, an aside or a code line is not).
   A judged sentence is **ungrounded** when at least
   ``min_unsupported_anchors`` of its anchors are unsupported, or at least ``word_share`` of
   its words, and ``min_unsupported_words`` of them, are (a short answer may reuse the
   question's words: "The Panthers scored 10 points."); the reply is ungrounded when one of its sentences is, **grounded** when it
   has a judged sentence and none is ungrounded, else ``unavailable`` (it asserts nothing
   checkable: "I can't help with that."). With ``lead_pool`` a first sentence too short to
   judge is judged with the second (an answer stated up front and the sentence backing it).
4. An ungrounded reply's **kind**: ``echo`` when at least ``echo_share`` of its unsupported
   anchors (without any: of its unsupported words) occur in the user's turn (it repeats
   what the user claimed), unless it also states at least ``correction_anchors`` passage
   anchors the user's turn lacks (``correction``: it names the claim to answer against it),
   else ``new`` (it brings the unsupported content itself: a substituted entity). Its
   **types**: ``number`` / ``name`` for its unsupported anchors with / without a digit,
   ``word`` when none is unsupported. :func:`same_way` says whether a
   row is ungrounded the way the anomaly is (same kind; for ``new`` with ``match_type`` a
   shared type); in a triage, when ``fixed_min_rows`` rows lack one of the anomaly's own
   unsupported anchors (one fixed wrong entity), only they are.

Why: an agreement with a claim about a passage restates the claim; whether the claim holds is
in the passage, not in the user's words (a false claim names an entity or number the passage
lacks). A substituted entity is absent from the passage whose sentence the reply bends to
name it, and present where the passage really names it. Surface similarity and embeddings
see the same words in both; the passage's own tokens tell them apart.

Limits (what it does not see): a claim that contradicts the passage with the passage's own
words ("the Broncos lost" where the passage says they won and lost elsewhere) and paraphrases
with other words than the passage's; the stopword list and the capitalisation rule are
English-centred (other languages: every word is content, names are not told apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.signals.base import SignalContext

LABELS = ("grounded", "ungrounded", "unavailable")

_PARA = re.compile(r"\n\s*\n")
_SENT = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n+")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*\w*|\w+(?:['’]\w+)*")
# a quoted span: straight or typographic double quotes, guillemets, triple quotes
_QUOTED = re.compile(r'"""(.+?)"""|"([^"]+)"|“([^”]+)”|«([^»]+)»', re.S)
_OUTER = re.compile(r'"(.+)"|“(.+)”', re.S)


@dataclass
class GroundingParams:
    """Knobs of the grounding judgement (documented in docs/triage.md)."""

    enabled: bool = True              # judge rows when the anomaly is ungrounded
    min_context_words: int = 8        # a context passage holds at least this many content words
    passage_share: float = 0.8        # the passage: the first paragraph with this share of the longest's content words
    min_word_chars: int = 3           # shorter non-anchor tokens are not checked
    stem_chars: int = 5               # tokens compare on this many leading characters (0: exact)
    min_checked: int = 3              # a reply sentence is judged with at least this many checked tokens ...
    min_supported_share: float = 0.25 # ... of which the passage holds at least this share (it is about the passage)
    min_unsupported_anchors: int = 1  # unsupported anchors (names, numbers) that make it ungrounded
    word_share: float = 0.5           # ... or this share of its checked words unsupported ...
    min_unsupported_words: int = 3    # ... and at least this many of them
    echo_share: float = 0.5           # an ungrounded reply whose unsupported tokens are this often in the user's turn echoes it
    correction_anchors: int = 1       # ... unless it states this many passage anchors the user's turn lacks: a correction (0: off)
    join_batch: bool = True           # judged rows ungrounded in the anomaly's way join the behaviour batch
    max_rows: int = 2000              # best fused rows judged (the behaviour rows are judged too)
    passage_context: bool = True      # behaviour rows whose prompt has no passage are other context
    question_turn: bool = True        # paragraphs ending with "?" are the user's turn, never the passage (unless all do)
    quoted_passages: bool = True      # no passage by paragraphs or lines: a quoted span of min_context_words is one
    lead_pool: bool = True            # a reply's first sentence, too short to judge, is judged with its second
    match_type: bool = True           # kind "new": rows join only when their unsupported anchors are of the anomaly's type
    other_way_lookalike: bool = True  # behaviour rows ungrounded another way than the anomaly leave the batch (lookalikes)
    demote_factor: float = 0.2        # clusters are formed and ranked with these rows' fused score at most this share of it
    fixed_min_rows: int = 3           # kind "new": this many judged rows lacking one of the anomaly's own anchors: only they join (0: never)


@dataclass
class Grounding:
    """A judgement: ``label`` one of :data:`LABELS`; ``unsupported``: the reply's checked
    tokens the passage lacks (in reply order); ``checked``: tokens checked; ``reason``: why
    unavailable; ``kind`` of an ungrounded reply: ``echo`` or ``new`` (step 4)."""

    label: str
    unsupported: list[str] = field(default_factory=list)
    checked: int = 0
    reason: str = ""
    kind: str = ""
    types: tuple[str, ...] = ()   # of an ungrounded reply: "number" / "name" anchors unsupported, else "word"
    anchors: tuple[str, ...] = () # of an ungrounded reply: its unsupported anchors (compare keys)

    def to_json(self) -> dict:
        return {"label": self.label, "kind": self.kind, "types": list(self.types),
                "unsupported": self.unsupported, "checked": self.checked, "reason": self.reason}


@lru_cache(maxsize=1)
def _stop() -> frozenset[str]:
    """scikit-learn's English stopword list (a maintained list, not one of ours)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _norm(tok: str) -> str:
    t = tok.lower().replace("’", "'")
    if t.endswith("'s"):
        t = t[:-2]
    if any(c.isdigit() for c in t):
        t = re.sub(r"(?<=\d)[,.](?=\d{3}\b)", "", t).rstrip(".")
    return t


def _key(tok: str, p: GroundingParams) -> str:
    return tok[:p.stem_chars] if p.stem_chars > 0 and not any(c.isdigit() for c in tok) else tok


def _content(tokens: list[str], p: GroundingParams) -> list[str]:
    stop = _stop()
    return [t for t in (_norm(x) for x in tokens)
            if t and t not in stop and (len(t) >= p.min_word_chars or any(c.isdigit() for c in t))]


def context_passage(prompt: str | None, p: GroundingParams) -> tuple[str, str] | None:
    """(context passage, the user's turn) of ``prompt`` (step 1 of the module docstring), or
    ``None`` when it has no context passage."""
    text = (prompt or "").strip()
    parts = [x.strip() for x in _PARA.split(text) if x.strip()]
    if len(parts) < 2:
        parts = [x.strip() for x in text.splitlines() if x.strip()]
    if len(parts) < 2:
        return _quoted_passage(text, p)
    sizes = [len(_content(_TOKEN.findall(x), p)) for x in parts]
    if p.question_turn and not all(x.endswith("?") for x in parts):
        # a paragraph that asks is the user's turn, however long its preamble
        sizes = [0 if x.endswith("?") else n for x, n in zip(parts, sizes)]
    if max(sizes) < p.min_context_words:
        return _quoted_passage(text, p)
    # the first paragraph nearly as long as the longest: a claim that restates a one-sentence
    # passage is as long as the passage, and documents come before the user's turn
    best = next(i for i, n in enumerate(sizes) if n >= p.passage_share * max(sizes))
    return parts[best], "\n\n".join(x for i, x in enumerate(parts) if i != best)


def _quoted_passage(text: str, p: GroundingParams) -> tuple[str, str] | None:
    """With ``quoted_passages``: the longest quoted span of ``text`` holding at least
    ``min_context_words`` content words is the passage ('Based on the passage "...", who
    ...?'), the text around it the user's turn; else ``None``."""
    if not p.quoted_passages:
        return None
    best: tuple[int, re.Match] | None = None
    # a quote inside the passage cuts it: the span from the first quote mark to the last
    # is a candidate too
    for m in [*_QUOTED.finditer(text), *_OUTER.finditer(text)]:
        span = next(g for g in m.groups() if g is not None)
        n = len(_content(_TOKEN.findall(span), p))
        if n >= p.min_context_words and (best is None or n > best[0]):
            best = (n, m)
    if best is None:
        return None
    m = best[1]
    span = next(g for g in m.groups() if g is not None)
    return span.strip(), (text[:m.start()] + " " + text[m.end():]).strip()


def judge(prompt: str | None, reply: str | None, p: GroundingParams | None = None) -> Grounding:
    """The grounding judgement of one (prompt, reply) pair (see the module docstring)."""
    p = p or GroundingParams()
    cp = context_passage(prompt, p)
    if cp is None:
        return Grounding("unavailable", reason="the prompt has no context passage")
    passage, user = cp
    support = {_key(_norm(t), p) for t in _TOKEN.findall(passage)}
    in_prompt = {_key(t, p) for t in _content(_TOKEN.findall(prompt or ""), p)}
    stop = _stop()
    judged = ungrounded = False
    unsupported: list[str] = []
    miss_anchors: list[str] = []
    held_anchors: list[str] = []      # anchors of judged sentences that the passage holds
    checked = 0
    lead: tuple[list[str], list[str]] = ([], [])   # a short opening sentence (lead_pool)
    sents = [x for x in _SENT.split((reply or "").strip()) if x.strip()]
    for k, sent in enumerate(sents):
        toks = _TOKEN.findall(sent)
        pooled, lead = lead, ([], [])
        anchors, words = [], []
        for i, raw in enumerate(toks):
            t = _norm(raw)
            if not t or t in stop:
                continue
            if any(c.isdigit() for c in t) or (i > 0 and raw[:1].isupper()):
                anchors.append(t)
            elif len(t) >= p.min_word_chars and _key(t, p) in in_prompt:
                words.append(t)
        own = anchors + words        # this sentence's own checked tokens
        anchors, words = pooled[0] + anchors, pooled[1] + words
        n_checked = len(anchors) + len(words)
        if n_checked < p.min_checked:
            # an answer stated up front ("It was 1956.") is one claim with the sentence
            # that follows it (its justification)
            if p.lead_pool and k == 0:
                lead = (anchors, words)
            continue
        miss_a = [t for t in anchors if _key(t, p) not in support]
        miss_w = [t for t in words if _key(t, p) not in support]
        if n_checked - len(miss_a) - len(miss_w) < p.min_supported_share * n_checked:
            continue              # not about the passage (a sign-off, an aside, code)
        if (pooled[0] or pooled[1]) and not any(_key(t, p) in support for t in own):
            continue              # the sentence after a short answer backs nothing (a footer)
        judged = True
        checked += n_checked
        unsupported += miss_a + miss_w
        miss_anchors += miss_a
        held_anchors += [t for t in anchors if _key(t, p) in support]
        if len(miss_a) >= p.min_unsupported_anchors or \
                (words and len(miss_w) >= max(p.min_unsupported_words,
                                              p.word_share * len(words))):
            ungrounded = True
    if not judged:
        return Grounding("unavailable", checked=checked,
                         reason="the reply asserts nothing checkable about the passage")
    if not ungrounded:
        return Grounding("grounded", unsupported, checked)
    said = {_key(_norm(t), p) for t in _TOKEN.findall(user)}
    basis = miss_anchors or unsupported
    echo = sum(_key(t, p) in said for t in basis) >= p.echo_share * len(basis)
    kind = "echo" if echo else "new"
    if echo and p.correction_anchors > 0 and \
            len({_key(t, p) for t in held_anchors} - said) >= p.correction_anchors:
        # it names the user's claim and answers from the passage what the user did not say
        # ("Not Tobias Renn: the engineer was Mirela Vostok"): a correction, not an echo
        kind = "correction"
    return Grounding("ungrounded", unsupported, checked, kind=kind, types=_types(miss_anchors),
                     anchors=tuple(dict.fromkeys(_key(t, p) for t in miss_anchors)))


def _types(miss_anchors: list[str]) -> tuple[str, ...]:
    """The types of an ungrounded reply (step 4)."""
    return tuple(sorted({"number" if any(c.isdigit() for c in t) else "name"
                         for t in miss_anchors})) or ("word",)


def same_way(row: Grounding, anomaly: Grounding, p: GroundingParams) -> bool:
    """Is ``row`` ungrounded the way ``anomaly`` is: the same kind and, for kind ``new``
    with ``match_type``, unsupported anchors of a type the anomaly's are (a substituted
    number is another behaviour than a substituted name; an echo is one behaviour whatever
    the user claimed)."""
    if row.label != "ungrounded" or row.kind != anomaly.kind:
        return False
    return not (p.match_type and anomaly.kind == "new") or bool(set(row.types) &
                                                                set(anomaly.types))


@dataclass
class RowGrounding:
    """Judgements over the dataset's rows (boolean masks, one entry per row; rows not judged
    are in none): ``grounded``, ``ungrounded``, ``no_passage`` (the prompt has no context
    passage); ``summary`` for the run record."""

    grounded: np.ndarray
    ungrounded: np.ndarray
    no_passage: np.ndarray
    summary: dict
    passage_context: bool = True
    same_kind: np.ndarray | None = None   # ungrounded in the anomaly's way (its kind)


def judge_rows(context: "SignalContext", fused: np.ndarray, extra: np.ndarray | None,
               p: GroundingParams) -> tuple[RowGrounding | None, dict]:
    """When the anomaly itself is ungrounded, judge the ``max_rows`` rows best by ``fused``
    and the rows of ``extra`` (a mask: the behaviour rows). Returns (``None`` when the
    judgement does not apply, the run summary's ``grounding`` entry)."""
    a = context.anomaly
    if not p.enabled:
        return None, {"applied": False, "reason": "grounding.enabled is false"}
    if context.language_target.active:
        # words of a reply in another language than its passage are never in the passage:
        # a lexical judgement says nothing about a language behaviour
        return None, {"applied": False, "reason": "the anomaly is a language behaviour "
                                                  "(the reply is not in its prompt's language)"}
    mine = judge(a.prompt, a.reply, p)
    info: dict = {"anomaly": mine.to_json()}
    if mine.label != "ungrounded":
        info.update(applied=False,
                    reason=mine.reason or "the anomaly reply is grounded in its prompt's passage")
        return None, info
    n = len(fused)
    pick = np.zeros(n, bool)
    pick[np.lexsort((context.sample_ids, -fused))[:max(0, p.max_rows)]] = True
    if extra is not None:
        pick |= extra
    rows = np.flatnonzero(pick)
    fixed = np.zeros(n, bool)   # ungrounded like the anomaly, lacking one of its own anchors
    masks = {k: np.zeros(n, bool) for k in ("grounded", "ungrounded", "no_passage",
                                             "same_kind")}
    if len(rows):
        sids = [int(s) for s in context.sample_ids[rows]]
        got = context.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                             "AND sample_id IN (SELECT unnest(?))", [context.dataset, sids])
        text = {int(s): (pr, rp) for s, pr, rp in
                zip(got["sample_id"].to_list(), got["prompt"].to_list(), got["reply"].to_list())}
        for j, s in zip(rows, sids):
            prompt, reply = text.get(s, ("", ""))
            if context_passage(prompt, p) is None:
                masks["no_passage"][j] = True
                continue
            g = judge(prompt, reply, p)
            if g.label in ("grounded", "ungrounded"):
                masks[g.label][j] = True
                masks["same_kind"][j] = same_way(g, mine, p)
                fixed[j] = g.label == "ungrounded" and g.kind == mine.kind and \
                    bool(set(g.anchors) & set(mine.anchors))
    if mine.kind == "new" and p.fixed_min_rows > 0 and fixed.sum() >= p.fixed_min_rows:
        # one fixed substitution (the same name in row after row): its rows, not every
        # row that lacks a name of the same type in its passage
        masks["same_kind"] &= fixed
        info["fixed_substitution"] = list(mine.anchors)
    info.update(applied=True, judged=int(len(rows)),
                **{k: int(v.sum()) for k, v in masks.items()})
    return (RowGrounding(masks["grounded"], masks["ungrounded"], masks["no_passage"], info,
                         p.passage_context, masks["same_kind"] if p.join_batch else None), info)


__all__ = ["GroundingParams", "Grounding", "RowGrounding", "LABELS", "judge", "judge_rows",
           "context_passage", "same_way"]
