"""ONNX Runtime variants vs today's torch path, against the fp32 matmul peak of this machine.

    .venv/bin/python bench/embed_onnx.py [--n 400] [--rounds 3] [--repeat 2] [--threads 0]
                                         [--batch 64] [--variants a,b,...] [--profile]

Texts (none used for int8 calibration, which reads the even rows of the demo corpus):
the ``pair`` texts of the ODD rows of examples/data/demo_corpus.jsonl (mixed languages), and
for agreement also XQuAD questions in de / es / zh / el / en (``shared/data/xquad``, when present).
Every variant sorts texts by token count and runs batches of ``--batch`` (little padding).
In the same process, rounds interleaved (the median round per variant is reported):

* ``torch`` - ``Embedder(backend="torch")`` (forensics.search.minibert, the baseline);
* ``onnx`` / ``onnx-int8`` - ONNX Runtime on the plain export, fp32 / static int8 (QDQ);
* ``onnx-fused`` / ``onnx-fused-int8`` - ORT's BERT fusions (Attention, SkipLayerNormalization,
  BiasGelu; forensics.search.onnx_fused), fp32 / int8 (default OnnxSettings: SmoothQuant scales
  calibrated on real text, dynamic int8 activations, QAttention);
* further settings of the fused graph (:data:`EXTRA`): static (calibrated QDQ) int8, dynamic
  without QAttention, attention left unfused (static), every linear int8, FastGelu.

Also measured in the run: the fp32 matmul peak (torch ``mm`` of two 2048x2048 matrices, best of
5, at the same thread count, before and after each timing block), and the share of it each
variant reaches, counting the FLOPs of the padded batches actually run (linear layers 2*12*d^2
per token per layer plus attention 4*L*d). ``--repeat`` runs the whole timing block again (same
process) to show how stable the ratios are. ``--profile``: ONNX Runtime's profiler on one pass
per ONNX variant (1 thread), time share by op type. Printed: per variant word pieces/s, % of
peak, x torch, x onnx fp32, cosine to torch fp32 (min / mean). Written: bench/results/embed_onnx.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import demo_pair_texts, shared_dir, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# name -> (onnx_embed quantisation, OnnxSettings changes); the first four are the backends
VARIANTS: dict[str, tuple[str, dict]] = {
    "onnx": ("fp32", {}),
    "onnx-int8": ("int8", {}),
    "onnx-fused": ("fused-fp32", {}),
    "onnx-fused-int8": ("fused-int8", {}),
}
EXTRA: dict[str, tuple[str, dict]] = {
    "fused-static-int8": ("fused-int8", {"fused_quant": "static", "fused_ops": ("MatMul",)}),
    "fused-dynamic-matmul": ("fused-int8", {"fused_ops": ("MatMul",)}),
    "fused-noatt-static-int8": ("fused-int8", {"fused_attention": False, "fused_quant": "static",
                                               "fused_ops": ("MatMul",)}),
    "fused-int8-all-linears": ("fused-int8", {"float_linears": ()}),
    "fused-int8-fastgelu": ("fused-int8", {"fast_gelu": True}),
}


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


def profile_shares(model_file: Path, bert, texts: list[str], batch: int) -> dict:
    """ORT profiler on one pass over ``texts`` (1 thread): % of kernel time by op type."""
    import tempfile

    import onnxruntime as ort

    from forensics.search.minibert import length_order

    ids = bert.token_ids(texts)
    order = length_order(ids)
    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(d) / "p")
        s = ort.InferenceSession(str(model_file), so, providers=["CPUExecutionProvider"])
        for b in range(0, len(order), batch):
            inp, mask = bert.pad([ids[i] for i in order[b:b + batch]])
            s.run(None, {"input_ids": inp.numpy(), "attention_mask": mask.long().numpy()})
        events = json.loads(Path(s.end_profiling()).read_text())
    by: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            by[e["args"]["op_name"]] += e["dur"]
    tot = sum(by.values()) or 1.0
    return {k: round(100 * v / tot, 1) for k, v in sorted(by.items(), key=lambda x: -x[1])}


def time_block(embs: dict, texts: list[str], rounds: int, work: float, pieces: int,
               peak0: float) -> tuple[dict, float, dict]:
    """Interleaved rounds of every variant; (per-variant rows, peak, last vectors)."""
    times: dict[str, list[float]] = {k: [] for k in embs}
    cpu: dict[str, list[float]] = {k: [] for k in embs}
    vecs: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name, e in embs.items():
            t, c = time.perf_counter(), time.process_time()
            vecs[name] = e.encode(texts)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()),
              file=sys.stderr)
    peak = max(peak0, matmul_peak())
    med = {k: float(np.median(v)) for k, v in times.items()}
    base_onnx = med.get("onnx", float("nan"))
    rows = {}
    for name in embs:
        s = med[name]
        rows[name] = {"seconds": round(s, 3), "rounds_s": [round(x, 2) for x in times[name]],
                      "cpu_s": round(float(np.median(cpu[name])), 3),
                      "word_pieces_per_s": round(pieces / s, 0),
                      "gflops": round(work / s / 1e9, 1),
                      "pct_of_peak": round(100 * work / s / 1e9 / peak, 1),
                      "ratio_vs_torch": round(med["torch"] / s, 3),
                      "ratio_vs_onnx": round(base_onnx / s, 3)}
    return rows, peak, vecs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="held-apart demo pair texts (0 = all 1,195)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="timing blocks (stability)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch and ONNX Runtime intra-op threads (0 = one per core)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--xquad", type=int, default=200, help="questions per XQuAD language")
    ap.add_argument("--variants", default=",".join(list(VARIANTS) + list(EXTRA)),
                    help="comma-separated names (torch always runs)")
    ap.add_argument("--profile", action="store_true", help="ORT op-type time shares")
    ap.add_argument("--tag", default="", help="write bench/results/embed_onnx-TAG.json instead")
    args = ap.parse_args()
    import torch

    from forensics.search.embed import Embedder, default_model_path
    from forensics.search.onnx_embed import OnnxBert, OnnxSettings

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    texts = held_pairs()
    if args.n:
        rng = np.random.default_rng(0)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), args.n, replace=False))]
    table = {**VARIANTS, **EXTRA}
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in table]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(table)}")
    embs: dict = {"torch": Embedder(backend="torch", batch_size=args.batch)}
    settings: dict[str, dict] = {}
    build_s: dict[str, float] = {}
    for name in names:
        quant, changes = table[name]
        s = replace(OnnxSettings(), intra_op_threads=threads, **changes)
        t0 = time.perf_counter()
        embs[name] = OnnxBert(default_model_path(), quant, s)
        build_s[name] = round(time.perf_counter() - t0, 2)
        settings[name] = {"quant": quant, **changes}
        print(f"{name}: {embs[name].model_file.name} ({build_s[name]} s)", file=sys.stderr)
    bert = embs["torch"]._bert
    lengths = bert.token_lengths(texts)
    pieces = int(lengths.sum())
    work = flops(lengths, args.batch, bert.dim, bert.n_layers)
    blocks = []
    peak = 0.0
    for _ in range(args.repeat):
        peak0 = matmul_peak()
        rows, pk, vecs = time_block(embs, texts, args.rounds, work, pieces, peak0)
        peak = max(peak, pk)
        blocks.append({"rows": rows, "peak_gflops": round(pk, 1),
                       "load": [round(x, 2) for x in os.getloadavg()]})
    rows = blocks[-1]["rows"]
    for name in embs:
        rows[name]["cos_vs_torch_demo"] = cos_stats(vecs["torch"], vecs[name])
        rows[name]["ratio_vs_torch_per_block"] = [b["rows"][name]["ratio_vs_torch"] for b in blocks]
        rows[name]["build_s"] = build_s.get(name, 0.0)
    for lang in ("en", "de", "es", "zh", "el"):
        qs = xquad_questions(lang, args.xquad)
        if not qs:
            continue
        ref = embs["torch"].encode(qs)
        for name in names:
            rows[name][f"cos_vs_torch_xquad_{lang}"] = cos_stats(ref, embs[name].encode(qs))
    for name in names:
        allc = [v for k, v in rows[name].items() if k.startswith("cos_vs_torch")]
        rows[name]["cos_min_all"] = min(c["min"] for c in allc)
        if args.profile:
            rows[name]["profile_pct"] = profile_shares(embs[name].model_file, bert, texts[:200],
                                                       args.batch)
    print(f"{len(texts)} texts, {pieces} word pieces, batch {args.batch}, threads {threads}, "
          f"fp32 matmul peak {peak:.1f} GFLOP/s, load before {load_before[0]:.2f}, "
          f"after each block {[b['load'][0] for b in blocks]}")
    print(f"{'variant':26} {'wp/s':>7} {'%peak':>6} {'x torch (blocks)':>18} {'x onnx':>7} "
          f"{'cos min':>8} {'mean':>8} {'min all':>8}")
    for name, r in rows.items():
        c = r["cos_vs_torch_demo"]
        per = "/".join(f"{x:.2f}" for x in r["ratio_vs_torch_per_block"])
        print(f"{name:26} {r['word_pieces_per_s']:7.0f} {r['pct_of_peak']:6.1f} {per:>18} "
              f"{r['ratio_vs_onnx']:7.2f} {c['min']:8.5f} {c['mean']:8.5f} "
              f"{r.get('cos_min_all', c['min']):8.5f}")
        if "profile_pct" in r:
            print("    ORT time by op: " + ", ".join(f"{k} {v}%" for k, v in
                                                 list(r["profile_pct"].items())[:6]))
    write_result("embed_onnx" + (f"-{args.tag}" if args.tag else ""), {
        "texts": len(texts), "word_pieces": pieces, "batch": args.batch, "rounds": args.rounds,
        "repeat": args.repeat, "threads": threads, "matmul_peak_gflops": round(peak, 1),
        "flops_per_pass": work, "load_before": load_before,
        "settings": asdict(OnnxSettings()), "variants": settings,
        "blocks": [{"peak_gflops": b["peak_gflops"], "load": b["load"],
                    "ratio_vs_torch": {k: v["ratio_vs_torch"] for k, v in b["rows"].items()}}
                   for b in blocks],
        "backends": rows})


if __name__ == "__main__":
    main()
