"""FAISS index construction: the index types, training, recall tuning and thread control.

Vectors are L2-normalised and every index uses inner product (= cosine). faiss is imported
only when a function needs it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from forensics.errors import UsageError

INDEX_TYPES = ("flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq")
# Below this many rows exact search is fast enough (about 1 ms per query at 50k x 384-d) and
# needs no tuning, so ``auto`` picks ``flat``; above it ``ivf-sq8`` (measured in docs/index.md:
# recall@10 >= 0.95 at about 0.4 GB per million vectors).
FLAT_THRESHOLD = 50_000
TARGET_RECALL = 0.95


def load_faiss():
    """The faiss module (imported on first use)."""
    import faiss

    return faiss


def choose_type(n: int, requested: str | None) -> str:
    """The index type to build: ``auto`` / None picks flat below FLAT_THRESHOLD rows, else ivf-sq8."""
    if requested in (None, "", "auto"):
        return "flat" if n < FLAT_THRESHOLD else "ivf-sq8"
    if requested not in INDEX_TYPES:
        raise UsageError(f"unknown index type {requested!r}",
                         hint="one of: auto, " + ", ".join(INDEX_TYPES))
    return requested


def new_index(kind: str, dim: int, n: int, train: np.ndarray | None) -> tuple[Any, dict]:
    """An empty index of ``kind`` (trained when it needs training) and its parameters."""
    faiss = load_faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), {}
    if kind in ("hnsw", "hnsw-sq8"):
        m, efc, efs = 32, 80, 128
        if kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, m, ip)
        else:
            base = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, ip)
            base.train(train)
        base.hnsw.efConstruction = efc
        base.hnsw.efSearch = efs
        return faiss.IndexIDMap2(base), {"M": m, "efConstruction": efc, "efSearch": efs}
    # IVF: about 4 * sqrt(n) lists, trained on at most 50 points per list
    nlist = int(max(16, min(65536, 4 * np.sqrt(max(n, 1)))))
    nlist = min(nlist, max(1, len(train) // 39)) if train is not None else nlist
    quant = faiss.IndexFlatIP(dim)
    if kind == "ivf-sq8":
        base = faiss.IndexIVFScalarQuantizer(quant, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        params = {"nlist": nlist}
    elif kind == "ivf-pq":
        msub = _pq_m(dim)
        # 8-bit codes need >= 256 training points per sub-quantiser; tiny corpora get fewer bits
        nbits = int(min(8, max(1, np.floor(np.log2(max(len(train), 2))))))
        base = faiss.IndexIVFPQ(quant, dim, nlist, msub, nbits, ip)
        params = {"nlist": nlist, "pq_m": msub, "pq_bits": nbits}
    else:  # pragma: no cover - guarded by choose_type
        raise UsageError(f"unknown index type {kind!r}")
    # the python wrapper keeps ``quant`` alive through base.referenced_objects
    base.cp.seed = 1234
    base.train(train)
    base.set_direct_map_type(faiss.DirectMap.Hashtable)
    params["nprobe"] = min(nlist, 32)
    return base, params


def _pq_m(dim: int) -> int:
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m and dim % m == 0 and m <= 96:
            return m
    return 1


def apply_params(index: Any, kind: str, params: dict) -> None:
    """Set the search-time parameters (nprobe / efSearch) recorded in a manifest."""
    faiss = load_faiss()
    if kind.startswith("ivf"):
        faiss.extract_index_ivf(index).nprobe = int(params.get("nprobe", 32))
    elif kind.startswith("hnsw"):
        faiss.downcast_index(index.index).hnsw.efSearch = int(params.get("efSearch", 128))


def tune(index: Any, kind: str, params: dict, vecs: np.ndarray, ids: np.ndarray,
          nq: int = 200, seed: int = 0) -> float | None:
    """Raise nprobe / efSearch until recall@10 against exact search reaches TARGET_RECALL.

    Queries are indexed vectors plus noise (an unseen query near the data, like a real one);
    the exact answer comes from brute force over all vectors. Returns the measured recall.
    """
    if kind == "flat" or len(vecs) < 20:
        return 1.0 if kind == "flat" else None
    faiss = load_faiss()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vecs), size=min(nq, len(vecs)), replace=False)
    q = vecs[pick] + rng.normal(0, 0.5 / np.sqrt(vecs.shape[1]), size=(len(pick), vecs.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = min(10, len(vecs))
    _, truth = faiss.knn(q, vecs, k, metric=faiss.METRIC_INNER_PRODUCT)  # no copy of vecs
    truth_ids = ids[truth]
    key, steps = (("nprobe", [8, 16, 32, 64, 128, 256, 512]) if kind.startswith("ivf")
                  else ("efSearch", [64, 128, 256, 512]))
    if key == "nprobe":
        steps = [s for s in steps if s <= params["nlist"]] or [params["nlist"]]
    recall = 0.0
    for s in steps:
        params[key] = s
        apply_params(index, kind, params)
        _, got = index.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth_ids)]))
        if recall >= TARGET_RECALL:
            break
    return round(recall, 4)


@contextlib.contextmanager
def few_query_threads(n_queries: int, threshold: int = 8):
    """Search one or a few queries on a single OpenMP thread.

    Why: FAISS parallelises a single query over the database with OpenMP; on a shared 2-core
    box under load the threads' spin-waits made exact single-query search 4x slower (measured
    p50 128 ms with 2 threads vs 29 ms with 1 at 100k, load average 8). Batches keep all threads.
    """
    if n_queries >= threshold:
        yield
        return
    faiss = load_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
