"""Throughput of the mistranslation pipeline: the per-segment rule (expected language, reply
languages per segment, three finding kinds) against the former whole-reply rule
(``whole_reply = true``), on the same rows in the same process. Run with ``nice -n 10``.

    nice -n 10 .venv/bin/python bench/mistranslation_throughput.py [--rows 100000] [--reps 2]

Rows: bench/pipelines.py's realistic rows (XQuAD questions and sentences recombined, planted
switches, native pairs, translation requests), with ``--paragraph-share`` of the replies
lengthened to several lines (the reply, then one or two XQuAD paragraphs of the same
language; a tenth of those end in an English closing line), since model replies are often
longer than one sentence and only multi-line replies take the split path. Prints seconds per
rule (best of ``--reps``), the ratio new/old, findings per kind, and writes
bench/results/mistranslation_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

import forensics  # noqa: E402
from forensics.ingest import ingest  # noqa: E402
from forensics.quality import load_pipeline, run_pipeline  # noqa: E402
from forensics.quality.checks.mistranslation import MistranslationCheck  # noqa: E402

XQUAD = shared_dir() / "data" / "xquad"
CLOSINGS = ["I hope this helps! Let me know if you have any other questions.",
            "Feel free to ask if anything in this explanation is unclear to you."]


def paragraphs() -> dict[str, list[str]]:
    out = {}
    for lang in ("en", "de", "es", "zh", "vi", "tr", "el", "ro"):
        data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        out[lang] = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    return out


def lengthen(rows: list[dict], share: float, seed: int = 1) -> int:
    """Give ``share`` of the replies one or two more paragraphs in the reply's language (by
    the language of a parallel paragraph: detected once per language here)."""
    from forensics.language.detect import detect

    rng = random.Random(seed)
    paras = paragraphs()
    picks = [i for i in range(len(rows)) if rng.random() < share]
    langs = detect([rows[i]["reply"] for i in picks])
    n = 0
    for i, lr in zip(picks, langs):
        lang = lr.lang if lr.lang in paras else "en"
        extra = "\n\n".join(rng.sample(paras[lang], rng.choice((1, 2))))
        tail = ("\n\n" + rng.choice(CLOSINGS)) if rng.random() < 0.1 else ""
        rows[i]["reply"] = rows[i]["reply"] + "\n\n" + extra + tail
        n += 1
    return n


def pipeline(whole_reply: bool):
    p = load_pipeline("mistranslation")
    for s in p.steps:
        if isinstance(s, MistranslationCheck):
            s.whole_reply = whole_reply
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--paragraph-share", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=5000)
    args = ap.parse_args()
    from pipelines import build_rows

    tmp = Path(tempfile.mkdtemp(prefix="bench-mt-"))
    rows, labels = build_rows(args.rows)
    long_rows = lengthen(rows, args.paragraph_share)
    f = tmp / "rows.jsonl"
    with f.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    ws = forensics.init(tmp / "ws")
    t = time.perf_counter()
    ingest(ws, f, "bench")
    ingest_s = time.perf_counter() - t
    n = ws.one("SELECT count(*) FROM samples WHERE dataset = 'bench'")[0]
    print(f"ingested {n} rows ({long_rows} multi-line replies) in {ingest_s:.1f} s", flush=True)

    best = {"whole_reply": float("inf"), "segments": float("inf")}
    runs = {}
    for rep in range(args.reps):
        for name in ("whole_reply", "segments"):
            t = time.perf_counter()
            r = run_pipeline(ws, pipeline(name == "whole_reply"), "bench", fresh=True, workers=1,
                             batch_size=args.batch_size)
            dt = time.perf_counter() - t
            best[name] = min(best[name], dt)
            runs[name] = r.pipeline_run_id
            print(f"rep {rep} {name}: {dt:.1f} s", flush=True)
    kinds = {}
    switch = {}
    for name, run_id in runs.items():
        kinds[name] = dict(ws.rows(
            "SELECT coalesce(group_id, 'none'), count(*) FROM quality_findings WHERE "
            "pipeline_run_id = ? GROUP BY ALL ORDER BY ALL", [run_id]))
        got = {x[0] for x in ws.rows(
            "SELECT row_id FROM v_quality_findings WHERE pipeline_run_id = ? AND "
            "group_id = 'unrequested_switch'", [run_id])}
        examples = ws.rows(
            "SELECT group_id, row_id, left(prompt, 160), left(reply, 160), detail FROM "
            "v_quality_findings WHERE pipeline_run_id = ? QUALIFY row_number() OVER "
            "(PARTITION BY group_id ORDER BY row_id) <= 3 ORDER BY ALL", [run_id])
        for ex in examples:
            print(name, json.dumps(ex, ensure_ascii=False), flush=True)
        pos = labels["switch"]
        tp = len(got & pos)
        switch[name] = {"precision": round(tp / len(got), 4) if got else None,
                        "recall": round(tp / len(pos), 4) if pos else None,
                        "flagged": len(got), "planted": len(pos)}
    ws.close()
    out = {"rows": n, "multi_line_replies": long_rows, "ingest_seconds": round(ingest_s, 1),
           "seconds": {k: round(v, 2) for k, v in best.items()},
           "rows_per_s": {k: round(n / v) for k, v in best.items()},
           "ratio_segments_over_whole_reply": round(best["segments"] / best["whole_reply"], 3),
           "findings_by_kind": kinds, "planted_switch": switch}
    print(json.dumps(out, indent=1))
    write_result("mistranslation_throughput", {"parameters": vars(args), **out})


if __name__ == "__main__":
    main()
