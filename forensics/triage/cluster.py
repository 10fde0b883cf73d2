"""Clustering of a triage's candidate rows into groups, and their ranking.

1. The pool: the ``pool`` best rows by fused score (at least ``min_fused``).
2. Signatures: a row's behavioural signature is its language pair (``de→en``; ``other→en``
   for a switch from a language that is not the anomaly's source; for an ignored-request
   anomaly ``ignored request→en``, whatever the row asked for) when its language score
   reaches ``lang_threshold``, plus "batch phrase" when it is a phrase-batch member (phrase
   score >= ``phrase_threshold`` and, when the phrase signal expanded, posterior >= 0.5; else
   evidence above the distribution's knee). Pool rows group by signature.
3. Expansion: every dataset row with a pool group's signature joins it, so a whole batch
   surfaces. A combined signature held by fewer than ``min_batch`` rows is no batch: its rows
   join the group of one of its parts (in signature order) when that group is a batch
   (``merge_small_combined``).
4. Rows with no signature are clustered by average-linkage on their embeddings (cosine
   distance ``agglo_distance``); each cluster grows to the rows within its radius of its centroid.
5. Ranking: size-shrunk mean fused score, ``mean x size / (size + size_prior)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from forensics.errors import NotFoundError, StaleError
from forensics.triage.params import ClusterParams

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace


OTHER_CONTEXT = "behaviour, other context"


@dataclass
class Group:
    """Rows (positions) found together, and how: ``kind`` is ``signature``, ``embedding``,
    ``singleton`` or ``residual``; ``pool_members`` how many came from the pool (the rest by
    expansion)."""

    kind: str
    members: list[int]
    signature: dict[str, str] | None = None
    pool_members: int | None = None
    radius: float | None = None
    score: float = 0.0


def knee_cut(values: np.ndarray, min_size: int, min_gap_share: float = 0.3,
             floor: float = 0.1) -> float | None:
    """Membership cut from the score distribution itself: the widest gap between consecutive
    sorted log scores (values below ``floor`` count as ``floor``) that leaves at least
    ``min_size`` rows above it, if that gap spans at least ``min_gap_share`` of the log range.
    Why: a batch carries the behaviour in full and scores as a plateau; rows that only share
    part of its wording trail below a visible step. No step -> no cut (``None``: keep all)."""
    # on a log scale: evidence is additive log-odds, a batch's variants differ by a factor
    # (fewer shared n-grams) while the trailing rows sit an order of magnitude below
    v = np.log(np.clip(np.sort(np.asarray(values, np.float64))[::-1], floor, None))
    if len(v) <= min_size:
        return None
    rng = float(v[0] - v[-1])
    if rng <= 0:
        return None
    gaps = v[min_size - 1:-1] - v[min_size:]
    i = int(np.argmax(gaps))
    if gaps[i] < min_gap_share * rng:
        return None
    k = i + min_size - 1
    return float(np.exp((v[k] + v[k + 1]) / 2))


def agglomerate(vecs: np.ndarray, threshold: float) -> np.ndarray:
    """Deterministic average-linkage clustering on cosine distance, cut at ``threshold``;
    labels 0..k-1 in order of first occurrence. Rows repeated verbatim (the same prompt, the
    same reply) are one point weighing its copies (:func:`weighted_average_cut`): the
    average linkage of the copies, whose distances to every other row are the same, merges
    them first and then averages their equal distances, so the flat clusters are those of
    every row (up to rounding of the merge heights)."""
    if len(vecs) == 1:
        return np.zeros(1, np.int64)
    v = vecs.astype(np.float64)
    u, inv = distinct_rows(v)
    if len(u) > len(v) // 2:
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import pdist

        lab = fcluster(linkage(pdist(v, "cosine"), method="average"), t=threshold,
                       criterion="distance")
    else:
        from scipy.spatial.distance import pdist, squareform

        du = squareform(pdist(u, "cosine")) if len(u) > 1 else np.zeros((1, 1))
        lab = weighted_average_cut(du, np.bincount(inv, minlength=len(u)), threshold)[inv]
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(l), len(first)) for l in lab], np.int64)


def weighted_average_cut(d: np.ndarray, weight: np.ndarray, threshold: float) -> np.ndarray:
    """Flat clusters (a label per point) of average linkage over points of ``weight`` copies
    each, ``d`` their square distance matrix, cut where the merge distance exceeds
    ``threshold`` (scipy's ``fcluster(..., criterion="distance")``). The nearest-neighbour
    chain with the Lance-Williams update of average linkage (the merged cluster's distance is
    the size-weighted mean of its parts'), as scipy's ``linkage`` runs it, on the weighted
    points: O(points²) memory and time instead of O(rows²)."""
    m = len(d)
    if m == 1:
        return np.zeros(1, np.int64)
    dist = np.array(d, np.float64)
    np.fill_diagonal(dist, np.inf)
    size = np.asarray(weight, np.float64).copy()
    parent = np.arange(m)
    chain: list[int] = []
    left = m
    while left > 1:
        if not chain:
            chain.append(int(np.flatnonzero(np.isfinite(size))[0]))
        x = chain[-1]
        y = int(np.argmin(dist[x]))
        if len(chain) > 1 and dist[x, chain[-2]] <= dist[x, y]:
            y = chain[-2]
        if len(chain) < 2 or y != chain[-2]:
            chain.append(y)
            continue
        chain.pop()
        chain.pop()
        h = dist[x, y]
        row = (size[x] * dist[x] + size[y] * dist[y]) / (size[x] + size[y])
        dist[y], dist[:, y] = row, row
        dist[y, y] = np.inf
        dist[x], dist[:, x] = np.inf, np.inf
        size[y] += size[x]
        size[x] = np.inf                          # merged away
        if h <= threshold:
            parent[parent == x] = y               # x's points join y's cluster
        left -= 1
    return parent


def distinct_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of ``v``, compared by their bytes, in first-seen order; for each row
    of ``v`` its row there). By bytes: a sort of whole rows (``np.unique(axis=0)``) costs more
    than the work it saves its callers."""
    v = np.ascontiguousarray(v)
    first: dict[bytes, int] = {}
    inv = np.fromiter((first.setdefault(r.tobytes(), len(first)) for r in v), np.int64, len(v))
    if len(first) == len(v):
        return v, inv
    keep = np.zeros(len(first), np.int64)
    keep[inv[::-1]] = np.arange(len(v) - 1, -1, -1)   # each distinct row's first position
    return v[keep], inv


def phrase_members(phrase: np.ndarray, strength: np.ndarray | None, expanded: bool,
                   reply_lang: list, lang_targets: set[str], p: ClusterParams) -> np.ndarray | None:
    """Rows that belong to the phrase batch (``None``: the phrase gives no signature)."""
    ok = phrase >= p.phrase_threshold
    if strength is not None and expanded:
        # the expansion's own batch: posterior >= 0.5 (at least two batch n-grams; one alone
        # cannot beat the prior); rows that only share the anomaly's seed wording stay out
        ok &= strength >= 0.0
    elif strength is not None and p.phrase_knee:
        cut = knee_cut(strength[ok], p.knee_min_rows, p.knee_min_gap_share, p.knee_floor)
        if cut is not None:
            ok &= strength >= cut
    # a phrase whose rows nearly all reply in the switch's target language is language
    # identity (an explanation quoting the foreign reply), already covered by the language
    # signal: as a signature it would only split the language batch in two
    if lang_targets and ok.any():
        in_target = np.isin(np.asarray(reply_lang, dtype=object), list(lang_targets))
        if float(in_target[ok].mean()) >= p.language_identity_share:
            return None
    return ok


def group_rows(ws: "Workspace", dataset: str, df: pl.DataFrame, sample_ids: np.ndarray,
               fused: np.ndarray, lang: np.ndarray | None, ph_ok: np.ndarray | None,
               p: ClusterParams, min_fused: float, pair_index: Any = None,
               seg_ok: np.ndarray | None = None, other_ok: np.ndarray | None = None,
               lang_labels: list[str] | None = None) -> list[Group]:
    """The groups of the candidate pool, ranked best first (see the module docstring).
    ``seg_ok``: behaviour-segment members; they share the phrase batch's signature part
    ("batch behaviour": one behaviour, whatever its wording). ``other_ok``: rows showing the
    behaviour where their prompt asked for it; their part reads "behaviour, other context"
    and their group's score is multiplied by ``other_context_factor``. ``lang_labels``: each
    row's language signature when it is not its prompt→reply pair."""
    label = "batch phrase"
    if seg_ok is not None and seg_ok.any():
        ph_ok = seg_ok if ph_ok is None else (ph_ok | seg_ok)
        label = "batch behaviour"
    if other_ok is not None and other_ok.any():
        ph_ok = other_ok if ph_ok is None else (ph_ok | other_ok)
    else:
        other_ok = None
    n = df.height
    order = np.lexsort((sample_ids, -fused))
    pool = [int(j) for j in order[:p.pool] if fused[j] >= min_fused]
    if not pool:
        return []
    plang = df["prompt_lang"].to_list()
    rlang = df["reply_lang"].to_list()

    def signature(j: int) -> tuple | None:
        parts = []
        if lang is not None and lang[j] >= p.lang_threshold:
            parts.append(("lang", lang_labels[j] if lang_labels is not None
                          else f"{plang[j]}→{rlang[j]}"))
        if ph_ok is not None and ph_ok[j]:
            parts.append(("phrase", OTHER_CONTEXT if other_ok is not None and other_ok[j]
                           else label))
        return tuple(parts) if parts else None

    groups: dict[tuple, list[int]] = {}
    rest: list[int] = []
    for j in pool:
        s = signature(j)
        if s is None:
            rest.append(j)
        else:
            groups.setdefault(s, []).append(j)
    # expansion over the whole dataset: every row with a pool group's signature joins it
    sig_groups: dict[tuple, list[int]] = {s: [] for s in groups}
    cand = np.zeros(n, bool)
    if lang is not None:
        cand |= lang >= p.lang_threshold
    if ph_ok is not None:
        cand |= ph_ok
    for j in np.flatnonzero(cand):
        s = signature(int(j))
        if s in sig_groups:
            sig_groups[s].append(int(j))
    # a combined signature held by fewer rows than a batch is no batch of its own: its rows
    # join the group of one of its parts (in signature order) when that group is a batch
    small = [s for s, m in sig_groups.items() if len(m) < p.min_batch and len(s) > 1]
    for s in small if p.merge_small_combined else []:
        for part in s:
            if len(sig_groups.get((part,), [])) >= p.min_batch:
                sig_groups[(part,)].extend(sig_groups.pop(s))
                break
    raw: list[Group] = []
    pool_set = set(pool)
    for s, members in sig_groups.items():
        if len(members) < p.min_batch:
            rest.extend(m for m in members if m in pool_set)
            continue
        raw.append(Group("signature", members, signature={k: v for k, v in s},
                         pool_members=len(groups[s])))
    # rows with no behavioural signature: embedding clusters, grown within their radius
    rest = [j for j in rest if fused[j] >= min_fused]
    if rest:
        raw.extend(embedding_groups(ws, dataset, sample_ids, rest, p, pair_index))
    for g in raw:
        g.members = sorted(set(g.members))
        size = len(g.members)
        g.score = float(fused[g.members].mean()) * size / (size + p.size_prior)
        if g.signature and g.signature.get("phrase") == OTHER_CONTEXT:
            g.score *= p.other_context_factor
    raw.sort(key=lambda g: (-g.score, sample_ids[g.members[0]]))
    return raw


def embedding_groups(ws: "Workspace", dataset: str, sample_ids: np.ndarray, rest: list[int],
                     p: ClusterParams, oi: Any = None) -> list[Group]:
    """Agglomerative clusters of ``rest`` on the pair index's vectors, each grown to the rows
    within its radius of its centroid; one residual group when there is no usable index."""
    if oi is None:
        from forensics.search import index

        try:
            with ws.locked():
                oi = index.open_index(ws, dataset, "pair", read_only=True)
        except (NotFoundError, StaleError):
            oi = None
    if oi is None:
        return [Group("residual", rest)]
    rest = rest[:p.agglo_max_rows]
    vecs = oi.vectors(sample_ids[rest])
    labels = agglomerate(vecs, p.agglo_distance)
    pos = {int(s): i for i, s in enumerate(sample_ids)}
    out = []
    for lab in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == lab)
        members = [rest[i] for i in idx]
        if len(members) < 2:
            out.append(Group("singleton", members))
            continue
        cen = vecs[idx].mean(axis=0)
        cen /= max(np.linalg.norm(cen), 1e-12)
        radius = float((vecs[idx] @ cen).min())
        k = min(oi.ntotal, p.grow_factor * len(members) + p.grow_extra)
        s, ids = oi.search(cen[None, :], k)
        grown = set(members)
        for sc, x in zip(s[0], ids[0]):
            j = pos.get(int(x))
            if x >= 0 and sc >= radius and j is not None:
                grown.add(j)
        out.append(Group("embedding", sorted(grown), pool_members=len(members),
                         radius=round(radius, 4)))
    return out


__all__ = ["Group", "knee_cut", "agglomerate", "phrase_members", "group_rows", "embedding_groups"]
