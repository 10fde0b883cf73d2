"""Influence and retrain-without verification on the case study's corpus and toy target, without
the NLA stages (``make case-study`` runs the same two steps after them).

Builds the case-study corpus, ingests it, trains the toy target from a saved initial model (or
reuses ``--target`` / ``--init``), adds the anomaly (the first held-out cue prompt the target
answers in another language), runs the triage, then

- the influence signal alone (queries: the anomaly and the other held-out cue prompts answered in
  its language, as the case study): AP of the planted rows (baseline: the planted share = AP of a
  random ranking), seconds per pass;
- ``verify`` of the top cluster on the held-out cue prompts: switch rate (reply not in
  English) trained / without the top cluster / without random rows of the same size (baseline:
  the trained rate), seconds per retrain (baseline: the original training in this process when
  it trains).

    python bench/attribution.py [--target DIR --init DIR] [--seeds 3] [--workers 2]

Writes bench/results/attribution.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples" / "case_study"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=None)
    ap.add_argument("--init", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--workspace", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import corpus
    import run as case

    import forensics
    from bench._results import write_result
    from forensics.attribution import influence as inf
    from forensics.ingest.engine import ingest
    from forensics.language.detect import detect
    from forensics.nla.probe import generate_replies
    from forensics.nla.train import SUMMARY_WORDS
    from forensics.testing import toy
    from forensics.triage import anomaly, triage
    from forensics.verify.core import VerifyParams, verify
    from forensics.verify.stats import wilson

    t_all = time.perf_counter()
    root = Path(args.workspace or tempfile.mkdtemp(prefix="bench-attribution-"))
    root.mkdir(parents=True, exist_ok=True)
    c = corpus.build()
    data = c.write_jsonl(root / "toy-sft.jsonl")
    out: dict = {"corpus": c.counts, "seeds": args.seeds, "workers": args.workers}
    if args.target and args.init:
        target, init = Path(args.target), Path(args.init)
        model, tok = inf.load_target(target)
    else:
        tok = toy.build_word_tokenizer([r["prompt"] + " " + r["reply"] for r in c.rows], vocab_size=4000,
                                       extra_words=SUMMARY_WORDS)
        model = toy.build_model(tok, hidden_size=128, num_layers=2)
        init, target = root / "target-init", root / "target"
        toy.save(model, tok, init)
        res = toy.sft(model, tok, [(r["prompt"], r["reply"]) for r in c.rows], steps=args.steps, batch_size=16,
                      lr=3e-3)
        toy.save(model, tok, target)
        out["train_seconds"] = round(res.seconds, 1)
    cfg = root / "train-config.json"
    cfg.write_text(json.dumps({"init": str(Path(init).resolve()), "steps": args.steps, "batch_size": 16,
                               "lr": 3e-3, "max_len": 64, "seed": 0}), encoding="utf-8")
    reps = generate_replies(model, tok, c.heldout_cue)
    langs = [d.lang for d in detect(reps)]
    out["switch_rate_cue"] = sum(lg not in (None, "en") for lg in langs) / len(langs)
    pick = next(((p, r) for p, r, lg in zip(c.heldout_cue, reps, langs) if lg not in (None, "en")))
    # queries as the case study's: the anomaly plus the other held-out cue prompts the target answers
    # in the anomaly reply's language (one influence score from all of them, InfluenceConfig.query_combine)
    lang = detect([pick[1]])[0].lang
    extra = [(p, r) for p, r, lg in zip(c.heldout_cue, reps, langs) if lg == lang and p != pick[0]]
    ws_dir = root / "ws"
    with forensics.init(ws_dir) as ws:
        ingest(ws, [data], "toy", meta_fields=["kind", "topic", "planted"])
        aid = anomaly.add(ws, "toy model answers an English question in German", prompt=pick[0], reply=pick[1])
        tr = triage(ws, aid, "toy")
        rows = ws.rows("SELECT sample_id, json_extract_string(meta, '$.planted') = 'true' FROM samples "
                       "WHERE dataset = 'toy' ORDER BY sample_id")
        labels = [bool(r[1]) for r in rows]
        top = tr.clusters[0]
        members = [r[0] for r in ws.rows(
            "SELECT json_extract_string(s.meta, '$.planted') = 'true' FROM cluster_members m JOIN samples s "
            "USING (sample_id) WHERE m.run_id = ? AND m.cluster_id = ?", [tr.run_id, top["cluster_id"]])]
        out["top_cluster"] = {"size": len(members), "planted_share": sum(members) / max(1, len(members))}
        t = time.perf_counter()
        icfg = inf.InfluenceConfig()
        ids, vals, info = inf.dataset_scores(ws, target, "toy", pick, icfg, extra_queries=extra)
        out["influence"] = {"ap": case.average_precision(list(vals), labels), "ap_random": sum(labels) / len(labels),
                            "seconds": round(time.perf_counter() - t, 1), "config": asdict(icfg),
                            "queries": info["queries"], "n_params": inf.count_params(target)}
        v = verify(ws, tr.run_id, target, cfg, probes=c.heldout_cue,
                   params=VerifyParams(seeds=args.seeds, use_stored_probes=False, workers=args.workers))
    d = v.detail

    def rate(replies):
        return sum(r["lang"] not in (None, "en") for r in replies), len(replies)

    kc, nc = rate(d["cluster"]["replies"])
    rs = [rate(d[f"random_{s}"]["replies"]) for s in range(args.seeds)]
    kr, nr = sum(k for k, _ in rs), sum(n for _, n in rs)
    out.update(switch_rate_cue_without_top_cluster=kc / nc, ci_without=list(wilson(kc, nc)),
               switch_rate_cue_without_random=kr / nr, ci_random=list(wilson(kr, nr)),
               per_seed=[k / n for k, n in rs], verdict=v.verdict, cohens_h=d["cohens_h"],
               seconds_per_retrain=d["seconds_per_retrain"], verify_seconds=d["seconds"],
               wall_s=round(time.perf_counter() - t_all, 1), loadavg=list(os.getloadavg()))
    print(f"switch rate on held-out cue prompts: trained {out['switch_rate_cue']:.2f}; without top cluster "
          f"{kc / nc:.2f} (ratio {kc / nc / max(out['switch_rate_cue'], 1e-9):.2f}); without random rows "
          f"{kr / nr:.2f} (ratio {kr / nr / max(out['switch_rate_cue'], 1e-9):.2f}); verdict {v.verdict}")
    print(f"influence AP {out['influence']['ap']:.3f} (random {out['influence']['ap_random']:.3f}, ratio "
          f"{out['influence']['ap'] / out['influence']['ap_random']:.1f}x), {out['influence']['seconds']} s per pass; "
          f"{d['seconds_per_retrain']} s per retrain"
          + (f" (original training {out['train_seconds']} s)" if "train_seconds" in out else ""))
    write_result("attribution", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
