"""`forensics sql` without --write cannot write anything anywhere; reads keep working; a locked
workspace is waited for; unexpected failures never print a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO


def _write_attempts(tmp: Path, other_ws: Path) -> list[str]:
    return [
        f"COPY (SELECT 1 AS a) TO '{tmp / 'copied.csv'}'",
        f"COPY samples TO '{tmp / 'samples.parquet'}' (FORMAT parquet)",
        f"ATTACH '{other_ws / 'forensics.duckdb'}' AS o (READ_WRITE)",
        f"ATTACH '{tmp / 'new.duckdb'}' AS n",
        f"EXPORT DATABASE '{tmp / 'exported'}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "CREATE TABLE t AS SELECT 1",
        "CREATE TEMP TABLE t AS SELECT 1",
        "DROP TABLE samples",
        "INSERT INTO datasets (name) VALUES ('x')",
        "SELECT 1; DROP TABLE samples",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp / 'explained.csv'}'",
        "PRAGMA memory_limit = '1GB'",
        "CALL pragma_version()",
        "CHECKPOINT",
        f"SELECT * FROM query('COPY (SELECT 1) TO ''{tmp / 'via_query.csv'}''')",
        "USE o",
    ]


def test_every_write_attempt_is_refused_and_nothing_is_written(ws_path, cli, tmp_path):
    other = tmp_path / "other"
    cli("init", workspace=other)
    before = sorted(p.name for p in tmp_path.iterdir())
    for q in _write_attempts(tmp_path, other):
        r = cli("sql", q, workspace=ws_path, check=False)
        assert r.returncode == 2, (q, r)
        assert "Traceback" not in r.stderr, (q, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # no file appeared
    # the other workspace is intact and its tables are still there
    assert "samples" in cli("sql", "SHOW TABLES", "--json", workspace=other).stdout
    assert "datasets" in cli("sql", "SHOW TABLES", "--json", workspace=ws_path).stdout


def test_refusal_names_the_statement_type(ws_path, cli, tmp_path):
    r = cli("sql", f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", workspace=ws_path, check=False)
    assert r.returncode == 2 and "COPY statement" in r.stderr and "--write" in r.stderr


def test_reads_still_work_including_files(ws_path, cli, tmp_path):
    import polars as pl

    pq = tmp_path / "findings.parquet"
    pl.DataFrame({"a": [1, 2, 3]}).write_parquet(pq)
    assert cli("sql", f"SELECT sum(a) AS s FROM read_parquet('{pq}')", "--json",
               workspace=ws_path).json() == [{"s": 6}]
    for q in ["SELECT 1 AS x", "WITH a AS (SELECT 2 AS x) SELECT * FROM a", "DESCRIBE samples",
              "SUMMARIZE datasets", "PRAGMA table_info('samples')", "EXPLAIN SELECT * FROM samples",
              "FROM datasets", "VALUES (1), (2)"]:
        r = cli("sql", q, "--json", workspace=ws_path, check=False)
        assert r.returncode == 0, (q, r)


def test_write_flag_keeps_the_owners_power(ws_path, cli, tmp_path):
    out = tmp_path / "owner.csv"
    cli("sql", f"COPY (SELECT 1 AS a) TO '{out}'", "--write", workspace=ws_path)
    assert out.read_text().strip().splitlines() == ["a", "1"]


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    code = ("import duckdb, sys, time\n"
            f"con = duckdb.connect({str(db)!r})\n"
            "print('locked', flush=True)\n"
            f"time.sleep({seconds})\n"
            "con.close()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_reader_waits_for_a_writer_within_its_wait(ws_path, cli):
    holder = _hold_lock(ws_path / "forensics.duckdb", 1.5)
    try:
        t = time.monotonic()
        r = cli("--wait", "20", "sql", "SELECT count(*) AS n FROM datasets", "--json", workspace=None,
                env={"FORENSICS_WORKSPACE": str(ws_path)}, check=False)
        assert r.returncode == 0, r
        assert r.json() == [{"n": 0}]
        assert time.monotonic() - t >= 0.5          # it did wait for the lock
    finally:
        holder.wait(timeout=30)


def test_a_reader_gives_up_after_its_wait_with_exit_3(ws_path, cli):
    holder = _hold_lock(ws_path / "forensics.duckdb", 6)
    try:
        r = cli("--wait", "0.3", "sql", "SELECT 1", workspace=None, check=False,
                env={"FORENSICS_WORKSPACE": str(ws_path)})
        assert r.returncode == 3, r
        assert "--wait" in r.stderr and "Traceback" not in r.stderr
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_error_boundary_classifies_known_failures_and_hides_tracebacks(tmp_path, monkeypatch, capsys):
    import errno

    from forensics.cli._common import classify, handle_errors

    assert classify(OSError(errno.ENOSPC, "No space left on device")).exit_code == 6
    assert classify(MemoryError()).exit_code == 6
    assert classify(OSError(errno.ENAMETOOLONG, "File name too long")).exit_code == 2
    assert classify(ValueError("something else")) is None

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    @handle_errors
    def boom() -> None:
        raise RuntimeError("unexpected state\nsecond line")

    with pytest.raises(SystemExit) as e:
        boom()
    assert e.value.code == 70
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: unexpected state" in err and "Traceback" not in err
    logs = list(tmp_path.glob("forensics-error-*.txt"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and "second line" in logs[0].read_text()

    @handle_errors
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SystemExit) as e:
        full()
    assert e.value.code == 6
    assert "disk full" in capsys.readouterr().err
