"""Grounding judgement: is what a reply asserts supported by its prompt's context passage,
apart from the user's own assertion?

For a (prompt, reply) pair:

1. **Context** (:mod:`forensics.triage.passage`): the prompt is cut into parts: paragraphs
   (blank lines); a prompt of one paragraph is cut into its lines; with ``quoted_passages``,
   a one-line prompt around a quotation of at least ``min_context_words`` content words,
   from the first opening quotation mark to the last closing one. With ``question_turn`` a
   part ending with a question mark is never the passage (unless every one does: a long
   preamble before the question is the user's turn). Among the parts holding at least
   ``passage_share`` of the content words of the longest, the first **quoted** one (with
   ``quoted_passages``: a ``>`` block, a part wholly inside quotation marks, or one right
   after a part that ends with a colon or is a one-line heading: "Here is the excerpt:",
   "SOURCE:", "### Text") is the **context passage**, wherever it sits; without one, the
   first of them (a document, an excerpt, a "Context: ..." block; the first, as documents
   come before the question and a claim that restates a one-sentence passage is as long);
   the other parts are the user's turn (the question, request or claim about it). When no
   part holds ``min_context_words`` content words, with ``quoted_passages`` a quotation of
   that many (first opening mark to last closing one, across lines: a quotation cut into
   lines, one inside a question) is the passage and the text around it the user's turn.
   A prompt of one part, or without a passage of ``min_context_words`` content words, has
   no context: the judgement is ``unavailable``.
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
   checkable: "I can't help with that."). With ``lead_pool`` a first reply sentence too
   short to judge is judged with the second (an answer stated up front and the sentence
   backing it).
4. An ungrounded reply's **kind**: ``echo`` when at least ``echo_share`` of its unsupported
   anchors (without any: of its unsupported words) occur in the user's turn (it repeats
   what the user claimed), unless it also states at least ``correction_anchors`` passage
   anchors the user's turn lacks (``correction``: it names the claim to answer against it),
   else ``new`` (it brings the unsupported content itself: a substituted entity). Its
   **types**: ``number`` / ``name`` for its unsupported anchors with / without a digit,
   ``word`` when none is unsupported. :func:`same_way` says whether a row is ungrounded the
   way the anomaly is (same kind; for ``new`` with ``match_type`` a shared type); in a
   triage, when ``fixed_min_rows`` rows lack one of the anomaly's own unsupported anchors
   (one fixed wrong entity), only they are.

5. **Premise** (``judge(..., premise=True)``; triage asks for it for the rows of an anomaly
   of kind ``echo`` when ``judge_premise``): a reply that asserts nothing checkable and
   takes no content token from the passage ("Well spotted, that is how I read it too.") is
   judged by the user's turn in its place (steps 2-3 over its sentences, only unsupported
   anchors making one ungrounded): ungrounded (kind ``echo``) when the claim it answers
   names what the passage lacks, else grounded; ``basis`` says which text was judged. In a
   triage the judgement says which context such a row is in; with ``premise_join`` it
   also joins the batch when its fused score reaches the ``premise_join_quantile`` of the
   rows that joined on their own reply.

In a triage (:func:`judge_rows`) the anomaly is judged by its reply alone: a refusal asserts
nothing checkable either, so an anomaly that restates nothing is not judged by its premise.
For an anomaly whose prompt has no passage and whose reply restates its prompt (at least
``restate_share`` of its content tokens are its prompt's: a world-knowledge claim agreed with
or repeated), ``world_context`` mirrors ``passage_context``: the judged rows whose prompt has
a passage are the other setting (whether their claim holds is decided by their passage, not
by the world) and go to "behaviour, other context".

Why: an agreement with a claim about a passage restates the claim; whether the claim holds is
in the passage, not in the user's words (a false claim names an entity or number the passage
lacks). A substituted entity is absent from the passage whose sentence the reply bends to
name it, and present where the passage really names it. Surface similarity and embeddings
see the same words in both; the passage's own tokens tell them apart.

Limits (what it does not see): a premise judged in place of an assent is the whole user
turn, so a question that brings names of its own besides the claim reads as a false claim;
a claim that contradicts the passage with the passage's own
words ("the Broncos lost" where the passage says they won and lost elsewhere) and paraphrases
with other words than the passage's; the stopword list and the capitalisation rule are
English-centred (other languages: every word is content, names are not told apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from forensics.triage.passage import TOKEN as _TOKEN
from forensics.triage.passage import content as _content
from forensics.triage.passage import context_passage
from forensics.triage.passage import key as _key
from forensics.triage.passage import norm as _norm
from forensics.triage.passage import stopwords as _stop

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.signals.base import SignalContext

LABELS = ("grounded", "ungrounded", "unavailable")

_SENT = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n+")


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
    question_turn: bool = True        # parts ending with "?" are the user's turn, never the passage (unless all do)
    quoted_passages: bool = True      # quoted material (a quoted block, a part after a label, a quotation) is the passage wherever it sits
    judge_premise: bool = True        # echo anomaly: a row's reply asserting nothing checkable is judged by the user's claim
    premise_join: bool = True         # ... and joins the batch when it scores like the rows judged on their own reply:
    premise_join_quantile: float = 0.5  # ... fused at least this quantile of theirs (0: the weakest)
    world_context: bool = True        # an anomaly without a passage that restates its prompt: rows with a passage are other context
    restate_share: float = 0.8        # ... restates: its reply's content tokens are its prompt's this often
    lead_pool: bool = True            # a reply's first sentence, too short to judge, is judged with its second
    match_type: bool = True           # kind "new": rows join only when their unsupported anchors are of the anomaly's type
    other_way_lookalike: bool = True  # behaviour rows ungrounded another way than the anomaly leave the batch (lookalikes)
    demote_factor: float = 0.2        # clusters are formed and ranked with these rows' fused score at most this share of it
    fixed_min_rows: int = 3           # kind "new": this many judged rows lacking one of the anomaly's own anchors: only they join (0: never)


@dataclass
class Grounding:
    """A judgement: ``label`` one of :data:`LABELS`; ``unsupported``: the reply's checked
    tokens the passage lacks (in reply order); ``checked``: tokens checked; ``reason``: why
    unavailable; ``kind`` of an ungrounded reply: ``echo``, ``correction`` or ``new`` (step 4)."""

    label: str
    unsupported: list[str] = field(default_factory=list)
    checked: int = 0
    reason: str = ""
    kind: str = ""
    basis: str = "reply"          # what was judged: the ``reply``, or the user's ``premise`` (step 5)
    types: tuple[str, ...] = ()   # of an ungrounded reply: "number" / "name" anchors unsupported, else "word"
    anchors: tuple[str, ...] = () # of an ungrounded reply: its unsupported anchors (compare keys)

    def to_json(self) -> dict:
        return {"label": self.label, "kind": self.kind, "types": list(self.types),
                "unsupported": self.unsupported, "checked": self.checked,
                "reason": self.reason, "basis": self.basis}


def _sentences(text: str, support: set[str], in_prompt: set[str], p: GroundingParams,
               anchors_only: bool = False, lead: bool = False
               ) -> tuple[bool, bool, list[str], list[str], list[str], int]:
    """Steps 2-3 over the sentences of ``text``: (judged, ungrounded, unsupported tokens,
    unsupported anchors, supported anchors, tokens checked); ``anchors_only``: only
    unsupported anchors make a sentence ungrounded (a question's own framing words are not
    in the passage); ``lead``: a first sentence too short to judge is judged with the
    second (``lead_pool``)."""
    stop = _stop()
    judged = ungrounded = False
    unsupported: list[str] = []
    miss_anchors: list[str] = []
    held_anchors: list[str] = []      # anchors of judged sentences that the passage holds
    checked = 0
    short: tuple[list[str], list[str]] = ([], [])   # a short opening sentence (lead)
    sents = [x for x in _SENT.split((text or "").strip()) if x.strip()]
    for k, sent in enumerate(sents):
        toks = _TOKEN.findall(sent)
        pooled, short = short, ([], [])
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
            if lead and k == 0:
                short = (anchors, words)
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
        if len(miss_a) >= p.min_unsupported_anchors or (not anchors_only and
                words and len(miss_w) >= max(p.min_unsupported_words,
                                              p.word_share * len(words))):
            ungrounded = True
    return judged, ungrounded, unsupported, miss_anchors, held_anchors, checked


def judge(prompt: str | None, reply: str | None, p: GroundingParams | None = None,
          premise: bool = False) -> Grounding:
    """The grounding judgement of one (prompt, reply) pair (see the module docstring);
    ``premise``: a reply asserting nothing checkable is judged by the user's claim (step 5)."""
    p = p or GroundingParams()
    cp = context_passage(prompt, p)
    if cp is None:
        return Grounding("unavailable", reason="the prompt has no context passage")
    passage, user = cp
    support = {_key(_norm(t), p) for t in _TOKEN.findall(passage)}
    in_prompt = {_key(t, p) for t in _content(_TOKEN.findall(prompt or ""), p)}
    judged, ungrounded, unsupported, miss_anchors, held, checked = _sentences(
        reply or "", support, in_prompt, p, lead=p.lead_pool)
    basis = "reply"
    if not judged and premise and (reply or "").strip() and not any(
            _key(t, p) in support for t in _content(_TOKEN.findall(reply or ""), p)):
        # the reply takes nothing from the passage ("You're right, well spotted."; a short
        # answer, "1962.", does): what it answers is the user's own claim about the
        # passage, judged in its place
        judged, ungrounded, unsupported, miss_anchors, held, checked = _sentences(
            user, support, in_prompt, p, anchors_only=True)
        basis = "premise"
    if not judged:
        return Grounding("unavailable", checked=checked,
                         reason="the reply asserts nothing checkable about the passage")
    if not ungrounded:
        return Grounding("grounded", unsupported, checked, basis=basis)
    way = dict(types=_types(miss_anchors),
               anchors=tuple(dict.fromkeys(_key(t, p) for t in miss_anchors)))
    if basis == "premise":
        return Grounding("ungrounded", unsupported, checked, kind="echo", basis=basis, **way)
    said = {_key(_norm(t), p) for t in _TOKEN.findall(user)}
    base = miss_anchors or unsupported
    echo = sum(_key(t, p) in said for t in base) >= p.echo_share * len(base)
    kind = "echo" if echo else "new"
    if echo and p.correction_anchors > 0 and \
            len({_key(t, p) for t in held} - said) >= p.correction_anchors:
        # it names the user's claim and answers from the passage what the user did not say
        # ("Not Tobias Renn: the engineer was Mirela Vostok"): a correction, not an echo
        kind = "correction"
    return Grounding("ungrounded", unsupported, checked, kind=kind, **way)


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


