"""Sharded index builds (forensics.search.sharded_build / shards), in-process engine: resume after
kill -9, search/verify/status over shards, updates that re-embed only changed slices, and the
Ray engine against the local one (marked ``ray``: two subprocesses, each with its own local Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import forensics
from forensics.search import index
from forensics.search.sharded_build import ShardParams

from conftest import REPO, run_cli
from test_index import add_samples, corpus

# a subprocess that builds in slices and SIGKILLs itself right after its ``kill_after``-th slice
# file is written (the same signal as ``kill -9`` from outside, at a known point)
_BUILD_AND_KILL = r"""
import os, signal, sys
import forensics
from forensics.search import index
from forensics.search.sharded_build import ShardParams
ws_path, engine, shard_rows, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seen = []
def stage(name):
    if name == "shard-embedded":
        seen.append(name)
        if len(seen) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
with forensics.open(ws_path) as ws:
    index.build(ws, "d", "pair", shards=ShardParams(engine=engine, shard_rows=shard_rows, workers=1),
                on_stage=stage)
"""


def _build_and_kill(ws_path, engine: str, shard_rows: int, kill_after: int):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", _BUILD_AND_KILL, str(ws_path), engine,
                           str(shard_rows), str(kill_after)],
                          capture_output=True, text=True, env=env, timeout=600)


def _recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def test_killed_local_build_resumes_from_its_last_slice(ws_path):
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(90))
    r = _build_and_kill(ws_path, "local", 20, 2)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    vec_dir = ws_path / "indexes" / "d" / "pair.vectors"
    assert len(list(vec_dir.glob("*.parquet"))) == 2       # two finished slices survive
    assert not (ws_path / "indexes" / "d" / "pair.manifest.json").exists()
    # the local engine also caches each slice's vectors: clear the cache so the count below
    # shows what the slice files alone save
    with forensics.open(ws_path) as ws:
        ws.execute("DELETE FROM embedding_cache")
    b = run_cli("index", "build", "--dataset", "d", "--shard-rows", "20", "--json",
                workspace=ws_path).json()["built"][0]
    assert b["shards"] == 5 and b["rows"] == 90
    assert b["build"]["reused_shards"] == 2 and b["build"]["embedded_rows"] == 90 - 40


def test_sharded_index_searches_verifies_and_updates(ws):
    add_samples(ws, "d", corpus(120))
    single = index.build(ws, "d", "pair")
    one = index.open_index(ws, "d", "pair")
    emb = one.embedder()
    q = emb.encode(["how do I cook pasta", "chess strategy", "fixing a flat tyre"])
    s1, i1 = one.search(q, 10)
    vec_one = one.vectors([5, 77])

    m = index.build(ws, "d", "pair", embedder=emb, shards=ShardParams(shard_rows=25))
    assert m.index_type == "flat" and len(m.shards) == 5 and m.rows == 120
    assert not (ws.indexes_dir / "d" / "pair.faiss").exists()        # the single file is gone
    oi = index.open_index(ws, "d", "pair", read_only=True)
    s2, i2 = oi.search(q, 10)
    assert (i1 == i2).all() and np.allclose(s1, s2, atol=1e-5)       # exact search: same answers
    assert np.allclose(oi.vectors([5, 77]), vec_one, atol=1e-6)
    assert oi.ids().tolist() == sorted(one.ids().tolist())
    hits = index.search(ws, "d", ["planting tomatoes"], k=3)[0]
    assert "tomatoes" in hits[0].prompt
    rep = index.verify(ws, "d", "pair", sample=6)
    assert rep.ok, rep.problems
    assert rep.checks["shards"] == {"count": 5, "ok": 5}
    assert [s.state for s in index.status(ws, "d")] == ["fresh"]

    # appended rows: only the last slice (whose rows changed) and the new ones are embedded again
    add_samples(ws, "d", corpus(20, 120))
    up = index.update(ws, "d", "pair")
    assert up.shards is not None and up.rows == 140
    assert up.build["reused_shards"] == 4 and len(up.shards) == 6
    assert index.verify(ws, "d", "pair", sample=0).ok

    # a corrupted shard is named by verify and status, and refused by open_index
    bad = ws.indexes_dir / "d" / up.shards[3]["path"]
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    rep = index.verify(ws, "d", "pair", sample=0)
    assert not rep.ok and "shard 3" in rep.problems[0] and bad.name in rep.problems[0]
    assert index.status(ws, "d")[0].state == "corrupt"
    with pytest.raises(forensics.errors.CheckFailed, match="shard 3"):
        index.open_index(ws, "d", "pair")

    # a single-file build replaces the sharded index and removes its files
    index.build(ws, "d", "pair", embedder=emb)
    assert not (ws.indexes_dir / "d" / "pair.shards").exists()
    assert not (ws.indexes_dir / "d" / "pair.vectors").exists()
    assert index.verify(ws, "d", "pair", sample=0).ok
    assert single.index_type == "flat"


def test_sharded_ivf_matches_one_ivf_index(ws):
    """IVF shards share one trained quantiser, so the merged top-10 is what one IVF index with
    the same centroids gives; both against exact search."""
    add_samples(ws, "d", corpus(400))
    exact = index.build(ws, "d", "pair")
    oi = index.open_index(ws, "d", "pair")
    emb = oi.embedder()
    q = emb.encode([f"question about {t} number {i}" for i, t in
                    enumerate(["pasta", "neural nets", "Rome", "bicycles", "tomatoes", "chess"] * 5)])
    _, truth = oi.search(q, 10)
    index.build(ws, "d", "pair", index_type="ivf-sq8", embedder=emb)
    _, one = index.open_index(ws, "d", "pair").search(q, 10)
    m = index.build(ws, "d", "pair", index_type="ivf-sq8", embedder=emb,
                    shards=ShardParams(shard_rows=90))
    assert len(m.shards) == 5 and m.measured_recall_at_10 >= 0.95
    soi = index.open_index(ws, "d", "pair")
    _, sharded = soi.search(q, 10)
    assert _recall(sharded, one) >= 0.99
    # exact vectors come back from the Parquet slices, not the lossy sq8 codes
    pick = [3, 150, 399]
    assert np.allclose(soi.vectors(pick), oi.vectors(pick), atol=1e-6)
    assert not np.allclose(soi.reconstruct(np.asarray(pick)), oi.vectors(pick), atol=1e-6)
    assert _recall(sharded, truth) >= 0.9
    assert exact.index_type == "flat"


# ---------------------------------------------------------------------------- Ray engine
@pytest.mark.ray
def test_ray_build_matches_local_and_resumes_after_kill(ws_path):
    """Both Ray builds run as subprocesses with their own local Ray (2 CPUs): the first is
    SIGKILLed after two finished slices, the second is the real CLI and resumes."""
    pytest.importorskip("ray")
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(200))
    r = _build_and_kill(ws_path, "ray", 40, 2)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert len(list((ws_path / "indexes" / "d" / "pair.vectors").glob("*.parquet"))) == 2
    b = run_cli("index", "build", "--dataset", "d", "--engine", "ray", "--workers", "2",
                "--shard-rows", "40", "--json", workspace=ws_path).json()["built"][0]
    assert b["build"]["reused_shards"] == 2 and b["build"]["embedded_rows"] == 200 - 80
    assert b["rows"] == 200 and b["shards"] == 5 and b["build"]["engine"] == "ray"
    with forensics.open(ws_path) as ws:
        assert ws.one("SELECT count(*) FROM embedding_cache")[0] == 0   # ray keeps no cache rows
        ray_oi = index.open_index(ws, "d", "pair")
        emb = ray_oi.embedder()
        texts = [f"tell me about {t}, question {i}" for i, t in
                 enumerate(["cooking pasta", "neural networks", "Rome", "bicycle tyres",
                            "tomatoes", "chess"] * 5)]
        q = emb.encode(texts)
        _, by_ray = ray_oi.search(q, 10)
        assert index.verify(ws, "d", "pair", sample=8).ok
        index.build(ws, "d", "pair", embedder=emb)      # the local engine, one file
        _, by_local = index.open_index(ws, "d", "pair").search(q, 10)
    assert _recall(by_ray, by_local) >= 0.99
