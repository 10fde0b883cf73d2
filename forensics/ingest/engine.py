"""The ingester: batches from :mod:`~forensics.ingest.readers`, parsed by
:mod:`~forensics.ingest.parse`, classified and committed into ``samples`` + ``rejects``;
resumable and idempotent. ``ingest()`` is the entry point.

Why this shape:

* **Vectorised.** Files are cut into batches of raw records (JSONL lines as bytes, or Arrow
  record batches from Parquet/CSV/HF-arrow converted to JSON text) and every per-row step —
  UTF-8 check, JSON parse, field extraction, chat-turn mapping, type/empty/size validation,
  sha256 content hash, duplicate and conflict classification — runs as ONE DuckDB SQL pass over
  the batch. No per-row Python on the hot path except language identification, which is a
  batched library call. Memory is bounded by the batch size, never by the file size.
* **Transactional per batch.** Samples, rejects, the file's ``ingest_progress`` (bytes/lines
  done) and the dataset version bump commit together. A kill between batches loses at most the
  batch in flight; a re-run resumes from ``ingest_progress`` and ``UNIQUE(dataset, row_id)``
  makes duplicates impossible anyway.
* **Never overwrite.** A row whose id exists with the same content hash is *unchanged*; with a
  different hash it is a *conflict*, recorded in ``rejects`` (``changed_row_conflict``) for
  inspection, and the stored sample stays as it was.

Training data is hostile input: values only ever reach DuckDB as registered Arrow data or as
bound parameters, never as SQL text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from forensics import progress as _progress
from forensics._interrupt import deferred_interrupt
from forensics.errors import InputError, UsageError
from forensics.workspace import POLL_SECONDS
from forensics.ingest.parse import DEFAULT_BATCH_ROWS, DEFAULT_MAX_CHARS, BatchParser, IngestOptions
from forensics.ingest.readers import Prefetch, iter_batches
from forensics.ingest.sources import RAW_LIMIT, Batch, Source, file_signature, resolve_sources

# Seconds an ingest holds the workspace before releasing it after a committed batch, so a
# reader waits about this plus one batch at most. Each release pauses 2 * POLL_SECONDS (the
# next batch is already parsed, so without a pause no waiting command would get in);
# reopening costs ~40 ms on a 200k-row workspace; closing checkpoints what was written.
HOLD_SECONDS = 2.0


@dataclass
class FileSummary:
    file: str
    format: str
    rows_read: int = 0
    rows_added: int = 0
    rows_unchanged: int = 0
    rows_conflict: int = 0
    rows_rejected: int = 0
    resumed_from: int = 0          # records skipped because an earlier run committed them
    error: str | None = None       # file-level failure (unreadable, not JSON, ...)


@dataclass
class IngestSummary:
    dataset: str
    ingest_id: int
    files: list[FileSummary] = field(default_factory=list)
    rows_read: int = 0
    rows_added: int = 0
    rows_unchanged: int = 0
    rows_conflict: int = 0
    rows_rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    files_failed: int = 0
    dataset_version: int = 0
    dataset_rows: int = 0
    seconds: float = 0.0
    parse_insert_seconds: float = 0.0
    langid_seconds: float = 0.0
    rows_per_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.files_failed == 0


class _Ingester:
    """Language identification and the per-batch transaction (classify, insert, reject, record
    progress) for one ``ingest()`` call."""

    def __init__(self, ws, dataset: str, opts: IngestOptions, memory_limit_mb: int):
        self.ws = ws
        self.dataset = dataset
        self.opts = opts
        self.memory_limit_mb = memory_limit_mb
        # parsing needs no workspace table: an in-memory database of its own keeps the reader
        # thread off the workspace, so the workspace can be released between batches
        self.parse_con = duckdb.connect()
        self.parser = BatchParser(self.parse_con, opts)
        self._configured = None
        self.t_langid = 0.0
        self.reasons: dict[str, int] = {}     # rows rejected this run (incl. already recorded)
        self._identifier = None

    @property
    def con(self):
        """The workspace connection, configured for ingesting each time it is (re)opened."""
        con = self.ws.con
        if con is not self._configured:
            # DuckDB's own progress bar prints to stdout, which must stay one JSON document
            # with --json; bounded memory: DuckDB would otherwise cache up to 80% of RAM of
            # freshly written data
            con.execute("SET enable_progress_bar = false")
            con.execute(f"SET memory_limit = '{int(self.memory_limit_mb)}MB'")
            self._configured = con
        return con

    def _langid(self, prompts: list[str], replies: list[str]):
        if not self.opts.langid:
            n = len(prompts)
            return [None] * n, [None] * n, [None] * n, [None] * n
        from forensics.language import detect as langid

        t0 = time.perf_counter()
        if self._identifier is None:
            self._identifier = langid.get_identifier(self.opts.languages)
        res = self._identifier.detect(list(prompts) + list(replies))
        self.t_langid += time.perf_counter() - t0
        n = len(prompts)
        p, r = res[:n], res[n:]
        return ([x.lang for x in p], [x.confidence if x.lang else None for x in p],
                [x.lang for x in r], [x.confidence if x.lang else None for x in r])

    def process(self, b: Batch, src: Source, fs: FileSummary, sig: str, ingest_id: int) -> None:
        con = self.con
        n_in = len(b.line_no)
        if n_in:
            con.register("_parsed", b.parsed)      # parsed on the reader thread (BatchParser.parsed)
            # classify valid rows: first occurrence per row_id in batch vs the stored samples
            con.execute("""
