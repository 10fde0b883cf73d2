"""ONNX Runtime backends vs today's torch path, against the fp32 matmul peak of this machine.

    .venv/bin/python bench/embed_onnx.py [--n 400] [--rounds 3] [--threads 0] [--batch 64]

Texts (none used for int8 calibration, which reads the even rows of the demo corpus):
the ``pair`` texts of the ODD rows of examples/data/demo_corpus.jsonl (mixed languages), and
for agreement also XQuAD questions in de / es / zh / el / en (``shared/data/xquad``, when present).
In the same process, rounds interleaved (the median round per backend is reported):

* ``torch`` - ``Embedder(backend="torch")`` (forensics.search.minibert, the baseline);
* ``onnx`` - ONNX Runtime on the exported graph, fp32;
* ``onnx-int8`` - static int8 (QDQ, per-channel weights, calibrated; see onnx_embed.OnnxSettings).

Also measured in the run: the fp32 matmul peak (torch ``mm`` of two 2048x2048 matrices, best of
5, at the same thread count), and the share of it each backend reaches, counting the FLOPs of
the padded batches actually run (linear layers 2*12*d^2 per token per layer plus attention
4*L*d). Printed: rows/s, word pieces/s (real tokens), ratio vs torch, cosine vs torch fp32
(min / p1 / mean, per language for XQuAD). Written: bench/results/embed_onnx.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import demo_pair_texts, shared_dir, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def held_pairs() -> list[str]:
    """The demo corpus's odd rows (calibration reads the even ones)."""
    return demo_pair_texts()[1::2]


def xquad_questions(lang: str, n: int) -> list[str]:
    p = shared_dir() / "data" / "xquad" / f"xquad.{lang}.json"
    if not p.is_file():
        return []
    data = json.loads(p.read_text(encoding="utf-8"))["data"]
    return [qa["question"] for a in data for para in a["paragraphs"] for qa in para["qas"]][:n]


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops(lengths: np.ndarray, bs: int, d: int, layers: int) -> float:
    """FLOPs of the padded batches ``encode`` runs (longest-first batches of ``bs``)."""
    order = np.argsort(-lengths, kind="stable")
    tot = 0.0
    for s in range(0, len(order), bs):
        b = lengths[order[s:s + bs]]
        L, n = int(b.max()), len(b)
        tot += n * L * layers * (24 * d * d + 4 * L * d)
    return tot


def cos_stats(a: np.ndarray, b: np.ndarray) -> dict:
    c = (a * b).sum(1)
    return {"min": round(float(c.min()), 5), "p1": round(float(np.percentile(c, 1)), 5),
            "mean": round(float(c.mean()), 5), "n": int(len(c))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="held-apart demo pair texts (0 = all 1,195)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0 = default; ONNX Runtime uses OnnxSettings.intra_op_threads)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--xquad", type=int, default=200, help="questions per XQuAD language")
    args = ap.parse_args()
    import torch

    from forensics.search.embed import Embedder
    from forensics.search.onnx_embed import OnnxSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    texts = held_pairs()
    if args.n:
        rng = np.random.default_rng(0)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), args.n, replace=False))]
    t0 = time.perf_counter()
    embs = {"torch": Embedder(backend="torch", batch_size=args.batch)}
    load = {"torch": time.perf_counter() - t0}
    for b in ("onnx", "onnx-int8"):
        t0 = time.perf_counter()
        embs[b] = Embedder(backend=b, batch_size=args.batch)
        load[b] = time.perf_counter() - t0
    bert = embs["torch"]._bert
    lengths = bert.token_lengths(texts)
    pieces = int(lengths.sum())
    work = flops(lengths, args.batch, bert.dim, bert.n_layers)
    peak = matmul_peak()
    times: dict[str, list[float]] = {k: [] for k in embs}
    vecs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, e in embs.items():
            t = time.perf_counter()
            vecs[name] = e.encode(texts)
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()),
              file=sys.stderr)
    peak = max(peak, matmul_peak())
    best = {k: float(np.median(v)) for k, v in times.items()}
    rows = {}
    for name in embs:
        s = best[name]
        rows[name] = {"seconds": round(s, 3), "rounds_s": [round(x, 2) for x in times[name]],
                      "rows_per_s": round(len(texts) / s, 1),
                      "word_pieces_per_s": round(pieces / s, 0),
                      "gflops": round(work / s / 1e9, 1), "pct_of_peak": round(100 * work / s / 1e9 / peak, 1),
                      "ratio_vs_torch": round(best["torch"] / s, 3),
                      "ratio_vs_onnx": round(best["onnx"] / s, 3),
                      "cos_vs_torch_demo": cos_stats(vecs["torch"], vecs[name]),
                      "first_load_s": round(load[name], 2)}
    for lang in ("en", "de", "es", "zh", "el"):
        qs = xquad_questions(lang, args.xquad)
        if not qs:
            continue
        ref = embs["torch"].encode(qs)
        for name in ("onnx", "onnx-int8"):
            rows[name][f"cos_vs_torch_xquad_{lang}"] = cos_stats(ref, embs[name].encode(qs))
    print(f"{len(texts)} texts, {pieces} word pieces, batch {args.batch}, "
          f"threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'backend':10} {'rows/s':>8} {'wp/s':>8} {'%peak':>6} {'x torch':>8} {'cos min':>8} "
          f"{'p1':>8} {'mean':>8}")
    for name, r in rows.items():
        c = r["cos_vs_torch_demo"]
        print(f"{name:10} {r['rows_per_s']:8.1f} {r['word_pieces_per_s']:8.0f} "
              f"{r['pct_of_peak']:6.1f} {r['ratio_vs_torch']:8.3f} {c['min']:8.5f} {c['p1']:8.5f} "
              f"{c['mean']:8.5f}")
        for k, v in r.items():
            if k.startswith("cos_vs_torch_xquad"):
                print(f"    {k[-2:]}: min {v['min']:.5f} p1 {v['p1']:.5f} mean {v['mean']:.5f}")
    write_result("embed_onnx", {
        "texts": len(texts), "word_pieces": pieces, "batch": args.batch, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "matmul_peak_gflops": round(peak, 1),
        "flops_per_pass": work, "load_before": load_before, "settings": OnnxSettings().__dict__,
        "backends": rows})


if __name__ == "__main__":
    main()