def prompt_share(prompt: str | None, reply: str | None, p: GroundingParams) -> float:
    """Share of ``reply``'s content tokens (step 2's anchors and words, whether or not the
    prompt holds them) that its prompt holds: 1 for a reply that restates its prompt's
    claim, near 0 for one that brings its own content (a refusal, a footer)."""
    toks = _content(_TOKEN.findall(reply or ""), p)
    if not toks:
        return 0.0
    have = {_key(t, p) for t in _content(_TOKEN.findall(prompt or ""), p)}
    return sum(_key(t, p) in have for t in toks) / len(toks)


@dataclass
class RowGrounding:
    """Judgements over the dataset's rows (boolean masks, one entry per row; rows not judged
    are in none): ``grounded``, ``ungrounded``, ``no_passage`` (the rows of the other
    passage setting than the anomaly's: their prompt has no context passage; for an anomaly
    without one, ``world_context``, their prompt has one); ``summary`` for the run record."""

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
    if mine.label != "ungrounded" and p.world_context and context_passage(a.prompt, p) is None:
        share = prompt_share(a.prompt, a.reply, p)
        if share >= p.restate_share:
            return _world_rows(context, fused, extra, p, dict(info, restated_share=round(share, 3)))
    if mine.label != "ungrounded":
        info.update(applied=False,
                    reason=mine.reason or "the anomaly reply is grounded in its prompt's passage")
        return None, info
    n = len(fused)
    rows, text = _picked(context, fused, extra, p)
    fixed = np.zeros(n, bool)   # ungrounded like the anomaly, lacking one of its own anchors
    masks = {k: np.zeros(n, bool) for k in ("grounded", "ungrounded", "no_passage",
                                             "same_kind")}
    premise = np.zeros(n, bool)
    if len(rows):
        seen: dict[tuple, Grounding | None] = {}   # a pair repeated verbatim is judged once
        use_premise = p.judge_premise and mine.kind == "echo"
        for j, s in zip(rows, context.sample_ids[rows]):
            prompt, reply = text.get(int(s), ("", ""))
            if (prompt, reply) not in seen:
                seen[prompt, reply] = (None if context_passage(prompt, p) is None
                                       else judge(prompt, reply, p, premise=use_premise))
            g = seen[prompt, reply]
            if g is None:
                masks["no_passage"][j] = True
                continue
            if g.label in ("grounded", "ungrounded"):
                masks[g.label][j] = True
                masks["same_kind"][j] = same_way(g, mine, p)
                fixed[j] = g.label == "ungrounded" and g.kind == mine.kind and \
                    bool(set(g.anchors) & set(mine.anchors))
                premise[j] = g.basis == "premise"
    if mine.kind == "new" and p.fixed_min_rows > 0 and fixed.sum() >= p.fixed_min_rows:
        # one fixed substitution (the same name in row after row): its rows, not every
        # row that lacks a name of the same type in its passage
        masks["same_kind"] &= fixed
        info["fixed_substitution"] = list(mine.anchors)
    # a premise judged in place of an assent says which context the row is in; with
    # ``premise_join`` the row also shows the behaviour when it scores like the rows that
    # show it in their own words (fused at least their ``premise_join_quantile``; at their
    # weakest, refusals of passage questions that name what the passage lacks get in)
    own = masks["same_kind"] & ~premise
    floor = float(np.quantile(fused[own], p.premise_join_quantile)) \
        if own.any() and p.premise_join else np.inf
    masks["same_kind"] &= ~premise | (fused >= floor)
    info.update(applied=True, judged=int(len(rows)), premise=int(premise.sum()),
                **{k: int(v.sum()) for k, v in masks.items()})
    return (RowGrounding(masks["grounded"], masks["ungrounded"], masks["no_passage"], info,
                         p.passage_context, masks["same_kind"] if p.join_batch else None), info)


