"""ANN search scoring shared by the dense signals (``prompt``, ``reply``) and ``explanation``.

A row's score is its best min-max normalised similarity among one query's ``k`` hits; rows
outside the hit list score 0. The signals average these vectors over queries and indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from forensics.triage.signals.base import SignalContext


@dataclass
class DenseParams:
    """Knobs of a dense signal (documented in docs/triage.md)."""

    k: int = 1000                     # ANN hits per query


def search_scores(context: SignalContext, oi: Any, texts: list[str], k: int,
                  to_sample: Callable[[int], int | None] | None = None) -> list[np.ndarray]:
    """One score vector per query text: each hit's similarity min-max normalised over the
    query's hits, mapped to row positions (``to_sample`` maps an index id to a sample id; the
    id itself by default), the best per row."""
    n = context.n
    pos = context.position
    vecs = context.indexes.embed(oi, texts)
    kk = min(k, oi.ntotal) if oi.ntotal else 1
    scores, ids = oi.search(vecs, kk)
    out = []
    for q in range(len(texts)):
        v = np.zeros(n, np.float32)
        row_s, row_i = scores[q], ids[q]
        ok = row_i >= 0
        if not ok.any():
            out.append(v)
            continue
        s, ii = row_s[ok], row_i[ok]
        hi, lo = float(s.max()), float(s.min())
        norm = (s - lo) / (hi - lo) if hi > lo else np.ones_like(s)
        for sc, x in zip(norm, ii):
            sid = to_sample(int(x)) if to_sample is not None else int(x)
            j = pos.get(sid) if sid is not None else None
            if j is not None and sc > v[j]:
                v[j] = sc
        out.append(v)
    return out


def query_texts(texts: list[str | None]) -> list[str]:
    return [t for t in texts if t and t.strip()]


__all__ = ["DenseParams", "search_scores", "query_texts"]
