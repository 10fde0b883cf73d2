"""Getting training data into the workspace: ``samples`` + ``rejects``, resumable and idempotent.

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
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from forensics._interrupt import deferred_interrupt
from forensics.errors import InputError, UsageError

JSONL_EXT = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json.gz")
JSON_EXT = (".json",)
PARQUET_EXT = (".parquet", ".pq")
CSV_EXT = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
ARROW_EXT = (".arrow",)
SUPPORTED_EXT = JSONL_EXT + JSON_EXT + PARQUET_EXT + CSV_EXT + ARROW_EXT

USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "gpt", "model", "bot", "chatgpt")

RAW_LIMIT = 65536          # characters of an offending record kept in rejects.raw
DEFAULT_BATCH_ROWS = 122_880   # one DuckDB row group: inserts write row groups directly, not via the WAL
DEFAULT_MAX_CHARS = 200_000
MAX_LINE_BYTES = 256 * 1024 * 1024   # a single "line" beyond this is skipped unparsed
READ_BLOCK = 8 * 1024 * 1024


# ---------------------------------------------------------------------------- public types
@dataclass
class IngestOptions:
    """How records map onto samples. Field names are top-level keys of each record."""

    id_field: str | None = "id"
    prompt_field: str = "prompt"
    reply_field: str = "reply"
    meta_fields: Sequence[str] = ()
    max_chars: int = DEFAULT_MAX_CHARS
    languages: Sequence[str] | None = None     # langid candidate set (None = library default)
    langid: bool = True
    batch_rows: int = DEFAULT_BATCH_ROWS


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


# ---------------------------------------------------------------------------- batches
@dataclass
class _Batch:
    """One unit of work: raw records with their 1-based line/record numbers."""

    file: str
    line_no: np.ndarray            # int64, 1-based
    raw: pa.Array                  # large_binary: one JSON text per record
    resume_units: int              # lines/records done in this file after this batch
    resume_bytes: int | None       # byte offset after this batch (JSONL only)
    pre_rejects: list[dict] = field(default_factory=list)   # found while reading
    progress_bytes: int = 0        # for the progress bar
    parsed: pa.Table | None = None  # _parse_sql's output, filled by _Ingester.parse


def _lines_array(buf: bytes, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """Lines buf[starts[i]:ends[i]] minus their trailing \\n / \\r\\n, as one Arrow array:
    ``large_string`` when the batch is valid UTF-8 (checked by Arrow's SIMD validator; DuckDB
    then scans the text zero-copy), else ``large_binary`` (the SQL pass finds the bad rows).

    Arrow values are contiguous slices of one buffer, so the terminators must be cut out of
    the buffer. Raw newlines cannot occur inside a JSON line (JSON escapes control
    characters), so when the batch holds no carriage return the new buffer is one C-level
    ``bytes.replace`` (~20x faster than a numpy mask-copy); otherwise a mask-copy drops each
    terminator exactly. Trimming in SQL instead (``rtrim``) cost more than a second per 50k rows."""
    n = len(starts)
    chunk = buf[:int(ends[-1])] if n else b""
    is_nl = arr[ends - 1] == 10
    if b"\r" not in chunk:
        data = chunk.replace(b"\n", b"")
        lengths = (ends - starts) - is_nl
    else:
        last = ends - 1
        drop = np.zeros(len(chunk), dtype=bool)
        drop[last[is_nl]] = True
        cr = last[is_nl] - 1
        cr = cr[(cr >= starts[is_nl]) & (arr[np.maximum(cr, 0)] == 13)]
        drop[cr] = True
        removed = np.bincount(np.searchsorted(ends, np.flatnonzero(drop), side="right"),
                              minlength=n)[:n]
        lengths = (ends - starts) - removed
        data = np.ascontiguousarray(arr[:len(chunk)][~drop]) if drop.any() else chunk
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    bufs = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    text = pa.LargeStringArray.from_buffers(n, bufs[1], bufs[2])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, bufs)
    return text


class _Prefetch:
    """Run a batch generator one batch ahead in a background thread.

    Why: reading and cutting the next batch (file reads, newline search, UTF-8 check) is
    Python/numpy work, while the current batch spends most of its time inside DuckDB, which
    releases the GIL. Overlapping the two keeps both cores busy. At most ``depth`` batches
    are ready ahead of the one the consumer holds, so memory stays bounded; errors raised by the reader are re-raised
    in the consumer, in order; ``close()`` stops the thread (Ctrl-C, a failed batch)."""

    _END = object()

    def __init__(self, it: Iterator[_Batch], depth: int = 1):
        import queue
        import threading

        self._q: "queue.Queue" = queue.Queue()
        # a batch is produced only while fewer than depth + 1 exist: the one the consumer holds
        # and ``depth`` ready ones. (A bounded queue alone lets the producer build one more
        # batch and block holding it: with parsed 122,880-row batches that third batch was
        # ~0.4 GB of peak RSS.)
        self._slots = threading.Semaphore(depth + 1)
        self._holding = False
        self._stop = threading.Event()
        self._it = it
        self._t = threading.Thread(target=self._run, name="ingest-reader", daemon=True)
        self._t.start()

    def _slot(self) -> bool:
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.1):
                return True
        return False

    def _run(self) -> None:
        try:
            while self._slot():
                try:
                    b = next(self._it)
                except StopIteration:
                    self._q.put(self._END)
                    return
                self._q.put(b)
        except BaseException as e:   # handed to the consumer, raised there
            self._q.put(e)
        finally:
            close = getattr(self._it, "close", None)
            if close is not None and self._stop.is_set():
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self) -> "_Prefetch":
        return self

    def __next__(self) -> _Batch:
        if self._holding:            # the consumer is done with the batch it held
            self._slots.release()
        item = self._q.get()
        self._holding = True
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)


def _open_bytes(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _iter_jsonl(path: Path, file_key: str, batch_rows: int, skip_bytes: int, skip_lines: int
                ) -> Iterator[_Batch]:
    """JSONL in constant memory: read blocks, cut at newlines, at most batch_rows per batch."""
    fh = _open_bytes(path)
    try:
        pos = 0
        if skip_bytes:
            if isinstance(fh, gzip.GzipFile):
                remaining = skip_bytes
                while remaining:
                    got = fh.read(min(remaining, READ_BLOCK))
                    if not got:
                        break
                    remaining -= len(got)
            else:
                fh.seek(skip_bytes)
            pos = skip_bytes
        line = skip_lines            # lines consumed before buf
        buf = b""
        first_block = pos == 0
        eof = False
        while not eof or buf:
            n_nl = buf.count(b"\n")   # the carried-over tail; new blocks are counted once each
            # fill until batch_rows newlines are buffered (or EOF); blocks are collected in a
            # list and joined once (``buf += block`` re-copied the growing buffer every block)
            parts = [buf]
            while not eof and n_nl < batch_rows:
                block = fh.read(READ_BLOCK)
                if not block:
                    eof = True
                    break
                if first_block:
                    first_block = False
                    stripped = _strip_bom(block, path)
                    pos += len(block) - len(stripped)     # resume offsets are file offsets
                    block = stripped
                parts.append(block)
                n_nl += block.count(b"\n")
                if n_nl == 0 and sum(map(len, parts)) > MAX_LINE_BYTES:
                    break
            buf = b"".join(parts) if len(parts) > 1 else buf
            parts = []
            if not buf:
                break
            arr = np.frombuffer(buf, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            pre: list[dict] = []
            if len(nl) > batch_rows:
                nl = nl[:batch_rows]
            if len(nl) == 0:
                if not eof and len(buf) > MAX_LINE_BYTES:
                    # one enormous line: skip it without parsing
                    skipped = len(buf)
                    while True:
                        block = fh.read(READ_BLOCK)
                        if not block:
                            eof = True
                            buf = b""
                            break
                        k = block.find(b"\n")
                        if k >= 0:
                            skipped += k + 1
                            buf = block[k + 1:]
                            break
                        skipped += len(block)
                    line += 1
                    pre.append(dict(line=line, reason="oversize", field=None,
                                    detail=f"line of {skipped} bytes exceeds {MAX_LINE_BYTES}",
                                    raw=None))
                    pos += skipped
                    yield _Batch(file_key, np.zeros(0, np.int64), pa.array([], pa.large_binary()),
                                 line, pos, pre, skipped)
                    continue
                ends = np.array([len(buf)], dtype=np.int64)   # last line without newline
            else:
                ends = nl + 1
                if eof and ends[-1] < len(buf) and len(nl) < batch_rows:
                    ends = np.append(ends, len(buf))
            starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
            cut = int(ends[-1])
            raw = _lines_array(buf, arr, starts, ends)
            line_no = np.arange(line + 1, line + 1 + len(starts), dtype=np.int64)
            line += len(starts)
            pos += cut
            buf = buf[cut:]
            yield _Batch(file_key, line_no, raw, line, pos, pre, cut)
    finally:
        fh.close()


def _strip_bom(block: bytes, path: Path) -> bytes:
    if block.startswith(b"\xef\xbb\xbf"):
        return block[3:]
    if block.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            f"{path}: file is UTF-16 encoded; ingest reads UTF-8",
            hint=f"convert it first, e.g. iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8.jsonl",
        )
    return block


def _records_to_batch(file_key: str, rb: pa.RecordBatch, first: int, units_before: int,
                      pre: list[dict] | None = None) -> _Batch:
    """Columnar records -> JSON text per row (DuckDB to_json), numbered from first."""
    import duckdb

    n = rb.num_rows
    line_no = np.arange(first, first + n, dtype=np.int64)
    if n == 0:
        raw = pa.array([], pa.large_string())
    else:
        cols = [c if not isinstance(c, pa.ChunkedArray) else c.combine_chunks() for c in rb.columns]
        rec = pa.StructArray.from_arrays(cols, list(rb.schema.names))
        con = duckdb.connect()
        try:
            con.register("_cols", pa.table({"rec": rec}))
            raw = con.sql("SELECT CAST(to_json(rec) AS VARCHAR) AS raw FROM _cols") \
                .to_arrow_table().column(0).combine_chunks().cast(pa.large_string())
        finally:
            con.close()
    return _Batch(file_key, line_no, raw, units_before + n, None, pre or [], n)


def _iter_parquet(path: Path, file_key: str, batch_rows: int, skip: int) -> Iterator[_Batch]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    done = 0
    # row groups wholly before the resume point are not even read
    groups = []
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if done + n <= skip:
            done += n
            continue
        groups.append(g)
    if not groups:
        return
    yield from _resume_batches(file_key, pf.iter_batches(batch_size=batch_rows, row_groups=groups),
                               skip, done)


def _resume_batches(file_key: str, record_batches: Iterable[pa.RecordBatch], skip: int,
                    done: int = 0) -> Iterator[_Batch]:
    """Columnar sources: yield batches past the resume point ``skip`` (records an earlier run
    committed), numbering records from 1 across the whole source; ``done`` counts records
    already passed over without reading (e.g. skipped Parquet row groups)."""
    for rb in record_batches:
        start = done
        done += rb.num_rows
        if done <= skip:
            continue
        if start < skip:
            rb = rb.slice(skip - start)
            start = skip
        yield _records_to_batch(file_key, rb, start + 1, start)


def _iter_arrow_files(files: Sequence[Path], file_key: str, batch_rows: int, skip: int
                      ) -> Iterator[_Batch]:
    """HF ``save_to_disk`` shards: Arrow IPC streams read with pyarrow, memory-mapped."""
    def slices() -> Iterator[pa.RecordBatch]:
        for f in files:
            with pa.memory_map(str(f), "r") as src:
                try:
                    reader = pa.ipc.open_stream(src)
                except pa.ArrowInvalid:
                    reader = pa.ipc.open_file(src)
                    batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
                else:
                    batches = iter(reader)
                for big in batches:
                    for off in range(0, big.num_rows, batch_rows):
                        yield big.slice(off, batch_rows)

    yield from _resume_batches(file_key, slices(), skip)


def _iter_csv(path: Path, file_key: str, batch_rows: int, skip: int) -> Iterator[_Batch]:
    """CSV with every column read as bytes (no type guessing: ids like 007 stay 007; invalid
    UTF-8 is found per row, not per file). Numbers are data records, header excluded, +1 so
    they match file lines when no field spans lines."""
    import csv as _csv
    import pyarrow.csv as pacsv

    delim = "\t" if ".tsv" in path.name else ","
    with _open_bytes(path) as fh:
        head = _strip_bom(fh.readline(), path).decode("utf-8", errors="replace")
    names = next(_csv.reader([head], delimiter=delim), [])
    if not names:
        return
    invalid: list[dict] = []

    def on_invalid(row) -> str:
        invalid.append(dict(line=row.number, reason="malformed_csv", field=None,
                            detail=f"expected {row.expected_columns} columns, got {row.actual_columns}",
                            raw=(row.text or "")[:RAW_LIMIT]))
        return "skip"

    reader = pacsv.open_csv(
        _open_bytes(path),
        read_options=pacsv.ReadOptions(block_size=1 << 22, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True,
                                         invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.binary() for n in names}, strings_can_be_null=False,
            quoted_strings_can_be_null=False),
    )
    done = 0
    for rb in reader:
        for off in range(0, rb.num_rows, batch_rows):
            part = rb.slice(off, batch_rows)
            start = done
            done += part.num_rows
            pre, invalid[:] = list(invalid), []
            if done <= skip:
                continue
            if start < skip:
                part = part.slice(skip - start)
                start = skip
            part, bad = _decode_columns(part)
            for i in bad:
                pre.append(dict(line=start + i + 2, reason="invalid_utf8", field=None,
                                detail="row is not valid UTF-8", raw=None))
            b = _records_to_batch(file_key, part, start + 2, start, pre)
            b.resume_units = done
            b.line_no = np.arange(start + 2, start + 2 + part.num_rows, dtype=np.int64)
            if bad:   # rows blanked by _decode_columns are rejected already: drop them
                keep = np.ones(part.num_rows, bool)
                keep[list(bad)] = False
                b.line_no = b.line_no[keep]
                b.raw = b.raw.filter(pa.array(keep))
            yield b


def _decode_columns(rb: pa.RecordBatch) -> tuple[pa.RecordBatch, set[int]]:
    cols, bad = [], set()
    for c in rb.columns:
        try:
            cols.append(c.cast(pa.string()))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            vals = []
            for i, v in enumerate(c.to_pylist()):
                try:
                    vals.append(None if v is None else v.decode("utf-8"))
                except UnicodeDecodeError:
                    bad.add(i)
                    vals.append(None)
            cols.append(pa.array(vals, pa.string()))
    return pa.RecordBatch.from_arrays(cols, names=rb.schema.names), bad


def _iter_json_array(path: Path, file_key: str, batch_rows: int, skip: int) -> Iterator[_Batch]:
    """A top-level JSON array; numbers are 1-based element indexes.

    Fast path: DuckDB's streaming ``read_json_objects(format='array')``. DuckDB stops at the
    first syntax error, so when it fails (a truncated download, one corrupt element) the file
    is re-read from the first element not yet delivered by :func:`_iter_json_array_recover`,
    which keeps every element that parses and rejects the broken ones with their position."""
    import duckdb

    con = duckdb.connect()
    done = 0
    try:
        try:
            reader = con.sql(
                "SELECT CAST(json AS VARCHAR) AS raw FROM read_json_objects(?, format='array')",
                params=[str(path)],
            ).to_arrow_reader(batch_rows)
            while True:
                try:
                    rb = reader.read_next_batch()
                except StopIteration:
                    return
                start = done
                done += rb.num_rows
                if done <= skip:
                    continue
                col = rb.column(0)
                if start < skip:
                    col = col.slice(skip - start)
                    start = skip
                yield _Batch(file_key, np.arange(start + 1, done + 1, dtype=np.int64),
                             col.cast(pa.large_string()), done, None, [], len(col))
        except (duckdb.Error, pa.ArrowInvalid, OSError) as e:   # DuckDB's reader raises OSError
            first_error = _short(e)
    finally:
        con.close()
    yield from _iter_json_array_recover(path, file_key, batch_rows, max(skip, done), first_error)


def _iter_json_array_recover(path: Path, file_key: str, batch_rows: int, skip: int,
                             why: str = "") -> Iterator[_Batch]:
    """Element-by-element reading of a damaged JSON array, in bounded memory.

    Python's C scanner (``JSONDecoder.raw_decode``) finds where each element ends. A broken
    element becomes a ``malformed_json`` reject (element number, file line and character
    offset in ``detail``); reading resumes at the next ``{`` that follows a comma and parses
    as a complete value followed by ``,`` or ``]``. An array cut short (truncated file) keeps
    every complete element and rejects the incomplete tail. Elements after a broken one are
    numbered from the recovery point (the true count inside a corrupt region is unknowable).
    Elements holding invalid UTF-8 are rejected (``invalid_utf8``). The buffer holds at most
    the current element plus a few read blocks (elements are capped at MAX_LINE_BYTES)."""
    import re

    skip_ws = re.compile(r"[\s,]*")
    next_obj = re.compile(r",\s*\{")
    dec = json.JSONDecoder()
    with open(path, "rb") as fh:
        buf = _strip_bom(fh.read(READ_BLOCK), path).decode("utf-8", errors="surrogateescape")
        eof = False
        base_line, base_char = 1, 0          # file line / character offset of buf[0]
        pos = len(buf) - len(buf.lstrip())
        if buf[pos:pos + 1] != "[":
            raise InputError(f"{path}: not a JSON array (does not start with '[')")
        pos += 1
        index = 0                            # elements seen: delivered, skipped or rejected
        texts: list[str] = []
        nums: list[int] = []
        pre: list[dict] = []

        def more(keep_from: int) -> int:
            """Append a block, dropping buf[:keep_from]; returns the shift (0 at EOF)."""
            nonlocal buf, eof, base_line, base_char
            if eof:
                return 0
            block = fh.read(READ_BLOCK)
            if not block:
                eof = True
                return 0
            base_line += buf.count("\n", 0, keep_from)
            base_char += keep_from
            buf = buf[keep_from:] + block.decode("utf-8", errors="surrogateescape")
            return keep_from if keep_from else -1        # -1: grew without shifting

        def where(at: int) -> str:
            return f"line {base_line + buf.count(chr(10), 0, at)}, char {base_char + at}"

        def batch() -> _Batch:
            nonlocal texts, nums, pre
            b = _Batch(file_key, np.array(nums, dtype=np.int64),
                       pa.array(texts, pa.large_string()), index, None, pre,
                       sum(map(len, texts)))
            texts, nums, pre = [], [], []
            return b

        while True:
            pos = skip_ws.match(buf, pos).end()
            while pos >= len(buf):
                shift = more(pos)
                if not shift:
                    break
                pos = 0 if shift > 0 else pos
                pos = skip_ws.match(buf, pos).end()
            if pos >= len(buf) or buf[pos] == "]":
                break                         # the end, or EOF without the closing ']'
            start = pos
            try:
                _, end = dec.raw_decode(buf, start)
            except json.JSONDecodeError as e:
                ran_out = e.pos >= len(buf) - 16 or e.msg.startswith("Unterminated string")
                if not eof and (ran_out or len(buf) - start < READ_BLOCK) \
                        and len(buf) - start < MAX_LINE_BYTES:
                    shift = more(start)
                    if shift:
                        pos = 0 if shift > 0 else start
                        continue              # the element may go on in the next block
                index += 1
                if index > skip:
                    msg = ("the file ends inside this element (truncated array)"
                           if eof and ran_out else f"{e.msg} at {where(e.pos)}")
                    pre.append(dict(
                        line=index, reason="malformed_json", field=None,
                        detail=(f"element {index} at {where(start)}: {msg}"
                                + (f" (DuckDB: {why})" if why else ""))[:RAW_LIMIT],
                        raw=buf[start:start + RAW_LIMIT].encode("utf-8", "replace").decode()))
                # resynchronise: the next '{' after a comma that parses and is followed by , or ]
                search, nxt = max(e.pos, start + 1), None
                while nxt is None:
                    m = next_obj.search(buf, search)
                    if m is None:
                        if len(buf) - start >= MAX_LINE_BYTES:
                            break
                        shift = more(start)
                        if not shift:
                            break
                        if shift > 0:
                            search, start = max(0, search - shift), 0
                        continue
                    cand = m.end() - 1
                    try:
                        _, cend = dec.raw_decode(buf, cand)
                        after = buf[cend:cend + 256].lstrip()
                        need_more = not after and not eof
                        # a list closing with more text after it is a nested list, not the end
                        if after[:1] == "," or (after[:1] == "]" and not after[1:].strip()) \
                                or (not after and eof):
                            nxt = cand
                    except json.JSONDecodeError as e2:
                        need_more = not eof and (e2.pos >= len(buf) - 16
                                                 or e2.msg.startswith("Unterminated string"))
                    if need_more and len(buf) - start < MAX_LINE_BYTES:
                        shift = more(start)       # the candidate may be cut by the block end
                        if shift:
                            if shift > 0:
                                search, start = max(0, m.start() - shift), 0
                            else:
                                search = m.start()
                            continue
                    search = m.end()
                if nxt is None:
                    break
                pos = nxt
                continue
            index += 1
            pos = end
            if index <= skip:
                continue
            text = buf[start:end]
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                pre.append(dict(line=index, reason="invalid_utf8", field=None,
                                detail="element is not valid UTF-8 (raw shows escaped bytes)",
                                raw=text[:RAW_LIMIT].encode("utf-8", "surrogateescape")
                                .decode("latin-1")))
                continue
            texts.append(text)
            nums.append(index)
            if len(texts) >= batch_rows:
                yield batch()
        if texts or pre:
            yield batch()


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:300]


# ---------------------------------------------------------------------------- sources
@dataclass
class _Source:
    key: str                 # absolute path, the identity used by rejects and progress
    path: Path
    fmt: str                 # jsonl | json | parquet | csv | hf
    parts: list[Path] = field(default_factory=list)   # hf arrow shards

    @property
    def size(self) -> int:
        if self.parts:
            return sum(p.stat().st_size for p in self.parts)
        return self.path.stat().st_size


def _is_hf_dir(p: Path) -> bool:
    return (p / "dataset_info.json").exists() or (p / "state.json").exists() \
        or (p / "dataset_dict.json").exists()


def _hf_shards(p: Path) -> list[Path]:
    if (p / "dataset_dict.json").exists():
        splits = json.loads((p / "dataset_dict.json").read_text()).get("splits", [])
        out: list[Path] = []
        for s in splits:
            out += _hf_shards(p / s)
        return out
    state = p / "state.json"
    if state.exists():
        files = [d["filename"] for d in json.loads(state.read_text()).get("_data_files", [])]
        if files:
            return [p / f for f in files]
    return sorted(p.glob("*.arrow"))


def _detect_format(p: Path) -> str | None:
    name = p.name.lower()
    if name.endswith(PARQUET_EXT):
        return "parquet"
    if name.endswith(CSV_EXT):
        return "csv"
    if name.endswith(ARROW_EXT):
        return "arrow"
    if name.endswith(JSONL_EXT):
        return "jsonl"
    if name.endswith(JSON_EXT):
        # .json is either an array or (often) JSON Lines: look at the first byte
        with open(p, "rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "json" if head.startswith(b"[") else "jsonl"
    return None


def resolve_sources(paths: Sequence[str | os.PathLike]) -> list[_Source]:
    """Expand files and directories (recursive, sorted; HF save_to_disk dirs as one source).

    Raises InputError (exit 2) before anything is written when a path is missing or unusable.
    """
    out: list[_Source] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError(f"{p}: no such file or directory",
                             hint="check the path; directories are read recursively")
        p = p.resolve()
        if p.is_dir():
            if _is_hf_dir(p):
                shards = _hf_shards(p)
                if not shards:
                    raise InputError(f"{p}: looks like a Hugging Face dataset directory but has "
                                     "no .arrow files")
                out.append(_Source(str(p), p, "hf", shards))
                continue
            found = False
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                d = Path(dirpath)
                if d != p and _is_hf_dir(d):
                    dirnames[:] = []
                    out.append(_Source(str(d), d, "hf", _hf_shards(d)))
                    found = True
                    continue
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    fp = d / fn
                    fmt = _detect_format(fp)
                    if fmt is not None:
                        out.append(_Source(str(fp), fp, fmt))
                        found = True
            if not found:
                raise InputError(f"{p}: directory holds no supported files",
                                 hint="supported: " + ", ".join(SUPPORTED_EXT))
            continue
        if not os.access(p, os.R_OK):
            raise InputError(f"{p}: file is not readable (permission denied)")
        fmt = _detect_format(p)
        if fmt is None:
            raise InputError(f"{p}: unknown format (extension)",
                             hint="supported: " + ", ".join(SUPPORTED_EXT))
        out.append(_Source(str(p), p, fmt, [p] if fmt == "arrow" else []))
    return out


def file_signature(src: _Source) -> str:
    """size + hash of the first and last MiB: stable across copies/touches, changes on edits."""
    h = hashlib.sha256()
    total = 0
    for p in (src.parts or [src.path]):
        size = p.stat().st_size
        total += size
        with open(p, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > (2 << 20):
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
    return f"{total}:{h.hexdigest()[:24]}"


# ---------------------------------------------------------------------------- the SQL pass
def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


_FILE = object()   # placeholder for the file's base name in the parse parameters
_TURN_TYPE = '[{"role":"VARCHAR","from":"VARCHAR","content":"JSON","value":"JSON"}]'
_PARTS_TYPE = '[{"type":"VARCHAR","text":"VARCHAR"}]'


def _turn_text(expr: str) -> str:
    """Text of a turn's content: a string, or OpenAI content parts joined."""
    return (f"CASE json_type({expr}) WHEN 'VARCHAR' THEN json_extract_string({expr}, '$') "
            f"WHEN 'ARRAY' THEN array_to_string(list_transform(try(from_json({expr}, '{_PARTS_TYPE}')),"
            f" lambda x: x.text), '') END")


