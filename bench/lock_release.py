"""What releasing the workspace between commits costs: long jobs run twice in one process,
once holding the workspace throughout (``with ws.locked():``, the baseline) and once with
their default release policy, on fresh workspaces over the same rows (modes interleaved,
``--repeat`` times; the fastest run of each counts).

* ``ingest`` (``hold_seconds``: released after a committed batch once held that long);
* ``index build`` (embedding with the workspace released, vectors written every
  ``commit_seconds``) -- also with ``commit_seconds=0``, a write (and a reopen) per chunk.

Prints seconds and ratios to the baseline; writes ``bench/results/lock_release.json``.

    python bench/lock_release.py [--ingest-rows 200000 --batch-rows 10000 --build-rows 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import forensics  # noqa: E402
from forensics.ingest import ingest  # noqa: E402
from forensics.search import index  # noqa: E402
from forensics.search.embed import Embedder  # noqa: E402


def write_rows(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "prompt": f"question {i} about topic {i % 97} item {i * 7}",
                                 "reply": f"answer {i}: topic {i % 97} has value {i * 13 % 1000}"}) + "\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingest-rows", type=int, default=200_000)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--build-rows", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each mode (interleaved; fastest counts)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "lock_release.json"))
    a = ap.parse_args()
    load0 = os.getloadavg()
    res: dict = {}
    emb = Embedder()
    with tempfile.TemporaryDirectory(prefix="forensics-lock-") as tmp:
        root = Path(tmp)
        data = write_rows(root / "rows.jsonl", a.ingest_rows)
        for rep in range(a.repeat):
            for mode in ("held", "released"):
                ws = forensics.init(root / f"ing-{mode}-{rep}")
                hold = ws.locked() if mode == "held" else contextlib.nullcontext()
                t = time.perf_counter()
                with hold:
                    s = ingest(ws, data, "d", langid=False, batch_rows=a.batch_rows)
                res.setdefault(f"ingest_{mode}_runs_s", []).append(round(time.perf_counter() - t, 2))
                res[f"ingest_{mode}_s"] = min(res[f"ingest_{mode}_runs_s"])
                assert s.dataset_rows == a.ingest_rows
                ws.close()
        small = write_rows(root / "small.jsonl", a.build_rows)
        modes = (("held", {}), ("released", {}), ("released_every_chunk", {"commit_seconds": 0}))
        for rep in range(a.repeat):      # interleaved; the fastest of each mode counts
            for mode, kw in modes:
                ws = forensics.init(root / f"idx-{mode}-{rep}")
                ingest(ws, small, "d", langid=False)
                hold = ws.locked() if mode == "held" else contextlib.nullcontext()
                t = time.perf_counter()
                with hold:
                    index.build(ws, "d", embedder=emb, **kw)
                sec = round(time.perf_counter() - t, 2)
                res.setdefault(f"build_{mode}_runs_s", []).append(sec)
                res[f"build_{mode}_s"] = min(res[f"build_{mode}_runs_s"])
                ws.close()
    ratios = {"ingest_released_vs_held": round(res["ingest_released_s"] / res["ingest_held_s"], 3),
              "build_released_vs_held": round(res["build_released_s"] / res["build_held_s"], 3),
              "build_every_chunk_vs_held": round(res["build_released_every_chunk_s"] / res["build_held_s"], 3)}
    for k, v in {**res, **ratios}.items():
        print(f"{k:34s} {v}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    out = {"bench": "lock_release", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "commit": commit, "loadavg_start": load0, "loadavg_end": os.getloadavg(), "params": vars(a),
           "seconds": res, "ratios": ratios}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
