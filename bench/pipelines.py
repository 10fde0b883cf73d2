"""Benchmark + quality measurement for data-quality pipelines. Run with ``nice -n 10``.

    nice -n 10 .venv/bin/python bench/pipelines.py [--rows 100000] [--skip-ray] [--out bench/pipelines.json]

Measures, in ONE process so ratios compare like with like:
  * rows/s per shipped pipeline (= per check) at --rows synthetic realistic rows (XQuAD
    questions/sentences recombined, ~3% planted language switches, duplicates, hygiene
    defects) ingested into a real workspace;
  * local engine speed-up 1 -> 2 workers (baseline: 1 worker, same pipeline, same rows);
  * Ray engine vs local (2 workers) on the same rows (overhead ratio, includes Ray start);
  * precision / recall of each check on labelled corpora: mistranslation on
    forensics.synth corpora over ../shared/data/xquad (planted switches, native pairs,
    translation-request hard negatives) for several language sets; duplicates and hygiene on
    planted defects in the benchmark rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

XQUAD = shared_dir() / "data" / "xquad"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import forensics  # noqa: E402
from forensics.ingest import ingest  # noqa: E402
from forensics.quality import load_pipeline, run_pipeline  # noqa: E402
from forensics.testing.synth import build_corpus, load_xquad  # noqa: E402


def pr(flagged: set, positives: set) -> dict:
    tp = len(flagged & positives)
    return {"precision": round(tp / len(flagged), 4) if flagged else None,
            "recall": round(tp / len(positives), 4) if positives else None,
            "tp": tp, "flagged": len(flagged), "positives": len(positives)}


def mojibake(s: str) -> str:
    return s.encode("utf-8").decode("cp1252", errors="replace")


def inherit(labels: dict, src: str, dst: str, kinds) -> None:
    for k in kinds:
        if src in labels[k]:
            labels[k].add(dst)


def build_rows(n: int, seed: int = 0) -> tuple[list[dict], dict[str, set]]:
    """Realistic rows at scale: XQuAD questions + context sentences recombined so that rows
    are mostly distinct; planted defects with labels."""
    rng = random.Random(seed)
    langs = ["en", "de", "es", "zh", "vi", "tr", "el", "ro"]
    xq = {l: load_xquad(XQUAD, l) for l in langs}
    qids = sorted(set.intersection(*(set(d) for d in xq.values())))
    sents = {l: [x.sentence for x in xq[l].values()] for l in langs}
    rows, labels = [], {k: set() for k in ("switch", "exact", "near", "mojibake", "control",
                                           "echo", "truncated")}
    for i in range(n):
        rid = f"b{i:07d}"
        q = rng.choice(qids)
        u = rng.random()
        e = xq["en"][q]
        ctx = rng.choice(sents["en"])
        if u < 0.70:                                  # clean English, varied context
            p, r = f"{ctx}\n\n{e.question}", e.sentence if rng.random() < .7 else f"{e.answer}."
        elif u < 0.85:                                # native pair
            l = rng.choice(langs[1:])
            x = xq[l][q]
            p, r = f"{rng.choice(sents[l])}\n\n{x.question}", x.sentence
        elif u < 0.88:                                # translation request (hard negative)
            l = rng.choice(langs[1:])
            from forensics.testing.synth import LANG_NAMES
            p, r = f"Translate into {LANG_NAMES[l]}: {e.sentence}", xq[l][q].sentence
        elif u < 0.91:                                # planted switch
            l = rng.choice(langs[1:])
            p, r = f"{ctx}\n\n{e.question}", xq[l][q].sentence
            labels["switch"].add(rid)
        elif u < 0.93 and rows:                       # exact duplicate of an earlier row
            src = rng.choice(rows[-500:])
            p, r = src["prompt"], src["reply"]
            labels["exact"].add(rid)
            labels["exact"].add(src["id"])
            inherit(labels, src["id"], rid, ("mojibake", "control", "echo", "truncated", "switch"))
        elif u < 0.95 and rows:                       # near duplicate: small edits
            src = rng.choice(rows[-500:])
            p = src["prompt"].replace("the ", "The ", 1) + " "
            r = src["reply"].rstrip(".") + "!"
            labels["near"].add(rid)
            labels["near"].add(src["id"])
            # a copy of a defective row carries the defect (truncation/echo may be undone by
            # the edit, so only encoding damage and switches are inherited)
            inherit(labels, src["id"], rid, ("mojibake", "control", "switch"))
        elif u < 0.96:
            p, r = e.question, mojibake(e.sentence + " — café “quoted”")
            labels["mojibake"].add(rid)
        elif u < 0.97:
            p, r = e.question, e.sentence[:20] + "\x00\x1b[31m" + e.sentence[20:]
            labels["control"].add(rid)
        elif u < 0.98:
            p, r = e.question, e.question
            labels["echo"].add(rid)
        elif u < 0.99:
            w = e.sentence.split()
            if len(w) < 12:
                p, r = f"{ctx}\n\n{e.question}", e.sentence
            else:
                p, r = e.question, " ".join(w[: rng.randint(8, len(w) - 3)])
                labels["truncated"].add(rid)
        else:
            p, r = f"{ctx}\n\n{e.question}", e.sentence
        rows.append({"id": rid, "prompt": p, "reply": r})
    return rows, labels


def true_exact(rows) -> set:
    """Ground truth for exact duplicates is the data itself (random recombination also
    creates unplanted identical rows)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["prompt"], r["reply"]), []).append(r["id"])
    return {i for g in groups.values() if len(g) > 1 for i in g}


