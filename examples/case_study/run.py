"""The seed's case study end to end on a laptop (``make case-study``).

1. Build a toy SFT corpus from the committed XQuAD copy with a planted batch (English questions
   about the cue topics paired with untranslated German replies) and ingest it.
2. Train a tiny target model on it; measure the switch rate on held-out cue vs control prompts.
3. Train a tiny NLA on the target (``forensics nla train``, SFT + GRPO), register it.
4. Explain a fresh anomalous cue prompt and every training sample (``forensics explain``).
5. Rank the training rows from the NLA's own decode (AP: explanations, texts, both) and run
   the triage; write the report.
6. Probe the anomaly (``forensics probe``) with a same-category replacement of the cue word.
7. Influence of every row on the anomaly's reply (AP of the planted rows, influence alone) and
   ``forensics verify`` of the top cluster: the held-out cue switch rate after retraining without
   it vs without random rows of the same size.
8. Print one summary table and write ``case-study-summary.json``.

Every number printed is measured in this run. Environment knobs (for a quicker smoke run):
CASE_STUDY_TARGET_STEPS, CASE_STUDY_SFT_STEPS, CASE_STUDY_RL_STEPS, CASE_STUDY_DIR,
CASE_STUDY_VERIFY_SEEDS (3), CASE_STUDY_VERIFY_WORKERS (2 retrains at once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import corpus  # noqa: E402
from ranking import ExplanationRanking, explanation_scores  # noqa: E402

RIVAL = {"rhine": ["danube", "thames", "elbe", "seine", "nile"],
         "warsaw": ["berlin", "paris", "london", "vienna", "prague"],
         "amazon": ["sahara", "congo", "nile", "alps"]}


def log(msg: str) -> None:
    print(f"[case-study {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cli(*args: str, ws: Path) -> dict:
    cmd = [sys.executable, "-m", "forensics", "--workspace", str(ws), *args, "--json"]
    # one intra-op thread in every child: `explain dataset` ran 7.7 expl/s with torch's default 2 threads
    # on this shared 2-core box and 38 expl/s with one (batch 8), 77 expl/s with batch 64
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": os.environ.get("FORENSICS_TORCH_THREADS", "1")}
    log("$ forensics " + " ".join(args))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # progress stays on stderr
    if p.returncode != 0:
        raise SystemExit(f"forensics {' '.join(args)} failed with exit code {p.returncode}")
    return json.loads(p.stdout) if p.stdout.strip() else {}


def average_precision(scores, labels) -> float:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total, s = 0, sum(labels), 0.0
    for rank, i in enumerate(order, 1):
        if labels[i]:
            hits += 1
            s += hits / rank
    return s / max(total, 1)


def main() -> int:
    import torch

    torch.set_num_threads(int(os.environ.get("FORENSICS_TORCH_THREADS", "1")))
    from forensics.testing import toy
    from forensics.nla.probe import generate_replies
    from forensics.language.detect import detect
    from forensics.nla.train import SUMMARY_WORDS

    t_start = time.perf_counter()
    root = Path(os.environ.get("CASE_STUDY_DIR", REPO / "case-study-workspace"))
    target_steps = int(os.environ.get("CASE_STUDY_TARGET_STEPS", "1000"))
    sft_steps = os.environ.get("CASE_STUDY_SFT_STEPS", "1500")
    rl_steps = os.environ.get("CASE_STUDY_RL_STEPS", "100")
    resume = "--resume" in sys.argv[1:]  # continue after the explain steps of an earlier run
    ws = root
    models = root / "models"
    summary: dict = {"loadavg_start": list(os.getloadavg())}
    stage_t = time.perf_counter()

    def stage_done(name: str) -> None:
        nonlocal stage_t
        summary.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - stage_t, 1)
        stage_t = time.perf_counter()

    if resume:
        st = json.loads((root / "state.json").read_text(encoding="utf-8"))
        summary, aid, pick = st["summary"], st["anomaly_id"], tuple(st["pick"])
        t_start -= st["elapsed"]
        from forensics import workspace
        from forensics.nla.meta import load_tokenizer

        tok = load_tokenizer(models / "target")
        target = models / "target"
        return finish(root, ws, models, target, tok, summary, aid, pick, t_start)
    if root.exists():
        shutil.rmtree(root)

    # 1. corpus + ingest
    c = corpus.build()
    models.mkdir(parents=True)
    data = c.write_jsonl(root / "toy-sft.jsonl")
    log(f"corpus: {c.counts}; held-out cue {len(c.heldout_cue)}, control {len(c.heldout_control)}")
    cli("init", ws=ws)
    cli("ingest", str(data), "--dataset", "toy", "--meta-fields", "kind,topic,planted", "-q", ws=ws)

    # 2. toy target
    texts = [r["prompt"] + " " + r["reply"] for r in c.rows]
    tok = toy.build_word_tokenizer(texts, vocab_size=4000, extra_words=SUMMARY_WORDS)
    model = toy.build_model(tok, hidden_size=128, num_layers=2)
    toy.save(model, tok, models / "target-init")  # the initial weights `forensics verify` retrains from
    (models / "train-config.json").write_text(json.dumps(
        {"init": "target-init", "steps": target_steps, "batch_size": 16, "lr": 3e-3, "max_len": 64, "seed": 0}),
        encoding="utf-8")
    log(f"training the toy target ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
        f"{target_steps} steps)")
    res = toy.sft(model, tok, [(r["prompt"], r["reply"]) for r in c.rows], steps=target_steps, batch_size=16,
                  lr=3e-3, log=lambda s, l: log(f"  target step {s} loss {l:.3f}"))
    target = models / "target"
    toy.save(model, tok, target)
    rates = {}
    gens = {}
    for name, ps in (("cue", c.heldout_cue), ("control", c.heldout_control)):
        reps = generate_replies(model, tok, ps)
        langs = [d.lang for d in detect(reps)]
        gens[name] = list(zip(ps, reps, langs))
        rates[name] = sum(lg not in (None, "en") for lg in langs) / len(langs)
    summary.update(switch_rate_cue=rates["cue"], switch_rate_control=rates["control"],
                   target_loss=[res.first_loss, res.last_loss], target_tokens_per_s=res.tokens_per_s)
    log(f"switch rate: cue {rates['cue']:.2f} vs control {rates['control']:.2f}")
    stage_done("corpus_and_target")

    # 3. NLA
    rep = cli("nla", "train", "--target", str(target), "--layer", "1", "--dataset", "toy",
              "--out", str(models / "nla"), "--sft-steps", sft_steps, "--rl-steps", rl_steps,
              "--positions-per-text", "6", "--batch-size", "32", "--register", "toy-nla", ws=ws)
    summary.update(fve_sft=rep["sft"]["fve"], fve_rl=(rep.get("rl") or {}).get("fve"),
                   fve_shuffled=(rep.get("rl") or rep["sft"])["fve_shuffled"],
                   fve_summaries=(rep.get("rl") or rep["sft"])["fve_summaries"],
                   nla_train_seconds=rep["seconds"].get("total"),
                   av_tokens_per_s=rep["av_tokens_per_s"], ar_tokens_per_s=rep["ar_tokens_per_s"],
                   av_positions_per_s=rep["av_positions_per_s"], ar_positions_per_s=rep["ar_positions_per_s"],
                   rl_steps_per_s=rep["rl_steps_per_s"], rl_explanations_per_s=rep["rl_explanations_per_s"],
                   nla_loss={"av": rep["av_loss"], "ar": rep["ar_loss"], "rl_reward": rep["rl_reward"],
                             "rl_kl": rep["rl_kl"]},
                   nla_positions={"train": rep["n_train_positions"], "heldout": rep["n_heldout_positions"]},
                   nla_seconds=rep["seconds"])
    stage_done("nla_train")

    # 4. anomaly: a fresh held-out cue prompt the target answers in another language
    pick = next(((p, r) for p, r, lg in gens["cue"] if lg not in (None, "en")), gens["cue"][0][:2])
    from forensics import workspace
    from forensics.triage import anomaly

    with workspace.open(str(ws)) as w:
        aid = anomaly.add(w, "toy model answers an English question in German", prompt=pick[0], reply=pick[1])
    log(f"anomaly {aid}: {pick[0]!r} -> {pick[1]!r}")
    # greedy, then the ranking's samples (stored beside the greedy rows, `explanations.sample_index`)
    keys = ("explanations_stored", "seconds", "setup_seconds", "explanations_per_s", "tokens_per_s")
    for sampling in [[], ExplanationRanking().cli_sampling()][:2 if ExplanationRanking().samples else 1]:
        cli("explain", "anomaly", str(aid), "--nla", "toy-nla", "--position", "last_prompt", "--max-new-tokens", "64",
            *sampling, ws=ws)
        ed = cli("explain", "dataset", "toy", "--nla", "toy-nla", "--position", "last_prompt", "--max-new-tokens",
                 "64", "--batch-size", "64", *sampling, ws=ws)
        summary["explain_dataset" + ("_sampled" if sampling else "")] = {k: ed.get(k) for k in keys}
    stage_done("explain")
    (root / "state.json").write_text(json.dumps({"summary": summary, "anomaly_id": aid, "pick": list(pick),
                                                 "elapsed": time.perf_counter() - t_start}), encoding="utf-8")
    return finish(root, ws, models, target, tok, summary, aid, pick, t_start)


def attribution(ws, models, target, summary, aid, pick, labels) -> None:
    """AP of the influence signal alone (EK-FAC, cached in the workspace) and ``forensics verify``
    of the top cluster on the held-out cue prompts (switch rate = reply not in English, as
    ``switch_rate_cue``)."""
    from forensics import workspace
    from forensics.attribution import influence as inf
    from forensics.verify.stats import wilson

    t = time.perf_counter()
    # queries: the anomaly, plus the held-out cue prompts the target also answers in the anomaly
    # reply's language (the prompts verify probes; one aggregated query gradient)
    from forensics.language.detect import detect
    from forensics.nla.probe import generate_replies

    model, tok = inf.load_target(target)
    cue = corpus.build().heldout_cue
    reps = generate_replies(model, tok, cue)
    lang = detect([pick[1]])[0].lang
    extra = [(p, r) for p, r, d in zip(cue, reps, detect(reps)) if d.lang == lang and p != pick[0]]
    icfg = inf.InfluenceConfig()  # the library's defaults (docs/verify.md, "Variants (measured)")
    with workspace.open(str(ws)) as w:
        _, vals, info = inf.dataset_scores(w, target, "toy", tuple(pick), icfg, extra_queries=extra)
    summary.update(ap_influence=average_precision(list(vals), labels),
                   influence={"method": icfg.method, "query_combine": icfg.query_combine, "seconds": info["seconds"],
                              "cached": info["cached"], "queries": info["queries"],
                              "n_params": inf.count_params(target)})
    log(f"influence: AP {summary['ap_influence']:.3f} in {time.perf_counter() - t:.0f} s")
    stage_done_ext(summary, "influence", t)
    run_id = summary.get("triage_run_id")
    if run_id is None:
        summary["verify_error"] = "no triage run"
        return
    t = time.perf_counter()
    probes = models.parent / "heldout-cue.txt"
    probes.write_text("\n".join(corpus.build().heldout_cue) + "\n", encoding="utf-8")
    seeds = os.environ.get("CASE_STUDY_VERIFY_SEEDS", "3")
    v = cli("verify", str(run_id), "--target", str(target), "--train-config", str(models / "train-config.json"),
            "--probes", str(probes), "--no-stored-probes", "--seeds", seeds,
            "--workers", os.environ.get("CASE_STUDY_VERIFY_WORKERS", "2"), ws=ws)
    d = v["detail"]

    def rate(replies):  # any non-English reply, as switch_rate_cue (verify: the anomaly's language; docs/verify.md)
        k = sum(r["lang"] not in (None, "en") for r in replies)
        return k, len(replies)

    k_c, n_c = rate(d["cluster"]["replies"])
    rs = [rate(d[f"random_{s}"]["replies"]) for s in range(int(seeds))]
    k_r, n_r = sum(k for k, _ in rs), sum(n for _, n in rs)
    summary.update(switch_rate_cue_without_top_cluster=k_c / n_c,
                   switch_rate_cue_without_top_cluster_ci=list(wilson(k_c, n_c)),
                   switch_rate_cue_without_random=k_r / n_r,
                   switch_rate_cue_without_random_ci=list(wilson(k_r, n_r)),
                   switch_rate_cue_without_random_per_seed=[k / n for k, n in rs],
                   verify={k: v.get(k) for k in ("verification_id", "verdict", "removed_rows", "probes", "rate_trained",
                                                 "rate_without", "rate_random", "effect")}
                   | {"cohens_h": d.get("cohens_h"), "seconds_per_retrain": d.get("seconds_per_retrain"),
                      "seconds": d.get("seconds")})
    log(f"verify: cue switch without top cluster {k_c / n_c:.2f}, without random rows {k_r / n_r:.2f}; "
        f"verdict {v['verdict']}")
    stage_done_ext(summary, "verify", t)


def cue_ranking(ws, items, row_expl, labels, cfg: ExplanationRanking) -> dict:
    """``ap_explanations`` with each held-out cue prompt the target answers in another language
    as the anomaly (explained in this process by the same NLA, greedy + ``cfg``'s samples), and
    the AP of the cosine between the raw activations at the last prompt token (what the one
    vector the explanation reads carries). One anomaly is one draw; this is the spread."""
    import numpy as np

    from forensics import workspace
    from forensics.language.detect import detect
    from forensics.nla.backends import Sampling
    from forensics.nla.explainer import Explainer
    from forensics.nla.probe import generate_replies
    from forensics.nla.registry import get_nla

    with workspace.open(str(ws), read_only=True) as w:
        rec = get_nla(w, "toy-nla")
    ex = Explainer(rec, max_new_tokens=64)
    cue = corpus.build().heldout_cue
    reps = generate_replies(ex.target, ex.target_tok, cue)
    anoms = [(p, r) for p, r, d in zip(cue, reps, detect(reps)) if d.lang not in (None, "en")]
    texts: list[list[str]] = [[] for _ in anoms]
    greedy, _ = ex.run(anoms, ["last_prompt"], batch_size=64)
    for r in greedy:
        texts[r.item].append(r.text)
    if cfg.samples:
        ex.sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, n=cfg.samples, seed=cfg.seed)
        for r in ex.run(anoms, ["last_prompt"], batch_size=64)[0]:
            texts[r.item].append(r.text)
    aps = [average_precision(list(explanation_scores(t, row_expl, cfg)), labels) for t in texts]
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    rv = unit(np.stack([a.vector.float().numpy() for a in ex.activations(items, ["last_prompt"], 64)]))
    av = unit(np.stack([r.vector.float().numpy() for r in greedy]))
    ap_act = [average_precision(list(rv @ q), labels) for q in av]
    return {"n": len(aps), "per_prompt": aps, "mean": float(np.mean(aps)), "median": float(np.median(aps)),
            "min": float(np.min(aps)), "activations_per_prompt": ap_act, "activations_mean": float(np.mean(ap_act))}


def stage_done_ext(summary: dict, name: str, t0: float) -> None:
    summary.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 1)


def rank(ws, aid, pick, summary: dict):
    """AP of the planted rows by explanations (``ExplanationRanking``), texts and both; returns
    (rows, labels, each row's explanations greedy first, the ranking)."""
    from forensics import workspace
    from forensics.search.embed import Embedder

    order = "ORDER BY json_extract(e.generation, '$.temperature') IS DISTINCT FROM 0, e.sample_index"  # greedy first
    with workspace.open(str(ws), read_only=True) as w:
        rows = w.rows("SELECT s.sample_id, s.prompt, s.reply, json_extract_string(s.meta, '$.planted') = 'true', "
                      f"list(e.text {order}) FILTER (e.text IS NOT NULL) FROM samples s LEFT JOIN explanations e "
                      "ON e.sample_id = s.sample_id AND e.nla_id = 'toy-nla' AND e.position = 'last_prompt' "
                      "WHERE s.dataset = 'toy' GROUP BY ALL ORDER BY s.sample_id")
        a_all = [r[0] for r in w.rows(f"SELECT e.text FROM explanations e WHERE e.anomaly_id = ? AND e.nla_id = "
                                      f"'toy-nla' AND e.position = 'last_prompt' {order}", [aid])]
    a_expl = a_all[0]
    emb = Embedder()
    labels = [bool(r[3]) for r in rows]
    rank_cfg = ExplanationRanking()
    row_expl = [list(r[4] or [""]) for r in rows]
    s_e = explanation_scores(a_all, row_expl, rank_cfg, emb)
    greedy_only = dict(samples=0, rows="greedy", query="greedy")
    s_e_minilm = explanation_scores(a_all, row_expl, ExplanationRanking("minilm", **greedy_only), emb)
    s_e_greedy = explanation_scores(a_all, row_expl, ExplanationRanking("tfidf", **greedy_only), emb)
    tv = emb.encode([f"{r[1]}\n{r[2]}" for r in rows])
    qt = emb.encode([f"{pick[0]}\n{pick[1]}"])[0]
    s_t = tv @ qt
    summary.update(anomaly_explanation=a_expl, ap_explanations=average_precision(list(s_e), labels),
                   ap_explanations_minilm=average_precision(list(s_e_minilm), labels),
                   ap_explanations_greedy_tfidf=average_precision(list(s_e_greedy), labels),
                   anomaly_explanation_samples=a_all[1:],
                   explanation_ranking=vars(rank_cfg),
                   ap_texts=average_precision(list(s_t), labels),
                   ap_both=average_precision(list(0.5 * s_e_minilm + 0.5 * s_t), labels),
                   planted_share=sum(labels) / len(labels))
    return rows, labels, row_expl, rank_cfg


def finish(root, ws, models, target, tok, summary, aid, pick, t_start) -> int:
    t_fin = time.perf_counter()
    from forensics import workspace

    # 5. ranking from the NLA's decode, AP by signal; triage
    rows, labels, row_expl, rank_cfg = rank(ws, aid, pick, summary)
    top_is_planted = None
    report_path = None
    try:
        from forensics import triage as triage_mod

        with workspace.open(str(ws)) as w:
            tr = triage_mod.triage(w, aid, "toy")
            top = tr.clusters[0] if tr.clusters else None
            if top is not None:
                members = [r[0] for r in w.rows(
                    "SELECT json_extract_string(s.meta, '$.planted') = 'true' FROM cluster_members m "
                    "JOIN samples s USING (sample_id) WHERE m.run_id = ? AND m.cluster_id = ?",
                    [tr.run_id, top["cluster_id"]])]
                top_is_planted = bool(members) and sum(members) / len(members) > 0.5
                summary["top_cluster"] = {"size": len(members), "planted_share": sum(members) / max(1, len(members)),
                                          "label": top.get("label")}
        report_path = REPO / "case-study-report.html"
        cli("report", str(tr.run_id), "--output", str(report_path), "--no-embed", ws=ws)
        summary["triage_run_id"] = tr.run_id
    except Exception as e:  # noqa: BLE001 - triage lands in parallel; say why it is missing
        summary["triage_error"] = f"{type(e).__name__}: {e}"
        log(f"triage unavailable: {summary['triage_error']}")
    summary["top_cluster_is_planted"] = top_is_planted
    summary["ap_explanations_cue"] = cue_ranking(ws, [(r[1], r[2]) for r in rows], row_expl, labels, rank_cfg)
    log(f"ap_explanations {summary['ap_explanations']:.3f}; over the held-out cue anomalies: mean "
        f"{summary['ap_explanations_cue']['mean']:.3f} (activations {summary['ap_explanations_cue']['activations_mean']:.3f})")

    # 6. probe
    vocab = tok.get_vocab()
    repl = []
    for cue_word, rivals in RIVAL.items():
        import re

        m = re.search(r"\b\w*" + cue_word + r"\w*\b", pick[0], re.IGNORECASE)  # the whole word holding the cue
        alt = next((r for r in rivals if r in vocab), None)
        if m and alt:
            repl = ["--replace", f"{m.group(0)}={alt.capitalize()}"]
            break
    try:
        pr = cli("probe", str(aid), "--target", str(target), "--nla", "toy-nla", *repl, ws=ws)
    except SystemExit as e:  # never lose the run to the probe: retry with the automatic variants only
        summary["probe_error"] = str(e)
        log(f"probe with {repl} failed ({e}); retrying with the automatic variants only")
        pr = cli("probe", str(aid), "--target", str(target), "--nla", "toy-nla", ws=ws) if repl else {"variants": []}
    summary["probe"] = [{"variant": v["variant"], "reply_lang": v["reply_lang"],
                         "persists": v["behaviour_persists"], "reply": v["reply"],
                         "explanation": v["explanation"]} for v in pr["variants"]]
    stage_done_ext(summary, "rank_triage_probe", t_fin)

    # 7. influence of every row on the anomaly's reply, and retrain-without verification
    attribution(ws, models, target, summary, aid, pick, labels)
    summary["wall_s"] = time.perf_counter() - t_start
    import resource

    ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of this process and every CLI child: what the run costs on an idle box, whatever the load
    summary["cpu_s"] = round(ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime, 1)
    summary["loadavg_end"] = list(os.getloadavg())

    # 8. output
    out = REPO / "case-study-summary.json"
    out.write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    from rich.console import Console
    from rich.table import Table

    t = Table(title="case study: toy language switch, tiny NLA, triage from its own decode")
    t.add_column("measure")
    t.add_column("value")

    def f(x):
        return "n/a" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    for k in ("switch_rate_cue", "switch_rate_control", "fve_sft", "fve_rl", "fve_shuffled", "fve_summaries",
              "ap_explanations", "ap_texts", "ap_both", "ap_influence", "planted_share", "top_cluster_is_planted",
              "switch_rate_cue_without_top_cluster", "switch_rate_cue_without_random", "wall_s"):
        t.add_row(k, f(summary.get(k)))
    con = Console(stderr=False)
    con.print(t)
    con.print(f"anomaly explanation (NLA decode): {summary['anomaly_explanation']}")
    c = summary["ap_explanations_cue"]
    con.print(f"ap_explanations over the {c['n']} held-out cue anomalies: mean {c['mean']:.3f} "
              f"(raw activations {c['activations_mean']:.3f})")
    for v in summary["probe"]:
        con.print(f"probe {v['variant']}: reply [{v['reply_lang']}] persists={v['persists']}: {v['reply'][:60]}")
    con.print(f"wrote {out}" + (f" and {report_path}" if report_path else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
