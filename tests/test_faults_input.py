"""Malformed and hostile inputs through the real ``forensics ingest`` CLI.

Each case is one input file ingested together with a good file in the same call: the good file
is always stored, the bad one ends as named rejects (file, true line, reason) or one
``unreadable_file`` reject, the exit code says which (0: row rejects only, 2: a file could not
be read or was refused), and no traceback ever reaches the user.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import forensics

GOOD = [{"id": "g1", "prompt": "What is the capital of France?", "reply": "Paris."},
        {"id": "g2", "prompt": "Name a prime number.", "reply": "Seven."}]


def _parquet_bytes(n: int = 200) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(n)],
                             "prompt": [f"question {i}" for i in range(n)],
                             "reply": [f"answer {i}" for i in range(n)]}), buf)
    return buf.getvalue()


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


_DEEP = 100_000
# name -> (file name, content, expected rejects [(reason, line)], rows kept from it, exit code)
CASES = {
    "empty parquet": ("e.parquet", b"", [("unreadable_file", None)], 0, 2),
    "text named .parquet": ("t.parquet", b"id,prompt,reply\n1,a,b\n", [("unreadable_file", None)], 0, 2),
    "truncated parquet": ("tr.parquet", _parquet_bytes()[:-40], [("unreadable_file", None)], 0, 2),
    "garbage .arrow": ("g.arrow", os.urandom(64), [("unreadable_file", None)], 0, 2),
    "truncated gzip": ("z.jsonl.gz", gzip.compress(_jsonl(GOOD * 50))[:-30],
                       [("unreadable_file", None)], None, 2),
    "UTF-16 JSONL": ("u16.jsonl", "\ufeff".encode("utf-16-le") + _jsonl(GOOD).decode().encode("utf-16-le"),
                     [("unreadable_file", None)], 0, 2),
    # DuckDB and Python both give up on the nesting; the elements around it are kept
    "deeply nested JSON array": (
        "deep.json",
        ('[{"id": "a1", "prompt": "p1", "reply": "r1"},' + "[" * _DEEP
         + ', {"id": "a2", "prompt": "p2", "reply": "r2"}]').encode(),
        [("malformed_json", 2)], 2, 0),
    "deep nesting in a JSONL line": (
        "deep.jsonl",
        _jsonl([{"id": "j1", "prompt": "p", "reply": "r"}]) + b'{"prompt": ' + b"[" * _DEEP + b"\n"
        + _jsonl([{"id": "j3", "prompt": "p3", "reply": "r3"}]),
        [("malformed_json", 2)], 2, 0),
    # CSV: true 1-based lines; a bad quote never swallows the following rows
    "CSV unterminated quote": (
        "q.csv",
        b'id,prompt,reply\n'
        b'c1,"never closed,r1\n'          # 2: the quote closes inside line 6 -> rejected
        b'c2,p2,r2\n'                     # 3
        b'c3,"multi\nline\nprompt",r3\n'  # 4-6: one record of three lines
        b'c4,p4,r4,extra\n'               # 7: wrong column count
        b'c5,p5,r5\n'                     # 8
        b'c6,p6,"open to the end\n'       # 9: never closed at all
        b'c7,p7,r7\n',                    # 10
        [("malformed_csv", 2), ("malformed_csv", 7), ("malformed_csv", 9)], 4, 0),
    "TSV with a stray quote": (
        "s.tsv", b'id\tprompt\treply\nt1\t"half\tr1\nt2\tp2\tr2\n',
        [("malformed_csv", 2)], 1, 0),
    "CSV invalid UTF-8 row": (
        "b.csv", b'id,prompt,reply\nb1,caf\xe9,r\nb2,ok,r2\n', [("invalid_utf8", 2)], 1, 0),
    # Unicode blanks are blank
    "Unicode-blank texts": (
        "blank.jsonl",
        _jsonl([{"id": "w1", "prompt": "\u3000\u3000", "reply": "r"},
                {"id": "w2", "prompt": "p", "reply": "\u00a0\u200b"},
                {"id": "w3", "prompt": "\u200c\u200d\u2060\ufeff\t", "reply": "r"},
                {"id": "w4", "prompt": "\u2028 \u202f\u205f\u1680", "reply": "r"},
                {"id": "w5", "prompt": "\u200bx", "reply": "\u3000y"}]),
        [("empty_text", 1), ("empty_text", 2), ("empty_text", 3), ("empty_text", 4)], 1, 0),
}


def _rejects(ws_path: Path, name: str) -> list[tuple]:
    with forensics.open(ws_path, read_only=True) as ws:
        return [tuple(r) for r in ws.rows(
            "SELECT reason, line FROM rejects WHERE file LIKE ? ORDER BY line NULLS FIRST, reason",
            ["%/" + name])]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_never_stops_the_good_one(case, ws_path, cli, tmp_path):
    name, content, want_rejects, kept, code = CASES[case]
    good = tmp_path / "good.jsonl"
    good.write_bytes(_jsonl(GOOD))
    bad = tmp_path / name
    bad.write_bytes(content)
    # the bad file first: a failure must not stop the files after it
    r = cli("ingest", str(bad), str(good), "--dataset", "d", "--no-langid", "--json",
            workspace=ws_path, check=False, timeout=120)
    assert r.returncode == code, r
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    out = r.json()
    files = {Path(f["file"]).name: f for f in out["files"]}
    assert files["good.jsonl"]["rows_added"] == 2 and files["good.jsonl"]["error"] is None
    assert _rejects(ws_path, name) == want_rejects
    if code == 2:
        err = files[name]["error"]
        assert str(bad) in err and "\n" not in err          # one line naming the file
        assert str(bad) in r.stderr
        assert out["files_failed"] == 1
    if kept is not None:
        assert files[name]["rows_added"] == kept
    # idempotent: the same call again adds no reject and no row
    again = cli("ingest", str(bad), str(good), "--dataset", "d", "--no-langid", "--json",
                workspace=ws_path, check=False, timeout=120)
    assert again.returncode == code and "Traceback" not in again.stderr
    assert _rejects(ws_path, name) == want_rejects
    assert again.json()["dataset_rows"] == out["dataset_rows"]


def test_csv_rows_after_a_bad_quote_keep_their_true_lines(ws_path, cli, tmp_path):
    name, content, *_ = CASES["CSV unterminated quote"]
    f = tmp_path / name
    f.write_bytes(content)
    cli("ingest", str(f), "--dataset", "d", "--no-langid", workspace=ws_path)
    with forensics.open(ws_path, read_only=True) as ws:
        got = ws.rows("SELECT row_id, source_line, prompt FROM samples ORDER BY source_line")
        raw = ws.rows("SELECT line, raw FROM rejects ORDER BY line")
    assert [tuple(g) for g in got] == [("c2", 3, "p2"), ("c3", 4, "multi\nline\nprompt"),
                                       ("c5", 8, "p5"), ("c7", 10, "p7")]
    assert [tuple(x) for x in raw][0] == (2, 'c1,"never closed,r1\n')


def test_csv_resume_counts_lines(tmp_path):
    """An interrupted CSV ingest resumes at a record boundary by file line: no row twice, none lost,
    multi-line records and rejects included."""
    from forensics.ingest import ingest

    lines = ["id,prompt,reply"]
    for i in range(40):
        lines.append(f'r{i},"multi\nline {i}",x{i}' if i % 3 == 0 else
                     (f'r{i},"bad"q,x' if i % 7 == 0 else f"r{i},p{i},x{i}"))
    f = tmp_path / "r.csv"
    f.write_text("\n".join(lines) + "\n")
    full = forensics.init(tmp_path / "full")
    s_full = ingest(full, [f], "d", langid=False, batch_rows=1000)
    want = full.rows("SELECT row_id, source_line, prompt FROM samples ORDER BY 2")
    want_rej = full.rows("SELECT line, reason FROM rejects ORDER BY 1")
    full.close()
    ws = forensics.init(tmp_path / "ws")
    ingest(ws, [f], "d", langid=False, batch_rows=4)
    # forget that the file finished: pretend the run stopped after its third batch
    ws.execute("DELETE FROM samples WHERE source_line > 13")
    ws.execute("DELETE FROM rejects WHERE line > 13")
    ws.execute("UPDATE ingest_progress SET finished = false, lines_done = 13")
    s = ingest(ws, [f], "d", langid=False, batch_rows=4)
    assert s.files[0].resumed_from == 13
    assert ws.rows("SELECT row_id, source_line, prompt FROM samples ORDER BY 2") == want
    assert ws.rows("SELECT line, reason FROM rejects ORDER BY 1") == want_rej
    assert s_full.rows_added == len(want) and s_full.rows_rejected == len(want_rej) > 0
    ws.close()


def test_special_files_are_refused_without_hanging(ws_path, cli, tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    r = cli("ingest", str(fifo), "--dataset", "d", workspace=ws_path, check=False, timeout=60)
    assert r.returncode == 2 and "FIFO" in r.stderr and str(fifo) in r.stderr, r
    assert "Traceback" not in r.stderr
    sock_path = tmp_path / "s.jsonl"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        r = cli("ingest", str(sock_path), "--dataset", "d", workspace=ws_path, check=False, timeout=60)
    finally:
        s.close()
    assert r.returncode == 2 and "socket" in r.stderr, r
    r = cli("ingest", "/dev/null", "--dataset", "d", workspace=ws_path, check=False, timeout=60)
    assert r.returncode == 2 and "character device" in r.stderr, r
    broken = tmp_path / "gone.jsonl"
    broken.symlink_to(tmp_path / "missing-target")
    r = cli("ingest", str(broken), "--dataset", "d", workspace=ws_path, check=False, timeout=60)
    assert r.returncode == 2 and "broken symbolic link" in r.stderr, r
    with forensics.open(ws_path, read_only=True) as ws:
        assert ws.one("SELECT count(*) FROM samples")[0] == 0
    # found in a directory: refused at its turn (never opened), the other files are ingested
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.jsonl").write_bytes(_jsonl(GOOD))
    os.mkfifo(d / "b.jsonl")
    (d / "c.jsonl").symlink_to(tmp_path / "missing-target")
    r = cli("ingest", str(d), "--dataset", "d", "--no-langid", "--json", workspace=ws_path,
            check=False, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r
    errors = {Path(f["file"]).name: f["error"] for f in r.json()["files"]}
    assert errors["a.jsonl"] is None and "FIFO" in errors["b.jsonl"]
    assert "broken symbolic link" in errors["c.jsonl"]
    assert _rejects(ws_path, "b.jsonl") == [("unreadable_file", None)]
    with forensics.open(ws_path, read_only=True) as ws:
        assert ws.one("SELECT count(*) FROM samples")[0] == 2


def test_symlink_format_comes_from_the_link_when_the_target_has_no_extension(ws_path, cli, tmp_path):
    """The Hugging Face cache layout: snapshots/<rev>/train.jsonl -> ../../blobs/<sha>."""
    blobs = tmp_path / "hub" / "blobs"
    snap = tmp_path / "hub" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / "9f2c0e7d").write_bytes(_jsonl(GOOD))
    (blobs / "77aa01").write_bytes(_parquet_bytes(5))
    (snap / "train.jsonl").symlink_to(Path("../../blobs/9f2c0e7d"))
    (snap / "test.parquet").symlink_to(Path("../../blobs/77aa01"))
    out = cli("ingest", str(snap / "train.jsonl"), "--dataset", "d", "--no-langid", "--json",
              workspace=ws_path).json()
    assert out["rows_added"] == 2 and out["files"][0]["format"] == "jsonl"
    out = cli("ingest", str(snap), "--dataset", "e", "--no-langid", "--json", workspace=ws_path).json()
    assert sorted(f["format"] for f in out["files"]) == ["jsonl", "parquet"]
    assert out["rows_added"] == 7


def test_an_unreadable_file_mid_directory_does_not_stop_the_rest(ws_path, cli, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.jsonl").write_bytes(_jsonl(GOOD))
    (d / "b.parquet").write_bytes(b"PAR1 but not really")
    (d / "c.jsonl").write_bytes(_jsonl([{"id": "c1", "prompt": "p", "reply": "r"}]))
    r = cli("ingest", str(d), "--dataset", "d", "--no-langid", workspace=ws_path, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "b.parquet: unreadable Parquet file" in r.stderr
    with forensics.open(ws_path, read_only=True) as ws:
        assert ws.one("SELECT count(*) FROM samples")[0] == 3


def test_csv_chunk_boundaries_and_resume_points_do_not_change_records(monkeypatch):
    """Records are the same whatever the chunk size (records and broken quotes spanning chunk
    ends), and starting from any resume point the reader reported gives exactly the rest."""
    import io
    import random

    from forensics.ingest import csvfile

    rnd = random.Random(1)
    parts = []
    for i in range(300):
        k = rnd.random()
        parts.append(f'r{i},"multi\nline\n{i}",x' if k < 0.1 else f'r{i},"never closed,x' if k < 0.15
                     else f'r{i},"bad"q,x' if k < 0.2 else f"r{i},a,b,c" if k < 0.25
                     else "" if k < 0.3 else f"r{i},p{i},x{i}")
    text = "id,prompt,reply\n" + "\n".join(parts) + "\n"

    def run(chunk: int, skip: int = 0) -> list:
        monkeypatch.setattr(csvfile, "CSV_CHUNK_LINES", chunk)
        return list(csvfile._csv_records(iter(io.StringIO(text, newline="")), ",", skip))

    ref = run(65_536)
    assert sum(1 for r in ref if r[3]) > 20 and sum(1 for r in ref if r[2]) > 150
    for chunk in (1, 2, 3, 5, 17, 100):
        assert run(chunk) == ref, chunk
    for _, done, _, _ in ref[::25]:
        for chunk in (1, 7, 65_536):
            assert run(chunk, done) == [ref[0]] + [r for r in ref[1:] if r[0] > done]
