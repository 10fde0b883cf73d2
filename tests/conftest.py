"""Shared fixtures: real workspaces on disk and the real CLI run as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout, or beside a folder above it (git worktrees)
SHARED = next((p / "shared" for p in REPO.parents if (p / "shared" / "data").is_dir()),
              REPO.parent / "shared")
XQUAD = SHARED / "data" / "xquad"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:  # pragma: no cover - diagnostic
            raise AssertionError(f"stdout is not JSON: {self.stdout!r}\nstderr: {self.stderr}") from e

    def __repr__(self) -> str:
        return f"CLIResult(rc={self.returncode}, stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-2000:]!r})"


def run_cli(*args: str, workspace: Path | str | None = None, check: bool = True,
            env: dict | None = None, timeout: float = 600, input: str | None = None) -> CLIResult:
    """Run ``python -m forensics ARGS`` in a subprocess, as a user would."""
    cmd = [sys.executable, "-m", "forensics"]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    cmd += [str(a) for a in args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          input=input)
    res = CLIResult(proc)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed: {' '.join(cmd)}\n{res}")
    return res


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def _cli_initialised_ws(tmp_path_factory) -> Path:
    """One empty workspace created through the real CLI (``forensics init``) per session."""
    p = tmp_path_factory.mktemp("cli_init") / "ws"
    run_cli("init", workspace=p)
    return p


@pytest.fixture
def ws_path(tmp_path: Path, _cli_initialised_ws: Path) -> Path:
    """An initialised, empty workspace directory (created through the real CLI): the test's own
    copy of the session's ``forensics init`` workspace (its DuckDB file and folders)."""
    p = tmp_path / "ws"
    shutil.copytree(_cli_initialised_ws, p)
    return p


@pytest.fixture
def ws(tmp_path: Path):
    """An initialised workspace opened through the Python API (closed after the test)."""
    import forensics

    w = forensics.init(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture(scope="session")
def xquad_dir() -> Path:
    if not XQUAD.exists():
        pytest.skip(f"shared XQuAD data not found at {XQUAD}")
    return XQUAD


def indexed_workspace(tmp: Path, corpus):
    """A real workspace at ``tmp/ws`` holding ``corpus`` (a ``forensics.testing`` Corpus)
    as dataset ``train``, with the pair, prompt, reply and reply-segment indexes built."""
    import forensics
    from forensics import ingest
    from forensics.search import index
    from forensics.search.embed import Embedder

    f = corpus.write_jsonl(tmp / "train.jsonl")
    w = forensics.init(tmp / "ws")
    ingest.ingest(w, f, "train", meta_fields=["source", "topic"])
    emb = Embedder()
    for fld in ("pair", "prompt", "reply", "reply_segment"):
        index.build(w, "train", fld, embedder=emb)
    return w


def triage_anomaly(ws, corpus, family: str, params=None, limit: int = 1000):
    """Add ``corpus``'s anomaly of ``family`` to ``ws`` and triage it against ``train``."""
    from forensics import triage
    from forensics.triage import anomaly

    a = corpus.anomaly(family)
    aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
    return triage.triage(ws, aid, "train", limit=limit, params=params)


def findings_ap(res, pos) -> float:
    """Average precision of the row ids ``pos`` in a triage result's findings order."""
    ranked, hits, s = [f["row_id"] for f in res.findings], 0, 0.0
    for i, r in enumerate(ranked, 1):
        if r in pos:
            hits += 1
            s += hits / i
    return s / len(pos)


def held_texts(n: int = 24) -> list[str]:
    """Demo-corpus rows with odd line numbers (embedding calibration reads the even ones), mixed
    languages: prompts and replies in file order, the first ``n``."""
    out: list[str] = []
    with open(REPO / "examples" / "data" / "demo_corpus.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i % 2:
                row = json.loads(line)
                out += [row["prompt"], row["reply"]]
            if len(out) >= n:
                break
    return out[:n]
