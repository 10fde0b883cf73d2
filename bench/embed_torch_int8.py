"""Static int8 MiniLM in plain torch (forensics.search.torch_int8) vs today's torch fp32 path.

    .venv/bin/python bench/embed_torch_int8.py [--n 200] [--rounds 3] [--threads 1,2]
        [--variants int8,int8-eager,...] [--onnx] [--every 1] [--tag TAG]

In one process: ``torch`` (MiniBert fp32, the default backend, the baseline) and each int8
variant (:data:`VARIANTS`: TorchInt8Settings changes; ``build_s`` records calibration, and
for compiled variants the first call's inductor compile on the first texts), optionally
``onnx-fused-int8`` (ONNX Runtime, for reference). Timing texts: ``--n`` held-apart demo
pair texts (odd rows; calibration reads even ones), sorted by token count, batches of
``--batch``. For each thread count of ``--threads``: one untimed call per variant (inductor
builds its kernels per thread count), the fp32 matmul peak (2048x2048 ``mm``), then
``--rounds`` interleaved rounds of every variant (median kept), then the peak again.
Agreement: cosine to torch fp32 on bench/int8_sensitivity.held_sets (demo prompts and replies
of odd rows, XQuAD questions and contexts in en / de / es / zh / el, NLA decode paragraphs;
``--every k`` keeps every k-th) plus the timing texts. Written:
bench/results/embed_torch_int8[-TAG].json (date, commit, load).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import write_result  # noqa: E402
from embed_onnx import flops, held_pairs, matmul_peak  # noqa: E402
from int8_sensitivity import held_sets  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DOWN = (r"encoder\.layer\.\d+\.output\.dense",)
VARIANTS: dict[str, dict] = {   # name -> TorchInt8Settings changes
    "int8": {},
    "int8-a0": {"smooth_alpha": 0.0},
    "int8-a0.5": {"smooth_alpha": 0.5},
    "int8-all-linears": {"float_linears": ()},
    "int8-no-ffn-down": {"float_linears": DOWN},
    "int8-gelu-unfused": {"fuse_gelu": False},
    "int8-eager": {"compile": False},
    "int8-fp32-attention": {"attention_bf16": False, "up_bf16": False},
    "int8-fp32-attention-eager": {"attention_bf16": False, "up_bf16": False, "compile": False},
}


def cos_stats(c: np.ndarray) -> dict:
    return {"min": round(float(c.min()), 5), "p1": round(float(np.percentile(c, 1)), 5),
            "mean": round(float(c.mean()), 5), "n": int(len(c))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="held-apart demo pair texts timed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--variants", default="int8", help=f"comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--onnx", action="store_true", help="also ONNX Runtime onnx-fused-int8")
    ap.add_argument("--every", type=int, default=1, help="keep every k-th held-apart text")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    import torch

    from forensics.search.embed import default_model_path
    from forensics.search.minibert import MiniBert
    from forensics.search.torch_int8 import TorchInt8Bert, TorchInt8Settings

    load_before = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(1)
    path = default_model_path()
    texts = held_pairs()
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in sorted(rng.choice(len(texts), args.n, replace=False))]
    embs: dict = {"torch": MiniBert(path)}
    build_s: dict[str, float] = {}
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            ap.error(f"unknown variant {name}; known: {list(VARIANTS)}")
        t0 = time.perf_counter()
        embs[name] = TorchInt8Bert(path, replace(TorchInt8Settings(), **VARIANTS[name]))
        embs[name].encode(texts[:2] + texts[-2:], args.batch)   # compiles (when it does)
        build_s[name] = round(time.perf_counter() - t0, 2)
        print(f"{name}: built in {build_s[name]} s", file=sys.stderr, flush=True)
    if args.onnx:
        from forensics.search.onnx_embed import OnnxBert, OnnxSettings

        t0 = time.perf_counter()
        embs["onnx-fused-int8"] = OnnxBert(path, "fused-int8", OnnxSettings(intra_op_threads=1))
        build_s["onnx-fused-int8"] = round(time.perf_counter() - t0, 2)
    bert = embs["torch"]
    lengths = bert.token_lengths(texts)
    pieces = int(lengths.sum())
    work = flops(lengths, args.batch, bert.dim, bert.n_layers)

    sets = held_sets(args.every)
    sets["demo_pairs_timed"] = texts
    agree: dict[str, dict] = {k: {} for k in embs if k != "torch"}
    for sname, sv in sets.items():
        ref = bert.encode(sv, args.batch)
        for k in agree:
            agree[k][sname] = (ref * embs[k].encode(sv, args.batch)).sum(1)
    cos = {k: {"all": cos_stats(np.concatenate(list(v.values()))),
               **{s: cos_stats(c) for s, c in v.items()}} for k, v in agree.items()}

    blocks = []
    for th in [int(x) for x in args.threads.split(",") if x]:
        torch.set_num_threads(th)
        if "onnx-fused-int8" in embs:   # ORT's session threads are fixed at creation
            embs["onnx-fused-int8"] = OnnxBert(path, "fused-int8", OnnxSettings(intra_op_threads=th))
        for e in embs.values():   # inductor's kernels are built per thread count: not timed
            e.encode(texts[:2] + texts[-2:], args.batch)
        peak0 = matmul_peak()
        times: dict[str, list[float]] = {k: [] for k in embs}
        for r in range(args.rounds):
            for k, e in embs.items():
                t = time.perf_counter()
                e.encode(texts, args.batch)
                times[k].append(time.perf_counter() - t)
            print(f"threads {th} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s"
                                                            for k, v in times.items()),
                  file=sys.stderr, flush=True)
        peak = max(peak0, matmul_peak())
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows = {k: {"seconds": round(med[k], 3), "rounds_s": [round(x, 2) for x in times[k]],
                    "word_pieces_per_s": round(pieces / med[k]),
                    "pct_of_fp32_peak": round(100 * work / med[k] / 1e9 / peak, 1),
                    "x_torch_fp32": round(med["torch"] / med[k], 3)} for k in embs}
        blocks.append({"threads": th, "peak_gflops": round(peak, 1),
                       "load_after": [round(x, 2) for x in os.getloadavg()], "rows": rows})
    torch.set_num_threads(1)

    print(f"{len(texts)} timed texts, {pieces} word pieces, batch {args.batch}; "
          f"load before {load_before}")
    for b in blocks:
        print(f"threads {b['threads']}: fp32 matmul peak {b['peak_gflops']} GFLOP/s, "
              f"load after {b['load_after']}")
        for k, r in b["rows"].items():
            c = cos.get(k, {}).get("all")
            cs = f"cos min {c['min']:.5f} p1 {c['p1']:.5f} mean {c['mean']:.5f}" if c else ""
            print(f"  {k:20} {r['seconds']:7.2f}s {r['word_pieces_per_s']:7d} wp/s "
                  f"{r['pct_of_fp32_peak']:5.1f}% peak  x{r['x_torch_fp32']:.2f} torch  {cs}")
    for k, v in cos.items():
        worst = min(((s, c["min"]) for s, c in v.items() if s != "all"), key=lambda x: x[1])
        print(f"{k}: lowest set {worst[0]} (min {worst[1]:.5f})")
    write_result("embed_torch_int8" + (f"-{args.tag}" if args.tag else ""), {
        "texts": len(texts), "word_pieces": pieces, "batch": args.batch, "rounds": args.rounds,
        "flops_per_pass": work, "load_before": load_before, "torch": torch.__version__,
        "settings": asdict(TorchInt8Settings()),
        "variants": {k: VARIANTS.get(k, {}) for k in embs if k != "torch"},
        "build_s": build_s, "blocks": blocks, "agreement": cos})


if __name__ == "__main__":
    main()
