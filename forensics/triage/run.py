"""One triage: from an anomaly (explanations, prompt, reply) to ranked clusters of suspect
training rows, stored in ``triage_runs`` / ``findings`` / ``clusters`` / ``cluster_members``.

Steps (every one deterministic; every knob in :class:`~forensics.triage.params.TriageParams`,
stored with the run):

1. **Rows**: the dataset's per-row features (normalised text, requested language, token
   index), cached per dataset state (:mod:`forensics.triage.rows`).
2. **Signals**: every registered signal (:mod:`forensics.triage.signals`) scores every row in
   [0, 1] or says why it is unavailable.
3. **Fusion**: a weighted mean of the available signals (the weights renormalise over the
   signals that exist for this anomaly and dataset).
4. **Clusters**: the candidate pool grouped by behavioural signature, the rest by embedding,
   each group expanded over the whole dataset (:mod:`forensics.triage.cluster`).
5. **Profiles and ranking** (:mod:`forensics.triage.profile`); each row's final score mixes
   in its cluster's score. 6. **Store** (:mod:`forensics.triage.store`).

The workspace is held (:meth:`~forensics.workspace.Workspace.locked`) only while inputs are
read and while the row-feature cache and the run are written: signals, clustering and
profiles compute with it released, so other commands read and write meanwhile. Between
back-to-back reads the connection stays open (``ws.lingering`` with the ``lock`` params: closed
once unused ``linger_seconds``). Wrap the call in ``with ws.locked():`` to hold it throughout.

Why fuse whole-dataset behaviour features with ANN search: an explanation's embedding barely
separates a planted batch from legitimate data in the same language or on the same topic,
while the observable behaviour does; the embeddings still order rows within a behaviour and
carry anomalies that have no observable signature.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from forensics import progress as progress_mod
from forensics.errors import UsageError
from forensics.triage import batch as batch_mod
from forensics.triage import cluster as cluster_mod
from forensics.triage import grounding as grounding_mod
from forensics.triage import profile as profile_mod
from forensics.triage import rows as rows_mod
from forensics.triage.indexes import IndexCache
from forensics.triage.params import TriageParams
from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, registered
from forensics.triage.signals.language import LanguageParams, language_target
from forensics.triage.store import Finding, store_run

if TYPE_CHECKING:  # pragma: no cover
    from forensics.progress import Progress
    from forensics.workspace import Workspace


@dataclass
class TriageResult:
    run_id: int
    anomaly_id: int
    dataset: str
    findings: list[dict]
    clusters: list[dict]
    signals_used: list[str]
    signals_unavailable: dict[str, str]
    params: dict
    index_versions: dict
    seconds: float
    total_scored: int = 0

    def to_json(self) -> dict:
        """The fixed ``forensics triage --json`` contract."""
        return {"run_id": self.run_id, "anomaly_id": self.anomaly_id, "dataset": self.dataset,
                "findings": self.findings, "clusters": self.clusters,
                "signals_used": self.signals_used, "signals_unavailable": self.signals_unavailable,
                "seconds": round(self.seconds, 3)}


def fuse(scores: dict[str, np.ndarray], weights: dict[str, float], n: int) -> np.ndarray:
    """Weighted mean of ``scores`` (in their order), the weights renormalised over them."""
    wsum = sum(weights.get(s, 0.0) for s in scores)
    fused = np.zeros(n, np.float32)
    if wsum > 0:
        for s, v in scores.items():
            fused += (weights.get(s, 0.0) / wsum) * v
    return fused


#: the stages ``on_stage`` is called with, in order (``signal:NAME`` once per registered signal)
STAGES = ("inputs", "signal:NAME", "fused", "clusters", "stored")


def triage(ws: "Workspace", anomaly_id: int, dataset: str, limit: int | None = None,
           params: dict | TriageParams | None = None, progress: "Progress | None" = None,
           on_stage: Callable[[str], None] | None = None) -> TriageResult:
    """Run a triage of ``anomaly_id`` against ``dataset``; store and return it.

    ``params``: a :class:`TriageParams` or its nested dict form (``limit``, when given,
    overrides ``params.limit``). ``progress``: a :class:`forensics.progress.Progress` (silent
    when ``None``). ``on_stage`` is called with each stage of :data:`STAGES` as the run passes
    it, with the workspace released (unless the caller holds it): a test can pause the run
    there to check that other processes get in; it must not raise otherwise."""
    t0 = time.perf_counter()
    prog = progress_mod.resolve(progress)
    p = params if isinstance(params, TriageParams) else TriageParams.from_dict(params)
    # a copy (the caller's object is left alone), completed with any signal registered since
    p = dataclasses.replace(p, **({"limit": int(limit)} if limit is not None else {}))
    if p.limit < 0:
        raise UsageError("--limit must be >= 0")
    with ws.lingering(p.lock.linger_seconds, p.lock.hold_seconds):
        return _triage(ws, anomaly_id, dataset, p, prog, on_stage, t0)


def _triage(ws: "Workspace", anomaly_id: int, dataset: str, p: TriageParams, prog: Any,
            on_stage: Callable[[str], None] | None, t0: float) -> TriageResult:
    """The body of :func:`triage`, run inside ``ws.lingering``."""
    from forensics.triage import anomaly as anomaly_mod

    with ws.locked():
        a = anomaly_mod.get(ws, anomaly_id, samples=p.explanation_samples)
        ws.require_dataset(dataset)
    signal_classes = registered()
    task = prog.start("triage", total=len(signal_classes) + 3)

    def stage(name: str) -> None:
        if on_stage is None:  # whatever a step read, the workspace is not held for long after
            ws.release_soon()
            return
        ws.release()
        on_stage(name)

    def step(msg: str) -> None:
        prog.advance(task)
        prog.note(f"{time.perf_counter() - t0:6.2f}s {msg}")

    rf = rows_mod.load(ws, dataset)
    df = rf.frame
    n = df.height
    sample_ids = df["sample_id"].to_numpy().astype(np.int64) if n else np.zeros(0, np.int64)
    lp = p.signals.get("language", LanguageParams())
    tgt = language_target(a.prompt_lang, a.reply_lang, a.explanations, a.prompt,
                          lp.named_min_weight)
    info: dict[str, Any] = {"language_target": tgt.to_json(),
                            "row_features": {"cached": rf.cached, "seconds": round(rf.seconds, 3)}}
    indexes = IndexCache(ws, dataset)
    ctx = SignalContext(ws, dataset, a, rf, sample_ids, rf.hits("reply"), rf.hits("prompt"),
                        indexes, tgt, progress=prog, started=t0,
                        explanation_samples=p.explanation_samples,
                        context_params=p.context)
    step(f"row features ({'cached' if rf.cached else 'computed and stored'})")
    stage("inputs")

    results: dict[str, SignalScores] = {}
    unavailable: dict[str, str] = {}
    for name, cls in signal_classes.items():
        if not n:
            unavailable[name] = "the dataset has no rows"
            stage(f"signal:{name}")
            continue
        if getattr(cls, "skip_when_unweighted", False) and p.weights.get(name, 0.0) <= 0:
            unavailable[name] = f"weight 0 (not computed; set weights.{name} > 0 to use it)"
            step(f"{name} signal skipped")
            stage(f"signal:{name}")
            continue
        got = cls().score(ctx, p.signals[name])
        if isinstance(got, Unavailable):
            unavailable[name] = got.reason
            info.update(got.summary)
        else:
            results[name] = got
            info.update(got.summary)
            unavailable.update(got.notes)
        step(f"{name} signal")
        stage(f"signal:{name}")
    off = batch_mod.phrase_beside_shape(results, p)
    if off:
        unavailable["phrase"] = off
        del results["phrase"]
    scores = {s: r.scores for s, r in results.items()}
    used = list(scores)
    fused = fuse(scores, p.weights, n)
    step(f"fused {len(used)} signals over {n} rows")
    stage("fused")

    clusters: list[profile_mod.Cluster] = []
    member_of: dict[int, int] = {}
    other_rows = undecided = claim_batch = treated = None
    if n:
        clusters, member_of, other_rows, ctx_info = _clusters(ws, dataset, rf, sample_ids,
                                                              scores, results, fused, p,
                                                              indexes, ctx)
        treated = ctx_info.pop("treatment_undecided_mask", None)
        undecided = ctx_info.pop("undecided_mask", None)
        claim_batch = ctx_info.pop("claim_batch_mask", None)
        info.update(ctx_info)
        unavailable.update(ctx_info.pop("context_notes", {}))
    step(f"{len(clusters)} clusters")
    stage("clusters")

    # final scores: fused, plus a share of the row's cluster score
    sm = p.fusion.cluster_smoothing
    final = (1 - sm) * fused
    if clusters:
        top_cs = max(c.score for c in clusters) or 1.0
        cscore = {c.cluster_id: c.score / top_cs for c in clusters}
        for j, cid in member_of.items():
            final[j] += sm * cscore[cid]
    if other_rows is not None:
        # the behaviour in another context (and its lookalikes) rank below the anomaly's
        final[other_rows] *= p.cluster.other_context_factor
    if treated is not None:
        # behaviour rows whose context the dataset's treatment left undecided rank below
        # those it kept in the anomaly's context
        final[treated] *= p.treatment.undecided_factor
    if undecided is not None and undecided.any():
        # rows going along with a claim nothing judged rank below those whose claim the
        # evidence found false (they hold both contexts), not below rows outside the batch
        out = ~claim_batch
        best_out = float(final[out].max()) if out.any() else 0.0
        u = final[undecided]
        final[undecided] = np.maximum(u * p.consistency.undecided_factor,
                                      np.minimum(u, np.nextafter(best_out, np.inf)))
    order = np.lexsort((sample_ids, -final)) if n else np.zeros(0, np.int64)
    keep = [int(j) for j in order if fused[j] >= p.fusion.min_fused or j in member_of]
    row_ids = df["row_id"].to_list() if n else []
    findings = []
    for rank, j in enumerate(keep[:p.limit], 1):
        sig = {s: round(float(scores[s][j]), 4) for s in used}
        sig["fused"] = round(float(fused[j]), 4)
        findings.append(Finding(rank, row_ids[j], int(sample_ids[j]), round(float(final[j]), 6),
                                member_of.get(j), sig))
    # cluster member scores = final scores; members listed best first
    for c in clusters:
        c.members.sort(key=lambda j: (-final[j], sample_ids[j]))
        c.row_ids = [row_ids[j] for j in c.members]
        c.member_scores = [(int(sample_ids[j]), float(final[j])) for j in c.members]

    versions = ({"row_features": rf.state} if rf.state else {}) | indexes.versions
    params_json = p.to_dict()
    run_id = store_run(ws, a.anomaly_id, dataset, params_json, versions, findings, clusters,
                       {"signals_used": used, "signals_unavailable": unavailable, "rows": n, **info})
    seconds = time.perf_counter() - t0
    prog.note(f"{seconds:6.2f}s stored run {run_id}: {len(findings)} findings, "
              f"{len(clusters)} clusters")
    prog.finish(task)
    stage("stored")
    return TriageResult(run_id=run_id, anomaly_id=a.anomaly_id, dataset=dataset,
                        findings=[f.to_json() for f in findings],
                        clusters=[c.to_json() for c in clusters], signals_used=used,
                        signals_unavailable=unavailable, params=params_json,
                        index_versions=versions, seconds=seconds, total_scored=n)


def _clusters(ws: "Workspace", dataset: str, rf: "rows_mod.RowFeatures", sample_ids: np.ndarray,
              scores: dict[str, np.ndarray], results: dict[str, SignalScores], fused: np.ndarray,
              p: TriageParams, indexes: IndexCache, ctx: SignalContext
              ) -> tuple[list["profile_mod.Cluster"], dict[int, int], np.ndarray | None, dict]:
    df = rf.frame
    lang = scores.get("language")
    ph_ok = None
    if "phrase" in results:
        ph = results["phrase"]
        ph_ok = cluster_mod.phrase_members(
            ph.scores, ph.row_evidence.get("strength"), bool(ph.summary.get("phrase_expanded")),
            df["reply_lang"].to_list(),
            set(ctx.language_target.targets) if ctx.language_target.active else set(), p.cluster)
    seg_ok = other_ok = None
    claims = None       # rows that joined going along with their user's claim (restated or not)
    path: dict[str, Any] = {}   # how the claim rows were found (``context_claims`` in the summary)
    if "segment" in results:
        ev = results["segment"].row_evidence
        seg_ok, other_ok = ev["member"] > 0, ev["other_context"] > 0
        st = results.get("stance")
        if st is not None and "member" in st.row_evidence:
            # rows that add to their prompt what the anomaly adds to its own (an agreement
            # with the claim each restates): members of the behaviour batch too
            seg_ok = seg_ok | ((st.row_evidence["member"] > 0) & ~other_ok)
            restated = batch_mod.restated_anomaly(ctx, results, p)
            seed = (st.row_evidence["member"] > 0) & ~other_ok
            path.update(restated=bool(restated), own_text_members=int(seed.sum()))
            if restated and not seed.any():
                # the anomaly's own wording of the assent finds no rows: the rows asked the
                # way its prompt asks, restating their claim, seed the batch
                seed = batch_mod.prompt_framing_seeds(ctx, fused, p) & ~other_ok
                seg_ok = seg_ok | seed
                path["framing_seeds"] = int(seed.sum())
            if restated and seed.any():
                # the anomaly goes along with the claim it restates, and so does its batch
                # (the own-text members, the rows that share their segment or phrase, and
                # the rows restating a claim framed as a member's is): whether each row's
                # claim holds decides its context
                seg_ok = seg_ok | (batch_mod.framing_members(ctx, fused, seed, p) & ~other_ok)
                claims = seg_ok.copy() if ph_ok is None else (seg_ok | ph_ok)
                claims &= ~other_ok
        op = results.get("opening")
        if op is not None and "member" in op.row_evidence and "explanation_own" not in results:
            # rows opening their reply the way the anomaly does, not about their own prompt
            # (an assent that goes along with the user): members of the behaviour batch too,
            # unless the rows' own explanations judge the batch (the opening cannot tell a
            # false premise gone along with from a true one; they can)
            seg_ok = seg_ok | ((op.row_evidence["member"] > 0) & ~other_ok)
            # (they go along with their user when the anomaly's reply relates to its prompt
            # less than most replies do: then whether the user's claim holds decides the context)
            along = op.row_evidence["along"] > 0 if "along" in op.row_evidence else None
            path.update(opening_members=int((op.row_evidence["member"] > 0).sum()),
                        opening_along=0 if along is None else int(along.sum()))
            if along is not None and along.any():
                claims = along if claims is None else (claims | along)
        eo = results.get("explanation_own")
        if eo is not None:
            # rows whose own explanations say what the anomaly's say (signals.explanation_own
            # .members): members of the behaviour batch too
            seg_ok = seg_ok | ((eo.row_evidence["member"] > 0) & ~other_ok)
    restating = batch_mod.restating_lookalikes(ctx, results, seg_ok, ph_ok, p)
    if restating is not None:
        # (the anomaly goes along with the claim it restates: batch rows restating no claim
        # of their user share its wording, not its behaviour)
        seg_ok = None if seg_ok is None else seg_ok & ~restating
        ph_ok = None if ph_ok is None else ph_ok & ~restating
        claims = None if claims is None else claims & ~restating
    if claims is not None and claims.any() and "stance" in results:
        # the batch goes along with the claims its rows restate: rows restating none cannot
        # show the behaviour
        far = batch_mod.restating_lookalikes(ctx, results, seg_ok, ph_ok, p, fused)
        if far is not None:
            restating = far if restating is None else (restating | far)
    seg_ok, other_ok, sub_lookalike = batch_mod.substitution_batch(results, seg_ok, other_ok, ph_ok, p)
    if sub_lookalike is None:
        sub_lookalike = batch_mod.substitution_kind(ctx, results, seg_ok, ph_ok, p)
    lang_labels = None
    tgt = ctx.language_target
    if tgt.mode == "ignored_request":
        # one batch of "asked for a language, answered in Y", whatever each row asked for
        lang_labels = [f"ignored request→{r or '?'}" for r in df["reply_lang"].to_list()]
    elif tgt.sources:
        # switches from languages other than the anomaly's source form one batch per target
        # ("an Arabic question answered in English" in a dataset without Arabic prompts)
        src = set(tgt.sources)
        lang_labels = [f"{a}→{b}" if a in src else f"other→{b}" for a, b in
                       zip(df["prompt_lang"].to_list(), df["reply_lang"].to_list())]
    info: dict[str, Any] = {}
    lookalike = None
    sp = p.signals.get("segment")
    if seg_ok is not None and seg_ok.any() and ph_ok is not None and \
            float(ph_ok[seg_ok].mean()) >= sp.phrase_near_overlap:
        # the segment and phrase batches agree on the behaviour: phrase-batch rows with no
        # segment near it share the batch's wording elsewhere (boilerplate around it)
        ph_ok = ph_ok & (results["segment"].row_evidence["near"] > 0)
    # the grounding judgement (when the anomaly's reply asserts what its passage lacks): the
    # best fused rows and the behaviour rows, judged against their own prompt's passage
    seen = [m for m in (seg_ok, other_ok, ph_ok) if m is not None]
    gj, ginfo = grounding_mod.judge_rows(ctx, fused, np.logical_or.reduce(seen) if seen
                                         else None, p.grounding)
    if gj is not None and seg_ok is None:
        seg_ok, other_ok = np.zeros(len(fused), bool), np.zeros(len(fused), bool)
    if gj is not None and gj.same_kind is not None:
        # rows ungrounded the way the anomaly is (echoing the user's claim, or bringing the
        # unsupported content themselves) show its behaviour
        seg_ok = seg_ok | gj.same_kind
    if seg_ok is not None and (seg_ok.any() or other_ok.any() or (
            (gj is not None or "explanation_own" in results)
            and ph_ok is not None and ph_ok.any())):
        # (a phrase batch alone is split when a passage or the rows' explanations can judge it)
        seg_ok, ph_ok, other_ok, lookalike, info = batch_mod.context_split(ctx, results, fused, seg_ok,
                                                                  ph_ok, other_ok, p, gj, claims)
    if restating is not None:
        lookalike = restating if lookalike is None else (lookalike | restating)
    if sub_lookalike is not None:
        lookalike = sub_lookalike if lookalike is None else (lookalike | sub_lookalike)
        seg_ok = seg_ok & ~sub_lookalike
        ph_ok = None if ph_ok is None else ph_ok & ~sub_lookalike
    info["context_grounding"] = ginfo
    info["context_claims"] = {**path, "claim_rows": 0 if claims is None else int(claims.sum())}
    # rows below the anomaly's context: the behaviour elsewhere, lookalikes (rows that lack
    # the behaviour's own words that nearly every behaviour row shows) and, when the
    # anomaly is ungrounded, rows whose passage supports their reply or that have none
    demote = other_ok if lookalike is None else (other_ok | lookalike)
    # lookalikes rank below the behaviour in the clusters too (their final scores are
    # demoted by the same factor); when the anomaly is ungrounded, so does every demoted row
    in_clusters = np.zeros(len(fused), dtype=bool) if lookalike is None else lookalike.copy()
    against = None     # rows the passage check speaks against (grounding.demote_factor)
    if gj is not None:
        against = gj.grounded | (gj.no_passage if gj.passage_context else False)
        if gj.same_kind is not None and p.grounding.other_way_lookalike:
            against = against | (gj.ungrounded & ~gj.same_kind)
        demote = demote | against
        in_clusters |= demote
    ranked = np.where(in_clusters, fused * p.cluster.other_context_factor, fused
                      ).astype(np.float32)
    if against is not None:
        ranked = np.where(against, np.minimum(ranked, fused * p.grounding.demote_factor),
                          ranked).astype(np.float32)
    groups = cluster_mod.group_rows(ws, dataset, df, sample_ids, ranked, lang, ph_ok, p.cluster,
                                    p.fusion.min_fused, indexes.get_if_open("pair"), seg_ok,
                                    other_ok, lang_labels)
    if not groups:
        return [], {}, demote, info
    clusters, member_of = profile_mod.build_clusters(ws, dataset, df, sample_ids, groups, scores,
                                                     ranked, (ctx.hits_reply, ctx.hits_prompt),
                                                     p.profile)
    return clusters, member_of, demote, info


__all__ = ["triage", "fuse", "TriageResult", "STAGES"]
