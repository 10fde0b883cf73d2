"""The per-row work of a triage done once per distinct input (what keeps triage at 100k rows
within its latency budget) gives the same answers as row by row; the latency bench's
baseline switches every step it says it switches off."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

REPO = Path(__file__).resolve().parents[1]


class _FlatPrompts:
    """A real FAISS inner-product index over unit vectors, with the two calls the context
    split makes (``search``, ``vectors``); ``searched`` counts the query vectors searched."""

    def __init__(self, vecs: np.ndarray, ids: np.ndarray):
        self.vecs, self.id_list = vecs, ids
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(vecs.shape[1]))
        self.index.add_with_ids(vecs, ids)
        self.searched = 0

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, q: np.ndarray, k: int):
        self.searched += len(q)
        s, i = self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        return s, i.astype(np.int64)

    def vectors(self, ids) -> np.ndarray:
        pos = {int(x): j for j, x in enumerate(self.id_list)}
        return self.vecs[[pos[int(x)] for x in ids]]


def _prompts(seed: int = 0, topics: int = 12, copies: int = 5):
    """Unit prompt vectors: ``topics`` prompts, each repeated ``copies`` times verbatim
    (identical vectors) plus one paraphrase near it."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(topics, 32))
    rows = []
    for t in range(topics):
        rows += [base[t]] * copies + [base[t] + 0.2 * rng.normal(size=32)]
    v = np.asarray(rows, np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, np.arange(100, 100 + len(v), dtype=np.int64)


def _rates_loop(pos, sims, ids, behaviour, k, self_ids, temperature):
    """The neighbour rate one query at a time (the definition
    :func:`forensics.triage.norm_rates.rates` computes for
    all queries at once)."""
    out = np.zeros(len(ids))
    for i in range(len(ids)):
        ok = ids[i] >= 0
        hit, sim = ids[i][ok], sims[i][ok].astype(np.float64)
        if self_ids is not None:
            keep = hit != self_ids[i]
            hit, sim = hit[keep][:k - 1], sim[keep][:k - 1]
        j = np.clip(np.searchsorted(pos, hit), 0, len(pos) - 1)
        found = pos[j] == hit
        j, sim = j[found], sim[found]
        known = ~np.isnan(behaviour[j])
        j, sim = j[known], sim[known]
        if not len(j):
            continue
        w = np.exp((np.minimum(sim, 1.0) - 1.0) / temperature) if temperature > 0 else \
            np.ones(len(j))
        out[i] = float((w * behaviour[j]).sum() / max(float(w.sum()), 1e-12))
    return out


@pytest.mark.parametrize("temperature", [0.0, 0.1])
def test_rates_of_all_queries_at_once_equal_one_query_at_a_time(temperature):
    from forensics.triage.norm_rates import rates as _rates

    v, ids = _prompts(seed=2, topics=20, copies=3)
    rng = np.random.default_rng(3)
    shown = (rng.random(len(ids)) < 0.4).astype(np.float64)
    shown[rng.random(len(ids)) < 0.2] = np.nan
    pos = ids[rng.random(len(ids)) < 0.9]            # rows the dataset no longer has: skipped
    pidx = _FlatPrompts(v, ids)
    ctx = SimpleNamespace(sample_ids=pos)
    b = shown[np.isin(ids, pos)]
    for k, self_ids in ((10, None), (12, ids), (40, ids)):
        got = _rates(ctx, pidx, v, b, k, self_ids=self_ids, temperature=temperature)
        sims, hit = pidx.index.search(v, k)
        want = _rates_loop(pos, sims, hit.astype(np.int64), b, k, self_ids, temperature)
        assert np.array_equal(got, want)            # bit for bit, not approximately
        assert got.max() > 0


def test_rates_search_each_distinct_prompt_once_and_answer_as_row_by_row():
    from forensics.triage.context import ContextParams
    from forensics.triage.norm_rates import rates as _rates, region_rates as _region_rates

    v, ids = _prompts()
    ctx = SimpleNamespace(sample_ids=ids)
    rng = np.random.default_rng(1)
    shown = (rng.random(len(ids)) < 0.4).astype(np.float64)
    shown[3] = np.nan                                  # a row asked for the behaviour
    p = ContextParams()
    rows = np.arange(len(ids))
    pidx = _FlatPrompts(v, ids)
    rate = _rates(ctx, pidx, v, shown, 6, self_ids=ids, temperature=0.1)
    region = _region_rates(ctx, pidx, v, shown, 20, p)
    distinct = len(np.unique(v, axis=0))
    assert distinct < len(v) and pidx.searched == 2 * distinct
    # the same numbers, one row at a time
    one = _FlatPrompts(v, ids)
    for j in rows:
        assert rate[j] == pytest.approx(
            _rates(ctx, one, v[j:j + 1], shown, 6, self_ids=ids[j:j + 1], temperature=0.1)[0])
        assert region[j] == pytest.approx(_region_rates(ctx, one, v[j:j + 1], shown, 20, p)[0])
    assert one.searched == 2 * len(v)
    assert 0 < rate.max() <= 1 and 0 < region.max() <= 1


def test_grounding_judges_a_repeated_pair_once(monkeypatch):
    from forensics.triage import grounding

    passage = ("The castle was built in 1241 by Count Albrecht of Varnholt on the northern bank "
               "of the river Elde, and it burned down in 1563.")
    anomaly_prompt = f"{passage}\n\nI think the castle was built by Duke Henrik, right?"
    pairs = [(f"{passage}\n\nWho built the castle?", "Count Albrecht of Varnholt built it in 1241."),
             (f"{passage}\n\nWho built the castle?", "Duke Ottmar of Varnholt built it in 1241."),
             ("Who built the castle?", "Count Albrecht did.")] * 4
    calls = []
    real = grounding.judge
    monkeypatch.setattr(grounding, "judge", lambda *a, **k: calls.append(a) or real(*a, **k))

    class _WS:
        def sql(self, q, params):
            import polars as pl

            sids = params[1]
            return pl.DataFrame({"sample_id": sids, "prompt": [pairs[s][0] for s in sids],
                                 "reply": [pairs[s][1] for s in sids]})

    ctx = SimpleNamespace(
        anomaly=SimpleNamespace(prompt=anomaly_prompt, reply="Yes, Duke Henrik built it."),
        language_target=SimpleNamespace(active=False), sample_ids=np.arange(len(pairs)),
        ws=_WS(), dataset="train")
    g, info = grounding.judge_rows(ctx, np.linspace(1, 0, len(pairs)), None,
                                   grounding.GroundingParams())
    assert info["applied"] and info["judged"] == len(pairs)
    # the anomaly once, each distinct pair with a passage once
    assert len(calls) == 1 + 2
    assert g.grounded.tolist() == [True, False, False] * 4
    assert g.ungrounded.tolist() == [False, True, False] * 4
    assert g.no_passage.tolist() == [False, False, True] * 4


def test_index_reconstruct_in_one_call_matches_per_id_and_names_a_missing_id(tmp_path):
    from forensics.errors import NotFoundError
    from forensics.search.index import OpenIndex

    v, ids = _prompts(topics=4, copies=2)
    oi = object.__new__(OpenIndex)   # only the FAISS index and its dimension are read
    oi.index = faiss.IndexIDMap2(faiss.IndexFlatIP(v.shape[1]))
    oi.index.add_with_ids(v, ids)
    oi.manifest = SimpleNamespace(dim=v.shape[1])
    oi.path = tmp_path / "x.faiss"
    got = oi.reconstruct(ids[::-1])
    assert got.dtype == np.float32 and np.array_equal(got, v[::-1])
    with pytest.raises(NotFoundError, match="999"):
        oi.reconstruct(np.array([ids[0], 999]))


@pytest.mark.parametrize("kind", ["ivf-sq8", "hnsw", "flat"])
def test_search_wide_returns_the_k_nearest_whatever_the_index(kind, tmp_path):
    """An IVF index probing a few lists (or HNSW with a small efSearch) cannot return many
    rows; ``search_wide`` widens the search so about ``k`` rows come back, the exact nearest
    among them."""
    from forensics.search.ann import apply_params, new_index
    from forensics.search.index import OpenIndex

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 32))    # texts on topics: vectors around 30 centres
    v = (centres[rng.integers(0, 30, 3000)] + 0.4 * rng.normal(size=(3000, 32))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = np.arange(10, 3010, dtype=np.int64)
    index, params = new_index(kind, 32, len(v), v)
    narrow = {"ivf-sq8": {"nprobe": 1}, "hnsw": {"efSearch": 16}, "flat": {}}[kind]
    apply_params(index, kind, {**params, **narrow})
    index.add_with_ids(v, ids)
    oi = object.__new__(OpenIndex)
    oi.index = index
    oi.manifest = SimpleNamespace(dim=32, index_type=kind, shards=None)
    q = v[:2]
    got = oi.search_wide(q, 500)
    assert np.all(np.diff(got) > 0) and np.isin(got, ids).all()
    assert 500 <= len(got) <= 1000
    exact = np.argsort(-(v @ q.T), axis=0, kind="stable")[:100]
    assert np.isin(ids[exact.ravel()], got).mean() >= 0.95
    if kind == "ivf-sq8":   # one probed list alone holds far fewer rows
        _, few = oi.index.search(q, 500)
        assert (few >= 0).sum() < 500


def test_latency_bench_corpus_and_baseline(xquad_dir, monkeypatch):
    from forensics.triage.params import TriageParams

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import triage_latency as tl
    finally:
        sys.path.remove(str(REPO / "bench"))
    monkeypatch.setattr(tl, "XQ", xquad_dir)
    records, anomalies = tl.base_corpus(("code_tail", "agree_passage"))
    assert {"de", "aside", "code_tail", "agree_passage"} <= set(anomalies)
    assert all(set(r) == {"id", "prompt", "reply", "source", "shard"} for r in records)
    assert len({r["id"] for r in records}) == len(records)
    assert any("```" in r["reply"] for r in records)
    base, _ = tl.base_corpus(())
    assert len(base) < len(records) and "code_tail" not in _
    p = TriageParams.from_dict(tl.BASELINE_PARAMS)
    assert not p.context.enabled and not p.grounding.enabled
    from forensics.triage.signals.base import registered

    assert set(tl.BASELINE_UNREGISTERED) == {"segment", "stance", "substitution",
                                             "explanation_own", "opening"} <= set(registered())


def _scipy_labels(v: np.ndarray, t: float) -> list[int]:
    from scipy.cluster.hierarchy import fcluster, linkage

    lab = fcluster(linkage(v, method="average", metric="cosine"), t=t, criterion="distance")
    first: dict[int, int] = {}
    return [first.setdefault(int(x), len(first)) for x in lab]


def test_agglomerate_of_repeated_rows_gives_the_clusters_of_every_row():
    from forensics.triage.cluster import agglomerate

    rng = np.random.default_rng(3)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        base = rng.normal(size=(15 + seed, 24))
        base[1::3] = base[0::3][:len(base[1::3])] + 0.4 * rng.normal(size=base[1::3].shape)
        for v in (base[rng.integers(0, len(base), 300)],                # mostly repeats
                  np.vstack([base[rng.integers(0, len(base), 40)], rng.normal(size=(200, 24))]),
                  base[rng.integers(0, len(base), 60)]):
            v = v.astype(np.float64)
            for t in (0.3, 0.6, 0.9):
                assert agglomerate(v.astype(np.float32), t).tolist() == \
                    _scipy_labels(v.astype(np.float32).astype(np.float64), t)


def test_weighted_average_cut_is_average_linkage_of_the_copies():
    from scipy.spatial.distance import pdist, squareform

    from forensics.triage.cluster import weighted_average_cut

    rng = np.random.default_rng(7)
    u = rng.normal(size=(40, 8))
    w = rng.integers(1, 6, 40)
    full = np.repeat(u, w, axis=0)
    for t in (0.5, 0.8, 1.0):
        lab = weighted_average_cut(squareform(pdist(u, "cosine")), w, t)
        got = np.repeat(lab, w)
        ref = np.asarray(_scipy_labels(full, t))
        # the same partition of the copies
        assert len(set(zip(got.tolist(), ref.tolist()))) == len(set(ref.tolist())) == \
            len(set(got.tolist()))
    assert weighted_average_cut(np.zeros((1, 1)), np.array([3]), 0.5).tolist() == [0]


def test_residual_cosines_without_the_residual_matrix_match_the_residuals():
    from forensics.triage.signals.stance import residual_cos, residuals

    rng = np.random.default_rng(5)
    r = rng.normal(size=(400, 48)).astype(np.float32)
    p = rng.normal(size=(400, 48)).astype(np.float32)
    p[:7] = 0                                          # rows without a prompt vector
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    p[7:] /= np.linalg.norm(p[7:], axis=1, keepdims=True)
    q = residuals(r[:1], p[10:11])[0][0]
    res, norm = residuals(r, p)
    cos, norm2 = residual_cos(r, p, q)
    assert cos.dtype == np.float64
    assert np.allclose(cos, res @ q, atol=1e-5) and np.allclose(norm, norm2, atol=1e-5)
    assert np.allclose(norm2[:7], 1.0, atol=1e-5)       # no prompt: the reply is its residual
    assert (np.argsort(-cos)[:50] == np.argsort(-(res @ q))[:50]).all()


def test_run_index_reads_each_vector_once_and_answers_as_the_index(tmp_path):
    """A run's index (``RunIndex``) over a real sq8 FAISS index: the vectors of any ids, in any
    order and repeated, are the index's own, each id read from it once; the arrays handed
    out are the caller's (changing one changes no later answer); the id list is read once;
    every other attribute is the index's."""
    from forensics.search.ann import new_index
    from forensics.search.index import OpenIndex
    from forensics.triage.indexes import RunIndex

    v, ids = _prompts(topics=6, copies=3)
    index, _ = new_index("ivf-sq8", v.shape[1], len(v), v)
    index.add_with_ids(v, ids)
    oi = object.__new__(OpenIndex)
    oi.index = index
    oi.manifest = SimpleNamespace(dim=v.shape[1], index_type="flat", shards=None)
    oi.path = tmp_path / "x.faiss"
    read: list[int] = []
    listed = []

    class Counting:
        manifest, ntotal = oi.manifest, oi.ntotal

        def vectors(self, x):
            read.extend(np.asarray(x).tolist())
            return oi.vectors(x)

        def ids(self):
            listed.append(1)
            return ids

        def search(self, q, k):
            return oi.search(q, k)

    ri = RunIndex(Counting())
    want = np.array([ids[3], ids[0], ids[3], ids[5]])
    got = ri.vectors(want)
    assert got.dtype == np.float32 and np.array_equal(got, oi.vectors(want))
    got[:] = 0                                   # the caller's copy
    again = ri.vectors(np.concatenate([ids[::-1], ids[:2]]))
    assert np.array_equal(again, oi.vectors(np.concatenate([ids[::-1], ids[:2]])))
    assert sorted(read) == sorted(ids.tolist())   # each id read once
    assert ri.vectors([]).shape == (0, v.shape[1])
    assert ri.ids() is ri.ids() and listed == [1]
    assert ri.ntotal == len(v) and ri.manifest is oi.manifest
    s, i = ri.search(v[:1], 2)
    assert np.array_equal(i, oi.search(v[:1], 2)[1]) and i[0, 0] in ids[:3]   # 3 copies
