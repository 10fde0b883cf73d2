"""Triage latency on a large synthetic dataset (default 100k rows), indexes already built, with
every step of behaviour-level triage against triage without them, in the same process.

Usage: python bench/triage_latency.py [--rows 100000] [--runs 3] [--reuse WS_DIR]
       [--build-only NEW_WS_DIR] [--families de,aside,code_tail,agree_passage]
       [--extra-families code_tail,agree_passage] [--no-cli] [--profile DIR]

The dataset is the synth corpus over ../shared/data/xquad (clean, native, translation
requests, planted de/zh/aside/format batches) plus, for ``--extra-families``, those families of
the dev-families corpus (their planted, asked-for and clean rows: code answers with a stray
closing comment, agreements with a claim about a passage) recombined to ``--rows`` rows: the
base corpus repeated with fresh ids (so the planted share stays the same; every text occurs
about 64 times at 100k rows, so work done once per distinct text is cheaper here than on a
dataset of distinct texts). It goes through the real ingest API (JSONL file, language
detection) and real FAISS index builds (pair, prompt, reply, reply_segment); the embedding
cache makes the build cheap because repeated texts are embedded once, which does not change
the cost of a triage (phrase matching and the token index cover every row, ANN searches the
full index). ``--build-only DIR`` builds the workspace there and stops; ``--reuse DIR`` takes
a workspace this script built before (its ``train`` dataset and indexes; the build takes
~7-10 min at 100k rows on the shared 2-core machine).

What is timed, per anomaly (all after the indexes are built):

* ``first``: the first triage of the dataset in this process. It derives the per-row
  features (normalised text, requested language, token index: ``forensics.triage.rows``)
  and stores them in DuckDB when the dataset changed since the last triage (only the first
  anomaly pays it), and loads the embedding model when the anomaly's texts are not in the
  workspace's embedding cache (a new anomaly).
* ``warm``: median of ``--runs`` further triages in the same process with the default
  parameters: features read from DuckDB, query embeddings from the embedding cache, so the
  model is NOT loaded (warm means: indexes built, features cached, anomaly queries embedded
  once; nothing held in memory between runs except the Python imports).
* ``cli``: ``forensics triage ID --dataset train --json`` as a fresh process (what a user
  runs): imports + the same work as warm. ``cli import`` is ``python -m forensics --help``.
* ``cli new``: the same for a NEW anomaly (its explanations get a unique suffix, so they are
  not in the embedding cache): a fresh process that also imports torch/sentence-transformers
  and loads the embedding model (what a user pays once per anomaly). ``--no-cli`` skips these.
* ``no seg``: the warm median with the ``segment`` signal unregistered; ``seg x`` = warm /
  no seg.

The warm, no-seg and base runs are interleaved (each round runs the three configurations of
each anomaly in turn), so a change of the machine's load during the bench falls on all three
alike.
* ``base``: the warm median of the baseline, :data:`BASELINE_UNREGISTERED` signals
  unregistered (segment, with its code comment shape; stance; substitution;
  explanation_own; opening) and :data:`BASELINE_PARAMS`
  (context split, with its per-row norm and region rates, and grounding judgement off);
  ``#16 x`` = warm / base, the cost of those steps as a ratio (the target: at most 1.5x).

``--profile DIR`` writes a cProfile of one more default triage per anomaly (``DIR/<anomaly>.prof``)
and puts its 25 costliest functions (cumulative) in the results. Each run writes
bench/results/triage_latency.json (date, commit, load, parameters, the table).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

XQ = shared_dir() / "data" / "xquad"


def _cli_seconds(ws_dir: Path, *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forensics", "--workspace", str(ws_dir), *args],
                   check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - t


#: The baseline: triage without the steps of behaviour-level triage, the ``BASELINE_UNREGISTERED``
#: signals unregistered (segment, and with it the code comment shape; stance; substitution;
#: explanation_own; opening), the context
#: split (and with it the per-row norm and region rates) and the grounding judgement off
#: through their params.
BASELINE_UNREGISTERED = ("segment", "stance", "substitution", "explanation_own", "opening")
BASELINE_PARAMS = {"context": {"enabled": False}, "grounding": {"enabled": False}}


def base_corpus(extra: tuple[str, ...]):
    """The records repeated to ``--rows`` and the anomalies by family: the synth corpus (de/zh
    switches, aside, format) plus, for ``extra``, those dev-families families (their planted,
    hard and clean rows, ``shard`` added so every record has the same fields)."""
    from forensics.testing.synth import build_corpus

    c = build_corpus(XQ, seed=0, planted_langs=("de", "zh"), other_families=("aside", "format"))
    records = list(c.records)
    anomalies = {f: c.anomaly(f) for f in c.anomalies}
    if extra:
        from forensics.testing.dev_families import build_dev_families

        d = build_dev_families(XQ, seed=0, n_clean=0, families=extra, id_prefix="L")
        for i, r in enumerate(d.records):
            records.append({"id": r["id"], "prompt": r["prompt"], "reply": r["reply"],
                            "source": r["source"], "shard": f"shard-{i % 16:02d}"})
        anomalies.update({f: d.anomalies[f] for f in extra})
    return records, anomalies


def build_workspace(records: list[dict], rows: int, ws_dir: Path) -> tuple[float, float]:
    """Ingest ``records`` repeated to ``rows`` (fresh ids) into a new workspace at ``ws_dir``
    and build the pair/prompt/reply indexes; returns (ingest seconds, index seconds)."""
    import forensics
    from forensics import ingest
    from forensics.search import index

    f = ws_dir.parent / "train.jsonl"
    n = 0
    with f.open("w", encoding="utf-8") as out:
        while n < rows:
            for r in records:
                if n >= rows:
                    break
                out.write(json.dumps(dict(r, id=f"{r['id']}-{n // len(records)}"),
                                     ensure_ascii=False) + "\n")
                n += 1
    ws = forensics.init(ws_dir)
    t = time.perf_counter()
    ingest.ingest(ws, f, "train", meta_fields=["source", "shard"])
    t_ing = time.perf_counter() - t
    t = time.perf_counter()
    for fld in ("pair", "prompt", "reply"):
        index.build(ws, "train", fld)
    t_idx = time.perf_counter() - t
    ws.close()
    return t_ing, t_idx


def _warm(ws, aid: int, runs: int, params: dict | None) -> list[float]:
    from forensics import triage

    out = []
    for _ in range(runs):
        t = time.perf_counter()
        triage.triage(ws, aid, "train", limit=200, params=params)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--families", default="de,aside,code_tail,agree_passage")
    ap.add_argument("--extra-families", default="code_tail,agree_passage",
                    help="dev-families families added to the recombined corpus ('' for none)")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="workspace built by this script before (dataset 'train' + indexes)")
    ap.add_argument("--build-only", type=Path, default=None,
                    help="build the workspace at this (new) folder and its segment index, then stop")
    ap.add_argument("--no-cli", action="store_true", help="skip the fresh-process timings")
    ap.add_argument("--profile", type=Path, default=None,
                    help="write a cProfile of one warm default triage per anomaly here")
    args = ap.parse_args()
    import forensics
    from forensics import triage
    from forensics.triage import anomaly
    from forensics.search import index

    extra = tuple(f for f in args.extra_families.split(",") if f)
    records, anomalies = base_corpus(extra)
    if args.reuse:
        ws_dir = args.reuse
        t_ing = t_idx = float("nan")
    else:
        ws_dir = args.build_only or Path(tempfile.mkdtemp(prefix="triage-latency-")) / "ws"
        ws_dir.parent.mkdir(parents=True, exist_ok=True)
        t_ing, t_idx = build_workspace(records, args.rows, ws_dir)
    ws = forensics.open(ws_dir)
    if args.reuse:   # make the first triage derive the features again, as after a fresh ingest
        ws.con.execute("DELETE FROM triage_feature_sets WHERE dataset = 'train'")
    seg = {}
    try:
        m = index.read_manifest(ws, "train", "reply_segment")
        fresh = any(st.field == "reply_segment" and st.state == "fresh"
                    for st in index.status(ws, "train"))
    except Exception:
        fresh = False
    if not fresh:
        t = time.perf_counter()
        m = index.build(ws, "train", "reply_segment")
        seg["build_seconds"] = round(time.perf_counter() - t, 2)
    seg.update(segments=m.rows, rows=m.source_count, index_type=m.index_type,
               segments_per_row=round(m.rows / max(1, m.source_count), 3))
    print(f"reply_segment index: {seg}")
    rows = ws.one("SELECT count(*) FROM samples WHERE dataset = 'train'")[0]
    print(f"rows {rows}  (base corpus {len(records)} x {rows / len(records):.1f})  "
          f"ingest {t_ing:.1f}s  index build (3 fields) {t_idx:.1f}s  workspace {ws_dir}",
          flush=True)
    if args.build_only:
        ws.close()
        return
    fams = [f for f in args.families.split(",") if f]
    missing = [f for f in fams if f not in anomalies]
    if missing:
        raise SystemExit(f"no anomaly for {missing}; have {sorted(anomalies)}")
    aids = {f: anomaly.add(ws, anomalies[f]["title"], anomalies[f]["prompt"],
                           anomalies[f]["reply"], anomalies[f]["explanations"]) for f in fams}
    from forensics.triage.signals.base import register, registered, unregister

    full = registered()          # the signals in registration (fusion) order

    def signals_without(drop: tuple[str, ...]) -> None:
        for name in list(registered()):
            unregister(name)
        for name, cls in full.items():
            if name not in drop:
                register(cls)

    # the three configurations of one anomaly: (name, unregistered signals, params)
    configs = (("default", (), None), ("no_seg", ("segment",), None),
               ("base", BASELINE_UNREGISTERED, BASELINE_PARAMS))
    first_s: dict[str, float] = {}
    runs_of: dict[tuple[str, str], list[float]] = {}
    try:
        for fam, aid in aids.items():
            t = time.perf_counter()
            r = triage.triage(ws, aid, "train", limit=200)
            first_s[fam] = time.perf_counter() - t
            r.to_json()  # the contract object is part of the work
            signals_without(BASELINE_UNREGISTERED)   # the baseline's queries cached
            triage.triage(ws, aid, "train", limit=200, params=BASELINE_PARAMS)
            signals_without(())
            print(f"{fam}: first {first_s[fam]:.2f}s", flush=True)
        # interleaved (default, no segment, baseline) per anomaly and round, so a change of
        # the machine's load during the bench falls on all three alike
        for _ in range(args.runs):
            for fam, aid in aids.items():
                for name, drop, params in configs:
                    signals_without(drop)
                    runs_of.setdefault((fam, name), []).extend(_warm(ws, aid, 1, params))
                signals_without(())
    finally:
        signals_without(())
    results = {fam: (first_s[fam], runs_of[fam, "default"]) for fam in aids}
    no_seg = {fam: statistics.median(runs_of[fam, "no_seg"]) for fam in aids}
    base = {fam: statistics.median(runs_of[fam, "base"]) for fam in aids}
    for fam in aids:
        print(f"{fam}: warm {[round(x, 2) for x in runs_of[fam, 'default']]} no seg "
              f"{[round(x, 2) for x in runs_of[fam, 'no_seg']]} base "
              f"{[round(x, 2) for x in runs_of[fam, 'base']]}", flush=True)
    prof = {}
    if args.profile:
        import cProfile
        import pstats

        args.profile.mkdir(parents=True, exist_ok=True)
        for fam, aid in aids.items():
            pr = cProfile.Profile()
            pr.enable()
            triage.triage(ws, aid, "train", limit=200)
            pr.disable()
            pr.dump_stats(str(args.profile / f"{fam}.prof"))
            st = pstats.Stats(pr)
            top = sorted(st.stats.items(), key=lambda kv: -kv[1][3])[:25]
            prof[fam] = [{"function": f"{k[0].split('/forensics/')[-1]}:{k[1]}:{k[2]}",
                          "cumulative_seconds": round(v[3], 3)} for k, v in top]
    ws.close()
    t_imp = (float("nan") if args.no_cli
             else min(_cli_seconds(ws_dir, "--help") for _ in range(2)))
    print(f"cli import (python -m forensics --help, best of 2) {t_imp:.2f}s")
    print(f"{'anomaly':14s} {'first s':>8s} {'warm s':>7s} {'warm runs':>20s} {'cli s':>6s} "
          f"{'cli new':>7s} {'no seg':>7s} {'seg x':>6s} {'base s':>7s} {'#16 x':>6s}")
    table = []
    for fam, aid in aids.items():
        first, times = results[fam]
        warm = statistics.median(times)
        cli = cli_new = float("nan")
        if not args.no_cli:
            cli = statistics.median([_cli_seconds(ws_dir, "triage", str(aid), "--dataset",
                                                  "train", "--json") for _ in range(2)])
            a = anomalies[fam]
            nonce = f" (bench run {time.time_ns()})"
            with forensics.open(ws_dir) as w2:
                new_id = anomaly.add(w2, a["title"], a["prompt"], a["reply"],
                                     [e + nonce for e in a["explanations"]])
            cli_new = _cli_seconds(ws_dir, "triage", str(new_id), "--dataset", "train", "--json")
        print(f"{fam:14s} {first:8.2f} {warm:7.2f} {str([round(x, 2) for x in times]):>20s} "
              f"{cli:6.2f} {cli_new:7.2f} {no_seg[fam]:7.2f} {warm / no_seg[fam]:5.2f}x "
              f"{base[fam]:7.2f} {warm / base[fam]:5.2f}x")
        table.append({"anomaly": fam, "first_seconds": first, "warm_median_seconds": warm,
                      "warm_runs": times, "warm_vs_2s": warm / 2.0, "cli_seconds": cli,
                      "cli_new_anomaly_seconds": cli_new,
                      "warm_median_no_segment_seconds": no_seg[fam],
                      "segment_ratio": warm / no_seg[fam],
                      "no_segment_runs": runs_of[fam, "no_seg"],
                      "baseline_runs": runs_of[fam, "base"],
                      "warm_median_baseline_seconds": base[fam],
                      "ratio_vs_baseline": warm / base[fam]})
    write_result("triage_latency", {
        "parameters": {**vars(args), "rows": rows, "base_corpus_rows": len(records),
                       "baseline": {"unregistered": list(BASELINE_UNREGISTERED),
                                    "params": BASELINE_PARAMS}},
        "ingest_seconds": t_ing, "index_build_seconds": t_idx, "cli_import_seconds": t_imp,
        "segment_index": seg, "table": table, "profile_top": prof})


if __name__ == "__main__":
    main()
