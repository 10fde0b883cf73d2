"""Ingest through the real CLI (subprocess) into real DuckDB workspaces."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forensics
from conftest import REPO, run_cli
from forensics.errors import WorkspaceError


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, bytes] | None = None) -> Path:
    """rows as JSON lines; raw_lines {index: bytes} inserted verbatim at that 0-based position."""
    out = []
    for r in rows:
        out.append(json.dumps(r, ensure_ascii=False).encode())
    for i, b in sorted((raw_lines or {}).items()):
        out.insert(i, b)
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def q(ws_path, sql, params=None):
    with forensics.open(ws_path, read_only=True) as ws:
        return ws.rows(sql, params)


GOOD = [
    {"id": 1, "prompt": "What is the capital of France?", "reply": "Paris is the capital of France.",
     "source": "web", "shard": 3},
    {"id": "b2", "prompt": "Wie viele Punkte gab die Verteidigung ab?",
     "reply": "Die Verteidigung gab 308 Punkte ab.", "source": "mt"},
    {"id": 3, "prompt": "Как приготовить борщ?", "reply": "Сварите свёклу с капустой и картофелем.",
     "source": "mt"},
]


def test_jsonl_rows_rejects_idempotent_and_conflict(ws_path, cli, tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", GOOD + [
        {"id": 5, "prompt": "", "reply": "empty prompt"},
        {"id": 6, "prompt": "no reply here"},
        {"id": 7, "prompt": ["not", "a", "string"], "reply": "x"},
        {"id": 8, "prompt": "p" * 50, "reply": "too long for --max-chars 45"},
        {"prompt": "¿Qué hora es?", "reply": "Son las tres de la tarde."},   # no id -> file:line
    ], raw_lines={3: b"{this is not json", 5: b'{"id": 9, "prompt": "caf\xe9", "reply": "ok"}',
                  6: b"   ", 7: b"[1, 2]"})
    out = cli("ingest", f, "--dataset", "d", "--meta-fields", "source,shard", "--max-chars", "45",
              "--json", workspace=ws_path).json()
    # lines: 1-3 good, 4 bad json, 5 empty prompt, 6 invalid utf8, 7 blank, 8 array, 9 no reply,
    # 10 wrong type, 11 oversize, 12 no id
    assert out["rows_added"] == 4 and out["rows_rejected"] == 7 and out["rows_read"] == 11
    assert out["rejects_by_reason"] == {"empty_text": 1, "invalid_utf8": 1, "malformed_json": 1,
                                        "missing_field": 1, "not_an_object": 1, "oversize": 1,
                                        "wrong_type": 1}
    rej = {r[0]: r[1:] for r in q(ws_path, "SELECT line, reason, field, file, raw FROM rejects")}
    assert rej[4][:2] == ("malformed_json", None) and rej[4][3] == "{this is not json"
    assert rej[5][:2] == ("empty_text", "prompt")
    assert rej[6][0] == "invalid_utf8" and "\\xE9" in rej[6][3]
    assert rej[8][0] == "not_an_object" and rej[9][:2] == ("missing_field", "reply")
    assert rej[10][:2] == ("wrong_type", "prompt") and rej[11][:2] == ("oversize", "prompt")
    assert all(v[2] == str(f) for v in rej.values())
    rows = q(ws_path, "SELECT row_id, prompt, reply, meta, content_hash, prompt_lang, reply_lang, "
                      "prompt_lang_conf, n_turns, source_line, record FROM samples ORDER BY sample_id")
    assert [r[0] for r in rows] == ["1", "b2", "3", "train.jsonl:12"]
    r0 = rows[0]
    assert json.loads(r0[3]) == {"source": "web", "shard": 3}
    assert r0[4] == hashlib.sha256((GOOD[0]["prompt"] + "\x1f" + GOOD[0]["reply"]).encode()).hexdigest()
    assert json.loads(r0[10]) == GOOD[0] and r0[8] == 2 and r0[9] == 1
    assert [(r[5], r[6]) for r in rows] == [("en", "en"), ("de", "de"), ("ru", "ru"), ("es", "es")]
    assert 0 < r0[7] <= 1
    v1 = q(ws_path, "SELECT version FROM datasets WHERE name = 'd'")[0][0]
    assert v1 >= 1

    # same file again: nothing added, everything counted unchanged, rejects not duplicated
    again = cli("ingest", f, "--dataset", "d", "--meta-fields", "source,shard", "--max-chars", "45",
                "--json", workspace=ws_path).json()
    assert (again["rows_added"], again["rows_unchanged"], again["rows_conflict"]) == (0, 4, 0)
    assert q(ws_path, "SELECT count(*) FROM samples")[0][0] == 4
    assert q(ws_path, "SELECT count(*) FROM rejects")[0][0] == 7
    assert q(ws_path, "SELECT version FROM datasets WHERE name = 'd'")[0][0] == v1

    # a changed row with a known id is reported, kept inspectable, never overwritten
    g = write_jsonl(tmp_path / "v2.jsonl", [
        {"id": 1, "prompt": GOOD[0]["prompt"], "reply": "Lyon."},            # conflict
        {"id": "b2", "prompt": GOOD[1]["prompt"], "reply": GOOD[1]["reply"]},  # unchanged
        {"id": 4, "prompt": "Who wrote Hamlet?", "reply": "Shakespeare wrote it."},
        {"id": 4, "prompt": "Who wrote Hamlet?", "reply": "Marlowe, obviously."},  # dup in file
    ])
    r = cli("ingest", g, "--dataset", "d", "--json", workspace=ws_path).json()
    assert (r["rows_added"], r["rows_unchanged"], r["rows_conflict"]) == (1, 1, 2)
    assert q(ws_path, "SELECT reply FROM samples WHERE row_id = '1'")[0][0] == GOOD[0]["reply"]
    conf = q(ws_path, "SELECT line, field, detail, raw FROM rejects WHERE reason = "
                      "'changed_row_conflict' ORDER BY line")
    assert [c[0] for c in conf] == [1, 4] and "Lyon." in conf[0][3] and "kept the stored" in conf[0][2]
    assert q(ws_path, "SELECT version FROM datasets WHERE name = 'd'")[0][0] == v1 + 1


def test_human_summary_and_missing_file_exit_code(ws_path, cli, tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", GOOD)
    r = cli("ingest", f, "--dataset", "d", workspace=ws_path)
    assert "added 3" in r.stderr and r.stdout == ""
    r = cli("ingest", tmp_path / "nope.jsonl", "--dataset", "d", workspace=ws_path, check=False)
    assert r.returncode == 2 and "nope.jsonl" in r.stderr and "no such file" in r.stderr
    bad = tmp_path / "data.txt"
    bad.write_text("hello")
    r = cli("ingest", bad, "--dataset", "d", workspace=ws_path, check=False)
    assert r.returncode == 2 and "unknown format" in r.stderr
    r = cli("ingest", f, "--dataset", "d", "--languages", "en,xx", workspace=ws_path, check=False)
    assert r.returncode == 2 and "xx" in r.stderr


def test_chat_formats(ws_path, cli, tmp_path):
    f = write_jsonl(tmp_path / "chat.jsonl", [
        {"id": "o1", "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What is the capital of Italy?"},
            {"role": "assistant", "content": "Rome is the capital of Italy."},
            {"role": "user", "content": "And of Spain?"},
            {"role": "assistant", "content": "Madrid."}]},
        {"id": "o2", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Describe "},
                                         {"type": "text", "text": "the picture."}]},
            {"role": "assistant", "content": "A cat sleeping on a sofa."}]},
        {"id": "s1", "conversations": [
            {"from": "human", "value": "Quelle heure est-il à Paris ?"},
            {"from": "gpt", "value": "Il est trois heures de l'après-midi."}]},
        {"id": "s2", "conversations": [{"from": "human", "value": "only a question"}]},
        {"id": "s3", "messages": "not a list"},
    ])
    out = cli("ingest", f, "--dataset", "chat", "--json", workspace=ws_path).json()
    assert out["rows_added"] == 3 and out["rows_rejected"] == 2
    rows = {r[0]: r[1:] for r in q(ws_path, "SELECT row_id, prompt, reply, n_turns, record, "
                                            "prompt_lang FROM samples")}
    assert rows["o1"][:3] == ("What is the capital of Italy?", "Rome is the capital of Italy.", 5)
    assert len(json.loads(rows["o1"][3])["messages"]) == 5      # all turns kept in record
    assert rows["o2"][:2] == ("Describe the picture.", "A cat sleeping on a sofa.")
    assert rows["s1"][:3] == ("Quelle heure est-il à Paris ?", "Il est trois heures de l'après-midi.", 2)
    assert rows["s1"][4] == "fr"
    rej = q(ws_path, "SELECT line, reason, field FROM rejects ORDER BY line")
    assert rej == [(4, "missing_field", "conversations: assistant turn"),
                   (5, "missing_field", "prompt")]


def _rows(n: int, prefix: str = "r") -> list[dict]:
    return [{"uid": f"{prefix}{i}", "question": f"What is {i} plus {i}?",
             "answer": f"The sum of {i} and {i} is {2 * i}.", "src": "s" + str(i % 3)}
            for i in range(n)]


def test_every_file_format_and_directories(ws_path, cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "data"
    (d / "sub" / "deeper").mkdir(parents=True)
    with gzip.open(d / "a.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in _rows(5, "gz")) + "\n")
    (d / "b.json").write_text(json.dumps(_rows(4, "arr")))
    pq.write_table(pa.Table.from_pylist(_rows(7, "pq")), d / "sub" / "c.parquet", row_group_size=3)
    csv = "uid,question,answer,src\n" + "".join(
        f'{r["uid"]},"{r["question"]}","{r["answer"]}",{r["src"]}\n' for r in _rows(3, "csv"))
    csv_bytes = csv.encode() + b'csvbad,"caf\xe9?","x",s\n' + b"csvshort,only two\n" \
        + b'csv007,"Multi\nline question?","yes",s1\n'
    (d / "sub" / "deeper" / "d.csv").write_bytes(csv_bytes)
    (d / "notes.md").write_text("ignored: not a data file")
    (d / ".hidden.jsonl").write_text("{broken")
    out = cli("ingest", d, "--dataset", "all", "--id-field", "uid", "--prompt-field", "question",
              "--reply-field", "answer", "--meta-fields", "src", "--batch-rows", "2", "--json",
              workspace=ws_path).json()
    files = [Path(f["file"]).name for f in out["files"]]
    assert files == ["a.jsonl.gz", "b.json", "c.parquet", "d.csv"]          # recursive, sorted
    assert [f["format"] for f in out["files"]] == ["jsonl", "json", "parquet", "csv"]
    assert out["rows_added"] == 5 + 4 + 7 + 4 and out["rows_rejected"] == 2
    got = {r[0] for r in q(ws_path, "SELECT row_id FROM samples")}
    assert {"gz0", "gz4", "arr3", "pq6", "csv0", "csv2", "csv007"} <= got
    assert q(ws_path, "SELECT prompt FROM samples WHERE row_id = 'csv007'")[0][0] == "Multi\nline question?"
    assert q(ws_path, "SELECT json_extract_string(meta, '$.src') FROM samples WHERE row_id = 'pq4'")[0][0] == "s1"
    rej = q(ws_path, "SELECT reason, line FROM rejects ORDER BY line")
    assert rej == [("invalid_utf8", 5), ("malformed_csv", 6)]
    assert q(ws_path, "SELECT source_line FROM samples WHERE row_id = 'arr2'")[0][0] == 3
    assert q(ws_path, "SELECT source_line FROM samples WHERE row_id = 'csv1'")[0][0] == 3
    # re-ingest of the whole directory is a no-op
    again = cli("ingest", d, "--dataset", "all", "--id-field", "uid", "--prompt-field", "question",
                "--reply-field", "answer", "--json", workspace=ws_path).json()
    assert again["rows_added"] == 0 and again["rows_unchanged"] == 20


def test_hf_save_to_disk_directory(ws_path, cli, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"id": f"h{i}", "prompt": f"Question number {i}?",
                                      "reply": f"Answer number {i}.", "lang": "en"}
                                     for i in range(6)])
    ds.save_to_disk(str(tmp_path / "hf"), num_shards=2)
    dd = datasets.DatasetDict({"train": ds.select(range(3)), "test": ds.select(range(3, 6))})
    dd.save_to_disk(str(tmp_path / "hfdict"))
    out = cli("ingest", tmp_path / "hf", "--dataset", "hf", "--json", workspace=ws_path).json()
    assert out["rows_added"] == 6 and out["files"][0]["format"] == "hf"
    out = cli("ingest", tmp_path / "hfdict", "--dataset", "hf2", "--meta-fields", "lang", "--json",
              workspace=ws_path).json()
    assert out["rows_added"] == 6
    assert sorted(r[0] for r in q(ws_path, "SELECT row_id FROM samples WHERE dataset = 'hf2'")) == \
        [f"h{i}" for i in range(6)]


def _start_ingest_until(ws_path, f, dataset, batch_rows, ready, *args, **popen):
    """Start `forensics ingest` on ``f`` (extra CLI ``args``) as a child process and return it,
    still running, once ``ready(ws_path)`` holds: the caller then kills or interrupts it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "forensics", "--workspace", str(ws_path), "ingest", str(f),
           "--dataset", dataset, "--batch-rows", str(batch_rows), "--no-langid", "-q", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, **popen)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if ready(ws_path):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "ingest finished before it could be stopped; make the file bigger"
    return proc