CREATE OR REPLACE TEMP TABLE _cls AS
WITH ok AS (
    SELECT *, row_number() OVER (PARTITION BY row_id ORDER BY line_no) AS rn,
           first(content_hash ORDER BY line_no) OVER (PARTITION BY row_id) AS first_hash
    FROM _parsed WHERE reason IS NULL
)
SELECT ok.line_no, ok.row_id, ok.content_hash, ok.rn, ok.first_hash,
       s.sample_id AS existing_id, s.content_hash AS existing_hash,
       CASE WHEN s.sample_id IS NOT NULL AND s.content_hash = ok.content_hash THEN 'unchanged'
            WHEN s.sample_id IS NOT NULL THEN 'conflict'
            WHEN ok.rn = 1 THEN 'new'
            WHEN ok.content_hash = ok.first_hash THEN 'unchanged'
            ELSE 'conflict' END AS status
FROM ok LEFT JOIN samples s ON s.dataset = ? AND s.row_id = ok.row_id
""", [self.dataset])
            cols = "p.line_no, p.prompt, p.reply" if self.opts.langid else \
                "p.line_no, NULL::VARCHAR AS prompt, NULL::VARCHAR AS reply"
            new = con.sql(
                f"SELECT {cols} FROM _parsed p JOIN _cls c USING (line_no) "
                "WHERE c.status = 'new' ORDER BY p.line_no").to_arrow_table()
        else:
            new = pa.table({"line_no": pa.array([], pa.int64()), "prompt": pa.array([], pa.string()),
                            "reply": pa.array([], pa.string())})
        n_new = new.num_rows
        if n_new and self.opts.langid:
            pl_, pc, rl, rc = self._langid(new.column("prompt").to_pylist(),
                                           new.column("reply").to_pylist())
        else:
            pl_ = pc = rl = rc = [None] * n_new
        # sample ids are drawn inside the transaction: an autocommitted nextval statement
        # would commit (and could trigger a WAL checkpoint) once more per batch
        try:
            with self.ws.transaction(con):
                ids = np.empty(0, np.int64)
                if n_new:
                    ids = np.sort(np.array([r[0] for r in con.execute(
                        "SELECT nextval('sample_id_seq') FROM range(?)", [n_new]).fetchall()], np.int64))
                langs = pa.table({
                    "line_no": new.column("line_no"),
                    "sample_id": pa.array(ids, pa.int64()),
                    "prompt_lang": pa.array(pl_, pa.string()), "prompt_lang_conf": pa.array(pc, pa.float64()),
                    "reply_lang": pa.array(rl, pa.string()), "reply_lang_conf": pa.array(rc, pa.float64()),
                })
                pre = pa.table({
                    "line": pa.array([r["line"] for r in b.pre_rejects], pa.int64()),
                    "reason": pa.array([r["reason"] for r in b.pre_rejects], pa.string()),
                    "field": pa.array([r["field"] for r in b.pre_rejects], pa.string()),
                    "detail": pa.array([r["detail"] for r in b.pre_rejects], pa.string()),
                    "raw": pa.array([r["raw"] for r in b.pre_rejects], pa.string()),
                })
                con.register("_langs", langs)
                con.register("_pre", pre)
                added = unchanged = conflict = rejected = 0
                by_reason: dict[str, int] = {}
                if n_in:
                    if n_new:
                        con.execute("""
