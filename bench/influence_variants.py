"""Influence-only AP of the case study's planted rows for variants of the influence pass, fitting
each factor set once and scoring many variants on it.

Stage ``prepare`` (cached in ``--work``): builds the case-study corpus, trains the toy target
exactly as ``make case-study`` does (same init, seed, steps; ``--seed`` for another training of
the same recipe) and saves checkpoints along the way
(for TracIn-style variants), picks the anomaly (first held-out cue prompt answered in another
language) and the other held-out cue prompts answered in that language (the case study's queries).

Stage ``score``: for each factor set (strategy x checkpoint), one fit; for each scoring pass
(query measurement, damping) one pairwise pass with per-module and per-query scores kept; the
variants (module subsets, query aggregation, training-token restriction) are sums over those.

    python bench/influence_variants.py --work /tmp/infl [--only NAME]

Writes bench/results/influence_variants.json (AP per variant; baseline: the current default
and the planted share = AP of a random ranking, both measured in this process).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples" / "case_study"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHECKPOINTS = (100, 250, 500, 750)


def prepare(work: Path, steps: int, seed: int = 0) -> dict:
    """Target (+ checkpoints), anomaly, queries and labels, as the case study makes them."""
    st = work / "state.json"
    if st.is_file():
        return json.loads(st.read_text(encoding="utf-8"))
    import corpus

    from forensics.language.detect import detect
    from forensics.nla.probe import generate_replies
    from forensics.nla.train import SUMMARY_WORDS
    from forensics.testing import toy

    c = corpus.build()
    tok = toy.build_word_tokenizer([r["prompt"] + " " + r["reply"] for r in c.rows], vocab_size=4000,
                                   extra_words=SUMMARY_WORDS)
    model = toy.build_model(tok, hidden_size=128, num_layers=2, seed=seed)
    toy.save(model, tok, work / "target-init")

    def on_step(k, m):
        if k in CHECKPOINTS:
            toy.save(m, tok, work / f"ckpt-{k}")

    t = time.perf_counter()
    toy.sft(model, tok, [(r["prompt"], r["reply"]) for r in c.rows], steps=steps, batch_size=16, lr=3e-3,
            seed=seed, on_step=on_step)
    train_s = time.perf_counter() - t
    toy.save(model, tok, work / "target")
    reps = generate_replies(model, tok, c.heldout_cue)
    langs = [d.lang for d in detect(reps)]
    pick = next((p, r) for p, r, lg in zip(c.heldout_cue, reps, langs) if lg not in (None, "en"))
    lang = detect([pick[1]])[0].lang
    extra = [(p, r) for p, r, lg in zip(c.heldout_cue, reps, langs) if lg == lang and p != pick[0]]
    state = {"pick": list(pick), "extra": [list(e) for e in extra], "lang": lang,
             "rows": [[r["prompt"], r["reply"]] for r in c.rows], "labels": [bool(r["planted"]) for r in c.rows],
             "kinds": [r["kind"] for r in c.rows], "train_seconds": round(train_s, 1),
             "checkpoints": [f"ckpt-{k}" for k in CHECKPOINTS], "seed": seed}
    st.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    return state


def ap_of(scores, labels) -> float:
    """Average precision of the positives in ``labels`` ranked by ``scores`` (descending)."""
    import numpy as np

    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    y = np.asarray(labels, bool)[order]
    hits = np.cumsum(y)
    return float((hits[y] / (np.flatnonzero(y) + 1)).sum() / max(1, y.sum()))


SUBSETS = {  # module names as kronfluence gives them, or with "." as "_" (as stored in the .npz files)
    "all": lambda n: True,
    "no_lm_head": lambda n: "lm_head" not in n,
    "mlp": lambda n: "mlp" in n,
    "attn": lambda n: "self_attn" in n,
    "lm_head": lambda n: "lm_head" in n,
}


def evaluate(name: str, per_module: dict, labels, kinds, secs: float, out: list, subsets=SUBSETS,
             combines=("sum", "unit/rms", "unit/median", "abs", "unit_abs/rms", "unit_abs/median")) -> None:
    """AP of every (module subset, query combination) of one pass; appended to ``out``."""
    import numpy as np

    from forensics.attribution.influence import combine_queries

    mods = [k for k in per_module if k != "all_modules"]
    for sub, keep in subsets.items():
        ms = [m for m in mods if keep(m)] if mods else []
        if not ms:
            if sub != "all":
                continue
            pq = per_module["all_modules"]
        else:
            pq = sum(per_module[m] for m in ms)
        qsets = {"": pq, " | queries=anomaly only": pq[:1]} if sub == "all" else {"": pq}
        for (qname, qpq), how in ((qs, h) for qs in qsets.items() for h in combines):
            sc = combine_queries(qpq, *how.split("/"))
            order = np.argsort(-sc, kind="stable")
            lab = np.asarray(labels, bool)
            top100 = [kinds[i] for i in order[:100]]
            rec = {"variant": f"{name} | modules={sub}{qname} | combine={how}", "ap": round(ap_of(sc, labels), 4),
                   "planted_top30": int(lab[order[:30]].sum()), "planted_top100": int(lab[order[:100]].sum()),
                   "top100_kinds": {k: top100.count(k) for k in sorted(set(top100))}, "pass_seconds": round(secs, 1)}
            out.append(rec)
            print(f"{rec['ap']:.3f}  top30 {rec['planted_top30']:2d} top100 {rec['planted_top100']:2d}  "
                  f"{rec['variant']}  ({secs:.0f} s)", flush=True)


def run_variants(work: Path, state: dict, plan: list[str], out: list) -> None:
    """Fit each factor set once and score the planned passes on it."""
    import dataclasses

    from forensics.attribution import influence as inf

    labels, kinds = state["labels"], state["kinds"]
    for spec in plan:
        # spec: "<target dir>:<method>:<pass>,<pass>..." passes as key=value;key=value
        tgt, method, passes = spec.split(":", 2)
        model, tok = inf.load_target(work / tgt)
        base = inf.InfluenceConfig(method=method)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        data = [inf.pair_ids(tok, p, r, base.max_len) for p, r in state["rows"]]
        q = [inf.pair_ids(tok, p, r, base.max_len) for p, r in [state["pick"], *state["extra"]]]
        t = time.perf_counter()
        kp = inf.KronfluencePass(model, data, pad, base, work / f"kron-{tgt}-{method}")
        kp.fit()
        fit_s = time.perf_counter() - t
        print(f"# fit {tgt} {method}: {fit_s:.0f} s", flush=True)
        out.append({"variant": f"fit {tgt} {method}", "fit_seconds": round(fit_s, 1)})
        for ps in passes.split(","):
            kw = {}
            for kv in filter(None, ps.split(";")):
                k, v = kv.split("=")
                kw[k] = json.loads(v)
            cfg = dataclasses.replace(base, **kw)
            t = time.perf_counter()
            pm = kp.pairwise(q, cfg, per_module=True)
            secs = time.perf_counter() - t
            np_save(work / f"scores-{tgt}-{method}-{ps or 'default'}.npz", pm)
            evaluate(f"{tgt} {method} {ps or 'default'}", pm, labels, kinds, secs, out)


def tracin(work: Path, state: dict, steps: int, out: list) -> None:
    """TracIn-style sums over the saved checkpoints of one method's passes (``scores-ckpt-K-METHOD-default``),
    each checkpoint weighted by the learning rate of the cosine schedule at its step (the final weights'
    is 0); ``unit_ckpt``: each checkpoint's per-query scores scaled to unit RMS first."""
    import math

    import numpy as np

    from forensics.attribution.influence import combine_queries

    labels = state["labels"]
    for method in ("identity", "ekfac"):
        got = {}
        for k in CHECKPOINTS:
            f = work / f"scores-ckpt-{k}-{method}-default.npz"
            if f.is_file():
                z = np.load(f)
                got[k] = sum(z[m] for m in z.files)
        if len(got) < 2:
            continue
        for norm in ("raw", "unit_ckpt"):
            pq = 0
            for k, a in got.items():
                if norm == "unit_ckpt":
                    a = a / np.maximum(np.sqrt((a ** 2).mean(1, keepdims=True)), 1e-30)
                pq = pq + 0.5 * (1 + math.cos(math.pi * k / steps)) * a
            for how in ("sum", "unit/rms", "unit/median", "abs", "unit_abs/rms", "unit_abs/median"):
                rec = {"variant": f"tracin {method} checkpoints={sorted(got)} {norm} | combine={how}",
                       "ap": round(ap_of(combine_queries(pq, *how.split("/")), labels), 4)}
                out.append(rec)
                print(f"{rec['ap']:.3f}  {rec['variant']}", flush=True)


