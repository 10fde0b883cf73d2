"""Per-format batch readers and the prefetch thread.

Every reader yields batches (:class:`~forensics.ingest.sources.Batch`) of at most ``batch_rows``
raw records (one JSON text each) with their 1-based line/record numbers and the resume point after
the batch, in bounded memory whatever the file size. ``iter_batches`` picks the reader for a
source; :class:`Prefetch` runs it one batch ahead on a thread. JSON arrays (and their recovery
when damaged) are read by :mod:`forensics.ingest.jsonarray`, CSV/TSV by
:mod:`forensics.ingest.csvfile`.
"""

from __future__ import annotations

import errno
import gzip
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from forensics.errors import InputError, UsageError
from forensics.ingest.csvfile import read_csv
from forensics.ingest.jsonarray import read_json_array
from forensics.ingest.sources import (MAX_LINE_BYTES, READ_BLOCK, Batch, Source, open_bytes,
                                      records_to_batch, strip_bom)


def iter_batches(src: Source, batch_rows: int, skip_units: int, skip_bytes: int) -> Iterator[Batch]:
    """Batches of ``src`` after its resume point (``skip_units`` records; ``skip_bytes`` for JSONL).

    A file that cannot be read on (not Parquet, truncated, damaged compression, undecodable)
    raises InputError naming the file and the last record read, never a library exception:
    the ingest records it as an ``unreadable_file`` reject and goes on with the next file."""
    return _guarded(src, _reader(src, batch_rows, skip_units, skip_bytes), skip_units)


def _reader(src: Source, batch_rows: int, skip_units: int, skip_bytes: int) -> Iterator[Batch]:
    if src.fmt == "jsonl":
        return read_jsonl(src.path, src.key, batch_rows, skip_bytes, skip_units)
    if src.fmt == "json":
        return read_json_array(src.path, src.key, batch_rows, skip_units)
    if src.fmt == "parquet":
        return read_parquet(src.path, src.key, batch_rows, skip_units)
    if src.fmt == "csv":
        return read_csv(src.path, src.key, batch_rows, skip_units)
    if src.fmt in ("hf", "arrow"):
        return read_arrow_files(src.parts, src.key, batch_rows, skip_units)
    raise UsageError(f"unsupported format {src.fmt}")  # pragma: no cover


_UNITS = {"jsonl": "line", "csv": "line", "json": "element"}
_FORMAT_NAMES = {"jsonl": "JSON Lines", "json": "JSON array", "parquet": "Parquet", "csv": "CSV",
                 "hf": "Arrow (Hugging Face)", "arrow": "Arrow"}


def is_file_error(e: BaseException) -> bool:
    """Whether ``e``, raised while reading an input file, means the file is damaged or not what
    its name says (as opposed to the machine running out of disk or memory)."""
    import duckdb

    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return False
    if isinstance(e, duckdb.InterruptException) or "KeyboardInterrupt" in str(e):
        return False
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.ENOMEM):
        return False
    return isinstance(e, (pa.ArrowException, OSError, EOFError, UnicodeError, RecursionError,
                          zlib.error, duckdb.Error))


def _guarded(src: Source, batches: Iterator[Batch], skip_units: int) -> Iterator[Batch]:
    """Re-raise a damaged file's library error as one InputError line (see iter_batches)."""
    done = skip_units
    try:
        for b in batches:
            done = b.resume_units
            yield b
    except Exception as e:
        if not is_file_error(e):
            raise
        what = ("nesting too deep to parse" if isinstance(e, RecursionError)
                else (str(e).strip().splitlines() or [type(e).__name__])[0][:300])
        unit = _UNITS.get(src.fmt, "record")
        where = f" after {unit} {done:,}" if done else ""
        raise InputError(f"{src.key}: unreadable {_FORMAT_NAMES.get(src.fmt, src.fmt)} file{where}: "
                         f"{what}", hint="other files were ingested; fix or remove this file and "
                                         "re-run (committed rows are kept)") from None
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


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


class Prefetch:
    """Run a batch generator one batch ahead in a background thread.

    Why: reading and cutting the next batch (file reads, newline search, UTF-8 check) is
    Python/numpy work, while the current batch spends most of its time inside DuckDB, which
    releases the GIL. Overlapping the two keeps both cores busy. At most ``depth`` batches
    are ready ahead of the one the consumer holds, so memory stays bounded; errors raised by
    the reader are re-raised in the consumer, in order; ``close()`` stops the thread (Ctrl-C,
    a failed batch)."""

    _END = object()

    def __init__(self, it: Iterator[Batch], depth: int = 1):
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

    def __iter__(self) -> "Prefetch":
        return self

    def __next__(self) -> Batch:
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


def read_jsonl(path: Path, file_key: str, batch_rows: int, skip_bytes: int, skip_lines: int
                ) -> Iterator[Batch]:
    """JSONL in constant memory: read blocks, cut at newlines, at most batch_rows per batch."""
    fh = open_bytes(path)
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
                    stripped = strip_bom(block, path)
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
                    yield Batch(file_key, np.zeros(0, np.int64), pa.array([], pa.large_binary()),
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
            yield Batch(file_key, line_no, raw, line, pos, pre, cut)
    finally:
        fh.close()


def read_parquet(path: Path, file_key: str, batch_rows: int, skip: int) -> Iterator[Batch]:
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
                    done: int = 0) -> Iterator[Batch]:
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
        yield records_to_batch(file_key, rb, start + 1, start)


def read_arrow_files(files: Sequence[Path], file_key: str, batch_rows: int, skip: int
                      ) -> Iterator[Batch]:
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
