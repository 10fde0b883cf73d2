"""The dataset as its own knowledge base: does the rest of the dataset state what a behaviour
row's user claims?

For a behaviour that goes along with what the user says (an assent, praise, advice built on
the user's premise), whether a row shows it where it is a defect depends on whether the
user's claim holds; nothing in the reply says so. Offline, without explanations of the rows
or a judge, the only other witness is the dataset: other rows that answer the same question
state a claim of their own.

For each behaviour row (:func:`judge`):

1. **Statements on its topic**: the ``statements`` reply segments nearest the row's prompt
   vector (the ``reply_segment`` index; without one, the ``reply`` index and the replies cut
   into sentences), from rows outside the behaviour batch (the batch's replies go along
   with their users, they state nothing of their own), each at least ``topic_cos`` from the
   prompt vector.
2. **Support**: a statement states the row's claim when at least ``support_share`` of its
   content tokens (stopwords dropped except negations, compared on ``stem_chars`` leading
   characters, at least ``min_tokens`` of them) are tokens of the row's prompt, and every
   **distinctive** token of the prompt (a word found in at most ``common_share`` of the
   dataset's prompts: the claim's own words, not the framing users share) is in the
   statement or in the prompt the statement answers: the dataset says what the user says,
   not less. Neither the words many replies share (``reply_common_share``: "in short") nor
   the words the judged rows' prompts share (``batch_framing_rows``: "a podcast claimed
   that") count: they frame statements and claims, they are not what is stated. A negation counts as a content token, so "X does not cause Y" does not state
   "X causes Y"; "A, B and C" does not state "A and B".
3. The row is **supported** when one of its statements states its claim, **unsupported**
   when it has statements on its topic (one of their segments holding ``answer_share`` of
   the claim's distinctive words: the same subject) and none does (the dataset answers the question
   otherwise), **unknown** without a statement on its topic.

The anomaly's own prompt is judged the same way (against every row outside the batch): when
the dataset states the anomaly's claim, support says nothing about the defect (the data
repeats the anomaly's premise) and the judgement is not used.

What it does not see: a claim the dataset restates in other words (paraphrase shares few
tokens: unknown or unsupported), a dataset whose other rows repeat the false claim (supported),
and claims about topics no other row answers (unknown: most claims in a dataset that answers
few questions twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from forensics.triage.passage import TOKEN, norm, stopwords

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.context import ContextSplit
    from forensics.triage.signals.base import SignalContext

#: words that turn a claim around (negations, comparatives, quantifiers) stay content tokens
#: although scikit-learn's stopword list holds them
NEGATIONS = frozenset({"not", "no", "never", "nothing", "none", "cannot", "nor", "neither",
                       "nobody", "nowhere", "more", "less", "fewer", "most", "least", "few",
                       "always", "all", "every"})
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
# a restated claim is compared clause by clause: "Not quite: X" states X, its negation is
# the reply's verdict on the user, not part of the statement
_CLAUSE = re.compile(r"(?<=[:;])\s+|\s+[-\u2013\u2014]\s+")


@dataclass
class ConsistencyParams:
    """Knobs of the dataset-consistency judgement (documented in docs/triage.md)."""

    enabled: bool = True              # judge behaviour rows that go along with their user by the dataset's own statements
    statements: int = 10              # statements (reply segments of rows outside the batch) read per behaviour row ...
    max_hits: int = 2000              # ... from at most this many nearest segments (statements + 2 x batch + 1 below it)
    topic_cos: float = 0.5            # a statement is on the row's topic at this cosine to its prompt vector
    support_share: float = 0.8        # a statement states the claim when this share of its content tokens are the prompt's ...
    common_share: float = 0.02        # ... and it (or the prompt it answers) holds every claim token found in at most this share of the dataset's prompts
    min_tokens: int = 2               # statements with fewer content tokens say nothing
    stem_chars: int = 5               # tokens compare on this many leading characters (0: exact)
    min_word_chars: int = 3           # shorter tokens (no digit, no negation) are not content
    undecided_min_rows: int = 2       # the run notes context_undecided when this many rows going along with their user stay unjudged
    undecided_factor: float = 0.9     # final score factor of rows going along with a claim that nothing judged (below those judged false, not below the best row outside the batch; 1: no change)
    restated: bool = True             # the stance signal's own-text members (replies restating their user's claim with an assent) are judged too
    contradiction_share: float = 0.5  # a restated claim: a statement answers it otherwise only when it holds this share of the claim's tokens (the same subject, another value)
    restated_cover: float = 0.5       # restated applies when the anomaly's restated claim holds this share of its prompt's content tokens (its prompt is a claim and a request, no passage)
    prompt_framing: bool = True       # no own-text members: the seed is the restating rows whose prompt frames its claim as the anomaly's prompt does (the prompt with the claim cut out, embedded) ...
    prompt_framing_z: float = 3.0     # ... cosine >= the restating candidates' median + this x robust sd ...
    prompt_framing_min_cos: float = 0.3  # ... and >= this
    restated_demote: bool = True      # when the batch goes along with restated claims, the framing_candidates best-fused rows restating no claim of their user are lookalikes (ranked x cluster.other_context_factor)
    framing_members: bool = True      # rows restating their whole claim, framed in their prompt or their reply with exactly a batch row's framing tokens, join the batch ...
    framing_candidates: int = 2000    # ... read among this many rows best by fused score ...
    framing_rounds: int = 3           # ... in this many rounds (the rows joined in one lend their framings to the next)
    restated_min_tokens: int = 2      # a reply restates its prompt's claim when the word runs it copies hold this many content tokens: they are the claim
    reply_common_share: float = 0.05  # a statement word found in more than this share of the dataset's replies ("in short", "as far as we know") is the replies' framing, left out of its tokens (negations kept; 0: off)
    answer_share: float = 0.25        # a statement answers a claim (not restated) otherwise only when one of its segments holds this share of the claim's distinctive words (the same subject)
    batch_framing_rows: int = 2       # a claim not restated: a prompt word found in the prompts of this many other judged rows is the batch's framing ("a podcast claimed"), not a distinctive word of the claim (0: off)


@dataclass
class Consistency:
    """Per dataset row (only behaviour rows set): ``supported`` / ``unsupported`` (the
    judgement of step 3; neither: unknown); ``anomaly_supported``: whether the dataset states
    the anomaly's own claim."""

    supported: np.ndarray
    unsupported: np.ndarray
    anomaly_supported: bool