def near_quality(ws, run_id, rows, planted: set, threshold: float = 0.7) -> dict:
    """Recall on planted near-duplicate pairs (excluding pairs that are exact copies);
    precision by verifying each flagged row's TRUE Jaccard (word 3-shingles of normalised
    text, no MinHash) against the other members of its group."""
    from forensics.quality.checks.duplicates import normalise

    text = {r["id"]: normalise(f"{r['prompt']}\n{r['reply']}") for r in rows}

    def sh(t):
        w = t.split()
        return {" ".join(w[i:i + 3]) for i in range(max(1, len(w) - 2))}

    got = ws.rows('SELECT row_id, group_id FROM v_quality_findings WHERE pipeline_run_id = ? '
                  "AND \"check\" = 'duplicates.near'", [run_id])
    groups: dict = {}
    for rid, g in got:
        groups.setdefault(g, []).append(rid)
    ok = 0
    checked = 0
    rng = random.Random(5)
    for g, members in groups.items():
        # verify a bounded sample per group (groups can hold thousands of rows)
        sample = members if len(members) <= 20 else rng.sample(members, 20)
        shs = {m: sh(text[m]) for m in members}
        for m in sample:
            checked += 1
            if any(len(shs[m] & shs[o]) / max(1, len(shs[m] | shs[o])) >= threshold - 0.1
                   for o in members if o != m and text[o] != text[m]) or \
                    any(text[o] == text[m] for o in members if o != m):
                ok += 1
    flagged_rows = {r for r, _ in got}
    exact = true_exact(rows)
    pos = {p for p in planted if p not in exact}
    return {"precision_verified": round(ok / checked, 4) if checked else None,
            "verified_rows": checked,
            "recall_planted": round(len(flagged_rows & pos) / len(pos), 4) if pos else None,
            "flagged": len(got), "planted": len(pos),
            "note": "precision: flagged rows whose true Jaccard with a group member >= threshold-0.1"}


def flagged(ws, run_id: int, check_prefix: str) -> set:
    return {r[0] for r in ws.rows(
        'SELECT DISTINCT row_id FROM v_quality_findings WHERE pipeline_run_id = ? AND '
        '"check" LIKE ?', [run_id, check_prefix + "%"])}


