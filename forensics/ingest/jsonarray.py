"""JSON-array files: DuckDB's streaming reader, and element-by-element recovery when the array
is damaged (a truncated download, one corrupt element) so every element that parses is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from forensics.errors import InputError
from forensics.ingest.sources import MAX_LINE_BYTES, RAW_LIMIT, READ_BLOCK, Batch, strip_bom


def read_json_array(path: Path, file_key: str, batch_rows: int, skip: int) -> Iterator[Batch]:
    """A top-level JSON array; numbers are 1-based element indexes.

    Fast path: DuckDB's streaming ``read_json_objects(format='array')``. DuckDB stops at the
    first syntax error, so when it fails (a truncated download, one corrupt element) the file
    is re-read from the first element not yet delivered by :func:`recover_json_array`,
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
                yield Batch(file_key, np.arange(start + 1, done + 1, dtype=np.int64),
                             col.cast(pa.large_string()), done, None, [], len(col))
        except (duckdb.Error, pa.ArrowInvalid, OSError) as e:   # DuckDB's reader raises OSError
            first_error = _short(e)
    finally:
        con.close()
    yield from recover_json_array(path, file_key, batch_rows, max(skip, done), first_error)


def recover_json_array(path: Path, file_key: str, batch_rows: int, skip: int,
                       why: str = "", read_block: int = READ_BLOCK) -> Iterator[Batch]:
    """Element-by-element reading of a damaged JSON array, in bounded memory.

    Python's C scanner (``JSONDecoder.raw_decode``) finds where each element ends. A broken
    element becomes a ``malformed_json`` reject (element number, file line and character
    offset in ``detail``); reading resumes at the next ``{`` that follows a comma and parses
    as a complete value followed by ``,`` or ``]``. An array cut short (truncated file) keeps
    every complete element and rejects the incomplete tail. Elements after a broken one are
    numbered from the recovery point (the true count inside a corrupt region is unknowable).
    Elements holding invalid UTF-8 are rejected (``invalid_utf8``). The buffer holds at most
    the current element plus a few read blocks (elements are capped at MAX_LINE_BYTES).
    ``read_block``: bytes per read (small blocks make elements straddle block ends)."""
    import re

    skip_ws = re.compile(r"[\s,]*")
    next_obj = re.compile(r",\s*\{")
    dec = json.JSONDecoder()
    with open(path, "rb") as fh:
        buf = strip_bom(fh.read(read_block), path).decode("utf-8", errors="surrogateescape")
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
            block = fh.read(read_block)
            if not block:
                eof = True
                return 0
            base_line += buf.count("\n", 0, keep_from)
            base_char += keep_from
            buf = buf[keep_from:] + block.decode("utf-8", errors="surrogateescape")
            return keep_from if keep_from else -1        # -1: grew without shifting

        def where(at: int) -> str:
            return f"line {base_line + buf.count(chr(10), 0, at)}, char {base_char + at}"

        def batch() -> Batch:
            nonlocal texts, nums, pre
            b = Batch(file_key, np.array(nums, dtype=np.int64),
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
            except (json.JSONDecodeError, RecursionError) as exc:
                e = _as_decode_error(exc, buf, start)
                ran_out = e.pos >= len(buf) - 16 or e.msg.startswith("Unterminated string")
                if not eof and (ran_out or len(buf) - start < read_block) \
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
                    except (json.JSONDecodeError, RecursionError) as exc2:
                        e2 = _as_decode_error(exc2, buf, cand)
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


def _as_decode_error(e: Exception, buf: str, start: int) -> json.JSONDecodeError:
    """A RecursionError (nesting deeper than Python's parser allows) as the decode error of the
    element starting at ``start``, so that it is rejected and skipped like any broken element."""
    if isinstance(e, json.JSONDecodeError):
        return e
    return json.JSONDecodeError("nesting too deep to parse", buf, start + 1)


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:300]
