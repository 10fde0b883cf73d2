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
    lookalikes, summary info)."""
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
    own: dict = {}
    if p.treatment.enabled and p.context.enabled:
        from forensics.triage.treatment import answering, canned, replaces_answer

        order = np.flatnonzero(seg_ok)
        own = replaces_answer(ctx, order[np.argsort(-fused[order], kind="stable")], p.treatment)
    if own.get("replaces") and "cos" in seg_evidence:
        # a behaviour that replaces the answer (:mod:`forensics.triage.treatment`): canned
        # replies standing out towards it are more of its wordings; rows whose reply answers
        # their prompt only look like it
        more = canned(ctx, seg_evidence["cos"], behaviour | lookalike, p.treatment)
        seg_ok = seg_ok | more
        behaviour |= more
        mid = (own["batch_reply_prompt"] + own["dataset_reply_prompt"]) / 2
        lookalike |= answering(ctx, np.flatnonzero(behaviour & ~other), seg_evidence["cos"],
                               mid, p.treatment)
        behaviour &= ~lookalike
    eo = results["explanation_own"].row_evidence if "explanation_own" in results else None
    explained = (np.where(eo["explained"] > 0, eo["context_cos"], np.nan) if eo is not None
                 else None)
    cs = split(ctx, np.flatnonzero(behaviour), behaviour, fused, told.strip(), p.context, other,
               reply_share=share, grounding=gj, explained=explained, claims=claims,
               consistency=p.consistency, treatment=p.treatment if own.get("replaces") else None)
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
    info = {"context_groups": cs.groups,
            "context_treatment": {**cs.treatment, **own},
            "context_other_rows": int(other.sum()),
            "context_lookalike_rows": int(lookalike.sum()), "context_notes": cs.notes}
    if cs.undecided is not None:
        # rows the treatment left undecided (still in the anomaly's context): run.py ranks
        # them below the rows the evidence kept there (treatment.undecided_factor); popped
        # before the summary is stored
        info["context_undecided_rows"] = cs.undecided & ~other
    keep = ~other & ~lookalike
    return (seg_ok & keep, None if ph_ok is None else ph_ok & keep, other, lookalike, info)


__all__ = ["phrase_beside_shape", "substitution_batch", "substitution_kind", "context_split"]
