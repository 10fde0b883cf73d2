"""Benchmark the NLA runtime: activation extraction rows/s and AV explanations/s, batch size 1
(the baseline, measured in the same process) vs batched, for tiny Qwen2/Llama/Gemma-3 models.

    nice -n 10 .venv/bin/python bench/nla.py [--device cuda] [--hidden 64 --layers 4] [--json]

Runs under ``nice -n 10`` by itself (os.nice). Uses CUDA when present unless --device is given.
Also measures explanation lengths in the published decode transcripts (../shared, if present),
the input to the cost estimate in docs/nla.md. Numbers are printed with their baselines; no
number here is assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _items(n: int) -> list[tuple[str, str]]:
    import random

    rng = random.Random(0)
    words = ("the model answers a question about rivers cities history language translation data "
             "training sample reply prompt english russian german").split()
    out = []
    for i in range(n):
        p = " ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
        r = " ".join(rng.choice(words) for _ in range(rng.randint(4, 30)))
        out.append((p.capitalize() + "?", r.capitalize() + "."))
    return out


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_arch(arch: str, root: Path, device: str, hidden: int, layers: int, n_rows: int, n_expl: int,
               max_new_tokens: int, batch: int) -> dict:
    import torch

    from forensics.nla.activations import extract_activations, load_causal_lm
    from forensics.nla.av import AV
    from forensics.nla.meta import load_tokenizer
    from forensics.nla.tiny import build_tiny_nla

    n = build_tiny_nla(root / arch, arch, hidden_size=hidden, num_layers=layers, layer=layers // 2)
    model = load_causal_lm(n.target, device=device)
    tok = load_tokenizer(n.target)
    items = _items(n_rows)
    extract_activations(model, tok, items[:4], ["last_prompt"], n.layer, batch_size=4)  # warm-up
    t1 = _time(lambda: extract_activations(model, tok, items, ["last_prompt"], n.layer, batch_size=1))
    tb = _time(lambda: extract_activations(model, tok, items, ["last_prompt"], n.layer, batch_size=batch))
    acts = extract_activations(model, tok, items[:n_expl], ["last_prompt"], n.layer, batch_size=batch)
    vecs = [a.vector for a in acts]
    av = AV.load(n.av, device=device, max_new_tokens=max_new_tokens)
    av.explain(vecs[:2], batch_size=2)  # warm-up
    res = {}
    for bs in (1, batch):
        t = time.perf_counter()
        ex = av.explain(vecs, batch_size=bs)
        dt = time.perf_counter() - t
        res[bs] = (dt, sum(e.n_tokens for e in ex))
    e1, eb = res[1], res[batch]
    return {
        "arch": arch, "device": device, "hidden": hidden, "layers": layers,
        "params": sum(p.numel() for p in model.parameters()),
        "extract_rows": n_rows, "extract_rows_per_s_b1": round(n_rows / t1, 1),
        f"extract_rows_per_s_b{batch}": round(n_rows / tb, 1), "extract_speedup": round(t1 / tb, 2),
        "explanations": n_expl, "max_new_tokens": max_new_tokens,
        "av_expl_per_s_b1": round(n_expl / e1[0], 2), f"av_expl_per_s_b{batch}": round(n_expl / eb[0], 2),
        "av_tokens_per_s_b1": round(e1[1] / e1[0], 1), f"av_tokens_per_s_b{batch}": round(eb[1] / eb[0], 1),
        "av_speedup": round(e1[0] / eb[0], 2),
        "tokens_per_explanation": round(eb[1] / n_expl, 1),
    }


def bench_store(root: Path, n: int = 20000, batch: int = 16) -> dict:
    """DuckDB write rate of explanation rows the way `explain dataset` commits them (one
    transaction per batch: explanations + explain_progress), vs one big transaction."""
    import forensics
    from forensics.nla.runtime import insert_explanations, insert_progress

    def rows(lo, hi):
        return [{"sample_id": i, "anomaly_id": None, "dataset": "d", "nla_id": "n", "position": "last_prompt",
                 "token_index": 10, "layer": 20, "hidden_state_index": 21,
                 "text": "The user writes English; the reply is expected in Russian. " * 8,
                 "raw_output": "<explanation>...</explanation>", "truncated": False, "flags": ["x"],
                 "activation_norm": 100.0, "mse": 0.4, "cos": 0.8, "fve": 0.45,
                 "explanation_key": f"s{i}|n|last_prompt|L20|h21"} for i in range(lo, hi)]

    import pyarrow  # noqa: F401 - import cost is not write cost

    out = {}
    for label, bs in (("one_transaction", n), ("batches_of_256", 256), (f"batches_of_{batch}", batch)):
        ws = forensics.init(root / f"ws_{label}")
        t = time.perf_counter()
        for lo in range(0, n, bs):
            ws.execute("BEGIN TRANSACTION")
            insert_explanations(ws, rows(lo, min(n, lo + bs)))
            insert_progress(ws, [("n", i, "last_prompt", 20, 21, "d", "ok", 1, None)
                                 for i in range(lo, min(n, lo + bs))])
            ws.execute("COMMIT")
        out[label] = round(n / (time.perf_counter() - t), 1)
        ws.close()
    return {"rows": n, "rows_per_s": out}


def transcript_lengths() -> dict | None:
    """Explanation lengths (characters, words) in the published decode transcripts."""
    d = shared_dir() / "data" / "nla-decodes"
    if not d.exists():
        return None
    out = {}
    for f in sorted(d.glob("*.txt")):
        text = f.read_text(encoding="utf-8", errors="replace").splitlines()
        blocks, cur = [], None
        for line in text:
            if re.match(r"^\[\s*\d+\]\s+(PROMPT|REPLY|REPLY\w*|\w+)\s+token=", line):
                if cur:
                    blocks.append("\n".join(cur).strip())
                cur = []
            elif cur is not None:
                if line.startswith("    ") or not line.strip():
                    cur.append(line.strip())
                else:
                    blocks.append("\n".join(cur).strip())
                    cur = None
        if cur:
            blocks.append("\n".join(cur).strip())
        blocks = [b for b in blocks if b]
        if blocks:
            chars = [len(b) for b in blocks]
            words = [len(b.split()) for b in blocks]
            out[f.stem] = {"decodes": len(blocks), "chars_median": int(statistics.median(chars)),
                           "words_median": int(statistics.median(words)),
                           "words_mean": round(statistics.mean(words), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--archs", default="qwen2,llama,gemma3")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--explanations", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--store-rows", type=int, default=20000, help="DuckDB write bench rows (0 = skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        os.nice(10)
    except OSError:
        pass
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    from forensics.nla.activations import pick_device

    device = pick_device(args.device)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            r = bench_arch(arch, Path(tmp), device, args.hidden, args.layers, args.rows, args.explanations,
                           args.max_new_tokens, args.batch)
            results.append(r)
            if not args.json:
                b = args.batch
                print(f"{arch:7} {device} d={r['hidden']} L={r['layers']} ({r['params'] / 1e6:.2f}M params)  "
                      f"extract: b1 {r['extract_rows_per_s_b1']} rows/s, b{b} {r[f'extract_rows_per_s_b{b}']} rows/s "
                      f"(x{r['extract_speedup']})  |  AV: b1 {r['av_expl_per_s_b1']} expl/s "
                      f"({r['av_tokens_per_s_b1']} tok/s), b{b} {r[f'av_expl_per_s_b{b}']} expl/s "
                      f"({r[f'av_tokens_per_s_b{b}']} tok/s) (x{r['av_speedup']}), "
                      f"{r['tokens_per_explanation']} tok/expl", flush=True)
        store = bench_store(Path(tmp), n=args.store_rows, batch=args.batch) if args.store_rows else None
        if store and not args.json:
            print(f"duckdb explanation writes ({store['rows']} rows): {store['rows_per_s']} rows/s", flush=True)
    tl = transcript_lengths()
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if args.json:
        print(json.dumps({"env": env, "results": results, "store": store, "transcripts": tl}, indent=1))
    else:
        print("env:", env)
        if tl:
            for k, v in tl.items():
                print(f"transcript {k}: {v}")
    write_result(f"nla-{device}", {"parameters": {**vars(args), "device": str(device)}, "env": env,
                                   "results": results, "store": store, "transcripts": tl})


if __name__ == "__main__":
    main()