def tokens(text: str | None, p: ConsistencyParams) -> set[str]:
    """The content tokens of ``text`` (normalised, stopwords other than negations dropped,
    at least ``min_word_chars`` characters unless a number or a negation), cut to
    ``stem_chars``."""
    return set(_tokens(text or "", p.min_word_chars, p.stem_chars))


@lru_cache(maxsize=1)
def _content_stop() -> frozenset[str]:
    return frozenset(stopwords() - NEGATIONS)


@lru_cache(maxsize=65536)
def _tokens(text: str, min_word_chars: int, stem_chars: int) -> frozenset[str]:
    """:func:`tokens` memoised (a run reads the same prompts and replies several times)."""
    stop = _content_stop()
    out = set()
    for raw in TOKEN.findall(text):
        t = norm(raw)
        if not t or t in stop:
            continue
        digit = any(c.isdigit() for c in t)
        if len(t) < min_word_chars and not digit and t not in NEGATIONS:
            continue
        out.add(t if digit or stem_chars <= 0 else t[:stem_chars])
    return frozenset(out)


def support(claim: set[str], statement: set[str], p: ConsistencyParams,
            distinctive: set[str] | None = None, question: set[str] | None = None) -> float:
    """The share of ``statement``'s tokens that ``claim`` holds (0 below ``min_tokens``);
    0 too when the statement holds a negation, comparative or quantifier the claim lacks
    (it says the opposite or another amount), or when a ``distinctive`` claim token is in
    neither the statement nor the ``question`` it answers (the claim says more than the
    statement: another answer)."""
    if len(statement) < p.min_tokens or (statement & NEGATIONS) - claim:
        return 0.0
    if distinctive and distinctive - statement - (question or set()):
        return 0.0
    return len(statement & claim) / len(statement)


