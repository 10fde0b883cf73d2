"""The ``opening`` signal: rows whose reply opens the way the anomaly's reply opens, with an
opening that does not answer their own prompt.

1. The **opening** of a reply: its first sentence (cut after ``. ! ?`` before white space or
   at a line break; any length, so "Absolutely." counts, which the segment index's
   ``min_words`` drops).
2. A row scores by ``cos(its opening, the anomaly's opening) - prompt_relation x cos(its
   opening, its own prompt)``, optionally mixed (``explanation_weight``) with the mean cosine
   of its opening to the anomaly's explanations; the best ``k`` rows min-max normalised, other
   rows 0.
3. **Members** (``members``): rows whose raw score is on the upper side of the two-way cut
   of the candidates' scores (:func:`forensics.triage.context.two_way_cut`, when it explains
   at least ``member_separation`` of their variance; an upper side holding more than
   ``member_max_share`` of the dataset's rows is cut two ways again, at most
   ``member_recuts`` times, when that cut too explains ``member_separation`` of its variance
   (:func:`_recut`): a behaviour batch is a minority of a dataset, while the openings many
   replies share, a pleasantry before an answer, score above the rest and below the
   behaviour's; members that do not go along with their user, below, and stay above that
   share are the dataset's own opening style, and none join) and at least ``member_min``, and whose
   whole reply is not about its own prompt (its ``reply`` vector's cosine to its ``prompt``
   vector at most the anomaly's + ``member_reply_margin``), join the behaviour batch
   (``row_evidence["member"]``), like the ``stance`` signal's. Why the last test: a reply
   that opens with a reaction to the user and then answers the question or corrects the
   premise (on the prompt's topic) does something else than going along without taking the
   topic up. When the anomaly's own reply relates to its prompt less than most candidates'
   replies to theirs (its cosine at most their ``along_quantile`` quantile: it builds on what
   the user said rather than answering the question), the members **go
   along** with their user (``row_evidence["along"]``): the context split judges them by the
   dataset's statements and notes the rest as undecided
   (:mod:`forensics.triage.consistency`).

Why: a reply that goes along with what the user asserts (an assent, praise, "makes sense")
says so first, in many wordings, and then builds on the premise without restating it; its
opening is about the user's message, not about the question's topic, while an answer's or a
correction's opening restates the topic. The opening is the position of that behaviour
whatever its words; the prompt relation keeps answers that happen to read alike out.

Applies when the anomaly's reply copies at most ``max_copied`` of its words from its prompt
(a reply restating the claim is the ``stance`` signal's own-text case) and has more than one
sentence (a one-sentence reply is its own opening: the ``reply`` signal covers it), and only
when the opening carries the behaviour: its pick (mean cosine to the anomaly's explanations
minus cosine to the anomaly's prompt, as the segment signal picks its behaviour segment) is
within ``pick_margin`` of the best sentence's (an aside or a footer later in the reply is not
the opening's).
Unavailable without ``prompt`` and ``reply`` indexes built with one model, or for a language
switch (the ``language`` signal covers it).

Cost: the openings of at most ``candidates`` rows are embedded (through the workspace's
embedding cache): every row of a dataset that small, else the rows nearest the anomaly's
opening and reply in the ``reply`` index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register
from forensics.triage.signals.stance import _top_norm, own_text

_SENT_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")


@dataclass
class OpeningParams:
    """Knobs of the opening signal (documented in docs/triage.md)."""

    k: int = 1000                     # best rows that score (min-max normalised)
    candidates: int = 2000            # rows whose openings are embedded (all rows of a dataset this small)
    prompt_relation: float = 0.5      # weight of the opening's cosine to its own prompt (subtracted)
    explanation_weight: float = 0.0   # share of the score from the openings' cosine to the anomaly's explanations
    max_copied: float = 0.3           # applies only when the anomaly reply copies at most this share of its words from its prompt
    max_chars: int = 300              # an opening is cut to this many characters
    pick_margin: float = 0.1          # applies only when the opening's behaviour pick is within this of the reply's best sentence's
    members: bool = True              # rows whose score stands out join the behaviour batch: ...
    member_separation: float = 0.6    # ... the upper side of the two-way cut of the candidates' scores, when it explains this share of their variance ...
    member_min: float = 0.0           # ... and >= this raw score ...
    member_reply_margin: float = 0.2  # ... and whose whole reply's cosine to its own prompt is at most the anomaly's + this (< 0: no such test)
    along_quantile: float = 0.5       # members go along with their user when the anomaly reply's cosine to its prompt is at most this quantile of the candidates'
    min_members: int = 4              # fewer members than this: none
    member_max_share: float = 0.2     # members above this share of the dataset's rows: the upper side is cut two ways again when that cut explains member_separation of its variance ...
    member_recuts: int = 2            # ... at most this many times


def _recut(s: np.ndarray, cut: float, m: np.ndarray, n: int,
           params: OpeningParams) -> tuple[float, np.ndarray, bool]:
    """One more two-way cut of the members' upper side (``s`` >= ``cut``): (cut, members,
    whether it was taken). Taken when the members are more than ``member_max_share`` of the
    ``n`` dataset rows and the upper side splits (``member_separation``) leaving at least
    ``min_members``: a behaviour batch is a minority of a dataset, while the openings many
    replies share (a pleasantry before an answer, a stock refusal) score above the rest and
    below the behaviour's."""
    from forensics.triage.context import two_way_cut

    if m.sum() <= params.member_max_share * n:
        return cut, m, False
    two, sep = two_way_cut(s[s >= cut])
    keep = m & (s >= two)
    if sep < params.member_separation or keep.sum() < params.min_members:
        return cut, m, False
    return max(two, cut), keep, True