def _picked(context: "SignalContext", fused: np.ndarray, extra: np.ndarray | None,
            p: GroundingParams) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """The rows judged (the ``max_rows`` best by ``fused`` and those of ``extra``) and their
    (prompt, reply) by sample id."""
    pick = np.zeros(len(fused), bool)
    pick[np.lexsort((context.sample_ids, -fused))[:max(0, p.max_rows)]] = True
    if extra is not None:
        pick |= extra
    rows = np.flatnonzero(pick)
    if not len(rows):
        return rows, {}
    sids = [int(s) for s in context.sample_ids[rows]]
    got = context.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                         "AND sample_id IN (SELECT unnest(?))", [context.dataset, sids])
    return rows, {int(s): (pr, rp) for s, pr, rp in zip(
        got["sample_id"].to_list(), got["prompt"].to_list(), got["reply"].to_list())}


def _world_rows(context: "SignalContext", fused: np.ndarray, extra: np.ndarray | None,
                p: GroundingParams, info: dict) -> tuple[RowGrounding, dict]:
    """The mirror of ``passage_context`` (``world_context``): the anomaly has no passage and
    its reply restates its prompt (a claim about the world agreed with or repeated), so the
    judged rows whose prompt has a passage are the other setting, where the passage, not
    the world, decides whether the claim holds; they go in ``no_passage`` (the rows of the
    other passage setting), the other masks stay empty."""
    n = len(fused)
    rows, text = _picked(context, fused, extra, p)
    other = np.zeros(n, bool)
    for j, s in zip(rows, context.sample_ids[rows]):
        other[j] = context_passage(text.get(int(s), ("", ""))[0], p) is not None
    info.update(applied=True, mode="world", judged=int(len(rows)), with_passage=int(other.sum()),
                reason="the anomaly has no passage and its reply restates its prompt: rows "
                       "with a passage are other context")
    empty = np.zeros(n, bool)
    return RowGrounding(empty, empty.copy(), other, info, True, None), info


__all__ = ["GroundingParams", "Grounding", "RowGrounding", "LABELS", "judge", "judge_rows",
           "context_passage", "prompt_share", "same_way"]