def _wal_over(nbytes):
    """Ready once the workspace's WAL exceeds ``nbytes`` (the ingest is writing)."""
    return lambda ws_path: (ws_path / "forensics.duckdb.wal").exists() \
        and (ws_path / "forensics.duckdb.wal").stat().st_size > nbytes


def _committed_samples(ws_path) -> bool:
    """Ready once a read-only open between two batches sees committed samples (the ingest
    holds the lock while it writes: a try that finds it locked just polls again)."""
    try:
        with forensics.open(ws_path, read_only=True, wait=0) as ws:
            return ws.one("SELECT count(*) FROM samples")[0] > 0
    except WorkspaceError:
        return False


def test_interrupted_ingest_resumes_without_duplicates(ws_path, tmp_path):
    n = 120_000
    f = tmp_path / "big.jsonl"
    with open(f, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "prompt": f"Question {i}: how many apples are there?",
                                 "reply": f"There are {i} apples in the basket."}) + "\n")
    # --hold-seconds 0: the ingest releases the workspace after each committed batch, so the
    # poll sees a committed batch as soon as there is one; kill -9 lands while it goes on
    proc = _start_ingest_until(ws_path, f, "big", 4000, _committed_samples, "--hold-seconds", "0",
                               stderr=subprocess.DEVNULL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = q(ws_path, "SELECT count(*) FROM samples")[0][0]
    assert 0 < part < n and part % 4000 == 0                   # whole batches only
    out = run_cli("ingest", f, "--dataset", "big", "--batch-rows", "4000", "--no-langid", "--json",
                  workspace=ws_path).json()
    assert out["files"][0]["resumed_from"] == part
    assert out["rows_added"] == n - part and out["rows_unchanged"] == 0
    cnt, distinct, lo, hi = q(ws_path, "SELECT count(*), count(DISTINCT row_id), min(source_line), "
                                       "max(source_line) FROM samples")[0]
    assert (cnt, distinct, lo, hi) == (n, n, 1, n)
    assert q(ws_path, "SELECT status FROM ingest_runs ORDER BY ingest_id") == [("interrupted",), ("done",)]


def test_ctrl_c_exits_130_and_the_run_resumes(ws_path, tmp_path):
    """SIGINT usually lands while DuckDB runs a statement; its client then raises "Query
    interrupted" rather than KeyboardInterrupt. Either way: exit 130, run 'interrupted',
    whole batches kept, and a re-run completes it without duplicates."""
    n = 60_000
    f = tmp_path / "ctrlc.jsonl"
    with open(f, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "prompt": f"Question {i}: how many pears?",
                                 "reply": f"There are {i} pears."}) + "\n")
    # a child started from a non-interactive shell may inherit SIGINT ignored: restore it
    proc = _start_ingest_until(
        ws_path, f, "c", 2000, _wal_over(300_000), stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"interrupted" in err and b"Traceback" not in err
    assert q(ws_path, "SELECT status FROM ingest_runs") == [("interrupted",)]
    part = q(ws_path, "SELECT count(*) FROM samples")[0][0]
    assert part % 2000 == 0
    out = run_cli("ingest", f, "--dataset", "c", "--batch-rows", "2000", "--no-langid", "--json",
                  workspace=ws_path).json()
    assert out["files"][0]["resumed_from"] == part and out["rows_added"] == n - part
    assert q(ws_path, "SELECT count(*), count(DISTINCT row_id) FROM samples")[0] == (n, n)


def test_stats_and_datasets(ws_path, cli, tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", GOOD + [
        {"id": 10, "prompt": "What is the tallest mountain on Earth?",
         "reply": "Эверест — самая высокая гора на Земле.", "source": "mt"},
        {"id": 11, "prompt": "", "reply": "x"}])
    cli("ingest", f, "--dataset", "s", "--meta-fields", "source", workspace=ws_path)
    st = cli("stats", "s", "--json", workspace=ws_path).json()
    assert st["rows"] == 4 and st["rejects"] == {"empty_text": 1}
    pairs = {(p["prompt_lang"], p["reply_lang"]): p["rows"] for p in st["language_pairs"]}
    assert pairs == {("en", "en"): 1, ("de", "de"): 1, ("ru", "ru"): 1, ("en", "ru"): 1}
    assert st["meta"]["source"][0] == {"value": "mt", "rows": 3, "share": 0.75}
    human = cli("stats", "s", workspace=ws_path).stdout
    assert "prompt_lang" in human and "empty_text" in human
    ds = cli("datasets", "--json", workspace=ws_path).json()["datasets"]
    assert [(d["dataset"], d["samples"], d["rejects"]) for d in ds] == [("s", 4, 1)]
    r = cli("stats", "nope", workspace=ws_path, check=False)
    assert r.returncode == 4 and "not found" in r.stderr


