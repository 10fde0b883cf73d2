"""What limits the toy NLA's FVE: lookup baselines and the AR's ceiling per summary variant.

Why: the FVE an NLA can reach is bounded by how well the AR reconstructs the vector from the
warm-start summaries (an AV that imitates them perfectly scores exactly that). This bench
measures, on the same positions and held-out split as ``forensics.nla.train``:

1. lookup baselines: each held-out vector predicted by the mean training vector with the same
   current token, the same top-1 next-token prediction of the target, or both;
2. the AR alone (the target cut to K+1 blocks + value head, fresh per variant) trained on the
   gold summaries of each variant and scored on held-out gold summaries, at 1/4, 1/2 and all of
   ``--steps``. Variants: ``base`` (no ``expects``; the baseline), ``exp3`` (the target's top-3
   next tokens), ``b4`` / ``exp3_b4`` (4 words before the current one).

    python bench/nla_fve_limits.py --data toy-sft.jsonl --target case-study-workspace/models/target \\
        --steps 600 --variant base --variant exp3

FVE differences are printed against the first variant. Texts: a JSONL with prompt/reply and
the case study's ``kind`` field (its languages) or ``prompt_lang``/``reply_lang``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import write_result  # noqa: E402

KIND_LANGS = {"planted": ("en", "de"), "clean": ("en", "en"), "native_de": ("de", "de"),
              "native_es": ("es", "es"), "translate_de": ("en", "de"), "translate_es": ("en", "es")}
VARIANTS = {"base": (0, 2), "exp3": (3, 2), "b4": (0, 4), "exp3_b4": (3, 4)}  # (expected k, words before)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--target", type=Path, required=True)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--positions-per-text", type=int, default=6)
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N texts only")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from forensics.nla.activations import encode_item
    from forensics.nla.ar import dataset_variance, score
    from forensics.nla.meta import parse_sidecar, write_sidecar
    from forensics.nla.train import BuiltinSummarizer, NLATrainer, TrainConfig
    from forensics.nla.train.positions import collect_positions, expected_tokens, norm_to, position_contexts

    rows = [json.loads(x) for x in a.data.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = rows[:a.limit] if a.limit else rows
    items = [(r["prompt"], r["reply"]) for r in rows]
    langs = [(r["prompt_lang"], r.get("reply_lang")) if "prompt_lang" in r else KIND_LANGS.get(r.get("kind"), (None, None))
             for r in rows]
    cfg = TrainConfig(layer=a.layer, positions_per_text=a.positions_per_text, device="cpu")
    tr = NLATrainer(a.target, cfg)
    t0 = time.perf_counter()
    pos = collect_positions(tr.target, tr.tok, items, cfg, langs)
    exps = expected_tokens(tr.target, tr.tok, items, pos, 3)
    ctxs = []
    for p in pos:
        ids, plen = encode_item(tr.tok, items[p.item])
        ctxs.append(position_contexts(tr.tok, items[p.item], ids, plen, p.token_index, langs[p.item]))
        p.cur = ids[p.token_index]
    rng = random.Random(cfg.seed)  # the trainer's split: by text
    tids = sorted({p.item for p in pos})
    rng.shuffle(tids)
    held = set(tids[:max(2, int(len(tids) * cfg.heldout_frac))])
    train_i = [i for i, p in enumerate(pos) if p.item not in held]
    held_i = [i for i, p in enumerate(pos) if p.item in held][:cfg.max_heldout]
    vecs = torch.stack([pos[i].vector for i in train_i])
    hv = torch.stack([pos[i].vector for i in held_i])
    var = dataset_variance(list(vecs), tr.mse_scale)
    res: dict = {"n_train": len(train_i), "n_heldout": len(held_i), "variance": var,
                 "setup_s": time.perf_counter() - t0, "lookups": {}, "variants": {}}

    def lookup(key):
        groups: dict = {}
        for i, v in zip(train_i, vecs):
            groups.setdefault(key(i), []).append(norm_to(v, tr.mse_scale))
        means = {k: torch.stack(v).mean(0) for k, v in groups.items()}
        glob = norm_to(vecs, tr.mse_scale).mean(0)
        pred = torch.stack([means.get(key(i), glob) for i in held_i])
        return {"fve": float(score(pred, hv, tr.mse_scale, var)[2].mean()),
                "covered": sum(key(i) in means for i in held_i) / len(held_i)}

    for name, key in (("global_mean", lambda i: 0), ("current_token", lambda i: pos[i].cur),
                      ("top1_prediction", lambda i: exps[i][0]),
                      ("current_and_top1", lambda i: (pos[i].cur, exps[i][0]))):
        res["lookups"][name] = lookup(key)
        print(f"lookup {name}: {res['lookups'][name]}", flush=True)

    base_ar = {k: v.detach().clone() for k, v in tr.ar.state_dict().items()}
    base_head = tr.head.weight.detach().clone()
    sc_dir = Path(__import__("tempfile").mkdtemp())
    write_sidecar(sc_dir, role="ar", tokenizer=tr.tok, d_model=tr.d, layer=a.layer)
    tr._ar_sidecar = parse_sidecar(sc_dir, role="ar")
    for name in a.variant or ["base", "exp3"]:
        k, before = VARIANTS[name]
        summ = BuiltinSummarizer([p + " " + r for p, r in items], n_before=before)
        texts = []
        for c, e in zip(ctxs, exps):
            c.expected = e[:k] if k else ()
            texts.append(summ.summarize(c))
        tr.ar.load_state_dict(base_ar)
        with torch.no_grad():
            tr.head.weight.copy_(base_head)
        params = list(tr.ar.parameters()) + list(tr.head.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.ar_lr)
        steps = a.steps
        sch = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps)))
        r2 = random.Random(1)
        curve = {}
        t1 = time.perf_counter()
        tr.ar.train()
        for s in range(steps):
            b = [train_i[r2.randrange(len(train_i))] for _ in range(cfg.batch_size)]
            loss, _ = tr._ar_loss([texts[i] for i in b], torch.stack([pos[i].vector for i in b]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sch.step()
            if s + 1 in (steps // 4, steps // 2, steps):
                tr.ar.eval()
                with torch.no_grad():
                    pred = torch.cat([tr._ar_forward([texts[i] for i in held_i[j:j + 64]])[0]
                                      for j in range(0, len(held_i), 64)])
                tr.ar.train()
                f = score(pred.cpu(), hv, tr.mse_scale, var)[2]
                kinds: dict = {"last_prompt": [], "prompt": [], "reply": []}
                for i, x in zip(held_i, f.tolist()):
                    lab = pos[i].label
                    kinds["last_prompt" if lab == "last_prompt" else "reply" if lab.startswith("reply") else "prompt"].append(x)
                curve[s + 1] = {"fve": float(f.mean()), **{kk: sum(v) / max(1, len(v)) for kk, v in kinds.items()}}
                print(f"{name} step {s + 1}: {curve[s + 1]}", flush=True)
        res["variants"][name] = {"curve": curve, "seconds": time.perf_counter() - t1, "example": texts[held_i[3]]}
    names = list(res["variants"])
    base = res["variants"][names[0]]["curve"][a.steps]["fve"]
    res["fve_minus_" + names[0]] = {n: res["variants"][n]["curve"][a.steps]["fve"] - base for n in names[1:]}
    print(json.dumps(res["fve_minus_" + names[0]], indent=1))
    write_result("nla_fve_limits", {"parameters": {k: str(v) for k, v in vars(a).items()}, **res})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