def _blank(x: str) -> str:
    """SQL: ``x`` is empty or whitespace only. A first-character test decides almost every
    row; only text that starts blank pays for the regex (a regex per text cost ~0.1 s/50k)."""
    return (f"({x} = '' OR (left({x}, 1) IN (' ', chr(9), chr(10), chr(12), chr(13)) "
            f"AND NOT regexp_matches({x}, '[^\\s]')))")


def _parse_sql(opts: IngestOptions, binary: bool = False) -> tuple[str, list[Any]]:
    """One SQL statement turning ``_raw(line_no, raw)`` into classified rows.

    Output columns: line_no, row_id, prompt, reply, record, meta, n_turns, content_hash,
    reason, field, raw_text. ``reason`` NULL means the row is valid.

    ``raw`` is VARCHAR (the batch is valid UTF-8, checked by Arrow) or, with ``binary``,
    BLOB decoded per row so that the invalid rows become ``invalid_utf8`` rejects.

    Speed (measured per 50k synthetic rows): each record is parsed exactly twice, both times
    by DuckDB's C++ JSON reader over the whole line with a *list* of paths: ``json_type``
    (root type + every needed field's type, ~0.2 s) and ``json_extract_string`` (every
    field's unescaped text, ~0.28 s). The previous pass extracted JSON fragments and parsed
    the prompt/reply fragments again per field (~0.7 s). Types come from the first parse, so
    a prompt that is a list is ``wrong_type`` without a third parse. Chat turns are parsed
    (``from_json``) only for rows whose prompt field is absent and that carry a list. No
    stage is MATERIALIZED and no raw-line copy is joined back: the line flows through once.
    """
    paths = [_json_path(opts.id_field) if opts.id_field else '$."\u0000no-id"',
             _json_path(opts.prompt_field), _json_path(opts.reply_field),
             "$.messages", "$.conversations"] + [_json_path(m) for m in opts.meta_fields]
    # ty[1] is the root type, ty[k + 1] the type of paths[k]; es[k] the text of paths[k]
    meta_expr = "NULL"
    if opts.meta_fields:
        meta_expr = "json_object(" + ", ".join(
            f"?, CASE WHEN ty[{7 + i}] = 'VARCHAR' THEN to_json(es[{6 + i}]) "
            f"ELSE es[{6 + i}]::JSON END" for i in range(len(opts.meta_fields))) + ")"
    role = "lower(coalesce(t.role, t.\"from\"))"
    user_pred = " OR ".join(f"{role} = '{r}'" for r in USER_ROLES)
    asst_pred = " OR ".join(f"{role} = '{r}'" for r in ASSISTANT_ROLES)
    line_expr = "try(decode(raw))" if binary else "raw"
    raw_expr = f"left(CAST(raw AS VARCHAR), {RAW_LIMIT})" if binary else "NULL"
    keep_raw = ", raw" if binary else ""
    sql = f"""
WITH a AS (
    SELECT line_no, {line_expr} AS line{keep_raw} FROM _raw
), b AS (
    SELECT *, CASE WHEN line IS NOT NULL AND strlen(line) <= ?
                   THEN try(json_type(line, ?::VARCHAR[])) END AS ty
    FROM a
), c AS (
    SELECT *, CASE WHEN ty[1] = 'OBJECT' THEN json_extract_string(line, ?::VARCHAR[]) END AS es
    FROM b
    -- blank lines are skipped; only unparsable lines pay for the test
    WHERE ty IS NOT NULL OR line IS NULL OR NOT {_blank('line')}
), f AS (
    SELECT line_no, line{keep_raw},
           line IS NULL AS bad_utf8, line IS NOT NULL AND strlen(line) > ? AS too_big,
           ty IS NOT NULL AS valid, ty[1] = 'OBJECT' AS obj,
           es[1] AS id_val, ty[3] AS p_type, ty[4] AS r_type,
           CASE WHEN ty[3] = 'VARCHAR' THEN es[2] END AS p_flat,
           CASE WHEN ty[4] = 'VARCHAR' THEN es[3] END AS r_flat,
           CASE WHEN ty[5] = 'ARRAY' THEN 'messages'
                WHEN ty[6] = 'ARRAY' THEN 'conversations' END AS chat_key,
           CASE WHEN ty[5] = 'ARRAY' THEN es[4] WHEN ty[6] = 'ARRAY' THEN es[5] END AS chat_json,
           CASE WHEN ty[1] = 'OBJECT' THEN {meta_expr} END AS meta
    FROM c
), t AS (
    SELECT * EXCLUDE (chat_json),
           CASE WHEN obj AND p_type IS NULL AND chat_key IS NOT NULL
                THEN try(from_json(chat_json, '{_TURN_TYPE}')) END AS turns
    FROM f
), u AS (
    SELECT *, turns IS NOT NULL AS is_chat,
           CASE WHEN turns IS NOT NULL THEN list_filter(turns, lambda t: {user_pred})[1] END AS u_turn,
           CASE WHEN turns IS NOT NULL THEN list_filter(turns, lambda t: {asst_pred})[1] END AS a_turn
    FROM t
), x AS (
    SELECT * EXCLUDE (p_flat, r_flat, u_turn, a_turn),
           is_chat AND u_turn IS NULL AS no_user, is_chat AND a_turn IS NULL AS no_asst,
           CASE WHEN is_chat THEN {_turn_text('coalesce(u_turn.content, u_turn.value)')}
                ELSE p_flat END AS prompt,
           CASE WHEN is_chat THEN {_turn_text('coalesce(a_turn.content, a_turn.value)')}
                ELSE r_flat END AS reply
    FROM u
), y AS (
    SELECT *,
       CASE
         WHEN bad_utf8 THEN 'invalid_utf8'
         WHEN too_big THEN 'oversize'
         WHEN NOT valid THEN 'malformed_json'
         WHEN NOT obj THEN 'not_an_object'
         WHEN p_type IS NULL AND chat_key IS NOT NULL AND turns IS NULL THEN 'malformed_chat'
         WHEN no_user OR no_asst THEN 'missing_field'
         WHEN NOT is_chat AND (p_type IS NULL OR p_type = 'NULL'
                               OR r_type IS NULL OR r_type = 'NULL') THEN 'missing_field'
         WHEN prompt IS NULL OR reply IS NULL THEN 'wrong_type'
         WHEN {_blank('prompt')} OR {_blank('reply')} THEN 'empty_text'
         WHEN length(prompt) > ? OR length(reply) > ? THEN 'oversize'
       END AS reason
    FROM x
)
SELECT line_no,
       coalesce(id_val, ? || ':' || CAST(line_no AS VARCHAR)) AS row_id,
       prompt, reply, line AS record, meta,
       CASE WHEN is_chat THEN len(turns) ELSE 2 END AS n_turns,
       CASE WHEN reason IS NULL THEN sha256(prompt || chr(31) || reply) END AS content_hash,
       reason,
       CASE WHEN reason IS NULL OR bad_utf8 OR too_big OR NOT valid OR NOT obj THEN NULL
            WHEN is_chat THEN chat_key || CASE WHEN no_user OR prompt IS NULL OR {_blank('prompt')}
                                                    OR length(prompt) > ? THEN ': user turn'
                                               ELSE ': assistant turn' END
            WHEN p_type IS NULL AND chat_key IS NOT NULL AND turns IS NULL THEN chat_key
            WHEN p_type IS NULL OR p_type = 'NULL' THEN ?
            WHEN r_type IS NULL OR r_type = 'NULL' THEN ?
            WHEN prompt IS NULL THEN ?
            WHEN reply IS NULL THEN ?
            WHEN {_blank('prompt')} THEN ?
            WHEN length(prompt) > ? THEN ?
            ELSE ? END AS field,
       CASE WHEN reason IS NULL THEN NULL
            WHEN line IS NULL THEN {raw_expr}
            ELSE left(line, {RAW_LIMIT}) END AS raw_text
FROM y
"""
    max_bytes = opts.max_chars * 4 + 1_000_000
    pf, rf = opts.prompt_field, opts.reply_field
    params: list[Any] = [max_bytes, ["$"] + paths, paths, max_bytes, *opts.meta_fields,
                         opts.max_chars, opts.max_chars, _FILE, opts.max_chars,
                         pf, rf, pf, rf, pf, opts.max_chars, pf, rf]
    return sql, params


