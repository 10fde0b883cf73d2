"""Concurrency: long jobs release the workspace between commits; readers and writers wait
with ``--wait`` instead of failing. Real DuckDB files, real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import forensics
from conftest import REPO, run_cli
from forensics.search import embed

@pytest.fixture(scope="module")
def minilm():
    return embed.Embedder()


OPEN_RO = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
           "print(c.execute('SELECT count(*) FROM datasets').fetchone()[0])")


def _other_process_can_read(db: Path) -> bool:
    """Whether a separate process opens the database at once (no waiting)."""
    p = subprocess.run([sys.executable, "-c", OPEN_RO, str(db)], capture_output=True, text=True,
                       timeout=60)
    return p.returncode == 0


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": "200"}


def test_locked_scopes_nest_and_release_lets_another_process_in(ws):
    ws.one("SELECT 1")
    assert not _other_process_can_read(ws.db_path)       # an open read-write connection locks
    assert ws.release() is True and ws.release() is False
    assert _other_process_can_read(ws.db_path)
    with ws.locked() as con:
        with ws.locked() as inner:
            assert inner is con
        assert ws.release() is False                     # inner scope and release keep it
        assert con.execute("SELECT 1").fetchone() == (1,)
        assert not _other_process_can_read(ws.db_path)
    assert _other_process_can_read(ws.db_path)           # outermost scope released it
    with ws.locked(), ws.transaction() as con:
        con.execute("INSERT INTO datasets (name) VALUES ('d')")
    assert ws.one("SELECT count(*) FROM datasets") == (1,)   # reopened lazily


def _closes_within(ws, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while ws._con is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return ws._con is None


def test_lingering_keeps_the_connection_for_back_to_back_reads_then_closes_it(ws):
    """Inside ``ws.lingering(s)``, ending a locked scope keeps the connection for ``s`` seconds
    of disuse (the next scope reuses it), then a timer closes it; ``hold`` caps how long
    back-to-back scopes keep it; after the block the same delay applies."""
    ws.release()
    with ws.lingering(5):          # longer than a subprocess takes to start under load
        with ws.locked() as first:
            pass
        with ws.locked() as second:
            assert second is first                       # reused, not reopened
        assert ws._con is not None and not _other_process_can_read(ws.db_path)
        assert _closes_within(ws, 20) and _other_process_can_read(ws.db_path)
    with ws.lingering(0.2):
        with ws.locked() as first:
            pass
    with ws.lingering(0.2):                              # a job right after: the same open
        with ws.locked() as second:
            assert second is first
    assert _closes_within(ws, 20)                        # then closed after the delay
    with ws.lingering(30, hold=0.2):
        with ws.locked() as first:
            time.sleep(0.3)
        assert ws._con is None                           # open longer than hold: released
        with ws.locked():
            pass
        ws.one("SELECT 1")                               # a use outside a scope cancels the timer
        time.sleep(0.1)
        assert ws._con is not None
    ws.release()
    with ws.locked():                                    # outside lingering: at once, as before
        pass
    assert ws._con is None


class _Probe:
    """Wraps an embedder; on each encode records whether another process could open the
    workspace right then (i.e. whether the embedding runs with the lock released)."""

    def __init__(self, inner, db: Path):
        self.inner, self.db = inner, db
        self.model_id, self.dim = inner.model_id, inner.dim
        self.seen: list[bool] = []

    def encode(self, texts):
        self.seen.append(_other_process_can_read(self.db))
        return self.inner.encode(texts)


def test_embedding_runs_without_the_lock_and_batches_writes(ws, minilm, monkeypatch):
    monkeypatch.setattr(embed, "CACHE_CHUNK", 4)
    texts = [f"sentence number {i} about subject {i % 3}" for i in range(10)]
    probe = _Probe(minilm, ws.db_path)
    writes = []
    v, st = embed.embed_texts_stats(ws, texts, probe, release=True, commit_seconds=3600,
                                    on_chunk_committed=lambda c, n: writes.append((c, n)))
    assert probe.seen == [True, True, True]
    assert writes == [(3, 10)]                       # one write at the end: commit_seconds not reached
    assert st.embedded == 10 and np.allclose(v, minilm.encode(texts), atol=1e-5)
    assert ws.one("SELECT count(*) FROM embedding_cache")[0] == 10
    # without release the connection stays open during the embedding (short lookups)
    probe2 = _Probe(minilm, ws.db_path)
    embed.embed_texts(ws, ["a new text"], probe2)
    assert probe2.seen == [False]
    ws.release()


def _reap(*procs: subprocess.Popen | None) -> None:
    """Kill what a failed test left running."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _write_rows(path: Path, n: int, start: int = 0) -> Path:
    with path.open("w") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"id": i, "prompt": f"question {i} about topic {i % 97} and item {i * 7}",
                                 "reply": f"answer {i}: the topic {i % 97} has value {i * 13 % 1000}"}) + "\n")
    return path


