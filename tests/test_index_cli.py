"""The real ``forensics index ...`` / ``forensics search`` CLI, run as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import forensics
from forensics.search import index

from conftest import REPO
from test_index import add_samples, corpus


def _seed(ws_path, n=40, offset=0):
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(n, offset))


def test_build_search_status_verify_json_and_stale_refusal(ws_path, cli):
    _seed(ws_path)
    b = cli("index", "build", "--dataset", "d", "--json", workspace=ws_path).json()
    assert [r["field"] for r in b["built"]] == ["pair"]
    assert b["built"][0]["rows"] == 40 and b["built"][0]["index_type"] == "flat"
    assert (ws_path / "indexes" / "d" / "pair.faiss").exists()
    man = json.loads((ws_path / "indexes" / "d" / "pair.manifest.json").read_text())
    assert man["dataset_version"] == 1 and man["model_id"] == "all-MiniLM-L6-v2"

    s = cli("search", "how to grow tomatoes", "chess openings", "--dataset", "d", "-k", "3",
            "--json", workspace=ws_path).json()
    assert [r["query"] for r in s["results"]] == ["how to grow tomatoes", "chess openings"]
    top = s["results"][0]["hits"][0]
    assert top["rank"] == 1 and "tomatoes" in top["prompt"] and 0 < top["score"] <= 1.0001
    assert "chess" in s["results"][1]["hits"][0]["prompt"]

    st = cli("index", "status", "--json", workspace=ws_path).json()
    assert [(i["field"], i["state"]) for i in st["indexes"]] == [("pair", "fresh")]

    # --sample 0: no re-embedding here (costs a model load; covered in test_index.py)
    v = cli("index", "verify", "--dataset", "d", "--sample", "0", "--json", workspace=ws_path)
    assert v.returncode == 0 and v.json()["ok"] is True
    assert v.json()["reports"][0]["checks"]["rows_duckdb"] == 40

    up = cli("index", "update", "--dataset", "d", "--json", workspace=ws_path).json()
    assert up["updated"][0]["added"] == 0 and up["updated"][0]["rows"] == 40  # fresh: no-op

    # the dataset grows: status says stale, search refuses (exit 4) with the update hint
    _seed(ws_path, 3, offset=40)
    st = cli("index", "status", "--json", workspace=ws_path).json()
    assert st["indexes"][0]["state"] == "stale" and st["indexes"][0]["current_rows"] == 43
    r = cli("search", "tomatoes", "--dataset", "d", workspace=ws_path, check=False)
    assert r.returncode == 4 and "stale" in r.stderr and "forensics index update" in r.stderr
    v = cli("index", "verify", "--dataset", "d", "--sample", "0", workspace=ws_path, check=False)
    assert v.returncode == 1 and "stale" in v.stdout

    # a corrupted file: verify exits 1 naming the problem; search refuses to load it
    f = ws_path / "indexes" / "d" / "pair.faiss"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    v = cli("index", "verify", "--dataset", "d", workspace=ws_path, check=False)
    assert v.returncode == 1 and "checksum mismatch" in v.stdout and "pair.faiss" in v.stdout
    r = cli("search", "tomatoes", "--dataset", "d", workspace=ws_path, check=False)
    assert r.returncode == 1 and "corrupt" in r.stderr
    st = cli("index", "status", "--dataset", "d", "--json", workspace=ws_path).json()
    assert st["indexes"][0]["state"] == "corrupt"


# a separate process that builds an index and dies (os._exit, like kill -9) at one stage
_BUILD_AND_DIE = """
import os, sys
import forensics
from forensics.search import index

def die_at(stage):
    if stage == sys.argv[2]:
        os._exit(86)

with forensics.open(sys.argv[1]) as ws:
    index.build(ws, "d", "pair", index_type=sys.argv[3], on_stage=die_at)