# ---------------------------------------------------------------------------- the engine
class _Ingester:
    def __init__(self, ws, dataset: str, opts: IngestOptions, progress: bool):
        self.ws = ws
        self.con = ws.con
        self.dataset = dataset
        self.opts = opts
        self.progress = progress
        self.sql = {False: _parse_sql(opts, False), True: _parse_sql(opts, True)}
        self.t_langid = 0.0
        self.reasons: dict[str, int] = {}     # rows rejected this run (incl. already recorded)
        self._identifier = None

    # -------------------------------------------------------------- language id
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

    # -------------------------------------------------------------- one batch
    def process(self, b: _Batch, src: _Source, fs: FileSummary, sig: str, ingest_id: int) -> None:
        con = self.con
        n_in = len(b.line_no)
        if n_in:
            con.register("_parsed", b.parsed)      # parsed on the reader thread (parsed())
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
        con.execute("BEGIN TRANSACTION")
        try:
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
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except Exception:  # pragma: no cover - connection already gone
                pass
            raise
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

    # -------------------------------------------------------------- parsing
    def parse(self, b: _Batch, con, basename: str) -> None:
        """Run :func:`_parse_sql` over the batch's raw records on ``con``; keep the result as
        Arrow on the batch (``b.parsed``) and drop the raw records (their text lives on in the
        parsed ``record`` column)."""
        sql, params = self.sql[not pa.types.is_large_string(b.raw.type)]
        params = [basename if p is _FILE else p for p in params]
        con.register("_raw", pa.table({"line_no": pa.array(b.line_no), "raw": b.raw}))
        try:
            b.parsed = con.sql(sql, params=params).to_arrow_table()
        finally:
            con.unregister("_raw")
        b.raw = None

    def parsed(self, batches: Iterator[_Batch], basename: str) -> Iterator[_Batch]:
        """Parse each batch as it is read, on a cursor of its own.

        Why: this generator runs in the reader thread (:class:`_Prefetch`), so DuckDB parses
        batch N+1 (JSON, validation, sha256) on one core while the main connection inserts and
        commits batch N on the other; inserting is then the only serial step left. A cursor is
        a separate connection to the same database: it sees none of the main connection's
        temporary objects and its query shares nothing with the open write transaction.
        (bench/ingest.py, 1M rows: 52.7 s -> 26.0 s with the batch-size change; docs/ingest.md)"""
        cur = self.con.cursor()
        cur.execute("SET enable_progress_bar = false")    # stdout stays one JSON document
        try:
            for b in batches:
                if len(b.line_no):
                    self.parse(b, cur, basename)
                yield b
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            cur.close()

    # -------------------------------------------------------------- one source
    def batches(self, src: _Source, skip_units: int, skip_bytes: int) -> Iterator[_Batch]:
        br = self.opts.batch_rows
        if src.fmt == "jsonl":
            return _iter_jsonl(src.path, src.key, br, skip_bytes, skip_units)
        if src.fmt == "json":
            return _iter_json_array(src.path, src.key, br, skip_units)
        if src.fmt == "parquet":
            return _iter_parquet(src.path, src.key, br, skip_units)
        if src.fmt == "csv":
            return _iter_csv(src.path, src.key, br, skip_units)
        if src.fmt in ("hf", "arrow"):
            return _iter_arrow_files(src.parts, src.key, br, skip_units)
        raise UsageError(f"unsupported format {src.fmt}")  # pragma: no cover


