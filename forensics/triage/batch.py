"""The behaviour batch's membership, decided after fusion: which signals' evidence adds rows
to it (the substitution signal's members), which rows leave it as lookalikes or as the
behaviour in another context (:mod:`forensics.triage.context`), and when the phrase signal
leaves the fusion beside a code shape. Called by :func:`forensics.triage.run.triage`; every
knob is in :class:`~forensics.triage.params.TriageParams`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from forensics.triage.params import TriageParams
from forensics.triage.signals.base import SignalContext, SignalScores

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage import grounding as grounding_mod


def phrase_beside_shape(results: dict[str, SignalScores], p: TriageParams) -> str | None:
    """Why the phrase signal leaves the fusion, or ``None``: when the segment signal's code
    shape decided the behaviour rows (checked on each row's own code) and fewer than
    ``phrase_near_overlap`` of them are phrase-batch rows (phrase score >= the cluster's
    ``phrase_threshold``), the phrase batch is something else the replies share (the code's
    own n-grams: the same task answered with the same code), not the behaviour
    (``signals.segment.shape_drops_phrase``)."""
    seg, ph = results.get("segment"), results.get("phrase")
    sp = p.signals.get("segment")
    if seg is None or ph is None or sp is None or not sp.shape_drops_phrase:
        return None
    decided = seg.row_evidence.get("decided")
    if decided is None or not (decided > 0).any():
        return None
    share = float((ph.scores[decided > 0] >= p.cluster.phrase_threshold).mean())
    if share >= sp.phrase_near_overlap:
        return None
    return (f"left out: {share:.0%} of the rows the code shape decided are in its batch "
            f"(below signals.segment.phrase_near_overlap): it follows what the code shares, "
            f"not the behaviour")


def substitution_batch(results: dict[str, SignalScores], seg_ok: np.ndarray | None,
                        other_ok: np.ndarray | None, ph_ok: np.ndarray | None, p: TriageParams
                        ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The ``substitution`` signal's evidence laid over the behaviour batch: its members join
    it, rows asked about the substituted entity are the behaviour in another context, and
    (``decides``) behaviour rows that do not state the entity are lookalikes (the right fact
    in the same words). Returns (segment members, other context, lookalikes or ``None``)."""
    sub = results.get("substitution")
    if sub is None or not sub.row_evidence["member"].any():
        return seg_ok, other_ok, None
    ev = sub.row_evidence
    member, asked, states = ev["member"] > 0, ev["asked"] > 0, ev["states"] > 0
    n = len(member)
    seg_ok = np.zeros(n, bool) if seg_ok is None else seg_ok
    other_ok = np.zeros(n, bool) if other_ok is None else other_ok
    look = None
    if p.signals["substitution"].decides:
        behaviour = seg_ok | other_ok | (ph_ok if ph_ok is not None else False)
        look = behaviour & ~states & ~asked
        seg_ok = (seg_ok & states) | member
        other_ok = (other_ok | asked) & ~member
    else:
        seg_ok = seg_ok | member
        other_ok = other_ok | (asked & ~seg_ok)
    return seg_ok, other_ok, look


def substitution_kind(ctx: SignalContext, results: dict[str, SignalScores],
                       seg_ok: np.ndarray | None, ph_ok: np.ndarray | None, p: TriageParams
                       ) -> np.ndarray | None:
    """With the ``substitution`` signal's tokens but no batch of its own (``kind_check``):
    the behaviour rows (segment and phrase members) whose reply states no value of the
    tokens' kind that its prompt lacks (no number of as many digits, no name) cannot show
    the substitution: lookalikes (``None`` when nothing applies)."""
    from forensics.triage.signals.substitution import holds_value_of_kind

    sub = results.get("substitution")
    if sub is None or not p.signals["substitution"].kind_check:
        return None
    toks = sub.summary.get("substitution", {}).get("tokens") or []
    seen = [m for m in (seg_ok, ph_ok) if m is not None]
    if not toks or not seen:
        return None
    rows = np.flatnonzero(np.logical_or.reduce(seen))
    if not len(rows):
        return None
    got = ctx.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                     "AND sample_id IN (SELECT unnest(?))",
                     [ctx.dataset, [int(s) for s in ctx.sample_ids[rows]]])
    text = {int(s): (pr, rp) for s, pr, rp in zip(got["sample_id"].to_list(),
                                                  got["prompt"].to_list(), got["reply"].to_list())}
    look = np.zeros(len(ctx.sample_ids), bool)
    for j in rows:
        pr, rp = text.get(int(ctx.sample_ids[j]), ("", ""))
        look[j] = not holds_value_of_kind(pr or "", rp or "", toks)
    return look if look.any() else None