INSERT INTO samples (sample_id, dataset, row_id, prompt, reply, record, meta, content_hash,
                     prompt_lang, prompt_lang_conf, reply_lang, reply_lang_conf, n_turns,
                     source_file, source_line, ingest_id)
SELECT l.sample_id, ?, p.row_id, p.prompt, p.reply, p.record, p.meta, p.content_hash,
       l.prompt_lang, l.prompt_lang_conf, l.reply_lang, l.reply_lang_conf, p.n_turns,
       ?, p.line_no, ?
FROM _parsed p JOIN _langs l USING (line_no)
""", [self.dataset, src.key, ingest_id])
                    counts = dict(con.execute(
                        "SELECT status, count(*) FROM _cls GROUP BY 1").fetchall())
                    added = n_new
                    unchanged = int(counts.get("unchanged", 0))
                    conflict = int(counts.get("conflict", 0))
                    # rejects: invalid rows and conflicts, once per (dataset, file, line, reason)
                    con.execute(f"""
INSERT INTO rejects (reject_id, dataset, ingest_id, file, line, reason, field, detail, raw)
SELECT nextval('reject_id_seq'), ?, ?, ?, line_no, reason, field, detail, raw_text FROM (
    SELECT line_no, reason, field,
           CASE reason
             WHEN 'missing_field' THEN 'field ' || field || ' is missing or null'
             WHEN 'wrong_type' THEN 'field ' || field || ' is not a string'
             WHEN 'empty_text' THEN 'field ' || field || ' is empty'
             WHEN 'oversize' THEN 'longer than the limit ({self.opts.max_chars} chars per text)'
             WHEN 'invalid_utf8' THEN 'line is not valid UTF-8 (raw shows escaped bytes)'
             WHEN 'malformed_json' THEN 'line is not valid JSON'
             WHEN 'not_an_object' THEN 'JSON value is not an object'
             WHEN 'malformed_chat' THEN 'chat turns are not a list of role/content objects'
           END AS detail, raw_text
    FROM _parsed WHERE reason IS NOT NULL
    UNION ALL
    SELECT c.line_no, 'changed_row_conflict', 'row_id',
           'row_id ' || c.row_id || ' already stored ' ||
           CASE WHEN c.existing_id IS NOT NULL THEN 'as sample ' || c.existing_id
                ELSE 'earlier in this file' END ||
           ' with different content (hash ' || left(coalesce(c.existing_hash, c.first_hash), 12) ||
           ' vs ' || left(c.content_hash, 12) || '); kept the stored row', left(p.record, 65536)
    FROM _cls c JOIN _parsed p USING (line_no) WHERE c.status = 'conflict'
) n
WHERE NOT EXISTS (SELECT 1 FROM rejects r WHERE r.dataset = ? AND r.file = ? AND r.line = n.line_no
                  AND r.reason = n.reason)