def test_quickstart_example_ingests_cleanly(ws_path, cli):
    out = cli("ingest", REPO / "examples" / "quickstart.jsonl", "--dataset", "quick",
              "--meta-fields", "source", "--json", workspace=ws_path).json()
    assert out["rows_added"] == 50 and out["rows_rejected"] == 0
    # the XQuAD source language of each question is what language ID finds for most rows
    agree = q(ws_path, "SELECT avg(CASE WHEN prompt_lang = split_part(json_extract_string(meta, "
                       "'$.source'), '.', 2) THEN 1 ELSE 0 END) FROM samples")[0][0]
    assert agree >= 0.9


def test_python_api(tmp_path):
    from forensics.ingest import IngestSummary, ingest
    from forensics.progress import Recorder

    f = write_jsonl(tmp_path / "api.jsonl", GOOD)
    with forensics.init(tmp_path / "w") as ws:
        rec = Recorder()
        s = ingest(ws, [f], "api", meta_fields=["source"], progress=rec)
        assert isinstance(s, IngestSummary) and s.rows_added == 3 and s.ok
        assert ws.sql("SELECT count(*) AS n FROM samples")["n"].to_list() == [3]
        # one task per file; a JSONL file counts its bytes up to its size
        size = f.stat().st_size
        assert rec.events[0] == ("start", 1, "api.jsonl", size) and rec.events[-1] == ("finish", 1)
        assert sum(e[2] for e in rec.events if e[0] == "advance") == size
        # no progress argument: silent, same result on a re-run (idempotent)
        assert ingest(ws, [f], "api", meta_fields=["source"]).rows_unchanged == 3