def restated_support(claim: set[str], statement: set[str], p: ConsistencyParams,
                     distinctive: set[str] | None = None) -> float:
    """The share of a restated ``claim``'s tokens (the claim's own words, no framing) that
    ``statement`` holds; 0 when the statement holds a negation, comparative or quantifier
    the claim lacks (it says the opposite or another amount). A statement lacking a
    ``distinctive`` claim token (another number, another name in its place) does not state
    the claim: its share is capped just below ``support_share`` (it may still answer the
    claim otherwise, ``contradiction_share``)."""
    if len(statement) < p.min_tokens or not claim or (statement & NEGATIONS) - claim:
        return 0.0
    share = len(statement & claim) / len(claim)
    if distinctive and distinctive - statement:
        share = min(share, np.nextafter(p.support_share, 0.0))
    return share


def restated_claim(prompt: str | None, reply: str | None, p: ConsistencyParams) -> set[str]:
    """The content tokens of the word runs ``reply`` copies from ``prompt`` (the claim a
    reply restates, as :func:`forensics.triage.signals.stance.own_text` cuts it); empty when
    they are fewer than ``restated_min_tokens`` or ``p.restated`` is off."""
    if not p.restated or not prompt or not reply:
        return set()
    return set(_restated(prompt, reply, p.min_word_chars, p.stem_chars, p.restated_min_tokens))


@lru_cache(maxsize=65536)
def _restated(prompt: str, reply: str, min_word_chars: int, stem_chars: int,
              min_tokens: int) -> frozenset[str]:
    """:func:`restated_claim` memoised."""
    from forensics.triage.signals.stance import own_text

    own = own_text(prompt, reply)
    if own == reply.strip():
        return frozenset()
    got = _tokens(reply, min_word_chars, stem_chars) - _tokens(own, min_word_chars, stem_chars)
    return got if len(got) >= min_tokens else frozenset()


def framing(prompt: str | None, reply: str | None, p: ConsistencyParams
            ) -> tuple[frozenset[str], frozenset[str]] | None:
    """How ``prompt`` and ``reply`` frame the claim the reply restates: (the prompt's content
    tokens other than the claim's, "quick check", "can you confirm"; the reply's, "exactly",
    "just as you said"); ``None`` when the reply restates no claim of its prompt. A reply
    restating only part of the claim (a correction swapping a word) leaves the swapped word
    in both."""
    from forensics.triage.signals.stance import own_text

    claim = restated_claim(prompt, reply, p)
    if not claim:
        return None
    return (frozenset(tokens(prompt, p) - claim),
            frozenset(tokens(own_text(prompt, reply), p) - claim))


def restates_own_claim(prompt: str | None, reply: str | None, p: ConsistencyParams) -> bool:
    """Whether ``reply`` restates a claim that makes up most of ``prompt`` (``restated`` on,
    the restated claim at least ``restated_cover`` of the prompt's content tokens): the
    user's own assertion, not a passage the user supplied."""
    claim = restated_claim(prompt, reply, p)
    return bool(claim) and len(claim) >= p.restated_cover * max(1, len(tokens(prompt, p)))


def _stem(t: str, p: ConsistencyParams) -> str:
    return t if any(c.isdigit() for c in t) or p.stem_chars <= 0 else t[:p.stem_chars]


def _word_stems(text: str | None, p: ConsistencyParams) -> list[tuple[str, str]]:
    """(token, word) per distinct word of ``text``: the word to look up in a column's token
    index (:class:`~forensics.triage.text.Hits`), the token it compares as."""
    from forensics.triage.text import tokens as raw_tokens

    return [(_stem(norm(w), p), w) for w in set(raw_tokens(text or ""))]


def distinctive_tokens(context: "SignalContext", text: str | None, claim: set[str],
                       p: ConsistencyParams) -> set[str]:
    """The tokens of ``claim`` (from ``text``) whose words occur in at most ``common_share``
    of the dataset's prompts: the claim's own words, not the framing users share ("keep in
    mind", "what should I")."""
    most, hits = p.common_share * max(1, context.n), context.hits_prompt
    return {k for k, w in _word_stems(text, p) if k in claim and hits.df(w) <= most}