def opening(text: str | None, max_chars: int = 300) -> str:
    """The first sentence of ``text`` (stripped, at most ``max_chars`` characters); ``""`` for
    an empty text."""
    t = (text or "").strip()
    if not t:
        return ""
    return _SENT_END.split(t, maxsplit=1)[0].strip()[:max_chars]


@register
class OpeningSignal:
    """Rows whose reply opening is like the anomaly's and unlike their own prompt (see the
    module docstring). ``row_evidence["cos"]``: the raw combined score (0 outside the
    candidates)."""

    name = "opening"
    default_weight = 0.15
    Params = OpeningParams

    def score(self, context: SignalContext, params: OpeningParams
              ) -> SignalScores | Unavailable:
        a = context.anomaly
        if not (a.prompt and a.prompt.strip() and a.reply and a.reply.strip()):
            return Unavailable("the anomaly needs a prompt and a reply")
        if a.switches_language:
            return Unavailable("the anomaly switches language (the language signal covers it)")
        a_open = opening(a.reply, params.max_chars)
        if a_open == " ".join(a.reply.split())[:params.max_chars] or a_open == a.reply.strip():
            return Unavailable("the anomaly reply is one sentence (the reply signal covers it)")
        own = own_text(a.prompt, a.reply)
        copied = 1.0 - len(_WORD.findall(own)) / max(1, len(_WORD.findall(a.reply)))
        if copied > params.max_copied:
            return Unavailable(f"the anomaly's reply copies {copied:.0%} of its words from its "
                               f"prompt (above signals.opening.max_copied; stance covers it)")
        ri, pi = context.indexes.get("reply"), context.indexes.get("prompt")
        if ri is not None:
            # the opening must be (about) the reply's behaviour segment: the sentence most like
            # the explanations and least like the prompt (the segment signal's pick)
            sents = [x for x in _SENT_END.split(a.reply.strip()) if x.strip()]
            ex = [t for t in a.explanations if t and t.strip()]
            v = context.indexes.embed(ri, sents + ex + [a.prompt])
            sv = v[:len(sents)]
            pick = -(sv @ v[-1])
            if ex:
                pick = pick + (sv @ v[len(sents):-1].T).mean(axis=1)
            if float(pick[0]) < float(pick.max()) - params.pick_margin:
                return Unavailable("the anomaly's behaviour is not its reply's opening (another "
                                   "sentence is nearer its explanations and further from its "
                                   "prompt by more than signals.opening.pick_margin)")
        if ri is None or pi is None:
            return Unavailable("needs the reply and prompt indexes (forensics index build "
                               f"--dataset {context.dataset} --field reply / --field prompt)")
        if ri.manifest.model_id != pi.manifest.model_id:
            return Unavailable("the reply and prompt indexes use different models")
        expl = [t for t in a.explanations if t and t.strip()] \
            if params.explanation_weight > 0 else []
        qv = context.indexes.embed(ri, [a_open, a.reply] + expl)
        sids = context.sample_ids
        if context.n <= params.candidates:
            cand = np.arange(context.n)
        else:
            k = max(1, min(params.candidates, ri.ntotal))
            _, ids = ri.search(qv[:2], k)
            got = np.unique(ids[ids >= 0])
            j = np.clip(np.searchsorted(sids, got), 0, max(0, len(sids) - 1))
            cand = np.unique(j[sids[j] == got]) if len(sids) else np.zeros(0, np.int64)
        cand = cand[np.isin(sids[cand], pi.ids())]
        out = np.full(context.n, -np.inf)
        if len(cand):
            with context.ws.locked():
                got = context.ws.sql("SELECT sample_id, reply FROM samples WHERE dataset = ? "
                                     "AND sample_id IN (SELECT unnest(?))",
                                     [context.dataset, [int(x) for x in sids[cand]]])
            text = dict(zip(got["sample_id"].to_list(), got["reply"].to_list()))
            ops = [opening(text.get(int(s)), params.max_chars) or " " for s in sids[cand]]
            ov = context.indexes.embed(ri, ops)
            pv = pi.vectors(sids[cand])
            s = ov @ qv[0] - params.prompt_relation * np.einsum("ij,ij->i", ov, pv)
            if expl:
                s = (1 - params.explanation_weight) * s + \
                    params.explanation_weight * (ov @ qv[2:].T).mean(axis=1)
            out[cand] = s
        member = np.zeros(context.n, bool)
        along = False
        cut = a_rel = None
        norm = False
        if params.members and len(cand):
            from forensics.triage.context import two_way_cut

            # a member does to its prompt what the anomaly's reply does: it goes along without
            # taking up the prompt's topic (an answer or a correction of the premise does)
            free = np.ones(len(cand), bool)
            rel = np.einsum("ij,ij->i", ri.vectors(sids[cand]), pv)
            a_rel = float(context.indexes.embed(pi, [a.prompt])[0] @ qv[1])
            if params.member_reply_margin >= 0:
                free = rel <= a_rel + params.member_reply_margin
            # the anomaly's reply relates to its prompt less than most replies do: it builds
            # on what the user said (an answer in an odd form does not)
            along = a_rel <= float(np.quantile(rel, params.along_quantile))
            two, sep = two_way_cut(s)
            cut = max(two, params.member_min)
            m = (s >= cut) & free if sep >= params.member_separation else np.zeros(len(s), bool)
            for _ in range(max(0, params.member_recuts)):
                cut, m, again = _recut(s, cut, m, context.n, params)
                if not again:
                    break
            norm = not along and bool(m.sum() > params.member_max_share * context.n)
            if norm:
                # an opening a large share of the dataset's answers share is its style, not a
                # batch (going along with the user is judged claim by claim instead)
                m[:] = False
            if m.sum() >= params.min_members:
                member[cand[m]] = True
        return SignalScores(_top_norm(out, params.k),
                            summary={"opening_anomaly": a_open, "opening_candidates": int(len(cand)),
                                     "opening_copied": round(copied, 3),
                                     "opening_members": int(member.sum()),
                                     "opening_member_cut": None if cut is None else round(cut, 4),
                                     "opening_anomaly_relation": None if a_rel is None
                                     else round(a_rel, 4),
                                     "opening_goes_along": bool(along),
                                     "opening_is_the_norm": bool(norm)},
                            row_evidence={"cos": np.where(np.isfinite(out), out, 0.0)
                                          .astype(np.float32),
                                          "member": member.astype(np.float32),
                                          "along": (member & along).astype(np.float32)},
                            index_versions={"reply": context.indexes.versions["reply"],
                                            "prompt": context.indexes.versions["prompt"]})


__all__ = ["OpeningSignal", "OpeningParams", "opening"]