def restating_lookalikes(ctx: SignalContext, results: dict[str, SignalScores],
                         seg_ok: np.ndarray | None, ph_ok: np.ndarray | None, p: TriageParams
                         ) -> np.ndarray | None:
    """When the anomaly's reply restates its user's claim (the ``stance`` signal's own-text
    view ran) and ``consistency.restated``: the segment- and phrase-batch rows whose reply
    restates nothing of their own prompt (:func:`~forensics.triage.consistency
    .restated_claim`) share the anomaly's wording elsewhere (a stock closing line, another
    template), not its behaviour: lookalikes (``None`` when nothing applies)."""
    from forensics.triage.consistency import restated_claim

    st = results.get("stance")
    if st is None or "stance_own_text" not in st.summary or not p.consistency.restated:
        return None
    seen = [m for m in (seg_ok, ph_ok) if m is not None]
    rows = np.flatnonzero(np.logical_or.reduce(seen)) if seen else np.zeros(0, np.int64)
    if not len(rows):
        return None
    with ctx.ws.locked():
        got = ctx.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                         "AND sample_id IN (SELECT unnest(?))",
                         [ctx.dataset, [int(s) for s in ctx.sample_ids[rows]]])
    text = {int(s): (pr, rp) for s, pr, rp in zip(got["sample_id"].to_list(),
                                                  got["prompt"].to_list(), got["reply"].to_list())}
    look = np.zeros(len(ctx.sample_ids), bool)
    for j in rows:
        pr, rp = text.get(int(ctx.sample_ids[j]), ("", ""))
        look[j] = not restated_claim(pr, rp, p.consistency)
    return look if look.any() else None


def framing_members(ctx: SignalContext, fused: np.ndarray, members: np.ndarray,
                    p: TriageParams) -> np.ndarray:
    """Rows (among the ``consistency.framing_candidates`` best by ``fused``) whose reply
    restates the whole claim of its prompt, framed in the prompt or in the reply exactly as
    a ``members`` row frames its own (:func:`~forensics.triage.consistency.framing`: the
    same words around the claim): the same request answered in another wording of the
    assent, or another request answered in the same wording; ``framing_rounds`` rounds, the
    rows joined in one lending their framings to the next. A correction swapping a word of
    the claim keeps that word in its framings and stays out."""
    from forensics.triage.consistency import framing

    out = np.zeros(len(fused), bool)
    if not p.consistency.framing_members or not members.any():
        return out
    top = np.argsort(-fused, kind="stable")[:max(1, p.consistency.framing_candidates)]
    rows = np.union1d(top, np.flatnonzero(members))
    with ctx.ws.locked():
        got = ctx.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                         "AND sample_id IN (SELECT unnest(?))",
                         [ctx.dataset, [int(s) for s in ctx.sample_ids[rows]]])
    text = {int(s): (pr, rp) for s, pr, rp in zip(got["sample_id"].to_list(),
                                                  got["prompt"].to_list(), got["reply"].to_list())}
    fr = {int(j): framing(*text.get(int(ctx.sample_ids[j]), ("", "")), p.consistency)
          for j in rows}
    fr = {j: f for j, f in fr.items() if f is not None}
    joined = {j for j in fr if members[j]}
    for _ in range(max(0, p.consistency.framing_rounds)):
        asks = {fr[j][0] for j in joined if fr[j][0]}
        says = {fr[j][1] for j in joined if fr[j][1]}
        new = {j for j, (fa, fs) in fr.items() if j not in joined
               and ((fa and fa in asks) or (fs and fs in says))}
        if not new:
            break
        joined |= new
    for j in joined:
        out[j] = not members[j]
    return out


