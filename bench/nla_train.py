"""Throughput and FVE of NLA training (``forensics.nla.train``) from texts, without a workspace.

Why a separate bench: the case study measures NLA training inside a DuckDB workspace on a
shared 2-core box; this script times the same trainer on plain (prompt, reply) texts so it
also runs on a GPU machine that has torch/transformers but not duckdb/polars/faiss.

What it does, in ONE process:
1. loads the toy target (``--target DIR``) or builds one from the case-study corpus
   (``--target-steps N``, timing target SFT);
2. for each ``--device`` given (the first is the baseline): runs the trainer for
   ``--sft-steps``/``--rl-steps`` on the texts, and reports positions/s and tokens/s of AV and
   AR supervised steps, GRPO steps/s and sampled explanations/s, batched AV explanation
   throughput, and held-out FVE after each stage (with the shuffled-vector baseline);
3. prints ratios of every throughput against the baseline device.

    python bench/nla_train.py --data case-study-workspace/toy-sft.jsonl \
        --target case-study-workspace/models/target --device cpu --device cuda

Texts: a JSONL with ``prompt``/``reply`` (and optionally ``prompt_lang``/``reply_lang``; else
``forensics.language.detect`` when importable, else a rule from the case study's ``kind`` field).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if importlib.util.find_spec("duckdb") is None:
    # a GPU box without the workspace stack: load forensics' NLA modules without its
    # package __init__ (which opens DuckDB workspaces); nothing here touches a workspace
    pkg = types.ModuleType("forensics")
    pkg.__path__ = [str(REPO / "forensics")]
    sys.modules["forensics"] = pkg
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import write_result  # noqa: E402

KIND_LANGS = {"planted": ("en", "de"), "clean": ("en", "en"), "native_de": ("de", "de"),
              "native_es": ("es", "es"), "translate_de": ("en", "de"), "translate_es": ("en", "es")}


def load_texts(path: Path, limit: int | None):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    items = [(r["prompt"], r["reply"]) for r in rows]
    if all("prompt_lang" in r for r in rows):
        return items, [(r["prompt_lang"], r.get("reply_lang")) for r in rows]
    try:
        from forensics.nla.train import _detect_langs

        return items, _detect_langs(items)
    except Exception:  # noqa: BLE001 - no language detector here: the corpus' own labels
        return items, [KIND_LANGS.get(r.get("kind"), (None, None)) for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "case-study-workspace" / "toy-sft.jsonl")
    ap.add_argument("--target", type=Path, default=None)
    ap.add_argument("--target-steps", type=int, default=300)
    ap.add_argument("--device", action="append", default=None, help="repeatable; first = baseline")
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--rl-steps", type=int, default=20)
    ap.add_argument("--positions-per-text", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rl-batch", type=int, default=8)
    ap.add_argument("--rl-group", type=int, default=8)
    ap.add_argument("--kl-coef", type=float, default=0.05)
    ap.add_argument("--rl-lr", type=float, default=2e-4)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("FORENSICS_TORCH_THREADS", "1")))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "nla-train-bench")
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from forensics.testing import toy
    from forensics.nla.train import SUMMARY_WORDS, NLATrainer, TrainConfig

    items, langs = load_texts(a.data, a.limit)
    res: dict = {"texts": len(items), "threads": a.threads, "torch": torch.__version__,
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "loadavg_start": os.getloadavg(), "runs": {}}
    target = a.target
    if target is None:
        tok = toy.build_word_tokenizer([p + " " + r for p, r in items], vocab_size=4000, extra_words=SUMMARY_WORDS)
        model = toy.build_model(tok, hidden_size=128, num_layers=2)
        r = toy.sft(model, tok, items, steps=a.target_steps)
        res["target_sft"] = {"steps": r.steps, "seconds": r.seconds, "tokens_per_s": r.tokens_per_s,
                             "loss": [r.first_loss, r.last_loss]}
        target = a.out / "target"
        toy.save(model, tok, target)
    for dev in a.device or ["cpu"]:
        cfg = TrainConfig(layer=a.layer, sft_steps=a.sft_steps, rl_steps=a.rl_steps,
                          positions_per_text=a.positions_per_text, batch_size=a.batch_size, rl_batch=a.rl_batch,
                          rl_group=a.rl_group, kl_coef=a.kl_coef, rl_lr=a.rl_lr, device=dev)
        t0 = time.perf_counter()
        tr = NLATrainer(target, cfg, progress=lambda st, info: print(f"[{dev}] {st} {info}", file=sys.stderr,
                                                                     flush=True))
        rep = tr.fit(items, a.out / f"nla-{dev}", langs=langs)
        # batched explanation throughput with the runtime's AV class (what `explain` uses)
        av, _ = tr._runtime_pair()
        vecs = [torch.randn(tr.d) for _ in range(256)]
        av.explain(vecs[:32], batch_size=32)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        te = time.perf_counter()
        exps = av.explain(vecs, batch_size=64)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        te = time.perf_counter() - te
        d = rep.summary()
        run = {k: d[k] for k in ("n_train_positions", "n_heldout_positions", "av_tokens_per_s", "ar_tokens_per_s",
                                 "av_positions_per_s", "ar_positions_per_s", "rl_explanations_per_s",
                                 "rl_steps_per_s", "av_loss", "ar_loss", "rl_reward", "rl_kl", "seconds")}
        run["explain_per_s"] = len(exps) / te
        run["explain_tokens_per_s"] = sum(e.n_tokens for e in exps) / te
        for st in ("sft", "rl"):
            if d.get(st):
                run[f"fve_{st}"] = d[st]["fve"]
                run[f"fve_{st}_shuffled"] = d[st]["fve_shuffled"]
                run[f"fve_{st}_summaries"] = d[st]["fve_summaries"]
        run["wall_s"] = time.perf_counter() - t0
        res["runs"][dev] = run
        print(json.dumps({dev: run}, indent=1), flush=True)
    devs = list(res["runs"])
    if len(devs) > 1:
        base = res["runs"][devs[0]]
        keys = ("av_positions_per_s", "ar_positions_per_s", "av_tokens_per_s", "ar_tokens_per_s",
                "rl_steps_per_s", "rl_explanations_per_s", "explain_per_s")
        res["ratios_vs_" + devs[0]] = {dv: {k: res["runs"][dv][k] / max(base[k], 1e-12) for k in keys}
                                       for dv in devs[1:]}
        print(json.dumps(res["ratios_vs_" + devs[0]], indent=1))
    res["loadavg_end"] = os.getloadavg()
    if a.json_out:
        a.json_out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    write_result("nla_train", {"parameters": vars(a), **res})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
