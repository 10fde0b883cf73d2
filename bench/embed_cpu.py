"""CPU embedding speed on the demo corpus: what `make demo`'s index build spends its time on.

    nice -n 10 .venv/bin/python bench/embed_cpu.py [--n 600] [--rounds 2] [--threads N]

Texts: the ``pair`` texts (prompt + blank line + reply) of examples/data/demo_corpus.jsonl, a
seeded random subset of ``--n`` (all 2,390 with ``--n 0``). Baseline, in the same process:
``SentenceTransformer.encode(batch_size=64)`` (what forensics.embed did before: batches sorted
by character length). Variants:

* ``Embedder(backend="sentence-transformers")``: the same model through sentence-transformers,
  batches sorted by token count;
* ``Embedder.encode`` (the default: forensics.minibert, plain torch, batches sorted by token
  count) at batch sizes 16 / 32 / 64;
* dynamic int8 quantisation of the Linear layers (``torch.ao.quantization.quantize_dynamic``),
  measured for speed AND agreement with fp32 (it is not used when agreement is poor).

Rounds are interleaved (baseline, variants, baseline, ...) and the best round per variant is
kept, because this machine is shared and load drifts. Both CPU seconds (process time: robust
to other users' load) and wall seconds are printed, with the load average. Also printed: real
vs padded token counts per batching, the cost driver the ratios come from, and the start-up
of a fresh process (import + model load + one text) per backend.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import demo_pair_texts, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def padded(lengths: np.ndarray, order: np.ndarray, bs: int) -> int:
    return int(sum(lengths[order[i:i + bs]].max() * len(order[i:i + bs])
                   for i in range(0, len(order), bs)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="texts (0 = all 2,390)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--no-int8", action="store_true")
    args = ap.parse_args()

    import torch
    from forensics.search.embed import Embedder

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = demo_pair_texts()
    if args.n and args.n < len(texts):
        pick = np.random.default_rng(0).choice(len(texts), args.n, replace=False)
        texts = [texts[i] for i in pick]
    emb = Embedder()
    st = emb._model
    lengths = emb._token_lengths(texts)
    chars = np.array([len(t) for t in texts])
    print(f"{len(texts)} texts, tokens (capped at {st.max_seq_length}): total {lengths.sum()}, "
          f"mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, max {lengths.max()}; "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    for bs in (16, 32, 64):
        pc = padded(lengths, np.argsort(-chars, kind="stable"), bs)
        pt = padded(lengths, np.argsort(-lengths, kind="stable"), bs)
        print(f"  batch {bs}: padded tokens char-sorted {pc} ({pc / lengths.sum():.2f}x real), "
              f"token-sorted {pt} ({pt / lengths.sum():.2f}x)")

    variants: dict[str, callable] = {
        "baseline ST.encode bs64 (char-sorted)":
            lambda: st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True),
    }
    st_sorted = Embedder(backend="sentence-transformers")
    variants["ST backend, token-sorted bs64"] = lambda: st_sorted.encode(texts)
    for bs in (16, 32, 64):
        e = Embedder(batch_size=bs)   # the default: forensics.minibert, token-sorted
        assert e.kind == "torch"
        variants[f"Embedder.encode bs{bs} (torch, token-sorted)"] = (lambda e=e: e.encode(texts))
    if not args.no_int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = Embedder(backend="sentence-transformers", batch_size=32)
            q._model[0].model = torch.ao.quantization.quantize_dynamic(
                q._model[0].model, {torch.nn.Linear}, dtype=torch.qint8)
        variants["int8 dynamic (all Linear), ST bs32"] = lambda: q.encode(texts)

    best: dict[str, tuple[float, float]] = {}
    vecs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            v = fn()
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            vecs[name] = np.asarray(v, dtype=np.float32)
            b = best.get(name)
            best[name] = (min(cpu, b[0]) if b else cpu, min(wall, b[1]) if b else wall)
            print(f"  round {r + 1} {name}: cpu {cpu:.1f} s, wall {wall:.1f} s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    base_name = next(iter(variants))
    bc, bw = best[base_name]
    base = vecs[base_name]
    print(f"\nbest of {args.rounds} rounds, {len(texts)} texts (ratios: baseline / variant):")
    table = []
    for name in variants:
        c, w = best[name]
        cos = (vecs[name] * base).sum(1)
        table.append({"variant": name, "cpu_seconds": c, "wall_seconds": w,
                      "cpu_ratio": bc / c, "wall_ratio": bw / w, "texts_per_s": len(texts) / w,
                      "cos_min": float(cos.min()), "cos_mean": float(cos.mean())})
        print(f"  {name:42s} cpu {c:6.1f} s ({bc / c:4.2f}x)  wall {w:6.1f} s ({bw / w:4.2f}x)  "
              f"{len(texts) / w:6.1f} texts/s  cos vs baseline min {cos.min():.5f} mean {cos.mean():.5f}")
    print(f"load average at end: {os.getloadavg()}")
    # model start-up in a fresh process (what every embedding CLI command pays), per backend
    import subprocess

    code = ("import time; t=time.perf_counter(); from forensics.search.embed import Embedder; "
            "e=Embedder(backend='{b}'); e.encode(['warm up']); print(time.perf_counter()-t)")
    startup = []
    for r in range(args.rounds):
        row = []
        for b in ("sentence-transformers", "torch"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code.format(b=b)], capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
            row.append(f"{b}: import+load+1 text {float(out.strip() or 'nan'):.1f} s "
                       f"(process {time.perf_counter() - t0:.1f} s)")
            startup.append({"round": r + 1, "backend": b,
                            "import_load_one_text_seconds": float(out.strip() or "nan"),
                            "process_seconds": time.perf_counter() - t0})
        print(f"start-up round {r + 1}: " + "; ".join(row) + f"; load {os.getloadavg()[0]:.1f}")
    write_result("embed_cpu", {"parameters": {**vars(args), "texts": len(texts),
                                              "tokens": int(lengths.sum()),
                                              "torch_threads": torch.get_num_threads()},
                               "table": table, "startup": startup})


if __name__ == "__main__":
    main()