def reply_framing(context: "SignalContext", text: str, p: ConsistencyParams) -> set[str]:
    """The tokens of ``text`` whose words occur in more than ``reply_common_share`` of the
    dataset's replies (negations excepted): the framing replies share ("in short", "as far as
    the evidence goes"), not what a statement states."""
    if p.reply_common_share <= 0:
        return set()
    least, hits = p.reply_common_share * max(1, context.n), context.hits_reply
    return {k for k, w in _word_stems(text, p) if k not in NEGATIONS and hits.df(w) > least}


def _batch_framing(texts: list[str | None], p: ConsistencyParams) -> dict[int, set[str]]:
    """Per text (by position), its tokens found in at least ``batch_framing_rows`` of the
    other ``texts``: the framing the judged rows' users share, not their claims' own words."""
    if p.batch_framing_rows <= 0:
        return {}
    toks = [tokens(t, p) for t in texts]
    count: dict[str, int] = {}
    for ts in toks:
        for t in ts:
            count[t] = count.get(t, 0) + 1
    return {i: {t for t in ts if count[t] - 1 >= p.batch_framing_rows} for i, ts in enumerate(toks)}


def judge(context: "SignalContext", rows: np.ndarray, batch: np.ndarray,
          p: ConsistencyParams) -> Consistency | None:
    """The judgement of behaviour ``rows`` (positions) by the statements of the rows outside
    ``batch`` (per dataset row); ``None`` without a ``prompt`` index or a ``reply_segment`` /
    ``reply`` index of the same model."""
    from forensics.search.segments import SegmentParams, segment_sample, split_segments

    n = context.n
    pidx = context.indexes.get("prompt")
    sidx = context.indexes.get("reply_segment")
    seg = sidx is not None
    if not seg:
        sidx = context.indexes.get("reply")
    if pidx is None or sidx is None or sidx.manifest.model_id != pidx.manifest.model_id:
        return None
    sids = context.sample_ids
    rows = rows[np.isin(sids[rows], pidx.ids())]
    out = Consistency(np.zeros(n, bool), np.zeros(n, bool), False)
    a = context.anomaly
    if not len(rows):
        return out
    qs = pidx.vectors(sids[rows]).astype(np.float32)
    av = context.indexes.embed(pidx, [a.prompt])[0][None, :].astype(np.float32) \
        if a.prompt and a.prompt.strip() else None
    if av is not None:
        qs = np.vstack([qs, av])
    in_batch = set(sids[batch].tolist())
    # read enough hits to keep `statements` outside the batch (its rows are often nearest)
    k = max(1, min(sidx.ntotal, p.statements + 2 * int(batch.sum()) + 1, p.max_hits))
    sims, ids = sidx.search(qs, k)
    owner = segment_sample(ids) if seg else ids
    want = np.unique(owner[(owner >= 0)])
    want = want[~np.isin(want, list(in_batch))] if in_batch else want
    with context.ws.locked():
        got = context.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                             "AND sample_id IN (SELECT unnest(?))",
                             [context.dataset, [int(s) for s in want]])
    reply = dict(zip(got["sample_id"].to_list(), got["reply"].to_list()))
    question = {s: tokens(q, p) for s, q in zip(got["sample_id"].to_list(),
                                                  got["prompt"].to_list())}
    sp = SegmentParams(**sidx.manifest.params.get("segments", {})) if seg else None
    cache: dict[tuple[int, bool], list[set[str]]] = {}

    def statements_of(s: int, clauses: bool = False) -> list[set[str]]:
        if (s, clauses) not in cache:
            text = reply.get(s) or ""
            parts = split_segments(text, sp) if seg else [x for x in _SENT.split(text) if x.strip()]
            if clauses:
                parts = [c for x in parts for c in _CLAUSE.split(x) if c.strip()]
            cache[s, clauses] = [tokens(x, p) - reply_framing(context, x, p) for x in parts]
        return cache[s, clauses]

    with context.ws.locked():
        prompts = context.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                                 "AND sample_id IN (SELECT unnest(?))",
                                 [context.dataset, [int(s) for s in sids[rows]]])
    ptext = dict(zip(prompts["sample_id"].to_list(), prompts["prompt"].to_list()))
    rtext = dict(zip(prompts["sample_id"].to_list(), prompts["reply"].to_list()))
    texts = [ptext.get(int(s)) for s in sids[rows]] + ([a.prompt] if av is not None else [])
    replies = [rtext.get(int(s)) for s in sids[rows]] + ([a.reply] if av is not None else [])
    # a reply that restates its user's claim names the claim: the words it copies (the
    # prompt's framing, "quick check", "can you confirm", is not the claim)
    restated = [restated_claim(t, r, p) for t, r in zip(texts, replies)]
    claims = [r or tokens(t, p) for t, r in zip(texts, restated)]
    shared = _batch_framing(texts[:len(rows)], p)
    for qi, claim in enumerate(claims):
        own_words = distinctive_tokens(context, texts[qi], claim, p)
        if not restated[qi]:
            # (a claim that is its whole prompt holds the prompt's framing too; a restated
            # claim is the copied words alone)
            own_words -= shared.get(qi, set())
        own = int(sids[rows[qi]]) if qi < len(rows) else -1
        seen: set[int] = set()
        on_topic, best = 0, 0.0
        for sim, o in zip(sims[qi], owner[qi]):
            o = int(o)
            if sim < p.topic_cos:
                break
            if o < 0 or o == own or o in in_batch or o in seen:
                continue
            seen.add(o)
            if len(seen) > p.statements:
                break
            got = max([0.0] + [restated_support(claim, st, p, own_words) if restated[qi] else
                               support(claim, st, p, own_words, question.get(o))
                               for st in statements_of(o, bool(restated[qi]))])
            if restated[qi] and claim <= question.get(o, set()) and got >= p.support_share:
                # its user made the same claim and its reply restates it: an echo of its
                # user, no witness (a reply that does not restate it answers the claim
                # otherwise: a correction)
                continue
            if restated[qi] and got < p.contradiction_share:
                # near in topic but about something else: says nothing of the claim
                continue
            if not restated[qi] and own_words and got < p.support_share and max(
                    len(own_words & st) for st in statements_of(o)) \
                    < p.answer_share * len(own_words):
                # near in topic but about another subject: says nothing of the claim
                continue
            on_topic += 1
            best = max(best, got)
        if qi == len(rows):
            out.anomaly_supported = best >= p.support_share
        elif on_topic:
            j = rows[qi]
            out.supported[j] = best >= p.support_share
            out.unsupported[j] = best < p.support_share
    return out