def test_broken_json_array_keeps_valid_elements_and_truncated_gzip_fails_alone(ws_path, cli, tmp_path):
    """A damaged JSON array no longer fails as a whole: complete elements are kept, the broken
    one is a malformed_json reject with its element number. A truncated gzip still fails
    alone (exit 2), other files are kept, and re-running adds no second unreadable_file reject."""
    arr = tmp_path / "broken.json"
    arr.write_text('[{"id": "x1", "prompt": "a b", "reply": "c d"}, {"id": "x2",')   # truncated
    mid = tmp_path / "mid.json"
    mid.write_text('[{"id": "m1", "prompt": "one", "reply": "uno"},\n'
                   ' {"id": "m2", "prompt": "two" "reply": "dos"},\n'            # missing comma
                   ' {"id": "m3", "prompt": "three", "reply": "tres"},\n'
                   ' {"id": "m4", "messages": [{"role": "user", "content": "four"},'
                   ' {"role": "assistant", "content": "cuatro"}]}]')
    gz = tmp_path / "trunc.jsonl.gz"
    gz.write_bytes(gzip.compress(json.dumps(GOOD[0]).encode() * 50)[:30])
    good = write_jsonl(tmp_path / "good.jsonl", GOOD)
    args = ("ingest", arr, mid, gz, good, "--dataset", "d", "--json")
    r = cli(*args, workspace=ws_path, check=False)
    assert r.returncode == 2 and "trunc.jsonl.gz" in r.stderr and "broken.json" not in r.stderr
    out = r.json()
    assert out["files_failed"] == 1 and out["rows_added"] == 1 + 3 + 3
    assert out["rejects_by_reason"] == {"malformed_json": 2, "unreadable_file": 1}
    assert [f["error"] is None for f in out["files"]] == [True, True, False, True]
    assert sorted(x[0] for x in q(ws_path, "SELECT row_id FROM samples WHERE source_file LIKE '%.json'")) \
        == ["m1", "m3", "m4", "x1"]
    assert q(ws_path, "SELECT source_line FROM samples WHERE row_id = 'm4'")[0][0] == 4
    rej = q(ws_path, "SELECT file, line, reason, detail, raw FROM rejects WHERE reason = 'malformed_json' "
                     "ORDER BY file")
    assert [(Path(x[0]).name, x[1]) for x in rej] == [("broken.json", 2), ("mid.json", 2)]
    assert "truncated" in rej[0][3] and rej[0][4].startswith('{"id": "x2"')
    assert "line 2" in rej[1][3] and '"m2"' in rej[1][4]
    # re-run: nothing new, and the file-level reject is not repeated
    again = cli(*args, workspace=ws_path, check=False)
    assert again.returncode == 2 and again.json()["rows_added"] == 0
    assert again.json()["rows_unchanged"] == 7
    assert q(ws_path, "SELECT count(*) FROM rejects WHERE reason = 'unreadable_file' AND line IS NULL")[0][0] == 1
    assert q(ws_path, "SELECT count(*) FROM rejects")[0][0] == 3


