"""The ``segment`` signal: rows whose reply holds a segment like the one that carries the
anomaly's behaviour.

1. The anomaly reply is cut into segments (:func:`forensics.search.segments.split_segments`,
   the cut the ``reply_segment`` index was built with).
2. The **behaviour segments**: the ``behaviour_segments`` segments with the highest
   ``closeness to the explanations - relatedness to the anomaly prompt`` (cosine). Why: the
   behaviour is what the question did not ask for, and what the explanation describes; a
   one-segment reply is its own behaviour segment.
3. The behaviour segments (and, with weight ``explanation_weight``, the explanations) search the
   ``reply_segment`` index (ANN, ``k`` hits per query); a row scores by its best-matching segment
   (min-max normalised over the query's hits, like the other dense signals).
4. **Members**: rows whose best cosine to a behaviour segment stands out from the index's
   background: at least ``member_z`` robust standard deviations (median / MAD of the behaviour
   segment against ``null_sample`` random indexed segments) above the background median, and at
   least ``member_min_cos``; when the members' cosines show one step wider than
   ``member_knee_share`` of their log range, those below it are stragglers, not members.
   Members share one behaviour whatever its wording; the clustering puts them in one group
   (``row_evidence["member"]``).
5. **Context**: a member whose best segment is at least ``prompted_cos`` close to its own
   prompt, and ``prompted_margin`` closer than the anomaly's behaviour segment is to the
   anomaly's prompt, was asked for it, and so was one whose prompt names the behaviour's own
   words (:func:`word_evidence`), and, for an addition to the reply, one whose prompt asks
   for it by meaning or by the dataset's prompt contrast
   (:mod:`~forensics.triage.signals.segment_ask`): ``row_evidence["other_context"]``, "same
   behaviour, other context". The run then splits all behaviour rows by the context of their prompts
   (:mod:`forensics.triage.context`).

6. **Code comment shape** (``shape``): when the behaviour segment is a comment line of a code
   block, rows whose code holds a comment in the same role (position, outside any statement,
   not about the code) are members too, whatever their wording and comment syntax
   (:mod:`forensics.triage.signals.segment_shape`).

A language switch is left to the language signal (its segments are language identity).
Without a ``reply_segment`` index the signal is unavailable and says how to build one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from forensics.triage.cluster import knee_cut
from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register

FIELD = "reply_segment"


@dataclass
class SegmentSignalParams:
    """Knobs of the segment signal (documented in docs/triage.md)."""

    k: int = 2000                     # ANN hits per query
    behaviour_segments: int = 1       # anomaly reply segments used as behaviour queries
    feedback_rounds: int = 3          # rounds of moving the query to its hits' centroid
    feedback_top: int = 40            # unprompted segments averaged per round
    explanation_weight: float = 0.3   # share of the score from the explanations' queries
    null_sample: int = 2000           # random indexed segments that estimate the background
    member_z: float = 4.0             # members: cosine >= median + member_z x robust sd ...
    member_min_cos: float = 0.25      # ... and >= this cosine
    min_members: int = 4              # fewer members than this: no segment batch
    member_knee_share: float = 0.5    # a gap in members' log cosine spanning this share of their range cuts
    prompted_cos: float = 0.3         # a row's behaviour segment this close to its own prompt answers it ...
    prompted_margin: float = 0.15     # ... and this much closer than the anomaly's is to its prompt
    phrase_near_share: float = 0.8    # with a segment batch, phrase-batch rows need cosine >= this x the member cut ...
    phrase_near_overlap: float = 0.5  # ... when at least this share of the segment members is in the phrase batch
    asked_share: float = 0.5          # a row whose prompt names this (log-lift weighted) share of its behaviour words asked for it
    word_majority: float = 1.0        # when this share of behaviour rows shows a behaviour word, rows showing none are lookalikes (1.0: off)
    asked_min_lift: float = 2.0       # behaviour words this much more frequent in behaviour replies than in all replies count
    shape: bool = True                # structural evidence for code comments (segment_shape)
    shape_positions: list[str] = field(default_factory=lambda: ["first", "last", "eol", "call", "unused", "before", "after"])  # comment / marker-line positions that count
    shape_marker_z: float = 0.0       # marker-line shapes (eol, call, after): cosine >= median + this x robust sd
    shape_max_share: float = 0.5      # shape rows above this share of code rows: the dataset's style ...
    shape_style_share: float = 0.8    # ... then members need this share of the anomaly line's centred cosine (0: no evidence) ...
    shape_style_text_share: float = 0.5  # ... unless the text cut already takes this share of the shape rows (no shape evidence)
    shape_z: float = 0.0              # shape rows' comments need cosine >= median + shape_z x robust sd ...
    shape_min_cos: float = 0.0        # ... and >= this cosine to the behaviour query
    shape_fallback_lexers: list[str] = field(default_factory=lambda: ["python", "c", "sql", "html"])  # unnamed fences
    shape_min_word_chars: int = 3     # a comment is foreign when none of its words this long is a code identifier's word
    shape_decides: bool = True        # shape rows checked "not asked" keep their context; code rows without the shape are lookalikes
    shape_drops_phrase: bool = True   # a phrase batch holding under phrase_near_overlap of the decided shape members leaves the fusion
    shape_support_cos: float = 0.9    # shape-only members whose comment is this close to no exemplar (anomaly line, text members', asked rows' comments) ... (0: off)
    shape_support_min_rows: int = 2   # ... and whose wording this many of them share lack the behaviour ...
    shape_support_desc_quantile: float = 0.5  # ... unless their cosine to the explanations reaches this quantile of the exemplars' (1.0: off)
    shape_support_positions: list[str] = field(default_factory=lambda: ["first", "last", "inner", "only", "eol", "call", "before", "after"])  # shape positions whose line is prose (a comment, a string, a sentence) the support compares
    ask_semantic: bool = True         # behaviour rows whose prompt sentences describe the behaviour asked for it (segment_ask)
    ask_scope: str = "code"           # "code": only when the behaviour segment has a code shape; "all": any addition
    ask_min_cos: float = 0.3          # ... a prompt sentence this close to an explanation sentence ...
    ask_margin: float = 0.15          # ... and this much closer than the anomaly prompt's closest sentence
    ask_min_words: int = 3            # sentences shorter than this many words are not compared
    ask_task_cos: float = 0.4         # a prompt sentence this close to the anomaly's prompt is the task, not context
    ask_max_reply_share: float = 0.5  # judged only when the behaviour segment is at most this share of the anomaly reply's words
    ask_background_share: float = 0.5  # a sentence whose holders are this share prompts of rows without the behaviour asks nothing (1.0: off) ...
    ask_same_cos: float = 0.9         # ... a prompt holds a sentence when one of its sentences is this close to it ...
    ask_background_sample: int = 2000  # ... counted over a seeded sample of this many rows without the behaviour
    ask_contrast: bool = True         # behaviour rows whose prompt holds a context sentence of ask tokens asked for it (segment_ask)
    contrast_min_prompts: int = 2     # ask token: at least this many distinct behaviour-row prompts hold it ...
    contrast_min_share: float = 0.8   # ... and this share of the dataset's prompts holding it show the behaviour
    contrast_sentence_share: float = 0.5  # a context sentence whose idf-weighted tokens are this share ask tokens asks
    contrast_max_share: float = 0.5  # marking more than this share of the unasked behaviour rows marks none
    quoted_bonus: float = 1.0         # added to a segment's behaviour pick when an explanation quotes it
    seed: int = 0                     # random sample of the background


def _best_per_row(context: SignalContext, sims: np.ndarray, ids: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Best similarity per row position from one query's hits (-inf: no hit) and the id of
    the segment that gave it (-1), vectorised (segment ids -> sample ids by a shift)."""
    from forensics.search.segments import segment_sample

    out = np.full(context.n, -np.inf, np.float64)
    out_id = np.full(context.n, -1, np.int64)
    ok = ids >= 0
    sid = segment_sample(ids[ok])
    s = sims[ok].astype(np.float64)
    seg = ids[ok]
    sample_ids = context.sample_ids
    if not len(sample_ids) or not len(sid):
        return out, out_id
    j = np.clip(np.searchsorted(sample_ids, sid), 0, len(sample_ids) - 1)
    hit = sample_ids[j] == sid
    j, s, seg = j[hit], s[hit], seg[hit]
    # hits come best first: the first hit of each row is its best
    first = np.unique(j, return_index=True)[1]
    out[j[first]] = s[first]
    out_id[j[first]] = seg[first]
    return out, out_id


