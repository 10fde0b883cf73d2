"""Index builds at scale: the local engine vs the Ray engine (2 workers) on the same rows.

    nice -n 5 .venv/bin/python bench/index_scale.py                # 2000 rows: a few minutes
    nice -n 5 .venv/bin/python bench/index_scale.py --rows 1000000 # the full run (hours on 2 cores)
    nice -n 5 .venv/bin/python bench/index_scale.py --rows 1000000 --fill-only --name index_scale_fill_1m

Rows: English XQuAD questions as prompts and sentences of their paragraphs as replies (pairs
made unique by combining question i with sentence j), inserted into a fresh workspace.
Each build runs as its own ``forensics index build`` subprocess (a cold start, as a user runs
it): the baseline is the local engine's one-file build (``--index-type`` as given); the other
is ``--engine ray --workers 2 --shard-rows S``. Reported per build: wall seconds, rows/s, the
ratio to the baseline, and the peak RSS (VmHWM) of every process of the build's process tree,
grouped by role (driver, Ray embedding actors, Ray's own daemons). Recall: 200 queries (stored
vectors plus noise, like the build's own tuning) against exact search over all vectors;
recall@10 of each index vs exact, and of the Ray index vs the local one.
Writes bench/results/index_scale.json (with the machine's load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

XQUAD = shared_dir() / "data" / "xquad"
for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def rows(n: int) -> tuple[list[str], list[str]]:
    """``n`` unique (prompt, reply) pairs from XQuAD en: question i with sentence j."""
    d = json.loads((XQUAD / "xquad.en.json").read_text(encoding="utf-8"))
    qs, sents = [], []
    for a in d["data"]:
        for p in a["paragraphs"]:
            qs.extend(q["question"] for q in p["qas"])
            sents.extend(s for s in re.split(r"(?<=[.!?])\s+", p["context"]) if len(s) > 20)
    qs, sents = list(dict.fromkeys(qs)), list(dict.fromkeys(sents))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(qs) * len(sents), size=n, replace=False)
    return [qs[i // len(sents)] for i in pick], [sents[i % len(sents)] for i in pick]


def make_workspace(path: Path, n: int) -> None:
    import pyarrow as pa

    import forensics

    prompts, replies = rows(n)
    ws = forensics.init(path)
    ws.ensure_dataset("d")
    ws.con.register("_rows", pa.table({"row_id": [f"r{i}" for i in range(n)], "p": prompts,
                                       "r": replies}))
    ws.con.execute("INSERT INTO samples (sample_id, dataset, row_id, prompt, reply, content_hash) "
                   "SELECT nextval('sample_id_seq'), 'd', row_id, p, r, sha256(p || chr(31) || r) "
                   "FROM _rows")
    ws.con.unregister("_rows")
    ws.bump_dataset_version("d")
    ws.close()


# ---------------------------------------------------------------------------- peak RSS per process
def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(p.name))
    return out


def _role(cmd: str, root: bool) -> str:
    if root:
        return "driver"
    if "EmbedActor" in cmd or "MapWorker" in cmd:
        return "ray embed actor"
    if cmd.startswith("ray::") or "ray" in cmd:
        return "ray daemons/workers"
    return "other"


class TreeRss:
    """Polls the peak RSS (VmHWM) of every process under ``root`` until stopped."""

    def __init__(self, root: int, every: float = 0.5):
        self.root, self.every = root, every
        self.peak: dict[int, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            kids, todo, seen = _children(), [self.root], set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                todo.extend(kids.get(pid, []))
                try:
                    st = Path(f"/proc/{pid}/status").read_text()
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                        "utf-8", "replace")[:120]
                except OSError:
                    continue
                m = re.search(r"VmHWM:\s+(\d+) kB", st)
                if m:
                    mb = int(m.group(1)) / 1024
                    if mb > self.peak.get(pid, (0.0, ""))[0]:
                        self.peak[pid] = (mb, cmd)
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        by_role: dict[str, list[float]] = {}
        for pid, (mb, cmd) in self.peak.items():
            by_role.setdefault(_role(cmd, pid == self.root), []).append(mb)
        return {r: {"processes": len(v), "max_peak_rss_mb": round(max(v), 1)}
                for r, v in sorted(by_role.items())}


def run_build(ws: Path, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "forensics", "--workspace", str(ws), "index", "build",
           "--dataset", "d", "--json", *args]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    rss = TreeRss(p.pid)
    out, err = p.communicate()
    wall = time.perf_counter() - t
    peaks = rss.stop()
    if p.returncode != 0:
        raise SystemExit(f"build {args} failed ({p.returncode}):\n{err[-3000:]}")
    try:
        built = json.loads(out)["built"][0]
    except ValueError as e:
        raise SystemExit(f"build {args}: stdout is not one JSON document ({e}):\n{out[:2000]}")
    return {"args": args, "wall_s": round(wall, 2), "build_seconds": built["seconds"],
            "index_type": built["index_type"], "shards": built["shards"],
            "recall_at_10_tuned": built["recall@10"], "peak_rss": peaks}


def recall(ws_path: Path, nq: int = 200) -> tuple[dict, np.ndarray, np.ndarray]:
    """(recall@10 of the open index vs exact, query vectors, exact ids)."""
    import faiss

    import forensics
    from forensics.search import index

    with forensics.open(ws_path, read_only=True) as ws:
        oi = index.open_index(ws, "d", "pair", read_only=True)
        ids = oi.ids()
        vecs = oi.vectors(ids)
    rng = np.random.default_rng(1)
    q = vecs[rng.choice(len(vecs), size=min(nq, len(vecs)), replace=False)]
    q = q + rng.normal(0, 0.5 / np.sqrt(q.shape[1]), size=q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, t = faiss.knn(q, vecs, 10, metric=faiss.METRIC_INNER_PRODUCT)
    return {"vectors": int(len(ids))}, q, ids[t]


def search(ws_path: Path, q: np.ndarray) -> np.ndarray:
    import forensics
    from forensics.search import index

    with forensics.open(ws_path, read_only=True) as ws:
        return index.open_index(ws, "d", "pair", read_only=True).search(q, 10)[1]


def rec(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)])), 4)


def fill_only(a, res: dict) -> None:
    """The index half of a build at ``--rows`` without embedding: clustered synthetic vectors
    (bench/index.py's mixture of 2,000 Gaussians) are written as the plan's slice files, so the
    build finds every slice done and only trains, fills, tunes and writes the sharded index."""
    import faiss

    import forensics
    from forensics.search.embed import DEFAULT_MODEL
    from forensics.search.sharded_build import plan, read_vectors, write_vectors
    from index import clustered

    with tempfile.TemporaryDirectory() as d:
        wsp = Path(d) / "ws"
        t = time.perf_counter()
        make_workspace(wsp, a.rows)
        vecs = clustered(a.rows, 384, seed=0)
        with forensics.open(wsp) as ws:
            slices = plan(ws, "d", "pair", DEFAULT_MODEL, res["shard_rows"], None)
            start = 0
            for sl in slices:
                ids = np.asarray([r[0] for r in ws.rows(
                    "SELECT sample_id FROM samples WHERE dataset = 'd' AND sample_id BETWEEN ? AND ? "
                    "ORDER BY 1", [sl.lo, sl.hi])], np.int64)
                write_vectors(sl.path, ids, vecs[start:start + len(ids)])
                start += len(ids)
        del vecs
        res["setup_s"] = round(time.perf_counter() - t, 1)
        b = run_build(wsp, ["--index-type", a.index_type, "--shard-rows", str(res["shard_rows"])])
        rng = np.random.default_rng(1)
        files = sorted(slices, key=lambda s: s.pos)
        _, v0 = read_vectors(files[0].path, 384)
        q = v0[rng.choice(len(v0), size=200, replace=False)]
        q = q + rng.normal(0, 0.5 / np.sqrt(384), size=q.shape).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        best_d, best_i = None, None
        for sl in files:
            ids, v = read_vectors(sl.path, 384)
            dd, ii = faiss.knn(q, v, 10, metric=faiss.METRIC_INNER_PRODUCT)
            D = dd if best_d is None else np.concatenate([best_d, dd], 1)
            I = ids[ii] if best_i is None else np.concatenate([best_i, ids[ii]], 1)
            top = np.argsort(-D, axis=1)[:, :10]
            best_d, best_i = np.take_along_axis(D, top, 1), np.take_along_axis(I, top, 1)
        t = time.perf_counter()
        got = search(wsp, q)
        b["search_200_queries_s"] = round(time.perf_counter() - t, 2)
        b["recall_at_10_vs_exact"] = rec(got, best_i)
        b["index_bytes"] = sum(p.stat().st_size for p in (wsp / "indexes" / "d").rglob("*.faiss"))
        b["vector_file_bytes"] = sum(p.stat().st_size for p in (wsp / "indexes" / "d").rglob("*.parquet"))
    print(f"[fill-only] {a.rows} vectors: build {b['wall_s']}s, recall@10 vs exact "
          f"{b['recall_at_10_vs_exact']}, peaks {b['peak_rss']}", flush=True)
    res["fill_only"] = b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--shard-rows", type=int, default=0, help="0: rows / 8, at least 500")
    ap.add_argument("--index-type", default="ivf-sq8")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--name", default="index_scale")
    ap.add_argument("--fill-only", action="store_true",
                    help="no embedding: synthetic vectors as finished slices, then the sharded "
                         "index build alone (train, fill, tune, write) at --rows")
    a = ap.parse_args()
    shard_rows = a.shard_rows or max(500, a.rows // 8)
    load0 = [round(x, 2) for x in os.getloadavg()]
    res: dict = {"rows": a.rows, "shard_rows": shard_rows, "index_type": a.index_type,
                 "workers": a.workers, "load_before": load0}
    if a.fill_only:
        shard_rows = a.shard_rows or 100_000
        res["shard_rows"] = shard_rows
        fill_only(a, res)
        res["load_after"] = [round(x, 2) for x in os.getloadavg()]
        write_result(a.name, res)
        return
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        t = time.perf_counter()
        make_workspace(base / "ws", a.rows)
        res["setup_s"] = round(time.perf_counter() - t, 1)
        loc = run_build(base / "ws", ["--index-type", a.index_type])
        loc["rows_per_s"] = round(a.rows / loc["wall_s"], 1)
        _, q, exact = recall(base / "ws")
        local_ids = search(base / "ws", q)
        loc["recall_at_10_vs_exact"] = rec(local_ids, exact)
        print(f"[local] {a.rows} rows in {loc['wall_s']}s = {loc['rows_per_s']} rows/s; "
              f"recall@10 vs exact {loc['recall_at_10_vs_exact']}; peaks {loc['peak_rss']}",
              flush=True)
        ray = run_build(base / "ws", ["--index-type", a.index_type, "--engine", "ray",
                                      "--workers", str(a.workers), "--shard-rows", str(shard_rows)])
        ray["rows_per_s"] = round(a.rows / ray["wall_s"], 1)
        ray_ids = search(base / "ws", q)
        ray["recall_at_10_vs_exact"] = rec(ray_ids, exact)
        ray["recall_at_10_vs_local"] = rec(ray_ids, local_ids)
        ray["speed_ratio_vs_local"] = round(ray["rows_per_s"] / loc["rows_per_s"], 3)
        print(f"[ray x{a.workers}] {a.rows} rows in {ray['wall_s']}s = {ray['rows_per_s']} rows/s "
              f"({ray['speed_ratio_vs_local']}x local); recall@10 vs exact "
              f"{ray['recall_at_10_vs_exact']}, vs local {ray['recall_at_10_vs_local']}; "
              f"peaks {ray['peak_rss']}", flush=True)
    res.update(local=loc, ray=ray, load_after=[round(x, 2) for x in os.getloadavg()])
    write_result(a.name, res)


if __name__ == "__main__":
    main()
