"""Which linears of MiniLM can be int8 (static, QDQ) without moving the vectors: per-group
sensitivity, then settings measured for agreement with torch fp32 and for speed.

    .venv/bin/python bench/int8_sensitivity.py [--every 3] [--groups] [--configs] [--rounds 3]

Calibration reads the EVEN rows of examples/data/demo_corpus.jsonl (onnx_embed.calibration_texts);
agreement is measured on text none of which was calibrated on (``held_sets``): the demo corpus's
odd rows (prompts and replies apart), XQuAD questions and contexts in en / de / es / zh / el
(``shared/data/xquad``), and paragraphs of the NLA decode transcripts (``shared/data/nla-decodes``).
``--every k`` keeps every k-th text of each set (3: about 230 texts; 1: all 680).

* ``--groups [GROUP ...]``: one calibration (MinMax, no SmoothQuant), then ONE group quantised
  at a time (q/k/v together, attention output, FFN up, FFN down), each over all layers, and per
  layer for the GROUPs named: cosine to torch (mean / p1 / min).
* ``--configs``: named OnnxSettings (below) built through onnx_embed.build_model: agreement, and
  speed of torch fp32 / ONNX fp32 / each int8 file on the same texts in the same process
  (``--threads`` threads, ``--rounds`` interleaved rounds, median kept).

Written: bench/results/int8_sensitivity.json (--groups) or int8_configs.json (--configs), with
date, commit and load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GROUPS = {"qkv": r"attention\.self\.(query|key|value)", "attn_out": r"attention\.output\.dense",
          "ffn_up": r"intermediate\.dense", "ffn_down": r"output\.dense"}
DOWN = (r"encoder\.layer\.\d+\.output\.dense",)
DOWN0 = (r"encoder\.layer\.0\.output\.dense",)
DEFAULT = {"float_linears": DOWN0, "smooth_alpha": 0.75}
CONFIGS = {   # name -> OnnxSettings fields (the rest as OnnxSettings' defaults)
    "all-linears": {"float_linears": (), "smooth_alpha": 0.0},
    "all-linears-smooth0.75": {"float_linears": (), "smooth_alpha": 0.75},
    "default": DEFAULT,
    "default-outputs-quantised": {**DEFAULT, "quantise_outputs": True},
    "default-smooth0.5": {**DEFAULT, "smooth_alpha": 0.5},
    "default-percentile": {**DEFAULT, "calib_method": "Percentile"},
    "default-int8-symmetric": {**DEFAULT, "activations": "int8", "symmetric_activations": True},
    "default-reduce-range": {**DEFAULT, "reduce_range": True},
    "default-1024-calib": {**DEFAULT, "calib_texts": 1024},
    "no-ffn-down": {"float_linears": DOWN, "smooth_alpha": 0.75},
}


def held_sets(every: int = 1) -> dict[str, list[str]]:
    """Named lists of real text held apart from calibration (see the module docstring)."""
    rows = [json.loads(x) for x in
            (REPO / "examples" / "data" / "demo_corpus.jsonl").read_text("utf-8").splitlines()]
    odd = rows[1::2]
    pick = sorted(np.random.default_rng(1).choice(len(odd), 100, replace=False))
    out = {"demo_prompt": [odd[i]["prompt"] for i in pick if odd[i].get("prompt")],
           "demo_reply": [odd[i]["reply"] for i in pick if odd[i].get("reply")]}
    sd = shared_dir()
    for lang in ("en", "de", "es", "zh", "el"):
        p = sd / "data" / "xquad" / f"xquad.{lang}.json"
        if p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))["data"]
            qs = [qa["question"] for a in data for para in a["paragraphs"] for qa in para["qas"]]
            ctx = [para["context"] for a in data for para in a["paragraphs"]]
            out[f"xquad_{lang}"] = qs[1000:1060] + ctx[200:220]
    paras = []
    for f in sorted((sd / "data" / "nla-decodes").glob("*_step*.txt")):
        for para in re.split(r"\n\s*\n", f.read_text(encoding="utf-8")):
            t = " ".join(para.split())
            if len(t) >= 40 and not set(t) <= set("═─ "):
                paras.append(t)
    if paras:
        out["nla_decodes"] = [paras[i] for i in
                              sorted(np.random.default_rng(2).choice(len(paras), 80, replace=False))]
    return {k: v[::every] for k, v in out.items()}


def cos_stats(c: np.ndarray) -> dict:
    return {"mean": round(float(c.mean()), 5), "p1": round(float(np.percentile(c, 1)), 5),
            "min": round(float(c.min()), 5), "n": int(len(c))}


def session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def encoder(bert, sess, batch: int = 32):
    from forensics.search.minibert import length_order

    def enc(texts):
        ids = bert.token_ids(texts)
        out = np.empty((len(ids), bert.dim), np.float32)
        order = length_order(ids)
        for b in range(0, len(order), batch):
            idx = order[b:b + batch]
            inp, m = bert.pad([ids[i] for i in idx])
            out[idx] = sess.run(None, {"input_ids": inp.numpy(),
                                       "attention_mask": m.long().numpy()})[0]
        return out
    return enc


def agreement(ref: dict, enc, sets: dict) -> dict:
    per = {k: (ref[k] * enc(v)).sum(1) for k, v in sets.items()}
    return {"all": cos_stats(np.concatenate(list(per.values()))),
            **{k: cos_stats(c) for k, c in per.items()}}


def groups_run(bert, ref, sets, tmp: Path, threads: int, per_layer: list[str]) -> dict:
    from forensics.search import onnx_embed as oe

    s = oe.OnnxSettings(float_linears=())
    fp32 = tmp / "fp32.onnx"
    oe._export(bert, fp32, s.opset)
    names = oe._weight_matmuls(fp32, ())
    cache = tmp / "calibration.json"
    out = {}
    layers = sorted({int(n.split(".")[2]) for n in names})
    jobs = [(f"{g}@all", [n for n in names if re.fullmatch(rf"encoder\.layer\.\d+\.{p}", n)])
            for g, p in GROUPS.items()]
    jobs += [(f"{g}@{i}", [n for n in names if re.fullmatch(rf"encoder\.layer\.{i}\.{p}", n)])
             for g, p in GROUPS.items() if g in per_layer for i in layers]
    for tag, nodes in jobs:
        t = time.perf_counter()
        q = tmp / "q.onnx"
        oe._quantise(bert, fp32, q, s, nodes=nodes, calibration_cache=cache)
        out[tag] = agreement(ref, encoder(bert, session(q, threads)), sets)["all"]
        print(f"{tag:14} {len(nodes):3} linears  cos mean {out[tag]['mean']:.5f} "
              f"p1 {out[tag]['p1']:.5f} min {out[tag]['min']:.5f}  "
              f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    return out


def configs_run(bert, torch_emb, ref, sets, tmp: Path, threads: int, rounds: int,
                names: list[str]) -> dict:
    import torch

    from forensics.search import onnx_embed as oe

    encs = {"torch fp32": torch_emb.encode,
            "onnx fp32": encoder(bert, session(oe.build_model(bert.path, "fp32", cache_dir=tmp,
                                                              bert=bert), threads))}
    out: dict[str, dict] = {"torch fp32": {}, "onnx fp32": {}}
    for name in names:
        s = replace(oe.OnnxSettings(), **CONFIGS[name])
        t = time.perf_counter()
        f = oe.build_model(bert.path, "int8", s, cache_dir=tmp, bert=bert)
        encs[name] = encoder(bert, session(f, threads))
        out[name] = {"settings": {k: v for k, v in asdict(s).items()
                                  if k in CONFIGS[name]},
                     "build_s": round(time.perf_counter() - t, 1)}
        out[name]["agreement"] = agreement(ref, encs[name], sets)
        a = out[name]["agreement"]["all"]
        print(f"{name:32} cos mean {a['mean']:.5f} p1 {a['p1']:.5f} min {a['min']:.5f}",
              file=sys.stderr, flush=True)
    texts = [t for v in sets.values() for t in v]
    torch.set_num_threads(threads)
    secs: dict[str, list[float]] = {k: [] for k in encs}
    for r in range(rounds):
        for k, enc in encs.items():
            t = time.perf_counter()
            enc(texts)
            secs[k].append(time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in secs.items()),
              file=sys.stderr, flush=True)
    torch.set_num_threads(1)
    base_t, base_o = np.median(secs["torch fp32"]), np.median(secs["onnx fp32"])
    for k, v in secs.items():
        med = float(np.median(v))
        out[k].update({"seconds": [round(x, 2) for x in v], "median_s": round(med, 2),
                       "x_torch_fp32": round(base_t / med, 2), "x_onnx_fp32": round(base_o / med, 2)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=3, help="keep every k-th held-apart text")
    ap.add_argument("--groups", nargs="*", default=None, metavar="GROUP",
                    help="per-group sensitivity (each group over all layers), and per layer for "
                         f"the GROUPs named (of {list(GROUPS)})")
    ap.add_argument("--configs", nargs="*", default=None,
                    help=f"settings to measure (default: all of {list(CONFIGS)})")
    ap.add_argument("--threads", type=int, default=2, help="threads for the speed rounds")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    from forensics.search.embed import Embedder

    torch.set_num_threads(1)
    sets = held_sets(args.every)
    torch_emb = Embedder(backend="torch")
    bert = torch_emb._bert
    bert.path = torch_emb.path
    ref = {k: torch_emb.encode(v) for k, v in sets.items()}
    payload: dict = {"texts": {k: len(v) for k, v in sets.items()}, "every": args.every,
                     "calibration": "even rows of examples/data/demo_corpus.jsonl"}
    with tempfile.TemporaryDirectory(prefix="int8-sens-") as tmp:
        if args.groups is not None:
            payload["groups_one_at_a_time"] = groups_run(bert, ref, sets, Path(tmp), 1,
                                                         args.groups)
        names = list(CONFIGS) if args.configs is None or args.configs == [] else args.configs
        if args.configs is not None:
            payload.update(threads=args.threads, rounds=args.rounds,
                           load_before=[round(x, 2) for x in os.getloadavg()])
            payload["configs"] = configs_run(bert, torch_emb, ref, sets, Path(tmp), args.threads,
                                             args.rounds, names)
    name = "int8_sensitivity" if args.groups is not None else "int8_configs"
    write_result(name, payload)
    for k, v in payload.get("configs", {}).items():
        a = v.get("agreement", {}).get("all", {})
        print(f"{k:32} {v['median_s']:7.2f} s  x torch {v['x_torch_fp32']:5.2f}  "
              f"x onnx {v['x_onnx_fp32']:5.2f}  cos mean {a.get('mean', 1):.5f} "
              f"p1 {a.get('p1', 1):.5f} min {a.get('min', 1):.5f}")


if __name__ == "__main__":
    main()
