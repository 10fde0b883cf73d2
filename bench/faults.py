"""Fault injection against the real CLI: kill -9, disk full, readers during a build.

Slow (minutes), not part of the test suite. Each kill round starts a CLI job as a subprocess,
kills it with SIGKILL after a random delay (uniform over the job's measured unkilled length),
re-runs the same command to completion, then checks what is stored:

* ``ingest``: rows stored == rows in the file, and no duplicate ``row_id``;
* ``index build``: ``forensics index verify`` passes (the embedding cache is emptied before
  each round so every round embeds for real);
* ``pipeline run``: findings equal those of an unkilled run over the same rows, no duplicates;
* ``explain dataset``: one explanation per sample, no duplicate ``explanation_key``.

Then: disk full on a small tmpfs (root only; skipped with a message otherwise): ``ingest``
exits 6 with a one-line message, and a re-run after freeing space completes with every row;
and readers during an unkilled ``index build``: how many ``forensics sql`` reads (default
``--wait``) succeeded, and how long they took.

Prints tried / survived / rows lost / duplicates and writes ``bench/results/faults.json``
(date, git commit, load average).

    python bench/faults.py [--ingest 6 --index 5 --pipeline 5 --explain 5] [--build-rows 3000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


def cli_cmd(ws: Path, *args) -> list[str]:
    return [sys.executable, "-m", "forensics", "--workspace", str(ws), *map(str, args)]


def run(ws: Path, *args, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(cli_cmd(ws, *args), capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"forensics {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p


def q(ws: Path, sql: str) -> list[dict]:
    return json.loads(run(ws, "--wait", "60", "sql", sql, "--json").stdout)


def timed(ws: Path, *args) -> float:
    t = time.monotonic()
    run(ws, *args)
    return time.monotonic() - t


def kill_at(ws: Path, args: tuple, delay: float) -> int | None:
    """Start the command, SIGKILL it after ``delay`` s; its exit code if it ended before."""
    p = subprocess.Popen(cli_cmd(ws, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        return p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


def write_rows(path: Path, n: int, tag: str = "") -> Path:
    with path.open("w") as fh:
        for i in range(n):
            reply = f"question {i} about topic {i % 97} item {i * 7}" if i % 53 == 0 else f"answer {i}{tag}: topic {i % 97} has value {i * 13 % 1000}"
            fh.write(json.dumps({"id": f"r{i}", "prompt": f"question {i} about topic {i % 97} item {i * 7}",
                                 "reply": reply}) + "\n")
    return path


class Tally:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, job: str, delay: float, killed: bool, ok: bool, lost: int = 0, dups: int = 0,
            detail: str = "") -> None:
        self.rows.append({"job": job, "delay_s": round(delay, 2), "killed": killed, "survived": ok,
                          "rows_lost": lost, "duplicates": dups, "detail": detail})
        print(f"  {job:8s} kill at {delay:6.2f}s {'killed' if killed else 'ended first'}: "
              f"{'ok' if ok else 'FAILED'} lost={lost} dups={dups} {detail}", flush=True)


def ingest_rounds(ws: Path, data: Path, n_rows: int, rounds: int, rng: random.Random, t: Tally) -> None:
    ref = timed(ws, "ingest", data, "--dataset", "ing-ref")
    n_rows = q(ws, "SELECT count(*) AS n FROM samples WHERE dataset = 'ing-ref'")[0]["n"]
    print(f"ingest: unkilled run {ref:.1f}s, {n_rows} rows stored", flush=True)
    for i in range(rounds):
        name, delay = f"ing-{i}", rng.uniform(0.5, ref)
        rc = kill_at(ws, ("ingest", data, "--dataset", name), delay)
        run(ws, "--wait", "60", "ingest", data, "--dataset", name)
        r = q(ws, f"SELECT count(*) AS n, count(DISTINCT row_id) AS d FROM samples WHERE dataset = '{name}'")[0]
        rej = q(ws, f"SELECT count(*) AS n FROM rejects WHERE dataset = '{name}'")[0]["n"]
        lost, dups = n_rows - r["d"], r["n"] - r["d"]
        t.add("ingest", delay, rc is None, lost == 0 and dups == 0, lost, dups, f"rejects={rej}")


def index_rounds(ws: Path, rounds: int, rng: random.Random, t: Tally) -> None:
    run(ws, "sql", "--write", "DELETE FROM embedding_cache")
    ref = timed(ws, "index", "build", "--dataset", "idx")
    print(f"index build: unkilled run {ref:.1f}s", flush=True)
    for i in range(rounds):
        run(ws, "--wait", "60", "sql", "--write", "DELETE FROM embedding_cache")
        delay = rng.uniform(1.0, ref)
        rc = kill_at(ws, ("index", "build", "--dataset", "idx"), delay)
        run(ws, "--wait", "60", "index", "build", "--dataset", "idx")
        v = run(ws, "--wait", "60", "index", "verify", "--dataset", "idx", "--json", check=False)
        ok = v.returncode == 0
        t.add("index", delay, rc is None, ok, detail="" if ok else v.stdout[-300:] + v.stderr[-300:])


FINDINGS = ("SELECT \"check\", row_id, severity, round(score, 6) AS score FROM v_quality_findings "
            "WHERE dataset = '{d}' AND pipeline_run_id = (SELECT max(pipeline_run_id) FROM pipeline_runs "
            "WHERE dataset = '{d}' AND status = 'done') ORDER BY 1, 2")


def pipeline_rounds(ws: Path, data: Path, pipeline: str, rounds: int, rng: random.Random, t: Tally) -> None:
    run(ws, "ingest", data, "--dataset", "pl-ref")
    ref = timed(ws, "pipeline", "run", pipeline, "--dataset", "pl-ref", "--batch-size", "200")
    want = q(ws, FINDINGS.format(d="pl-ref"))
    print(f"pipeline {pipeline}: unkilled run {ref:.1f}s, {len(want)} findings", flush=True)
    for i in range(rounds):
        name, delay = f"pl-{i}", rng.uniform(0.5, ref)
        run(ws, "--wait", "60", "ingest", data, "--dataset", name)
        rc = kill_at(ws, ("pipeline", "run", pipeline, "--dataset", name, "--batch-size", "200"), delay)
        run(ws, "--wait", "60", "pipeline", "run", pipeline, "--dataset", name, "--batch-size", "200")
        got = q(ws, FINDINGS.format(d=name))
        keys = [(r["check"], r["row_id"]) for r in got]
        dups = len(keys) - len(set(keys))
        lost = len({(r["check"], r["row_id"]) for r in want} - set(keys))
        t.add("pipeline", delay, rc is None, got == want, lost, dups,
              "" if got == want else f"{len(got)} findings vs {len(want)} unkilled")


def explain_rounds(ws: Path, root: Path, rounds: int, n: int, rng: random.Random, t: Tally) -> None:
    from forensics.nla import tiny

    nla = tiny.build_tiny_nla(root / "nla", "qwen2", hidden_size=64, num_layers=4, layer=2)
    run(ws, "nla", "register", "q", "--av", nla.av, "--ar", nla.ar, "--target", nla.target)
    args = ("--nla", "q", "--batch-size", "2", "--max-new-tokens", "4", "--variance", "0.5", "--device", "cpu")
    data = write_rows(root / "explain.jsonl", n)
    run(ws, "ingest", data, "--dataset", "ex-ref")
    ref = timed(ws, "explain", "dataset", "ex-ref", *args)
    print(f"explain dataset: unkilled run {ref:.1f}s for {n} samples", flush=True)
    for i in range(rounds):
        name, delay = f"ex-{i}", rng.uniform(1.0, ref)
        run(ws, "--wait", "60", "ingest", data, "--dataset", name)
        rc = kill_at(ws, ("explain", "dataset", name, *args), delay)
        run(ws, "--wait", "60", "explain", "dataset", name, *args)
        r = q(ws, "SELECT count(*) AS n, count(DISTINCT sample_id) AS d, count(DISTINCT explanation_key) AS k "
                  f"FROM explanations WHERE dataset = '{name}'")[0]
        lost, dups = n - r["d"], r["n"] - min(r["d"], r["k"])
        t.add("explain", delay, rc is None, lost == 0 and dups == 0, lost, dups)


def disk_full(root: Path) -> dict:
    if os.geteuid() != 0:
        msg = "skipped: not root (mounting a tmpfs needs root)"
        print("disk full: " + msg)
        return {"skipped": msg}
    mnt = root / "small"
    mnt.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if m.returncode != 0:
        msg = f"skipped: mount failed: {m.stderr.strip()}"
        print("disk full: " + msg)
        return {"skipped": msg}
    try:
        ws = mnt / "ws"
        run(ws, "init")
        data = write_rows(root / "full.jsonl", 30000)       # ~3 MB of JSON, more in DuckDB
        filler = mnt / "filler"
        free = shutil.disk_usage(mnt).free
        with filler.open("wb") as fh:
            fh.write(b"\0" * max(0, free - 2 * 2**20))       # leave 2 MiB
        p = run(ws, "ingest", data, "--dataset", "full", check=False)
        # the message: one "error:" line (plus its "hint:"), no traceback; progress lines aside
        lines = [ln[ln.index("error:"):] if "error:" in ln else ln for ln in p.stderr.splitlines()
                 if "error:" in ln or ln.startswith(("hint:", "Traceback"))]
        filler.unlink()
        again = run(ws, "--wait", "30", "ingest", data, "--dataset", "full", check=False)
        n = q(ws, "SELECT count(*) AS n, count(DISTINCT row_id) AS d FROM samples")[0] if again.returncode == 0 else {}
        res = {"exit_full": p.returncode, "message": lines[:3], "exit_after_freeing": again.returncode,
               "rows": n.get("n"), "distinct": n.get("d"), "expected": 30000,
               "ok": p.returncode == 6 and sum("error:" in ln for ln in lines) == 1
               and not any(ln.startswith("Traceback") for ln in lines) and again.returncode == 0
               and n.get("n") == n.get("d") == 30000}
        print(f"disk full: exit {p.returncode} ({' | '.join(lines[:2])}); after freeing: exit "
              f"{again.returncode}, {n.get('n')} rows ({n.get('d')} distinct) of 30000 -> "
              f"{'ok' if res['ok'] else 'FAILED'}", flush=True)
        return res
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def readers_during_build(root: Path, n_rows: int) -> dict:
    ws = root / "ws-read"
    run(ws, "init")
    run(ws, "ingest", write_rows(root / "read.jsonl", n_rows, tag=" for reading"), "--dataset", "r")
    build = subprocess.Popen(cli_cmd(ws, "index", "build", "--dataset", "r"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    t0 = time.monotonic()
    reads: list[tuple[int, float]] = []
    while build.poll() is None:
        t = time.monotonic()
        p = run(ws, "sql", "SELECT count(*) FROM samples", "--json", check=False)   # default --wait
        if build.poll() is None:        # count only reads that overlapped the build
            reads.append((p.returncode, time.monotonic() - t))
    secs = time.monotonic() - t0
    ok = [d for rc, d in reads if rc == 0]
    res = {"rows": n_rows, "build_s": round(secs, 1), "build_exit": build.returncode, "reads": len(reads),
           "reads_ok": len(ok), "read_exit_codes": sorted({rc for rc, _ in reads}),
           "read_s_median": round(sorted(ok)[len(ok) // 2], 2) if ok else None,
           "read_s_max": round(max(ok), 2) if ok else None}
    print(f"readers during a {n_rows}-row index build ({secs:.0f}s): {len(ok)}/{len(reads)} reads ok, "
          f"median {res['read_s_median']}s, max {res['read_s_max']}s", flush=True)
    return res


def git_commit() -> str:
    p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return p.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingest", type=int, default=6, help="kill rounds of ingest")
    ap.add_argument("--index", type=int, default=5, help="kill rounds of index build")
    ap.add_argument("--pipeline", type=int, default=5, help="kill rounds of pipeline run")
    ap.add_argument("--explain", type=int, default=5, help="kill rounds of explain dataset")
    ap.add_argument("--ingest-rows", type=int, default=20000)
    ap.add_argument("--index-rows", type=int, default=400)
    ap.add_argument("--pipeline-name", default="hygiene")
    ap.add_argument("--explain-rows", type=int, default=10)
    ap.add_argument("--build-rows", type=int, default=3000, help="rows of the build that readers overlap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--readers-only", action="store_true",
                    help="only measure reads during a --build-rows index build (no kills); "
                         "writes bench/results/faults_readers.json unless --out is given")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "faults.json"))
    a = ap.parse_args()
    if a.readers_only:
        with tempfile.TemporaryDirectory(prefix="forensics-faults-") as tmp:
            load0, readers = os.getloadavg(), readers_during_build(Path(tmp), a.build_rows)
        out = Path(a.out if a.out != ap.get_default("out") else REPO / "bench" / "results" / "faults_readers.json")
        out.write_text(json.dumps({"bench": "faults --readers-only", "commit": git_commit(),
                                   "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                   "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                                   "readers_during_build": readers}, indent=2) + "\n")
        print(f"wrote {out}")
        return 0 if readers["reads_ok"] == readers["reads"] else 1
    rng = random.Random(a.seed)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="forensics-faults-") as tmp:
        root = Path(tmp)
        ws = root / "ws"
        run(ws, "init")
        big = write_rows(root / "ingest.jsonl", a.ingest_rows)
        ingest_rounds(ws, big, a.ingest_rows, a.ingest, rng, tally)
        small = write_rows(root / "small.jsonl", a.index_rows)
        run(ws, "ingest", small, "--dataset", "idx")
        index_rounds(ws, a.index, rng, tally)
        pipeline_rounds(ws, write_rows(root / "pl.jsonl", 2000), a.pipeline_name, a.pipeline, rng, tally)
        explain_rounds(ws, root, a.explain, a.explain_rows, rng, tally)
        full = disk_full(root)
        readers = readers_during_build(root, a.build_rows)
    rows = tally.rows
    summary = {"tried": len(rows), "killed": sum(r["killed"] for r in rows),
               "survived": sum(r["survived"] for r in rows), "rows_lost": sum(r["rows_lost"] for r in rows),
               "duplicates": sum(r["duplicates"] for r in rows)}
    print(f"\ntried {summary['tried']} (killed mid-run {summary['killed']}) · survived {summary['survived']} · "
          f"rows lost {summary['rows_lost']} · duplicates {summary['duplicates']} · "
          f"{time.monotonic() - t0:.0f}s")
    out = {"bench": "faults", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "commit": git_commit(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "params": vars(a), "summary": summary, "rounds": rows, "disk_full": full,
           "readers_during_build": readers, "seconds": round(time.monotonic() - t0, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")
    bad = summary["survived"] != summary["tried"] or summary["rows_lost"] or summary["duplicates"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