""", [self.dataset, ingest_id, src.key, self.dataset, src.key])
                    by_reason = dict(con.execute(
                        "SELECT reason, count(*) FROM _parsed WHERE reason IS NOT NULL GROUP BY 1"
                    ).fetchall())
                    if conflict:
                        by_reason["changed_row_conflict"] = conflict
                    rejected = sum(v for k, v in by_reason.items() if k != "changed_row_conflict")
                if b.pre_rejects:
                    con.execute("""
INSERT INTO rejects (reject_id, dataset, ingest_id, file, line, reason, field, detail, raw)
SELECT nextval('reject_id_seq'), ?, ?, ?, line, reason, field, detail, raw FROM _pre n
WHERE NOT EXISTS (SELECT 1 FROM rejects r WHERE r.dataset = ? AND r.file = ? AND r.line = n.line
                  AND r.reason = n.reason)
""", [self.dataset, ingest_id, src.key, self.dataset, src.key])
                    rejected += len(b.pre_rejects)
                    for r in b.pre_rejects:
                        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
                con.execute("""
INSERT INTO ingest_progress (dataset, file, file_sig, lines_done, bytes_done, finished, updated_at)
VALUES (?, ?, ?, ?, ?, false, current_timestamp)
ON CONFLICT (dataset, file, file_sig) DO UPDATE SET lines_done = excluded.lines_done,
    bytes_done = excluded.bytes_done, updated_at = excluded.updated_at
""", [self.dataset, src.key, sig, b.resume_units, b.resume_bytes])
                read = int(con.execute("SELECT count(*) FROM _parsed").fetchall()[0][0]) if n_in else 0
                read += len(b.pre_rejects)
                con.execute("""
UPDATE ingest_runs SET rows_read = rows_read + ?, rows_added = rows_added + ?,
    rows_unchanged = rows_unchanged + ?, rows_conflict = rows_conflict + ?,
    rows_rejected = rows_rejected + ? WHERE ingest_id = ?