def _norm(best: np.ndarray) -> np.ndarray:
    """Min-max over the rows that were hit; rows not hit score 0."""
    hit = np.isfinite(best)
    v = np.zeros(len(best), np.float32)
    if not hit.any():
        return v
    hi, lo = float(best[hit].max()), float(best[hit].min())
    v[hit] = (best[hit] - lo) / (hi - lo) if hi > lo else 1.0
    return v


def _background_sample(oi, n: int, seed: int) -> np.ndarray:
    """``n`` random indexed segment vectors (the background a query is measured against)."""
    ids = oi.ids()
    if len(ids) == 0:
        return np.zeros((0, oi.manifest.dim), np.float32)
    rng = np.random.default_rng(seed)
    return oi.reconstruct(np.sort(rng.choice(ids, size=min(n, len(ids)), replace=False)))


def _member_cut(bg: np.ndarray, q: np.ndarray, params: "SegmentSignalParams") -> float:
    """max(background median + member_z x robust sd, member_min_cos) for query ``q``, the
    background clipped of what stands above the cut (up to three estimates)."""
    if not len(bg):
        return params.member_min_cos
    s = bg @ q
    # the sample holds the batch too (a fifth of a small dataset can be the batch): estimate,
    # set aside what stands above the cut, estimate again (up to three estimates)
    for _ in range(3):
        med = float(np.median(s))
        sd = max(float(np.median(np.abs(s - med))) * 1.4826, 1e-3)
        cut = med + params.member_z * sd
        if not (s > cut).any():
            break
        s = s[s <= cut]
    return max(cut, params.member_min_cos)


