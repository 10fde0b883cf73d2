"""CSV/TSV files: strict parsing with true file line numbers and recovery from broken quoting
(:func:`read_csv`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from forensics.errors import InputError
from forensics.ingest.sources import RAW_LIMIT, Batch, open_bytes, records_to_batch, strip_bom

CSV_FIELD_LIMIT = 32 * 1024 * 1024   # characters; a longer CSV field is an ``oversize`` reject
CSV_CHUNK_LINES = 65_536             # file lines handed to the csv reader at a time


def read_csv(path: Path, file_key: str, batch_rows: int, skip: int) -> Iterator[Batch]:
    """CSV/TSV parsed strictly by Python's C ``csv`` reader, every column as text (no type
    guessing: ids like 007 stay 007). Numbers are true 1-based file lines: a record is numbered
    by its first line, a quoted field spanning lines counts all of its lines, the header is
    line 1. ``skip`` and ``resume_units`` count file lines (always a record boundary).

    A malformed record (a quote that is never closed, text after a closing quote, a field over
    :data:`CSV_FIELD_LIMIT`) is a ``malformed_csv`` (``oversize``) reject at the line it starts
    on, and parsing starts again at the NEXT line: an unterminated quote never swallows the rows
    after it. A record with the wrong number of columns is rejected too; when it spans several
    lines (a stray quote that closed lines later) parsing also starts again at its second line.
    Rows holding invalid UTF-8 are ``invalid_utf8`` rejects. Blank lines are skipped."""
    import csv as _csv
    import io

    delim = "\t" if ".tsv" in path.name.lower() else ","
    with open_bytes(path) as fh:
        strip_bom(fh.read(4), path)                 # refuses UTF-16 with a hint
    fh = io.TextIOWrapper(open_bytes(path), encoding="utf-8-sig", errors="surrogateescape",
                          newline="")
    old_limit = _csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        records = _csv_records(iter(fh), delim, skip)
        names: list[str] | None = None
        rows: list[list[str]] = []
        nums: list[int] = []
        pre: list[dict] = []
        done = 0
        for line, done, row, bad in records:
            if names is None:                      # the header: the first record
                if bad is not None:
                    raise InputError(f"{path}: the CSV header (line {line}) does not parse: "
                                     f"{bad[1]}")
                names = row
                continue
            if bad is not None:
                reason, detail, raw = bad
                pre.append(dict(line=line, reason=reason, field=None, detail=detail,
                                raw=raw[:RAW_LIMIT].encode("utf-8", "surrogateescape")
                                .decode("utf-8", "replace")))
            else:
                rows.append(row)
                nums.append(line)
            if len(rows) >= batch_rows or len(pre) >= batch_rows:
                yield _csv_batch(file_key, names, rows, nums, pre, done)
                rows, nums, pre = [], [], []
        if rows or pre:
            yield _csv_batch(file_key, names or [], rows, nums, pre, done)
    finally:
        _csv.field_size_limit(old_limit)
        fh.close()


def _csv_records(file_lines: Iterator[str], delim: str, skip: int):
    """Generator of ``(first line, lines done, row, None)`` per record, or ``(first line, lines
    done, None, (reason, detail, raw))`` for a malformed one; the header comes first and sets
    the column count. Records starting at or before line ``skip`` (a
    resume point) are not produced. See :func:`read_csv` for the recovery rules.

    The C reader gets a list iterator over a chunk of lines and ``line_num`` says where each
    record ended, so no Python code runs per line; after a malformed record a new reader starts
    at the record's second line (``__setstate__`` positions the list iterator in O(1)). A record
    still open at the end of a chunk is carried into the next one."""
    import csv as _csv
    from itertools import islice

    ncols: int | None = None
    base = 0                  # file lines before chunk[0]
    carry: list[str] = []
    header = True
    while True:
        new = list(islice(file_lines, CSV_CHUNK_LINES))
        eof = len(new) < CSV_CHUNK_LINES
        chunk = carry + new if carry else new
        carry = []
        if not chunk:
            return
        pos = 0
        while pos < len(chunk):
            it = iter(chunk)
            it.__setstate__(pos)
            reader = _csv.reader(it, delimiter=delim, strict=True)
            prev = 0
            restart = None
            try:
                for row in reader:
                    first = pos + prev
                    prev = reader.line_num
                    n = prev - (first - pos)
                    line = base + first + 1
                    if not row:
                        continue                              # a blank line
                    if header:
                        header = False
                        ncols = len(row)
                        yield line, base + first + n, row, None
                        if skip > base + first + n:
                            restart = _skip_to(skip - base, chunk, file_lines)
                            if restart is None:               # past this chunk: lines consumed
                                base, pos = skip, len(chunk)
                                chunk = []
                            break
                        continue
                    if base + first + 1 <= skip:
                        continue
                    if len(row) != ncols:
                        detail = f"expected {ncols} columns, got {len(row)}"
                        if n > 1:                             # a stray quote closed lines later
                            detail += (f" (the record spans lines {line}-{line + n - 1}; "
                                       f"parsing resumed at line {line + 1})")
                            yield line, line, None, ("malformed_csv", detail, "".join(
                                chunk[first:first + n]))
                            restart = first + 1
                            break
                        yield line, line, None, ("malformed_csv", detail, chunk[first])
                        continue
                    yield line, base + first + n, row, None
            except _csv.Error as e:
                first = pos + prev
                msg = str(e)
                if "unexpected end of data" in msg and not eof:
                    carry = chunk[first:]                     # the record goes on in the next chunk
                    base += first
                    pos = len(chunk)
                    break
                line = base + first + 1
                if "field limit" in msg:
                    bad = ("oversize", f"a field is longer than {CSV_FIELD_LIMIT:,} characters "
                           f"(or a quote is never closed; parsing resumed at line {line + 1})")
                elif "unexpected end of data" in msg:
                    bad = ("malformed_csv", "a quoted field is never closed (parsing resumed at "
                           f"line {line + 1})")
                else:
                    bad = ("malformed_csv", f"bad quoting: {msg} (parsing resumed at line {line + 1})")
                if header:
                    yield line, line, None, bad
                    return
                if line > skip:
                    yield line, line, None, (*bad, chunk[first])
                pos = first + 1
                continue
            if restart is not None:
                pos = restart
                continue
            pos = len(chunk)
        if chunk:
            base += len(chunk) if not carry else 0
        if eof and not carry:
            return


def _skip_to(k: int, chunk: list[str], file_lines: Iterator[str]) -> int | None:
    """Index in ``chunk`` of the line after the first ``k`` lines, or None when the chunk ends
    first (then the rest of the ``k`` lines are read from ``file_lines`` and dropped)."""
    if k < len(chunk):
        return k
    for _ in range(k - len(chunk)):
        if next(file_lines, None) is None:
            break
    return None


def _csv_batch(file_key: str, names: list[str], rows: list[list[str]], nums: list[int],
               pre: list[dict], lineno: int) -> Batch:
    """Parsed CSV rows -> a Batch (one JSON text per row); rows with undecodable bytes (lone
    surrogates from ``surrogateescape``) become ``invalid_utf8`` rejects."""
    cols = list(zip(*rows)) if rows else [() for _ in names]
    try:
        arrays = [pa.array(c, pa.string()) for c in cols]
    except (pa.ArrowException, UnicodeError):
        keep = []
        for row, num in zip(rows, nums):
            try:
                "".join(row).encode("utf-8")
                keep.append((row, num))
            except UnicodeEncodeError:
                pre.append(dict(line=num, reason="invalid_utf8", field=None,
                                detail="row is not valid UTF-8 (raw shows escaped bytes)",
                                raw=",".join(row)[:RAW_LIMIT].encode("utf-8", "surrogateescape")
                                .decode("latin-1")))
        rows = [r for r, _ in keep]
        nums = [n for _, n in keep]
        cols = list(zip(*rows)) if rows else [() for _ in names]
        arrays = [pa.array(c, pa.string()) for c in cols]
    rb = pa.RecordBatch.from_arrays(arrays, names=names)
    b = records_to_batch(file_key, rb, 1, 0, sorted(pre, key=lambda r: r["line"]))
    b.line_no = np.array(nums, dtype=np.int64)
    b.resume_units = lineno
    return b
