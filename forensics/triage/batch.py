"""The behaviour batch's membership, decided after fusion: which signals' evidence adds rows
to it (the substitution signal's members), which rows leave it as lookalikes or as the
behaviour in another context (:mod:`forensics.triage.context`), and when the phrase signal
leaves the fusion beside a code shape. Called by :func:`forensics.triage.run.triage`; every
knob is in :class:`~forensics.triage.params.TriageParams`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

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


def row_texts(ctx: SignalContext, rows: np.ndarray) -> dict[int, tuple[str, str]]:
    """Each row position in ``rows`` -> its (prompt, reply), read with the workspace held
    (``""`` for a missing text)."""
    with ctx.ws.locked():
        got = ctx.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                         "AND sample_id IN (SELECT unnest(?))",
                         [ctx.dataset, [int(s) for s in ctx.sample_ids[rows]]])
    by_sid = {int(s): (pr or "", rp or "") for s, pr, rp in zip(
        got["sample_id"].to_list(), got["prompt"].to_list(), got["reply"].to_list())}
    return {int(j): by_sid.get(int(ctx.sample_ids[j]), ("", "")) for j in rows}


def rows_failing(ctx: SignalContext, rows: np.ndarray,
                 test: Callable[[str, str], object]) -> np.ndarray | None:
    """A mask over all rows: the positions in ``rows`` whose (prompt, reply) fail ``test``
    (``None`` when none does)."""
    text = row_texts(ctx, rows)
    out = np.zeros(len(ctx.sample_ids), bool)
    for j in rows:
        out[j] = not test(*text[int(j)])
    return out if out.any() else None


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
    return rows_failing(ctx, rows, lambda pr, rp: holds_value_of_kind(pr, rp, toks))


def restated_anomaly(ctx: SignalContext, results: dict[str, SignalScores], p: TriageParams
                     ) -> bool:
    """Whether the anomaly goes along with a claim its reply restates (``consistency
    .restated``): the ``stance`` own-text view ran, the anomaly's prompt holds no context
    passage (:func:`~forensics.triage.passage.context_passage`; a passage sentence restated
    is the grounding judgement's case) and the restated claim makes up most of it
    (:func:`~forensics.triage.consistency.restates_own_claim`)."""
    from forensics.triage.consistency import restates_own_claim
    from forensics.triage.passage import context_passage

    st = results.get("stance")
    a = ctx.anomaly
    return (st is not None and "stance_own_text" in st.summary and p.consistency.restated
            and context_passage(a.prompt, p.grounding) is None
            and restates_own_claim(a.prompt, a.reply, p.consistency))


def restating_lookalikes(ctx: SignalContext, results: dict[str, SignalScores],
                         seg_ok: np.ndarray | None, ph_ok: np.ndarray | None, p: TriageParams,
                         fused: np.ndarray | None = None) -> np.ndarray | None:
    """When the anomaly's reply restates its user's claim (the ``stance`` signal's own-text
    view ran) and ``consistency.restated``: the segment- and phrase-batch rows whose reply
    restates nothing of their own prompt (:func:`~forensics.triage.consistency
    .restated_claim`) share the anomaly's wording elsewhere (a stock closing line, another
    template), not its behaviour: lookalikes (``None`` when nothing applies). With
    ``fused`` (the batch goes along with restated claims, ``consistency.restated_demote``),
    the ``framing_candidates`` best-fused rows are read too: a row restating no claim of its
    user cannot show the behaviour however near its text is."""
    from forensics.triage.consistency import restated_claim

    if not restated_anomaly(ctx, results, p):
        return None
    seen = [m for m in (seg_ok, ph_ok) if m is not None]
    rows = np.flatnonzero(np.logical_or.reduce(seen)) if seen else np.zeros(0, np.int64)
    if fused is not None:
        if not p.consistency.restated_demote:
            return None
        top = np.argsort(-fused, kind="stable")[:max(1, p.consistency.framing_candidates)]
        rows = np.setdiff1d(top, rows)
    if not len(rows):
        return None
    return rows_failing(ctx, rows, lambda pr, rp: restated_claim(pr, rp, p.consistency))


def _candidate_texts(ctx: SignalContext, fused: np.ndarray, extra: np.ndarray, p: TriageParams
                     ) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """(the ``consistency.framing_candidates`` rows best by ``fused`` and the ``extra`` rows;
    their (prompt, reply) by position)."""
    top = np.argsort(-fused, kind="stable")[:max(1, p.consistency.framing_candidates)]
    rows = np.union1d(top, np.flatnonzero(extra))
    return rows, row_texts(ctx, rows)


def prompt_framing_seeds(ctx: SignalContext, fused: np.ndarray, p: TriageParams) -> np.ndarray:
    """For an anomaly going along with the claim it restates (:func:`restated_anomaly`):
    the rows whose reply restates their prompt's
    claim and whose prompt frames it as the anomaly's does (each prompt with the words its
    reply copies cut out, embedded with the prompt index's model; cosine to the anomaly's at
    least the restating candidates' median + ``prompt_framing_z`` robust sd and
    ``prompt_framing_min_cos``): "Is it true that …? My cousin says so." beside "Somebody
    wrote that …. That's accurate, isn't it?". The seed of the batch when the anomaly's own
    wording of the assent finds no rows (the stance own-text members)."""
    from forensics.triage.consistency import restated_claim
    from forensics.triage.signals.stance import own_text

    c = p.consistency
    out = np.zeros(len(fused), bool)
    a = ctx.anomaly
    pidx = ctx.indexes.get("prompt")
    if not c.prompt_framing or pidx is None:
        return out
    rows, text = _candidate_texts(ctx, fused, out, p)
    keep = [int(j) for j in rows if restated_claim(*text[int(j)], c)]
    if len(keep) < p.signals["stance"].min_members:
        return out
    v = ctx.indexes.embed(pidx, [own_text(a.reply, a.prompt)]
                          + [own_text(text[j][1], text[j][0]) or " " for j in keep])
    cos = v[1:] @ v[0]
    med = float(np.median(cos))
    sd = max(float(np.median(np.abs(cos - med))) * 1.4826, 1e-3)
    m = cos >= max(med + c.prompt_framing_z * sd, c.prompt_framing_min_cos)
    if m.sum() >= p.signals["stance"].min_members:
        out[np.array(keep)[m]] = True
    return out


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

    from forensics.triage.consistency import NEGATIONS

    out = np.zeros(len(fused), bool)
    if not p.consistency.framing_members or not members.any():
        return out
    rows, text = _candidate_texts(ctx, fused, members, p)
    fr = {j: framing(*text[j], p.consistency) for j in text}
    fr = {j: f for j, f in fr.items() if f is not None}
    joined = {j for j in fr if members[j]}
    for _ in range(max(0, p.consistency.framing_rounds)):
        asks = {fr[j][0] for j in joined if fr[j][0]}
        says = {fr[j][1] for j in joined if fr[j][1]}
        denies = set().union(*[fr[j][1] & NEGATIONS for j in joined])
        # (a reply whose framing denies what no member's denies says the opposite)
        new = {j for j, (fa, fs) in fr.items() if j not in joined
               and ((fa and fa in asks) or (fs and fs in says))
               and not (fs & NEGATIONS) - denies}
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
    lookalikes, summary info); with ``claims`` the info's ``undecided_mask`` marks the rows
    going along with their user that no judgement reached, ``claim_batch_mask`` all the
    batch's rows going along with their user."""
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
        if claims is not None and not p.context.claim_asked:
            # a prompt naming the behaviour's words does not make going along with a false
            # claim legitimate: the claim decides (step 4c)
            asked &= ~claims[rows]
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
    sub = results.get("substitution")
    if (p.treatment.not_with_substitution and sub is not None
            and bool((sub.row_evidence["member"] > 0).any())):
        # the batch states a substituted value: a wrong answer, which follows its question
        own = {"replaces": False, "skipped": "the substitution signal formed the batch"}
    elif p.treatment.enabled and p.context.enabled:
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
    info = {"context_groups": cs.groups,
            "context_treatment": {**cs.treatment, **own},
            "context_other_rows": int(other.sum()),
            "context_lookalike_rows": int(lookalike.sum()), "context_notes": cs.notes}
    if cs.undecided is not None:
        # rows the treatment left undecided (still in the anomaly's context): run.py ranks
        # them below the rows the evidence kept there (treatment.undecided_factor); popped
        # before the summary is stored
        info["treatment_undecided_mask"] = cs.undecided & ~other
    if open_ is not None:
        # (masks for the ranking, taken out of the summary by the caller)
        info["undecided_mask"] = open_ & ~other
        info["claim_batch_mask"] = claims & behaviour & ~other & ~lookalike
        info["context_undecided_rows"] = int((open_ & ~other).sum())
    keep = ~other & ~lookalike
    return (seg_ok & keep, None if ph_ok is None else ph_ok & keep, other, lookalike, info)


__all__ = ["phrase_beside_shape", "substitution_batch", "substitution_kind", "restated_anomaly",
           "restating_lookalikes",
           "prompt_framing_seeds", "framing_members", "context_split"]