def test_json_array_recovery_streams_across_read_blocks(tmp_path):
    """The recovery reader keeps the same elements whatever the read-block size (elements and
    the corrupt region straddle block ends when blocks are tiny)."""
    from forensics.ingest.jsonarray import recover_json_array

    rows = [{"id": i, "prompt": f"question {i}", "reply": f"answer {i}"} for i in range(40)]
    text = json.dumps(rows, indent=1)
    broken = text.replace('"prompt": "question 7",', '"prompt": "question 7"', 1)
    f = tmp_path / "a.json"
    f.write_text(broken)
    seen = {}
    for block in (7, 64, 1 << 20):
        got, rejected = [], []
        for b in recover_json_array(f, str(f), 16, 0, read_block=block):
            got += [json.loads(t)["id"] for t in b.raw.to_pylist()]
            rejected += [r["line"] for r in b.pre_rejects]
        seen[block] = (got, rejected)
    assert seen[7] == seen[64] == seen[1 << 20]
    assert seen[7] == ([i for i in range(40) if i != 7], [8])
    # resume after 20 elements: the same elements from there on
    resumed = [json.loads(t)["id"] for b in recover_json_array(f, str(f), 16, 20)
               for t in b.raw.to_pylist()]
    assert resumed == list(range(20, 40))