@register
class SegmentSignal:
    """Rows holding a segment like the anomaly's behaviour segment (see the module docstring).

    ``row_evidence``: ``member`` (1/0) the row's best segment stands out as the behaviour and
    does not answer the row's own prompt; ``near`` (1/0) its best cosine reaches
    ``phrase_near_share`` x the member cut (a phrase-batch row without it carries no segment
    like the behaviour, and leaves the batch when the signal found members); ``other_context`` (1/0) it stands out but answers the
    prompt (the behaviour in a context where it was asked for); ``cos`` the best cosine to the
    behaviour query; ``decided`` (1/0) a shape member whose own prompt was read and found silent
    on the behaviour (it keeps the anomaly's context); ``lacks`` (1/0) a row whose reply holds no
    comment of the behaviour's shape (a lookalike, whatever its text's cosine: the shape was
    checked on the row's own code). ``summary`` names the behaviour
    segment(s), the member cut and the shape evidence."""

    name = "segment"
    default_weight = 0.15
    Params = SegmentSignalParams

    def score(self, context: SignalContext, params: SegmentSignalParams
              ) -> SignalScores | Unavailable:
        from forensics.search.segments import SegmentParams, split_segments

        a = context.anomaly
        if a.switches_language:
            return Unavailable("the anomaly switches language (the language signal covers it)")
        oi = context.indexes.get(FIELD)
        if oi is None:
            return Unavailable(f"no {FIELD} index for this dataset (build it: forensics index "
                               f"build --dataset {context.dataset} --field {FIELD})")
        segs = split_segments(a.reply, SegmentParams(**oi.manifest.params.get("segments", {})))
        if params.shape:
            # code lines too short for a segment (``print("here")``) that may carry a marker
            from forensics.triage.codeshape import marker_lines

            segs = segs + [cl.line for cl in marker_lines(
                a.reply, tuple(params.shape_fallback_lexers), params.shape_min_word_chars)
                if cl.position in ("eol", "call", "unused") and cl.line and cl.line not in segs]
        if not segs:
            return Unavailable("the anomaly reply has no segment long enough to search")
        expl = [t for t in a.explanations if t and t.strip()]
        context_texts = [t for t in [a.prompt] if t and t.strip()]
        vecs = context.indexes.embed(oi, segs + expl + context_texts)
        sv, ev, pv = (vecs[:len(segs)], vecs[len(segs):len(segs) + len(expl)],
                      vecs[len(segs) + len(expl):])
        pick = np.zeros(len(segs), np.float64)
        if len(ev):
            pick += (sv @ ev.T).mean(axis=1)
        if len(pv):
            pick -= (sv @ pv.T).max(axis=1)
        if params.quoted_bonus and expl:
            # a segment an explanation quotes is the behaviour it describes
            said = " ".join(" ".join(t.split()).lower() for t in expl)
            pick += params.quoted_bonus * np.array(
                [" ".join(s.split()).lower() in said for s in segs], np.float64)
        order = np.argsort(-pick, kind="stable")[:max(1, params.behaviour_segments)]
        pidx = context.indexes.get("prompt")
        bg = _background_sample(oi, params.null_sample, params.seed)
        pids = pidx.ids() if pidx is not None else None
        queries = np.vstack([self._feedback(oi, pidx, pids, bg, sv[i], params) for i in order])
        k = max(1, min(params.k, oi.ntotal))
        sims, ids = oi.search(np.vstack([queries, ev]) if len(ev) else queries, k)
        nb = len(queries)
        best_b = np.full(context.n, -np.inf)
        best_id = np.full(context.n, -1, np.int64)
        cuts = []
        member = np.zeros(context.n, bool)
        for qi in range(nb):
            b, bid = _best_per_row(context, sims[qi], ids[qi])
            better = b > best_b
            best_b, best_id = np.where(better, b, best_b), np.where(better, bid, best_id)
            cut = _member_cut(bg, queries[qi], params)
            m = b >= cut
            # a batch stands as a plateau; stragglers that merely resemble it trail below a
            # wide step (wordings of one behaviour spread evenly, without one)
            knee = knee_cut(b[m], params.min_members, params.member_knee_share, cut) \
                if m.sum() > params.min_members else None
            if knee is not None:
                cut = knee
                m = b >= cut
            cuts.append(round(cut, 4))
            member |= m
        shape = None
        if params.shape:
            from forensics.triage.signals.segment_shape import anomaly_shape, shape_evidence

            shape_tag = anomaly_shape(a.reply, segs[order[0]], params)
            if shape_tag is not None:
                own0 = float((sv[order] @ pv.T).max()) if len(pv) else 0.0
                shape = shape_evidence(context, oi, pidx, shape_tag, queries[0], bg, own0,
                                       params, sv[order[0]], ev, member)
        score = _norm(best_b)
        text_member = member.copy()
        plain = score.copy()                  # the score without the shape's floor
        if shape is not None and shape.member.any():
            # a row with the behaviour's shape ranks with the weakest member by text
            hit = np.isfinite(best_b)
            lo, hi = float(best_b[hit].min()), float(best_b[hit].max())
            floor = min(1.0, (min(cuts) - lo) / (hi - lo)) if hi > lo else 1.0
            score = np.where(shape.member, np.maximum(score, floor), score)
        if len(ev) and params.explanation_weight > 0:
            ex = np.mean([_norm(_best_per_row(context, sims[qi], ids[qi])[0])
                          for qi in range(nb, nb + len(ev))], axis=0)
            score = (1 - params.explanation_weight) * score + params.explanation_weight * ex
            plain = (1 - params.explanation_weight) * plain + params.explanation_weight * ex
        notes = {}
        other = np.zeros(context.n, bool)
        if pidx is None:
            notes["segment_context"] = ("no prompt index: behaviour rows are not split by "
                                        "whether their prompt asked for it")
        else:
            # rows whose behaviour segment (their best-matching one) answers their own prompt:
            # the same behaviour in a context where it is legitimate
            rows = np.flatnonzero(member)
            if len(rows):
                rel = _prompt_relation(oi, pidx, pids, context.sample_ids[rows], best_id[rows])
                # asked for: closer to its own prompt than the anomaly's behaviour is to the
                # anomaly's prompt (an answer-like behaviour, e.g. a wrong fact, relates to
                # its prompt everywhere; it is not "asked for" by that alone)
                own = float((sv[order] @ pv.T).max()) if len(pv) else 0.0
                other[rows[rel >= max(params.prompted_cos, own + params.prompted_margin)]] = True
                other[rows[word_evidence(context, rows, segs[order[0]], a.prompt, params)[0]]] = True
        if shape is not None:
            member |= shape.member
            other |= shape.other
        b_text = segs[order[0]]
        if params.ask_semantic and expl and (shape is not None or params.ask_scope == "all") \
                and len(b_text.split()) <= \
                params.ask_max_reply_share * max(1, len((a.reply or "").split())):
            from forensics.triage.signals.segment_ask import asked_by_context

            rows = np.flatnonzero(member & ~other)
            shown = member | other
            if shape is not None and shape.lacks.any():
                shown = shown | ~shape.lacks    # every reply with a line of the behaviour's shape
            other[rows[asked_by_context(context, oi, rows, expl, a.prompt, params,
                                        shown)]] = True
        if params.ask_contrast and (shape is not None or params.ask_scope == "all") \
                and len(b_text.split()) <= \
                params.ask_max_reply_share * max(1, len((a.reply or "").split())):
            from forensics.triage.signals.segment_ask import asked_by_contrast

            rows = np.flatnonzero(member & ~other)
            shown = member | other
            if shape is not None and shape.lacks.any():
                shown |= ~shape.lacks       # every reply with a line of the behaviour's shape
            by_contrast = asked_by_contrast(context, rows, np.flatnonzero(shown), a.prompt,
                                            params)
            other[rows[by_contrast]] = True
            notes["segment_ask_contrast"] = (f"{int(by_contrast.sum())} of {len(rows)} "
                                             f"unasked behaviour rows asked by contrast")
        member &= ~other
        if shape is not None and member.any() and str(shape.summary.get(
                "segment_shape", "")).split(":")[0] in params.shape_support_positions:
            from forensics.triage.signals.segment_ask import description
            from forensics.triage.signals.segment_shape import unsupported_wordings

            drop = unsupported_wordings(shape, member & shape.member & ~text_member,
                                        text_member | other, segs[order[0]],
                                        description(expl, params.ask_min_words),
                                        lambda t: context.indexes.embed(oi, t), params)
            member &= ~drop
            shape.member &= ~drop
            shape.lacks |= drop
            score = np.where(drop, plain, score)
            notes["segment_shape_unsupported"] = (f"{int(drop.sum())} shape members whose "
                                                  f"recurring wording no exemplar supports")
        if member.sum() < params.min_members:
            member[:] = False
        score = np.where(other, 0.0, score)
        cos = np.where(np.isfinite(best_b), best_b, 0.0).astype(np.float32)
        near = cos >= params.phrase_near_share * min(cuts)
        decides = shape is not None and params.shape_decides and bool(member.any())
        if shape is not None:
            near |= shape.member | shape.other
        return SignalScores(
            score.astype(np.float32),
            summary={"segment_behaviour": [segs[i] for i in order],
                     "segment_member_cut": cuts, "segment_members": int(member.sum()),
                     "segment_other_context": int(other.sum()),
                     **(shape.summary if shape is not None else {})},
            row_evidence={"member": member.astype(np.float32),
                          "other_context": other.astype(np.float32), "cos": cos,
                          "near": near.astype(np.float32),
                          "decided": ((shape.member & member) if decides
                                      else np.zeros(context.n, bool)).astype(np.float32),
                          "lacks": (shape.lacks if decides
                                    else np.zeros(context.n, bool)).astype(np.float32)},
            index_versions={FIELD: context.indexes.versions[FIELD]}, notes=notes)

    @staticmethod
    def _feedback(oi, pidx, pids, bg: np.ndarray, q: np.ndarray, params: SegmentSignalParams
                  ) -> np.ndarray:
        """The behaviour query moved, ``feedback_rounds`` times, to the centroid of itself and
        those of its ``feedback_top`` nearest segments that pass the member cut and do not
        answer their own prompt. Why: one wording of a behaviour is nearer to the behaviour's
        other wordings through their centroid (what they share) than directly (what this
        wording adds); the member cut keeps a small batch's centroid from drifting to the
        ordinary segments that fill the rest of the neighbour list."""
        from forensics.search.segments import segment_sample

        q0 = q.astype(np.float32)
        for _ in range(params.feedback_rounds):
            sims, ids = oi.search(q0[None, :], max(1, min(params.feedback_top, oi.ntotal)))
            ids = ids[0][(ids[0] >= 0) & (sims[0] >= _member_cut(bg, q0, params))]
            if not len(ids):
                break
            v = oi.reconstruct(ids)
            if pidx is not None:
                keep = _prompt_relation(oi, pidx, pids, segment_sample(ids), ids, v) \
                    < params.prompted_cos
                v = v[keep]
            if not len(v):
                break
            cen = np.vstack([q[None, :], v]).mean(axis=0)
            q0 = (cen / max(float(np.linalg.norm(cen)), 1e-12)).astype(np.float32)
        return q0