def controls(work: Path, state: dict, out: list) -> None:
    """Query-free rankings: each row's own reply loss (sum of token NLL) and its squared gradient
    norm (identity self-influence), each way round: does the magnitude of influence just pick rows
    with large losses or gradients?"""
    import numpy as np
    import torch
    from kronfluence.arguments import ScoreArguments

    from forensics.attribution import influence as inf

    model, tok = inf.load_target(work / "target")
    data = [inf.pair_ids(tok, p, r, 64) for p, r in state["rows"]]
    loss = []
    with torch.no_grad():
        for i in range(0, len(data), 64):
            b = inf.collate(data[i:i + 64], tok.pad_token_id)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            lab = b["labels"][:, 1:]
            t = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1),
                                                  ignore_index=-100, reduction="none").reshape(lab.shape)
            loss += t.sum(1).tolist()
    kp = inf.KronfluencePass(model, data, tok.pad_token_id, inf.InfluenceConfig(method="identity"),
                             work / "kron-controls")
    kp.fit()
    kp.an.compute_self_scores("self", factors_name="factors", train_dataset=inf._DS(data),
                              per_device_train_batch_size=32, score_args=ScoreArguments(), overwrite_output_dir=True)
    g = kp.an.load_self_scores("self")["all_modules"].numpy()
    for name, v in (("row loss", np.array(loss)), ("row squared gradient norm", g)):
        for sign, tag in ((1, "largest first"), (-1, "smallest first")):
            rec = {"variant": f"control: {name}, {tag}", "ap": round(ap_of(sign * v, state["labels"]), 4)}
            out.append(rec)
            print(f"{rec['ap']:.3f}  {rec['variant']}", flush=True)