""", [read, added, unchanged, conflict, rejected, ingest_id])
                if added:
                    self.ws.bump_dataset_version(self.dataset)
        finally:
            con.unregister("_langs")
            con.unregister("_pre")
            if n_in:
                con.unregister("_parsed")
                b.parsed = None
        for k, v in by_reason.items():
            self.reasons[k] = self.reasons.get(k, 0) + int(v)
        fs.rows_read += read
        fs.rows_added += added
        fs.rows_unchanged += unchanged
        fs.rows_conflict += conflict
        fs.rows_rejected += rejected


def ingest(ws, paths: Sequence[str | os.PathLike] | str | os.PathLike, dataset: str,
           id_field: str | None = "id", prompt_field: str = "prompt", reply_field: str = "reply",
           meta_fields: Sequence[str] | str | None = None, *, max_chars: int = DEFAULT_MAX_CHARS,
           languages: Sequence[str] | None = None, langid: bool = True,
           batch_rows: int = DEFAULT_BATCH_ROWS, memory_limit_mb: int = 512,
           progress: _progress.Progress | None = None,
           hold_seconds: float = HOLD_SECONDS) -> IngestSummary:
    """Ingest files/directories into ``dataset``; returns counts. Safe to re-run and to resume.

    ``paths``: JSONL (.gz), JSON arrays, Parquet, CSV/TSV, HF ``save_to_disk`` directories, or
    directories of those (recursive, sorted). Rows that cannot be used land in ``rejects``.
    ``memory_limit_mb`` caps DuckDB's buffer pool during the ingest (restored afterwards);
    the parsed batches in flight live outside it, as Arrow (1M rows, bench/ingest.py: peak RSS
    1.65 GiB at 512 MB, 2.15 GiB at 1 GB, same speed).
    ``hold_seconds``: after a committed batch the workspace connection is released (other
    commands get in) once it has been held this long; the next batch reopens it, waiting up
    to ``ws.wait``; recorded in ``ingest_runs.options``. Wrap the call in ``ws.locked()`` to
    hold it throughout.
    ``progress`` receives one task per file: bytes for JSONL (the resumed part counted as done
    at the start), records for the other formats (total unknown); ``None`` is silent.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if isinstance(meta_fields, str):
        meta_fields = [m.strip() for m in meta_fields.split(",") if m.strip()]
    if not dataset or not dataset.strip():
        raise UsageError("--dataset must be a non-empty name")
    if batch_rows < 1:
        raise UsageError("batch size must be at least 1")
    if max_chars < 1:
        raise UsageError("--max-chars must be at least 1")
    opts = IngestOptions(id_field=id_field or None, prompt_field=prompt_field,
                         reply_field=reply_field, meta_fields=tuple(meta_fields or ()),
                         max_chars=max_chars, languages=tuple(languages) if languages else None,
                         langid=langid, batch_rows=batch_rows)
    if opts.languages and opts.langid:
        from forensics.language import detect as _lid

        _lid.validate_languages(opts.languages)
    sources = resolve_sources(paths)
    eng = _Ingester(ws, dataset, opts, memory_limit_mb)
    old_limit = ws.one("SELECT current_setting('memory_limit')")[0]
    eng.con     # noqa: B018 - applies the ingest settings
    t0 = time.perf_counter()
    ws.ensure_dataset(dataset)
    # a previous run killed mid-way can never still be running: DuckDB admits one writer
    ws.execute("UPDATE ingest_runs SET status = 'interrupted' WHERE dataset = ? AND status = 'running'",
               [dataset])
    ingest_id = ws.next_id("ingest_id_seq")
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(opts).items()}
    options["hold_seconds"] = hold_seconds    # the lock timing used, recorded with the run
    ws.execute("INSERT INTO ingest_runs (ingest_id, dataset, files, options, status) "
               "VALUES (?, ?, ?, ?, 'running')",
               [ingest_id, dataset, json.dumps([s.key for s in sources]), json.dumps(options)])
    summary = IngestSummary(dataset=dataset, ingest_id=ingest_id)
    prog = _progress.resolve(progress)
    status = "failed"
    held_since = time.monotonic()
    stop = contextlib.ExitStack()
    intr = stop.enter_context(deferred_interrupt())
    try:
        for src in sources:
            intr.check()
            fs = FileSummary(file=src.key, format=src.fmt)
            summary.files.append(fs)
            try:
                sig = file_signature(src)     # InputError when the file cannot be read at all
            except InputError as e:
                fs.error = e.message
                summary.files_failed += 1
                _record_file_reject(ws, dataset, ingest_id, src.key, e.message)
                continue
            row = ws.one("SELECT lines_done, bytes_done, finished FROM ingest_progress "
                         "WHERE dataset = ? AND file = ? AND file_sig = ?",
                         [dataset, src.key, sig])
            skip_units = skip_bytes = 0
            if row is not None and not row[2]:
                skip_units, skip_bytes = int(row[0] or 0), int(row[1] or 0)
                fs.resumed_from = skip_units
            name = Path(src.key).name
            by_bytes = src.fmt == "jsonl"
            # JSONL counts bytes against the file size; columnar sources count records
            task = prog.start(name if by_bytes else f"{name} (records)",
                              (src.size or None) if by_bytes else None)
            if by_bytes and skip_bytes:
                prog.advance(task, skip_bytes)
            done_units, done_bytes = skip_units, skip_bytes
            reader = Prefetch(eng.parser.parsed(
                iter_batches(src, opts.batch_rows, skip_units, skip_bytes), name))
            try:
                for b in reader:
                    eng.process(b, src, fs, sig, ingest_id)
                    if time.monotonic() - held_since >= hold_seconds \
                            and ws.release(pause=2 * POLL_SECONDS):
                        # let waiting readers and writers in; the next batch reopens (waiting
                        # up to ws.wait for them) and a crash in between resumes from here
                        held_since = time.monotonic()
                    if by_bytes:
                        prog.advance(task, b.resume_bytes - done_bytes)
                        done_bytes = b.resume_bytes
                    else:
                        prog.advance(task, b.resume_units - done_units)
                    done_units = b.resume_units
                    intr.check()     # Ctrl-C takes effect here, after a whole batch
            except InputError as e:
                fs.error = e.message
                summary.files_failed += 1
                _record_file_reject(ws, dataset, ingest_id, src.key, e.message)
                continue
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                fs.error = f"{src.key}: cannot read: {e}"
                summary.files_failed += 1
                _record_file_reject(ws, dataset, ingest_id, src.key, fs.error)
                continue
            finally:
                reader.close()
                prog.finish(task)
            ws.execute("""
INSERT INTO ingest_progress (dataset, file, file_sig, lines_done, bytes_done, finished, updated_at)
VALUES (?, ?, ?, ?, NULL, true, current_timestamp)
ON CONFLICT (dataset, file, file_sig) DO UPDATE SET lines_done = excluded.lines_done,
    bytes_done = NULL, finished = true, updated_at = excluded.updated_at
""", [dataset, src.key, sig, done_units])
        status = "done" if summary.files_failed == 0 else "done_with_errors"
    except BaseException as e:
        # a Ctrl-C DuckDB caught mid-statement comes back wrapped in a DuckDB error: report it
        # as the interrupt it is (exit 130, run marked interrupted, a re-run resumes)
        if intr.explains(e):
            status = "interrupted"
            if isinstance(e, KeyboardInterrupt):
                raise
            raise KeyboardInterrupt from e
        raise
    finally:
        try:
            ws.execute("UPDATE ingest_runs SET status = ?, finished_at = current_timestamp "
                       "WHERE ingest_id = ?", [status, ingest_id])
            ws.execute("SET memory_limit = ?", [old_limit])
        except Exception:  # pragma: no cover - connection unusable after a crash
            pass
        eng.parse_con.close()
        stop.close()
    for fs in summary.files:
        summary.rows_read += fs.rows_read
        summary.rows_added += fs.rows_added
        summary.rows_unchanged += fs.rows_unchanged
        summary.rows_conflict += fs.rows_conflict
        summary.rows_rejected += fs.rows_rejected
    if summary.files_failed:
        eng.reasons["unreadable_file"] = summary.files_failed
    summary.rejects_by_reason = dict(sorted(eng.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    summary.dataset_version = ws.dataset_version(dataset)
    summary.dataset_rows = int(ws.one("SELECT count(*) FROM samples WHERE dataset = ?", [dataset])[0])
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.langid_seconds = round(eng.t_langid, 3)
    summary.parse_insert_seconds = round(summary.seconds - eng.t_langid, 3)
    summary.rows_per_s = round(summary.rows_read / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def _record_file_reject(ws, dataset: str, ingest_id: int, file: str, message: str) -> None:
    """One ``unreadable_file`` reject per (dataset, file, message): re-running an ingest over
    the same broken file must not pile up copies (every other reject is idempotent too)."""
    detail = message[:RAW_LIMIT]
    ws.execute("INSERT INTO rejects (reject_id, dataset, ingest_id, file, line, reason, detail) "
               "SELECT nextval('reject_id_seq'), ?, ?, ?, NULL, 'unreadable_file', ? "
               "WHERE NOT EXISTS (SELECT 1 FROM rejects WHERE dataset = ? AND file = ? "
               "AND reason = 'unreadable_file' AND line IS NULL AND detail = ?)",
               [dataset, ingest_id, file, detail, dataset, file, detail])