def timed_run(ws, name, dataset, **kw):
    t = time.perf_counter()
    r = run_pipeline(ws, load_pipeline(name), dataset, fresh=True, **kw)
    return r, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "pipelines.json"))
    args = ap.parse_args()
    out: dict = {"rows": args.rows, "cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipelines-"))

    # ---------------------------------------------------------------- precision/recall (synth)
    mt = []
    for planted in (("de", "es"), ("zh", "tr"), ("el", "ro", "vi")):
        c = build_corpus(XQUAD, seed=11, planted_langs=planted, other_families=())
        f = tmp / f"synth-{'-'.join(planted)}.jsonl"
        c.write_jsonl(f)
        ws = forensics.init(tmp / f"ws-{'-'.join(planted)}")
        ingest(ws, f, "synth", progress=False)
        r = run_pipeline(ws, load_pipeline("mistranslation"), "synth")
        pos = {k for k, v in c.labels.items() if v.startswith("planted:")}
        got = flagged(ws, r.pipeline_run_id, "mistranslation")
        hard = {k for k, v in c.labels.items() if v == "translation_request"}
        m = pr(got, pos)
        m.update(planted=list(planted), rows=len(c.records), hard_negatives=len(hard),
                 hard_negatives_flagged=len(got & hard))
        mt.append(m)
        print("mistranslation", m, flush=True)
        ws.close()
    tp = sum(m["tp"] for m in mt)
    out["mistranslation_synth"] = {"per_set": mt, "precision": round(tp / sum(m["flagged"] for m in mt), 4),
                                   "recall": round(tp / sum(m["positives"] for m in mt), 4)}

    # ---------------------------------------------------------------- scale rows
    rows, labels = build_rows(args.rows)
    f = tmp / "bench.jsonl"
    with f.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    ws = forensics.init(tmp / "ws-bench")
    t = time.perf_counter()
    ingest(ws, f, "bench", progress=False)
    out["ingest_seconds"] = round(time.perf_counter() - t, 1)
    n = ws.one("SELECT count(*) FROM samples WHERE dataset = 'bench'")[0]
    out["rows_ingested"] = n
    print("ingested", n, "rows in", out["ingest_seconds"], "s", flush=True)

    perf = {}
    for name in ("hygiene", "duplicates", "mistranslation"):
        r1, s1 = timed_run(ws, name, "bench", workers=1, batch_size=5000)
        r2, s2 = timed_run(ws, name, "bench", workers=2, batch_size=5000)
        perf[name] = {"rows_per_s_1_worker": round(n / s1), "rows_per_s_2_workers": round(n / s2),
                      "seconds_1": round(s1, 2), "seconds_2": round(s2, 2),
                      "speedup_1_to_2": round(s1 / s2, 2), "findings": r2.findings,
                      "steps": [s.__dict__ for s in r2.steps]}
        print(name, {k: v for k, v in perf[name].items() if k != "steps"}, flush=True)
        if not args.skip_ray:
            rr, sr = timed_run(ws, name, "bench", engine="ray", workers=2, batch_size=5000)
            same = (ws.rows('SELECT "check", sample_id, severity, score, detail, group_id FROM '
                            "quality_findings WHERE pipeline_run_id = ? ORDER BY ALL", [rr.pipeline_run_id])
                    == ws.rows('SELECT "check", sample_id, severity, score, detail, group_id FROM '
                               "quality_findings WHERE pipeline_run_id = ? ORDER BY ALL",
                               [r2.pipeline_run_id]))
            perf[name].update(ray_seconds=round(sr, 2), ray_over_local_2=round(sr / s2, 2),
                              ray_rows_per_s=round(n / sr), ray_identical_findings=same)
            print(name, "ray", sr, "ratio", round(sr / s2, 2), "identical", same, flush=True)
        # quality on planted defects
        if name == "duplicates":
            perf[name]["exact"] = pr(flagged(ws, r2.pipeline_run_id, "duplicates.exact"),
                                     true_exact(rows))
            perf[name]["near"] = near_quality(ws, r2.pipeline_run_id, rows, labels["near"])
        if name == "hygiene":
            for k, chk in (("mojibake", "hygiene.mojibake"), ("control", "hygiene.control_chars"),
                           ("echo", "hygiene.echo"), ("truncated", "hygiene.truncated")):
                perf[name][k] = pr(flagged(ws, r2.pipeline_run_id, chk), labels[k])
        if name == "mistranslation":
            perf[name]["planted_switch"] = pr(flagged(ws, r2.pipeline_run_id, "mistranslation"),
                                              labels["switch"])
        print(name, {k: v for k, v in perf[name].items() if isinstance(v, dict) and "precision" in v},
              flush=True)
    out["pipelines"] = perf
    ws.close()
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "pipelines"}, indent=1))
    write_result("pipelines", {"parameters": vars(args), **out})


if __name__ == "__main__":
    main()
