"""Shared by the bench scripts: where they record results, and where the shared data lives.

``write_result(name, payload)`` writes ``bench/results/<name>.json``: it adds the date (UTC),
the git commit of the checkout (with ``-dirty`` when tracked code differs from it), the
machine's load average and CPU count, then writes the payload beside them. A later run of the
same bench overwrites the file; git keeps the history. ``shared_dir()`` is ``shared/`` beside
the checkout (or beside a folder above it, as for a git worktree). ``demo_pair_texts()``: the
``pair`` texts (prompt + blank line + reply) of the demo corpus, the embedding benches' input.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEMO_CORPUS = REPO / "examples" / "data" / "demo_corpus.jsonl"


def git_commit(repo: Path = REPO) -> str:
    """HEAD of ``repo``, with ``-dirty`` when tracked files other than bench/results/ changed;
    ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)bench/results"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def write_result(name: str, payload: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``payload`` with date, commit and load to ``<results_dir>/<name>.json``;
    returns the path (also said on stderr, so stdout stays the bench's table)."""
    out_dir = Path(results_dir) if results_dir is not None else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        **payload,
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"results written to {path}", file=sys.stderr)
    return path


def demo_pair_texts(corpus: Path = DEMO_CORPUS) -> list[str]:
    """The ``pair`` text (prompt + blank line + reply) of every row of ``corpus`` (JSONL)."""
    rows = [json.loads(x) for x in corpus.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [(r.get("prompt") or "") + "\n\n" + (r.get("reply") or "") for r in rows]


def shared_dir(repo: Path = REPO) -> Path:
    """``shared/`` beside ``repo`` or beside the nearest folder above it that has one."""
    for p in repo.parents:
        if (p / "shared" / "data").is_dir():
            return p / "shared"
    return repo.parent / "shared"