def test_record_column_is_zstd_and_migration_11_keeps_existing_rows(tmp_path):
    """Migration 11 rebuilds ``samples`` so the verbatim record is ZSTD-compressed; an older
    workspace keeps every row, id and constraint through the rebuild."""
    f = write_jsonl(tmp_path / "m.jsonl", GOOD)
    root = tmp_path / "old"
    with forensics.init(root) as ws:
        from forensics.ingest import ingest

        ingest(ws, [f], "m", langid=False)
        ddl = ws.one("SELECT sql FROM duckdb_tables() WHERE table_name = 'samples'")[0]
        assert "record JSON USING COMPRESSION ZSTD" in ddl
        # make it look like a workspace from before migration 3
        ws.execute("CREATE TABLE s_old AS SELECT * FROM samples")
        ws.execute("DROP TABLE samples")
        from forensics.store import _V1
        import re

        ws.execute(re.search(r"CREATE TABLE IF NOT EXISTS samples \(.*?\n\);", _V1, re.S).group(0))
        ws.execute("INSERT INTO samples SELECT * FROM s_old")
        ws.execute("DROP TABLE s_old")
        ws.execute("DELETE FROM schema_version WHERE version = 3")
    with forensics.open(root) as ws:      # applies migration 3
        assert "USING COMPRESSION ZSTD" in ws.one(
            "SELECT sql FROM duckdb_tables() WHERE table_name = 'samples'")[0]
        rows = ws.rows("SELECT sample_id, row_id, record FROM samples ORDER BY sample_id")
        assert [r[1] for r in rows] == ["1", "b2", "3"] and json.loads(rows[0][2]) == GOOD[0]
        with pytest.raises(Exception, match="[Dd]uplicate key"):
            ws.execute("INSERT INTO samples (sample_id, dataset, row_id, content_hash) "
                       "VALUES (99, 'm', 'b2', 'x')")
        assert ws.one("SELECT count(*) FROM v_explanations")[0] == 0      # views still bind