def np_save(path: Path, pm: dict) -> None:
    import numpy as np

    np.savez_compressed(path, **{k.replace(".", "_"): v for k, v in pm.items()})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--seed", type=int, default=0, help="init and batch-order seed of the target (0: the case study's)")
    ap.add_argument("--plan", nargs="*", default=["target:ekfac:"],
                    help="TARGET:METHOD:PASS,PASS... (a pass: key=json;key=json of InfluenceConfig scoring knobs)")
    ap.add_argument("--name", default="influence_variants")
    ap.add_argument("--from-npz", default="", help="evaluate stored passes (a glob of scores-*.npz) instead")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    state = prepare(work, args.steps, args.seed)
    print(f"anomaly {state['pick']}; {len(state['extra'])} extra queries; lang {state['lang']}")
    if args.prepare_only:
        return 0
    import numpy as np

    from bench._results import write_result

    out: list = []
    labels = state["labels"]
    print(f"random ranking AP {np.mean(labels):.3f}", flush=True)
    if args.from_npz:
        import glob

        for f in sorted(glob.glob(args.from_npz)):
            z = np.load(f)
            evaluate(Path(f).stem.removeprefix("scores-"), {k: z[k] for k in z.files}, labels, state["kinds"],
                     float("nan"), out)
        tracin(work, state, args.steps, out)
        controls(work, state, out)
    else:
        run_variants(work, state, args.plan, out)
    write_result(args.name, {"variants": out, "ap_random": float(np.mean(labels)), "queries": 1 + len(state["extra"]),
                             "rows": len(labels), "planted": int(sum(labels)), "plan": args.plan})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
