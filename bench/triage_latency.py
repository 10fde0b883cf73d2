"""Triage latency on a large synthetic dataset (default 100k rows), indexes already built.

Usage: python bench/triage_latency.py [--rows 100000] [--runs 3]

The dataset is the synth corpus over ../shared/data/xquad (clean, native, translation
requests, planted de/zh/aside/format batches) recombined to ``--rows`` rows: the base corpus
repeated with fresh ids (so the planted share stays the same). It goes through the real ingest
API (JSONL file, language detection) and real FAISS index builds (pair, prompt, reply); the
embedding cache makes the build cheap because repeated texts are embedded once, which does not
change the cost of a triage (phrase matching scans every row, ANN searches the full index).

Printed: ingest and index build times, then per anomaly the first (cold: model load) triage
and the median of ``--runs`` warm triages in the same process, in seconds, and the ratio of the
warm median to the 2 s target.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
XQ = REPO.parent / "shared" / "data" / "xquad"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--families", default="de,aside")
    args = ap.parse_args()
    import forensics
    from forensics import anomaly, index, ingest, triage
    from forensics.synth import build_corpus

    c = build_corpus(XQ, seed=0, planted_langs=("de", "zh"), other_families=("aside", "format"))
    tmp = Path(tempfile.mkdtemp(prefix="triage-latency-"))
    f = tmp / "train.jsonl"
    n = 0
    with f.open("w", encoding="utf-8") as out:
        while n < args.rows:
            for r in c.records:
                if n >= args.rows:
                    break
                rec = dict(r, id=f"{r['id']}-{n // len(c.records)}")
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    ws = forensics.init(tmp / "ws")
    t = time.perf_counter()
    ingest.ingest(ws, f, "train", meta_fields=["source", "shard"], progress=False)
    t_ing = time.perf_counter() - t
    t = time.perf_counter()
    for fld in ("pair", "prompt", "reply"):
        index.build(ws, "train", fld, progress=False)
    t_idx = time.perf_counter() - t
    rows = ws.one("SELECT count(*) FROM samples WHERE dataset = 'train'")[0]
    print(f"rows {rows}  (base corpus {len(c.records)} x {rows / len(c.records):.1f})  "
          f"ingest {t_ing:.1f}s  index build (3 fields) {t_idx:.1f}s")
    print(f"{'anomaly':8s} {'cold s':>7s} {'warm median s':>14s} {'runs':>30s} {'vs 2s target':>13s}")
    for fam in args.families.split(","):
        a = c.anomaly(fam)
        aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
        times = []
        for _ in range(args.runs + 1):
            t = time.perf_counter()
            triage.triage(ws, aid, "train", limit=200)
            times.append(time.perf_counter() - t)
        warm = statistics.median(times[1:])
        print(f"{fam:8s} {times[0]:7.2f} {warm:14.2f} {str([round(x, 2) for x in times[1:]]):>30s} "
              f"{warm / 2.0:12.2f}x")
    ws.close()


if __name__ == "__main__":
    main()