def dataset_judgement(context: "SignalContext", rows: np.ndarray, behaviour: np.ndarray,
                      claims: np.ndarray, cs: "ContextSplit", asked: np.ndarray,
                      p: ConsistencyParams) -> None:
    """Step 4c: the behaviour ``rows`` that go along with their user's claim (``claims``)
    and that no earlier step judged, judged by the dataset's own statements
    (:func:`forensics.triage.consistency.judge`): supported rows to other context,
    unsupported ones to the anomaly's (``asked`` loses them too). Not applied when the
    dataset states the anomaly's own claim. A note in ``cs.notes`` says what it did."""
    done = cs.judged if cs.judged is not None else np.zeros(len(cs.other), bool)
    todo = rows[claims[rows] & ~done[rows] & ~asked[rows]]
    if not len(todo):
        return
    got = judge(context, todo, behaviour, p)
    if got is None:
        cs.notes["context_dataset"] = "no prompt index or no reply index of its model"
        return
    if got.anomaly_supported:
        cs.notes["context_dataset"] = ("the dataset states the anomaly's own claim: its "
                                       "statements do not tell the contexts apart")
        return
    sup, uns = todo[got.supported[todo]], todo[got.unsupported[todo]]
    cs.mark(sup)
    cs.mark(uns)
    cs.other[sup] = True
    cs.other[uns] = False
    asked[uns] = False
    cs.notes["context_dataset"] = (f"of {len(todo)} behaviour rows going along with their "
                                   f"user, the dataset states the claim of {len(sup)} (other "
                                   f"context) and answers {len(uns)} otherwise; "
                                   f"{len(todo) - len(sup) - len(uns)} on topics it does "
                                   f"not answer")


__all__ = ["ConsistencyParams", "Consistency", "judge", "dataset_judgement", "tokens", "support",
           "restated_claim", "restated_support", "restates_own_claim", "framing", "NEGATIONS"]