def context_split(ctx: SignalContext, results: dict[str, SignalScores], fused: np.ndarray,
                   seg_ok: np.ndarray, ph_ok: np.ndarray | None, other_ok: np.ndarray,
                   p: TriageParams, gj: "grounding_mod.RowGrounding | None" = None,
                   claims: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, dict]:
    """The behaviour rows (segment members, phrase-batch rows, rows asked for the behaviour)
    split by context (:mod:`forensics.triage.context`); rows in another context, and
    lookalikes (``word_majority``), leave the segment and phrase batches. ``claims``: rows
    that joined going along with what their user says without restating it (the opening
    members): the dataset's statements judge them, and those nothing judged are counted in
    the note ``context_undecided``. Returns (segment members, phrase members, other context,
    lookalikes, summary info); the info's ``undecided_mask`` (only with ``claims``) marks the
    rows going along with their user that no judgement reached."""
    from forensics.triage.context import split
    from forensics.triage.signals.segment import word_evidence

    a = ctx.anomaly
    behaviour = seg_ok | other_ok
    if ph_ok is not None:
        behaviour = behaviour | ph_ok
    seg_summary = results["segment"].summary if "segment" in results else {}
    seg_evidence = results["segment"].row_evidence if "segment" in results else {}
    seg_text = (seg_summary.get("segment_behaviour") or [""])[0]
    other = other_ok.copy()
    rows = np.flatnonzero(behaviour & ~other)
    lookalike = np.zeros(len(behaviour), bool)
    if seg_text and len(rows):
        sp = p.signals["segment"]
        asked, shows = word_evidence(ctx, rows, seg_text, a.prompt, sp)
        other[rows[asked]] = True
        # nearly every behaviour row shows the behaviour's own words: rows showing none only
        # look like it (the same sentence with the right entity, the same layout without it)
        if shows.mean() >= sp.word_majority:
            lookalike[rows[~shows]] = True
            behaviour &= ~lookalike
    if gj is not None and gj.same_kind is not None and p.grounding.other_way_lookalike:
        # ungrounded another way than the anomaly (another kind, another type of substituted
        # anchor, another fixed entity): a passage answer that looks like the behaviour
        lookalike |= behaviour & gj.ungrounded & ~gj.same_kind
        behaviour &= ~lookalike
    lacks = seg_evidence.get("lacks")
    if lacks is not None:
        # replies without a comment of the behaviour's shape (code comment quirks): lookalikes
        lookalike |= lacks > 0
        behaviour &= ~lookalike
    told = " ".join([a.title or "", *([t for t in a.explanations if t][:1] or [seg_text])])
    share = (min(1.0, len(seg_text.split()) / max(1, len((a.reply or "").split())))
             if seg_text else 1.0)
    eo = results["explanation_own"].row_evidence if "explanation_own" in results else None
    explained = (np.where(eo["explained"] > 0, eo["context_cos"], np.nan) if eo is not None
                 else None)
    cs = split(ctx, np.flatnonzero(behaviour), behaviour, fused, told.strip(), p.context, other,
               reply_share=share, grounding=gj, explained=explained, claims=claims,
               consistency=p.consistency)
    open_ = None
    if claims is not None and p.context.enabled:
        # a behaviour that goes along with its user is a defect or not by whether the user's
        # claim holds: rows no judgement reached hold both contexts, and the batch says so
        open_ = claims & behaviour & ~cs.other
        if cs.judged is not None:
            open_ &= ~cs.judged
        if int(open_.sum()) >= p.consistency.undecided_min_rows:
            cs.notes["context_undecided"] = (
                f"{int(open_.sum())} behaviour rows go along with what their user says and "
                f"nothing judged whether the user's claim holds (no explanations of the rows, "
                f"no judge, no passage, no statement of the dataset on their topic): the batch "
                f"may hold the behaviour where it is legitimate; it needs row explanations "
                f"(forensics explain dataset, then index build --field explanation) or a judge "
                f"(context.judge)")
    other = cs.other & behaviour
    decided = seg_evidence.get("decided")
    if decided is not None and p.context.judge == "none":
        # rows whose own request was read and found silent on the behaviour (a code comment's
        # words, see segment_shape) stay in the anomaly's context whatever their neighbours do
        other &= ~(decided > 0)
    sub = results.get("substitution")
    if sub is not None and p.context.judge == "none" and p.signals["substitution"].decides:
        # rows stating the substituted entity on the anomaly's subject, unasked: decided
        other &= ~(sub.row_evidence["member"] > 0)
    info = {"context_groups": cs.groups, "context_other_rows": int(other.sum()),
            "context_lookalike_rows": int(lookalike.sum()), "context_notes": cs.notes}
    if open_ is not None:
        # (a mask for the ranking, taken out of the summary by the caller)
        info["undecided_mask"] = open_ & ~other
        info["context_undecided_rows"] = int((open_ & ~other).sum())
    keep = ~other & ~lookalike
    return (seg_ok & keep, None if ph_ok is None else ph_ok & keep, other, lookalike, info)


__all__ = ["phrase_beside_shape", "substitution_batch", "substitution_kind", "restating_lookalikes",
           "framing_members", "context_split"]
