"""What releasing the workspace costs a triage: the dev ``--small`` corpus's anomalies triaged
in one process in three modes, interleaved over ``--repeat`` rounds (per mode the fastest round
of all anomalies counts):

* ``held``: the workspace held throughout (``with ws.locked():``), the baseline;
* ``per_read``: released after every read and write (``lock.linger_seconds=0``);
* ``lingering``: triage's default ``lock`` params (closed once unused ``linger_seconds``);
* ``linger_Xs``: ``lock.linger_seconds=X`` for each X of ``--linger``.

Also counts how often each mode opened the database. Prints seconds, opens and the ratios to
``held``; writes bench/results/triage_lock.json (date, commit, load).

    python bench/triage_lock.py [--repeat 3] [--reuse WS_DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
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


def _cli(ws: Path, *a) -> None:
    subprocess.run([sys.executable, "-m", "forensics", "--workspace", str(ws), *map(str, a)],
                   check=True, capture_output=True, cwd=REPO)


def build_workspace(ws_dir: Path) -> None:
    """The dev --small corpus ingested with pair, prompt, reply and reply_segment indexes."""
    from triage_quality import build

    c, _ = build("dev", True)
    _cli(ws_dir, "init")
    f = c.write_jsonl(ws_dir.parent / "train.jsonl")
    meta = ",".join(k for k in c.records[0] if k not in ("id", "prompt", "reply"))
    _cli(ws_dir, "ingest", f, "--dataset", "train", "--meta-fields", meta, "-q")
    for fld in ("pair", "prompt", "reply", "reply_segment"):
        _cli(ws_dir, "index", "build", "--dataset", "train", "--field", fld)
    import forensics
    from forensics.triage import anomaly

    with forensics.open(ws_dir) as ws:
        for fam in c.families:
            a = c.anomaly(fam)
            anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds per mode (interleaved)")
    ap.add_argument("--linger", type=float, nargs="*", default=[],
                    help="also run with these lock.linger_seconds")
    ap.add_argument("--reuse", default=None, help="a workspace this script built before")
    a = ap.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    ws_dir = Path(a.reuse) if a.reuse else Path(tempfile.mkdtemp(prefix="triage-lock-")) / "ws"
    if not a.reuse:
        build_workspace(ws_dir)
        print(f"workspace: {ws_dir} (reuse with --reuse)")
    import forensics
    from forensics import triage, workspace

    opens, pauses = [0], [0]
    connect, release = workspace.Workspace._connect, workspace.Workspace.release

    def counting(self):
        opens[0] += 1
        return connect(self)

    def counting_release(self, pause=0.0):
        pauses[0] += pause > 0
        return release(self, pause)

    workspace.Workspace._connect = counting
    workspace.Workspace.release = counting_release
    ws = forensics.open(ws_dir)
    aids = [int(r[0]) for r in ws.rows("SELECT anomaly_id FROM anomalies ORDER BY 1")]
    ws.close()
    for aid in aids:                    # warm-up: features stored, queries embedded, model loaded
        triage.triage(ws, aid, "train")
    ws.close()
    modes = {"held": None, "per_read": {"lock": {"linger_seconds": 0}}, "lingering": None}
    for sec in a.linger:
        modes[f"linger_{sec:g}s"] = {"lock": {"linger_seconds": sec}}
    runs: dict[str, list[float]] = {m: [] for m in modes}
    open_counts: dict[str, list[int]] = {m: [] for m in modes}
    pause_counts: dict[str, list[int]] = {m: [] for m in modes}
    for _ in range(a.repeat):
        for mode, params in modes.items():
            opens[0] = pauses[0] = 0
            t = time.perf_counter()
            with ws.locked() if mode == "held" else contextlib.nullcontext():
                for aid in aids:
                    triage.triage(ws, aid, "train", params=params)
            runs[mode].append(round(time.perf_counter() - t, 3))
            open_counts[mode].append(opens[0])
            pause_counts[mode].append(pauses[0])
            ws.close()
    best = {m: min(v) for m, v in runs.items()}
    median = {m: statistics.median(v) for m, v in runs.items()}
    ratios = {f"{m}_vs_held": round(best[m] / best["held"], 3) for m in modes if m != "held"}
    ratios |= {f"{m}_vs_held_median": round(median[m] / median["held"], 3)
               for m in modes if m != "held"}
    for m in runs:
        print(f"{m:9s} best {best[m]:7.3f}s median {median[m]:7.3f}s for {len(aids)} triages "
              f"(runs {runs[m]}), database opens {open_counts[m]}, hold-cap releases "
              f"{pause_counts[m]}")
    for k, v in ratios.items():
        print(f"{k}: {v}")
    write_result("triage_lock", {"loadavg_end": [round(x, 2) for x in os.getloadavg()],
                                 "anomalies": len(aids), "repeat": a.repeat,
                                 "loadavg_start": load0, "seconds_best": best,
                                 "seconds_runs": runs, "seconds_median": median,
                                 "database_opens": open_counts, "hold_releases": pause_counts,
                                 "ratios": ratios})


if __name__ == "__main__":
    main()