"""


def _build_and_die(ws_path, stage: str, index_type: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", _BUILD_AND_DIE, str(ws_path), stage, index_type],
                          capture_output=True, text=True, env=env, timeout=600)


def test_killed_build_leaves_previous_index_usable(ws_path, cli):
    """kill the process (os._exit, like kill -9) after the new .faiss is written to its temp
    file but before the rename: the previous index and manifest must still verify."""
    _seed(ws_path, 30)
    with forensics.open(ws_path) as ws:
        first = index.build(ws, "d", "pair")
    r = _build_and_die(ws_path, "after-faiss-tmp", "hnsw")
    assert r.returncode == 86, r.stderr[-2000:]
    d = ws_path / "indexes" / "d"
    assert any(p.name.startswith(".pair.faiss.tmp-") for p in d.iterdir())  # the half-done write
    with forensics.open(ws_path) as ws:
        rep = index.verify(ws, "d", "pair", sample=4)
        assert rep.ok, rep.problems
        assert index.read_manifest(ws, "d", "pair").checksum == first.checksum
        assert index.open_index(ws, "d", "pair").manifest.index_type == "flat"
        index.build(ws, "d", "pair", index_type="hnsw")  # next build cleans up
    assert not any(p.name.startswith(".pair.faiss.tmp-") for p in d.iterdir())


def test_build_killed_between_renames_rolls_forward(ws_path):
    """kill the process after the new .faiss replaced the old one but before its manifest did:
    the next open completes the write, and the new index verifies."""
    _seed(ws_path, 30)
    with forensics.open(ws_path) as ws:
        index.build(ws, "d", "pair")
    r = _build_and_die(ws_path, "between-renames", "hnsw")
    assert r.returncode == 86, r.stderr[-2000:]
    d = ws_path / "indexes" / "d"
    assert (d / "pair.manifest.json.new").exists()
    with forensics.open(ws_path) as ws:
        assert index.open_index(ws, "d", "pair").manifest.index_type == "hnsw"
        assert not (d / "pair.manifest.json.new").exists()
        rep = index.verify(ws, "d", "pair", sample=4)
        assert rep.ok, rep.problems


def test_roll_forward_resyncs_the_indexes_table(ws_path, cli):
    """A build killed between its renames leaves the new .faiss with a pending manifest and the
    OLD manifest in the ``indexes`` table. A read-only status reports the new index without
    touching files or table; the first writer rolls the manifest forward and re-syncs the row."""
    _seed(ws_path, 30)
    with forensics.open(ws_path) as ws:
        index.build(ws, "d", "pair")
    r = _build_and_die(ws_path, "between-renames", "hnsw")
    assert r.returncode == 86, r.stderr[-2000:]
    d = ws_path / "indexes" / "d"

    def table_manifest():
        out = cli("sql", "SELECT manifest FROM indexes WHERE dataset = 'd' AND field = 'pair'",
                  "--json", workspace=ws_path).json()
        v = out[0]["manifest"]
        return json.loads(v) if isinstance(v, str) else v

    assert table_manifest()["index_type"] == "flat"                  # stale row after the crash
    st = cli("index", "status", "--json", workspace=ws_path).json()  # read-only
    assert st["indexes"][0]["state"] == "fresh" and st["indexes"][0]["index_type"] == "hnsw"
    assert (d / "pair.manifest.json.new").exists()                    # left for a writer
    with forensics.open(ws_path) as ws:                               # a writer: roll forward
        assert [s.index_type for s in index.status(ws, "d")] == ["hnsw"]
    assert not (d / "pair.manifest.json.new").exists()
    assert table_manifest() == json.loads((d / "pair.manifest.json").read_text())


def test_bad_usage_exit_codes(ws_path, cli):
    r = cli("index", "build", "--dataset", "nope", workspace=ws_path, check=False)
    assert r.returncode == 4 and "not found" in r.stderr
    _seed(ws_path, 3)
    r = cli("search", "x", "--dataset", "d", workspace=ws_path, check=False)
    assert r.returncode == 4 and "index build" in r.stderr
    st = cli("index", "status", "--json", workspace=ws_path).json()
    assert st == {"indexes": []}
    r = cli("index", "build", "--dataset", "d", "--ray-address", "auto", workspace=ws_path,
            check=False)
    assert r.returncode == 2 and "--engine ray" in r.stderr


def test_ingest_then_index_through_the_real_cli(ws_path, cli, tmp_path):
    """End to end with the ingest engineer's CLI: JSONL -> samples -> index -> search."""
    if cli("ingest", "--help", check=False).returncode != 0:
        pytest.skip("forensics ingest is not available yet")
    f = tmp_path / "train.jsonl"
    rows = [{"id": f"a{i}", "prompt": p, "reply": r} for i, (_, p, r) in enumerate(corpus(12))]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cli("ingest", str(f), "--dataset", "d", "--id-field", "id", "--prompt-field", "prompt",
        "--reply-field", "reply", workspace=ws_path)
    # indexing in-process (the CLI index commands are covered above; each model load in a
    # subprocess costs seconds)
    with forensics.open(ws_path) as ws:
        assert index.build(ws, "d", "pair").rows == 12
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "b1", "prompt": "Which knot ties a sailing boat to a dock?",
                                "reply": "A cleat hitch."}) + "\n")
    cli("ingest", str(more), "--dataset", "d", "--id-field", "id", "--prompt-field", "prompt",
        "--reply-field", "reply", workspace=ws_path)
    st = cli("index", "status", "--json", workspace=ws_path).json()
    assert st["indexes"][0]["state"] == "stale"
    with forensics.open(ws_path) as ws:
        assert index.update(ws, "d", "pair").rows == 13
        hit = index.search(ws, "d", ["mooring a boat"], k=1)[0][0]
        assert hit.row_id == "b1" and hit.reply == "A cleat hitch."
