"""Norm rates of the context split (:mod:`forensics.triage.context`, step 3): how often the
prompts nearest a behaviour row's prompt show the behaviour, over its nearest prompts
(:func:`rates`) or its nearest distinct other prompts (:func:`region_rates`). Each distinct
query vector is searched once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.context import ContextParams
    from forensics.triage.signals.base import SignalContext


def rates(context: "SignalContext", pidx: Any, q: np.ndarray, behaviour: np.ndarray, k: int,
           self_ids: np.ndarray | None = None, temperature: float = 0.0) -> np.ndarray:
    """Share of each query's ``k`` nearest prompts (itself excluded) whose rows show the
    behaviour (``behaviour`` 1 / 0; NaN rows are left out); with ``temperature`` > 0 each
    neighbour weighs ``exp((cos - 1) / temperature)`` (a near-duplicate prompt counts fully, a
    loosely related one little)."""
    sims, ids = search_distinct(pidx, q, k)
    pos = context.sample_ids
    # every query at once: the hits each query keeps, in rank order, flattened row by row
    keep = ids >= 0
    if self_ids is not None:
        keep &= ids != np.asarray(self_ids)[:, None]
        keep &= np.cumsum(keep, axis=1) <= k - 1          # its first k - 1 other hits
    j = np.clip(np.searchsorted(pos, ids), 0, len(pos) - 1) if len(pos) else np.zeros_like(ids)
    keep &= (pos[j] == ids) if len(pos) else False
    keep[keep] = ~np.isnan(behaviour[j[keep]])
    n_kept = keep.sum(axis=1)
    out = np.zeros(len(q), np.float64)
    if not n_kept.any():
        return out
    jj, sim = j[keep], sims[keep].astype(np.float64)
    w = np.exp((np.minimum(sim, 1.0) - 1.0) / temperature) if temperature > 0 else \
        np.ones(len(jj))
    wb = w * behaviour[jj]
    start = np.concatenate([[0], np.cumsum(n_kept)[:-1]])
    # per-query sums over its own hits, the queries with m hits as one [queries, m] matrix
    # (a row sum of m values adds them as a sum of those m values alone: the same result)
    for m in np.unique(n_kept[n_kept > 0]):
        rows = np.flatnonzero(n_kept == m)
        at = start[rows][:, None] + np.arange(m)
        out[rows] = wb[at].sum(axis=1) / np.maximum(w[at].sum(axis=1), 1e-12)
    return out


def region_rates(context: "SignalContext", pidx: Any, q: np.ndarray, behaviour: np.ndarray,
                  k: int, p: ContextParams) -> np.ndarray:
    """The behaviour's share among each query's ``p.neighbours`` nearest *distinct* other
    prompts: hits within ``duplicate_cos`` of the query are its own prompt and left out, hits
    within ``duplicate_cos`` of a nearer hit count with it as one prompt (its rows' mean);
    each distinct prompt weighs ``exp((cos - 1) / region_temperature)`` (0: the same)."""
    # the result depends on the query vector only: rows with the same prompt share it
    q, inv = distinct_rows(q)
    sims, ids = pidx.search(q, k)
    pos = context.sample_ids
    out = np.zeros(len(q), np.float64)
    uniq = np.unique(ids[ids >= 0])
    vec = dict(zip(uniq.tolist(), pidx.vectors(uniq).astype(np.float32))) if len(uniq) else {}
    for i in range(len(q)):
        ok = (ids[i] >= 0) & (sims[i] < p.duplicate_cos)
        hit, sim = ids[i][ok], sims[i][ok].astype(np.float64)
        j = np.clip(np.searchsorted(pos, hit), 0, len(pos) - 1)
        found = pos[j] == hit
        found[found] = ~np.isnan(behaviour[j[found]])
        hit, sim, j = hit[found], sim[found], j[found]
        reps: list[np.ndarray] = []
        rep_sim: list[float] = []
        rep_vals: list[list[float]] = []
        for h, s_, jj in zip(hit.tolist(), sim.tolist(), j.tolist()):
            v = vec[h]
            if reps:
                c = np.asarray(reps) @ v
                b = int(np.argmax(c))
                if c[b] >= p.duplicate_cos:
                    rep_vals[b].append(float(behaviour[jj]))
                    continue
            if len(reps) >= p.neighbours:
                continue
            reps.append(v)
            rep_sim.append(s_)
            rep_vals.append([float(behaviour[jj])])
        if not reps:
            continue
        t = p.region_temperature
        w = (np.exp((np.minimum(np.asarray(rep_sim), 1.0) - 1.0) / t) if t > 0
             else np.ones(len(reps)))
        share = np.array([np.mean(x) for x in rep_vals])
        out[i] = float((w * share).sum() / max(float(w.sum()), 1e-12))
    return out[inv]


def distinct_rows(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~forensics.triage.cluster.distinct_rows` of ``q`` as float32 (the search's
    query type)."""
    from forensics.triage import cluster

    return cluster.distinct_rows(np.asarray(q, dtype=np.float32))


def search_distinct(pidx: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``pidx.search(q, k)`` with each distinct query vector searched once (rows with the
    same prompt have the same neighbours)."""
    uq, inv = distinct_rows(q)
    if len(uq) == len(inv):
        return pidx.search(uq, k)
    sims, ids = pidx.search(uq, k)
    return sims[inv], ids[inv]


__all__ = ["rates", "region_rates", "distinct_rows", "search_distinct"]
