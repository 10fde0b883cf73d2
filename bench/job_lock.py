"""What lingering saves explain anomaly and influence scoring run back to back: in one process,
``--calls`` ``explain_anomaly()`` calls with a loaded tiny NLA explainer, and as many
``dataset_scores()`` cache hits, in three modes interleaved over ``--repeat`` rounds (per mode
the fastest round counts):

* ``held``: the workspace held throughout (``with ws.locked():``), the baseline;
* ``per_read``: ``LockParams(linger_seconds=0)``, released after every read and write;
* ``lingering``: the default ``LockParams`` (closed once unused 0.3 s).

Also counts database opens. Prints seconds, opens and ratios to ``held``; writes
bench/results/job_lock.json (date, commit, load).

    python bench/job_lock.py [--calls 10] [--repeat 3] [--rows 2000]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
from _results import write_result  # noqa: E402


def build(root: Path, rows: int):
    """A workspace with ``rows`` samples, one anomaly, a tiny registered NLA, and one stored
    influence pass (scores written directly: the bench measures the cache-hit path)."""
    import numpy as np

    import forensics
    from forensics.attribution import influence as inf
    from forensics.ingest import ingest
    from forensics.nla import tiny
    from forensics.nla.registry import register_nla
    from forensics.triage import anomaly

    n = tiny.build_tiny_nla(root / "nla", "qwen2", hidden_size=64, num_layers=4, layer=2)
    f = root / "rows.jsonl"
    with open(f, "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": i, "prompt": f"Question {i}: what colour is the sky?",
                                 "reply": f"Answer {i}: the sky is blue."}) + "\n")
    ws = forensics.init(root / "ws")
    ingest(ws, f, "d", langid=False)
    aid = anomaly.add(ws, "a", "What colour is the sky?", "Green.", ["The reply is wrong."])
    register_nla(ws, "q", n.av, n.target, n.ar, layer=2)
    q, cfg = ("What colour is the sky?", "Green."), inf.InfluenceConfig()
    ver = ws.dataset_version("d")
    key = inf.cache_key(inf.fingerprint(n.target), "d", ver, q, cfg)
    ids = np.array([r[0] for r in ws.rows("SELECT sample_id FROM samples ORDER BY 1")], np.int64)
    inf.store_scores(ws, key, str(n.target), "d", ver, q, cfg, ids,
                     np.linspace(0, 1, len(ids)), 1.0)
    ws.close()
    return n, aid, q, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10, help="calls per job per round")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per mode (interleaved)")
    ap.add_argument("--rows", type=int, default=2000, help="samples in the workspace")
    a = ap.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    import torch

    torch.set_num_threads(1)
    import forensics
    from forensics import workspace
    from forensics.attribution import influence as inf
    from forensics.nla import Explainer, explain_anomaly, get_nla
    from forensics.workspace import LockParams

    root = Path(tempfile.mkdtemp(prefix="job-lock-"))
    n, aid, q, cfg = build(root, a.rows)
    opens = [0]
    connect = workspace.Workspace._connect

    def counting(self):
        opens[0] += 1
        return connect(self)

    workspace.Workspace._connect = counting
    ws = forensics.open(root / "ws")
    ex = Explainer(get_nla(ws, "q"), max_new_tokens=8)
    jobs = {
        "explain_anomaly": lambda lock: explain_anomaly(ws, aid, "q", ["last_prompt"], explainer=ex,
                                                        lock=lock),
        "influence_cache_hit": lambda lock: inf.dataset_scores(ws, n.target, "d", q, cfg, lock=lock),
    }
    modes = {"held": None, "per_read": LockParams(linger_seconds=0), "lingering": LockParams()}
    out: dict = {}
    for job, call in jobs.items():
        call(None)                     # warm-up
        ws.close()
        runs = {m: [] for m in modes}
        open_counts = {m: [] for m in modes}
        for _ in range(a.repeat):
            for mode, lock in modes.items():
                opens[0] = 0
                t = time.perf_counter()
                with ws.locked() if mode == "held" else contextlib.nullcontext():
                    for _ in range(a.calls):
                        call(lock)
                runs[mode].append(round(time.perf_counter() - t, 4))
                open_counts[mode].append(opens[0])
                ws.close()
        best = {m: min(v) for m, v in runs.items()}
        ratios = {f"{m}_vs_held": round(best[m] / best["held"], 3) for m in modes if m != "held"}
        for m in modes:
            print(f"{job:20s} {m:9s} best {best[m]:7.3f}s for {a.calls} calls (runs {runs[m]}), "
                  f"database opens {open_counts[m]}")
        for k, v in ratios.items():
            print(f"{job:20s} {k}: {v}")
        out[job] = {"seconds_best": best, "seconds_runs": runs, "database_opens": open_counts,
                    "ratios": ratios}
    write_result("job_lock", {"loadavg_start": load0,
                              "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                              "calls": a.calls, "repeat": a.repeat, "rows": a.rows, **out})


if __name__ == "__main__":
    main()