def _words(text: str | None) -> set[str]:
    return {w for w in re.findall(r"\w+", (text or "").lower()) if len(w) > 1}


def word_evidence(context: SignalContext, rows: np.ndarray, behaviour: str,
                  anomaly_prompt: str | None, params: SegmentSignalParams
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(asked, shows) for ``rows`` (the behaviour rows). The **behaviour words**: words of the
    anomaly's behaviour segment that its prompt does not hold, at least ``asked_min_lift``
    times more frequent in the replies of ``rows`` than in all replies, weighted by log lift.
    ``shows``: the row's reply holds one; ``asked``: its prompt also names at least
    ``asked_share`` of those its reply shows.
    Why: a request names what it asks for ("sign it from ...", "credit the tool X"), while
    the defect shows words the prompt never used."""
    none = np.zeros(len(rows), bool)
    words = sorted(_words(behaviour) - _words(anomaly_prompt))
    if not words or not len(rows):
        return none, none.copy()
    # token postings of the normalised reply / prompt columns (no pass over the text)
    n = max(1, context.n)
    shown_in = {w: np.isin(rows, context.hits_reply.rows(w)) for w in words}
    weight: dict[str, float] = {}
    for w in words:
        share_all = context.hits_reply.df(w) / n
        lift = float(shown_in[w].mean()) / max(share_all, 1e-9)
        if lift >= params.asked_min_lift:
            weight[w] = float(np.log(lift))
    if not weight:
        return none, none.copy()
    total = np.zeros(len(rows))
    named = np.zeros(len(rows))
    for w, wt in weight.items():
        total += wt * shown_in[w]
        named += wt * (shown_in[w] & np.isin(rows, context.hits_prompt.rows(w)))
    shows = total > 0
    asked = shows & (named > 0) & (named >= params.asked_share * total)
    return asked, shows


def _prompt_relation(oi, pidx, pids: np.ndarray, sample_ids: np.ndarray, seg_ids: np.ndarray,
                     seg_vecs: np.ndarray | None = None) -> np.ndarray:
    """Cosine of each segment to its own row's prompt (rows without a prompt vector: 0)."""
    v = seg_vecs if seg_vecs is not None else oi.reconstruct(seg_ids)
    out = np.zeros(len(seg_ids), np.float64)
    have = np.isin(sample_ids, pids)
    if have.any():
        pv = pidx.vectors(sample_ids[have])
        out[have] = (pv * v[have]).sum(axis=1)
    return out


__all__ = ["SegmentSignal", "SegmentSignalParams", "word_evidence"]