@pytest.mark.slow
def test_reads_and_a_second_writer_get_in_during_an_index_build(tmp_path, ws_path):
    wsp = ws_path                  # made by `forensics init` (conftest)
    run_cli("ingest", _write_rows(tmp_path / "a.jsonl", 1500), "--dataset", "d", workspace=wsp)
    build = subprocess.Popen([sys.executable, "-m", "forensics", "--workspace", str(wsp), "--wait", "30",
                              "index", "build", "--dataset", "d", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        # wait until the build is embedding (its first cache write is committed)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = run_cli("--wait", "10", "sql", "SELECT count(*) AS n FROM embedding_cache", "--json",
                        workspace=wsp, check=False)
            if r.returncode == 0 and r.json()[0]["n"] > 0:
                break
            time.sleep(0.2)
        reads = []
        for _ in range(5):
            t = time.monotonic()
            r = run_cli("--wait", "10", "sql", "SELECT count(*) AS n FROM samples", "--json",
                        workspace=wsp, check=False)
            reads.append((r.returncode, time.monotonic() - t))
            assert r.returncode == 0, r
            assert r.json()[0]["n"] == 1500
        add = run_cli("--wait", "10", "anomaly", "add", "--title", "written during a build", "--prompt", "p", "--json",
                      workspace=wsp, check=False)
        assert add.returncode == 0, add
        still_running = build.poll() is None
        out, err = build.communicate(timeout=120)
    finally:
        _reap(build)
    assert build.returncode == 0, err
    assert still_running, "the build ended before the reads; make the dataset larger"
    assert json.loads(out)["built"][0]["rows"] == 1500
    v = run_cli("index", "verify", "--dataset", "d", "--json", workspace=wsp, check=False)
    assert v.returncode == 0, v
    with forensics.open(wsp, read_only=True) as ws:
        assert ws.one("SELECT count(*) FROM anomalies WHERE title = 'written during a build'") == (1,)


@pytest.mark.slow
def test_reads_and_a_second_ingest_get_in_during_an_ingest(tmp_path, ws_path):
    """An ingest releases the workspace between batches: reads see whole batches while it runs,
    another dataset's ingest commits before it ends (read from the runs' own timestamps, not
    from the test's timing), and nothing is lost or doubled."""
    n = 300000
    wsp = ws_path                  # made by `forensics init` (conftest)
    a = _write_rows(tmp_path / "a.jsonl", n)
    b = _write_rows(tmp_path / "b.jsonl", 50, start=10**6)
    first = subprocess.Popen([sys.executable, "-m", "forensics", "--workspace", str(wsp), "ingest", str(a),
                              "--dataset", "a", "--batch-rows", "2000", "--no-langid", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    second = None
    try:
        deadline = time.monotonic() + 60     # until the first batches are committed
        while time.monotonic() < deadline:
            r = run_cli("sql", "SELECT count(*) AS n FROM samples", "--json", workspace=wsp, check=False)
            if r.returncode == 0 and r.json()[0]["n"] > 0:
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first ingest ended before any check ran; make it larger"
        second = subprocess.Popen([sys.executable, "-m", "forensics", "--workspace", str(wsp),
                                   "--wait", "60", "ingest", str(b), "--dataset", "b",
                                   "--no-langid", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        seen = []
        for _ in range(3):
            r = run_cli("sql", "SELECT count(*) AS n FROM samples WHERE dataset = 'a'", "--json",
                        workspace=wsp, check=False)
            assert r.returncode == 0, r
            seen.append(r.json()[0]["n"])
        _, s_err = second.communicate(timeout=300)
        assert second.returncode == 0, s_err
        _, err = first.communicate(timeout=300)
    finally:
        _reap(first, second)
    assert first.returncode == 0, err
    assert 0 < seen[0] <= seen[-1] <= n and all(x % 2000 == 0 for x in seen)  # whole batches
    with forensics.open(wsp, read_only=True) as ws:
        (a_end,) = ws.one("SELECT finished_at FROM ingest_runs WHERE dataset = 'a'")
        (b_end,) = ws.one("SELECT finished_at FROM ingest_runs WHERE dataset = 'b'")
        assert b_end < a_end, "the second ingest did not get in before the first one ended"
        assert ws.rows("SELECT dataset, count(*), count(DISTINCT row_id) FROM samples GROUP BY 1 "
                       "ORDER BY 1") == [("a", n, n), ("b", 50, 50)]


def _planted_rows(path: Path, n: int, planted: int = 30) -> Path:
    """``n`` question/answer rows; every tenth one of the first ``10 * planted`` replies ends
    with the same off-topic sign-off (the behaviour a triage finds)."""
    sign_off = " Remember to subscribe to the harbour lantern newsletter for weekly tips."
    with path.open("w") as fh:
        for i in range(n):
            reply = f"answer {i}: the topic {i % 97} has value {i * 13 % 1000}."
            if i % 10 == 0 and i < 10 * planted:
                reply += sign_off
            fh.write(json.dumps({"id": i, "prompt": f"question {i} about topic {i % 97}",
                                 "reply": reply}) + "\n")
    return path


_ANOMALY_REPLY = ("answer 7: the topic 7 has value 91. Remember to subscribe to the harbour "
                  "lantern newsletter for weekly tips.")


# The real `forensics triage` command in a subprocess, paused at one stage of its compute phase
# through triage()'s on_stage seam (the script wraps the function the CLI calls), until the
# test creates the `go` file.
_PAUSED_TRIAGE = r"""
import sys, time
from pathlib import Path
import forensics.triage as t
from forensics.cli import main

wsp, flag, stage_name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
go, paused = flag.with_suffix(".go"), flag.with_suffix(".paused")
run = t.triage

def with_pause(*a, **k):
    def on_stage(name):
        if name == stage_name:
            paused.write_text(name)
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    return run(*a, on_stage=on_stage, **k)

t.triage = with_pause
main(["--workspace", wsp, "--wait", "30", "triage", "1", "--dataset", "d", "--json"])
"""


@pytest.fixture(scope="module")
def planted_ws(tmp_path_factory) -> Path:
    """A workspace made through the CLI (init, ingest of 300 planted rows, the anomaly), built
    once; each test copies it (its own DuckDB file) before writing."""
    tmp = tmp_path_factory.mktemp("planted")
    wsp = tmp / "ws"
    run_cli("init", workspace=wsp)
    run_cli("ingest", _planted_rows(tmp / "a.jsonl", 300), "--dataset", "d", "--no-langid",
            workspace=wsp)
    run_cli("anomaly", "add", "--title", "adds a newsletter sign-off", "--reply", _ANOMALY_REPLY,
            workspace=wsp)
    return wsp


@pytest.mark.parametrize("stage", ["inputs", "signal:phrase", "clusters"])
def test_reads_and_writes_get_in_while_a_triage_computes(tmp_path, stage, planted_ws):
    """While `forensics triage` computes (paused at a stage), another process reads and writes
    the workspace at once (``--wait 0``: no waiting); the triage then finishes and stores its
    run next to the other process's write."""
    wsp = tmp_path / "ws"
    shutil.copytree(planted_ws, wsp)
    flag = tmp_path / "triage"
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_TRIAGE, str(wsp), str(flag), stage],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 120
        while not flag.with_suffix(".paused").exists() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.with_suffix(".paused").exists(), proc.communicate(timeout=30)
        assert proc.poll() is None                      # paused inside the triage
        r = run_cli("--wait", "0", "sql", "SELECT count(*) AS n FROM samples", "--json",
                    workspace=wsp, check=False)
        assert r.returncode == 0, r.stderr
        assert r.json()[0]["n"] == 300
        w = run_cli("--wait", "0", "anomaly", "add", "--title", "written during a triage", "--prompt", "p",
                    "--json", workspace=wsp, check=False)
        assert w.returncode == 0, w.stderr
        flag.with_suffix(".go").write_text("go")
        out, err = proc.communicate(timeout=300)
    finally:
        _reap(proc)
    assert proc.returncode == 0, err
    res = json.loads(out)
    assert res["anomaly_id"] == 1 and res["clusters"]
    assert {int(r) for r in res["clusters"][0]["row_ids"]} == set(range(0, 300, 10))
    with forensics.open(wsp, read_only=True) as ws:
        assert ws.one("SELECT status FROM triage_runs WHERE run_id = ?", [res["run_id"]]) == ("done",)
        assert ws.one("SELECT count(*) FROM anomalies") == (2,)


def test_a_triage_stores_the_same_run_with_or_without_the_lock_held(ws, tmp_path):
    """Releasing between steps changes nothing in the result: a run holding the workspace
    throughout (``ws.locked()``) ranks the same rows with the same scores, and every stage
    is passed with the workspace closed unless the caller holds it."""
    from forensics.ingest import ingest
    from forensics.triage import anomaly, triage

    ingest(ws, _planted_rows(tmp_path / "a.jsonl", 300), "d", langid=False)
    aid = anomaly.add(ws, "adds a newsletter sign-off", None, _ANOMALY_REPLY, [])
    seen = []
    free = triage(ws, aid, "d", on_stage=lambda s: seen.append((s, ws._con is None)))
    assert [s for s, _ in seen][0] == "inputs" and seen[-1][0] == "stored"
    assert all(closed for _, closed in seen), seen
    held_seen = []
    with ws.locked():
        held = triage(ws, aid, "d", on_stage=lambda s: held_seen.append(ws._con is None))
    assert not any(held_seen)
    assert [(f["row_id"], f["score"]) for f in free.findings] == \
        [(f["row_id"], f["score"]) for f in held.findings]
    assert free.clusters == held.clusters
    assert {int(r) for r in free.clusters[0]["row_ids"]} == set(range(0, 300, 10))


def test_nla_training_runs_without_the_workspace(ws, tmp_path, monkeypatch):
    """`forensics nla train` reads its texts and lets go of the workspace before it trains."""
    from forensics.ingest import ingest
    from forensics.nla.train import trainer

    ingest(ws, _write_rows(tmp_path / "a.jsonl", 20), "d", langid=False)
    seen = []
    monkeypatch.setattr(trainer, "train_nla", lambda target, items, *a, **k:
                        seen.append((len(items), _other_process_can_read(ws.db_path))))
    trainer.train_from_dataset(ws, "d", "target", tmp_path / "out", trainer.TrainConfig(layer=0))
    assert seen == [(20, True)]


def test_lock_timing_options_are_recorded_with_each_run(tmp_path, ws_path):
    """--hold-seconds (ingest, pipeline run) and --commit-seconds (index build/update) reach the
    runs and are stored where SQL shows them; left out, the library default is stored."""
    wsp = ws_path                  # made by `forensics init` (conftest)
    run_cli("ingest", _write_rows(tmp_path / "a.jsonl", 40), "--dataset", "d", "--no-langid",
            "--hold-seconds", "0", workspace=wsp)
    run_cli("ingest", _write_rows(tmp_path / "b.jsonl", 10, start=100), "--dataset", "e",
            "--no-langid", workspace=wsp)
    run_cli("pipeline", "run", "hygiene", "--dataset", "d", "--hold-seconds", "0.5", workspace=wsp)
    run_cli("index", "build", "--dataset", "d", "--field", "prompt", "--commit-seconds", "0",
            workspace=wsp)
    built = run_cli("sql", "SELECT CAST(manifest->'build'->>'commit_seconds' AS DOUBLE) AS c "
                    "FROM indexes", "--json", workspace=wsp).json()
    assert built == [{"c": 0.0}]
    run_cli("ingest", _write_rows(tmp_path / "c.jsonl", 5, start=200), "--dataset", "d",
            "--no-langid", workspace=wsp)
    run_cli("index", "update", "--dataset", "d", "--commit-seconds", "3", workspace=wsp)

    def q(sql):
        return run_cli("sql", sql, "--json", workspace=wsp).json()

    assert q("SELECT dataset, CAST(options->>'hold_seconds' AS DOUBLE) AS h FROM ingest_runs "
             "ORDER BY ingest_id") == [{"dataset": "d", "h": 0.0}, {"dataset": "e", "h": 2.0},
                                       {"dataset": "d", "h": 2.0}]
    assert q("SELECT CAST(stats->>'hold_seconds' AS DOUBLE) AS h FROM pipeline_runs") == [{"h": 0.5}]
    got = q("SELECT CAST(manifest->'build'->>'commit_seconds' AS DOUBLE) AS c, "
            "manifest->>'updated_from' IS NOT NULL AS updated FROM indexes")
    assert got == [{"c": 3.0, "updated": True}]