def test_cli_batch_default_is_the_api_default():
    """The CLI hard-codes the default (importing forensics.ingest at CLI start would cost every
    command numpy+pyarrow); keep the two in step."""
    from forensics.cli.ingest import ingest as cmd
    from forensics.ingest import DEFAULT_BATCH_ROWS

    assert {p.name: p.default for p in cmd.params}["batch_rows"] == DEFAULT_BATCH_ROWS


def test_prefetch_builds_at_most_one_batch_ahead_and_reraises_in_order():
    """Parsed batches are large (122,880 rows): the reader may hold the consumer's batch plus
    ONE ready batch, never a third one blocked on a full queue (that cost ~0.4 GB of RSS)."""
    import threading
    import time as _time

    from forensics.ingest.readers import Prefetch

    made: list[int] = []
    lock = threading.Lock()

    def gen():
        for i in range(6):
            with lock:
                made.append(i)
            yield i
        raise ValueError("reader failed after 6")

    p = Prefetch(gen(), depth=1)
    assert next(p) == 0
    _time.sleep(0.5)                       # give the reader every chance to run ahead
    assert len(made) == 2                  # the held batch + one ready
    got = [0] + [next(p) for _ in range(5)]
    assert got == list(range(6))
    with pytest.raises(ValueError, match="after 6"):
        next(p)
    p.close()