def ingest(ws, paths: Sequence[str | os.PathLike] | str | os.PathLike, dataset: str,
           id_field: str | None = "id", prompt_field: str = "prompt", reply_field: str = "reply",
           meta_fields: Sequence[str] | str | None = None, *, max_chars: int = DEFAULT_MAX_CHARS,
           languages: Sequence[str] | None = None, langid: bool = True,
           batch_rows: int = DEFAULT_BATCH_ROWS, memory_limit_mb: int = 512,
           progress: bool = True) -> IngestSummary:
    """Ingest files/directories into ``dataset``; returns counts. Safe to re-run and to resume.

    ``paths``: JSONL (.gz), JSON arrays, Parquet, CSV/TSV, HF ``save_to_disk`` directories, or
    directories of those (recursive, sorted). Rows that cannot be used land in ``rejects``.
    ``memory_limit_mb`` caps DuckDB's buffer pool during the ingest (restored afterwards);
    the parsed batches in flight live outside it, as Arrow (1M rows, bench/ingest.py: peak RSS
    1.65 GiB at 512 MB, 2.15 GiB at 1 GB, same speed).
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
    # DuckDB's own progress bar prints to stdout, which must stay one JSON document with --json
    ws.execute("SET enable_progress_bar = false")
    # bounded memory: DuckDB would otherwise cache up to 80% of RAM of freshly written data
    old_limit = ws.one("SELECT current_setting('memory_limit')")[0]
    ws.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
    t0 = time.perf_counter()
    ws.ensure_dataset(dataset)
    # a previous run killed mid-way can never still be running: DuckDB admits one writer
    ws.execute("UPDATE ingest_runs SET status = 'interrupted' WHERE dataset = ? AND status = 'running'",
               [dataset])
    ingest_id = ws.next_id("ingest_id_seq")
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(opts).items()}
    ws.execute("INSERT INTO ingest_runs (ingest_id, dataset, files, options, status) "
               "VALUES (?, ?, ?, ?, 'running')",
               [ingest_id, dataset, json.dumps([s.key for s in sources]), json.dumps(options)])
    summary = IngestSummary(dataset=dataset, ingest_id=ingest_id)
    eng = _Ingester(ws, dataset, opts, progress)
    status = "failed"
    stop = contextlib.ExitStack()
    intr = stop.enter_context(deferred_interrupt())
    try:
        with _progress_bar(progress) as bar:
            for src in sources:
                intr.check()
                fs = FileSummary(file=src.key, format=src.fmt)
                summary.files.append(fs)
                sig = file_signature(src)
                row = ws.one("SELECT lines_done, bytes_done, finished FROM ingest_progress "
                             "WHERE dataset = ? AND file = ? AND file_sig = ?",
                             [dataset, src.key, sig])
                skip_units = skip_bytes = 0
                if row is not None and not row[2]:
                    skip_units, skip_bytes = int(row[0] or 0), int(row[1] or 0)
                    fs.resumed_from = skip_units
                size = src.size
                task = bar.add_task(Path(src.key).name, total=size or None,
                                    completed=skip_bytes if src.fmt == "jsonl" else 0)
                done_units = skip_units
                reader = _Prefetch(eng.parsed(eng.batches(src, skip_units, skip_bytes),
                                              Path(src.key).name))
                try:
                    for b in reader:
                        eng.process(b, src, fs, sig, ingest_id)
                        done_units = b.resume_units
                        intr.check()     # Ctrl-C takes effect here, after a whole batch
                        if src.fmt == "jsonl":
                            bar.update(task, completed=b.resume_bytes)
                        else:   # columnar sources: count rows; the bar completes at the end
                            bar.update(task, description=f"{Path(src.key).name} ({done_units} rows)")
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
                bar.update(task, completed=size)
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


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass


def _progress_bar(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)


# ---------------------------------------------------------------------------- stats
def stats(ws, dataset: str, meta_top: int = 5) -> dict[str, Any]:
    """Row counts, language pairs, rejects by reason, and the most concentrated meta values."""
    ws.require_dataset(dataset)
    d = ws.one("SELECT version, created_at, updated_at FROM datasets WHERE name = ?", [dataset])
    n = ws.one("SELECT count(*), count(DISTINCT content_hash), sum(CASE WHEN n_turns > 2 THEN 1 "
               "ELSE 0 END), avg(length(prompt)), avg(length(reply)) FROM samples WHERE dataset = ?",
               [dataset])
    pairs = [dict(prompt_lang=a, reply_lang=b, rows=int(c)) for a, b, c in ws.rows(
        "SELECT coalesce(prompt_lang, '?'), coalesce(reply_lang, '?'), count(*) FROM samples "
        "WHERE dataset = ? GROUP BY ALL ORDER BY 3 DESC, 1, 2", [dataset])]
    rejects = {r: int(c) for r, c in ws.rows(
        "SELECT reason, count(*) FROM rejects WHERE dataset = ? GROUP BY 1 ORDER BY 2 DESC, 1",
        [dataset])}
    meta: dict[str, list[dict]] = {}
    keys = [r[0] for r in ws.rows(
        "SELECT DISTINCT unnest(json_keys(meta)) FROM (SELECT meta FROM samples WHERE dataset = ? "
        "AND meta IS NOT NULL LIMIT 10000) ORDER BY 1", [dataset])]
    total = int(n[0])
    for k in keys:
        rows = ws.rows(
            "SELECT json_extract_string(meta, ?) AS v, count(*) FROM samples WHERE dataset = ? "
            "GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST LIMIT ?", [_json_path(k), dataset, meta_top])
        meta[k] = [dict(value=v, rows=int(c), share=round(c / total, 4) if total else 0.0)
                   for v, c in rows]
    runs = ws.rows("SELECT count(*), max(finished_at) FROM ingest_runs WHERE dataset = ?", [dataset])
    return dict(dataset=dataset, version=int(d[0]), rows=total, distinct_content=int(n[1]),
                multi_turn_rows=int(n[2] or 0),
                avg_prompt_chars=round(float(n[3]), 1) if n[3] is not None else None,
                avg_reply_chars=round(float(n[4]), 1) if n[4] is not None else None,
                language_pairs=pairs, rejects=rejects, rejected_rows=sum(rejects.values()),
                meta=meta, ingest_runs=int(runs[0][0]), last_ingest=runs[0][1])


def datasets(ws) -> list[dict[str, Any]]:
    """Every dataset with its sample and reject counts."""
    rows = ws.rows("""
SELECT d.name, d.version, d.description, d.created_at, d.updated_at,
       (SELECT count(*) FROM samples s WHERE s.dataset = d.name),
       (SELECT count(*) FROM rejects r WHERE r.dataset = d.name)
FROM datasets d ORDER BY d.name""")
    return [dict(dataset=r[0], version=int(r[1] or 0), description=r[2], created_at=r[3],
                 updated_at=r[4], samples=int(r[5]), rejects=int(r[6])) for r in rows]
