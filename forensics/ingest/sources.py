"""What ingest reads: the supported formats, path resolution (files, directories, Hugging Face
``save_to_disk`` directories; symlinks followed, special files refused), format detection, the
file signature that keys resume, and the :class:`Batch` every reader yields
(:func:`records_to_batch` for columnar records).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from forensics.errors import InputError

JSONL_EXT = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json.gz")
JSON_EXT = (".json",)
PARQUET_EXT = (".parquet", ".pq")
CSV_EXT = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
ARROW_EXT = (".arrow",)
SUPPORTED_EXT = JSONL_EXT + JSON_EXT + PARQUET_EXT + CSV_EXT + ARROW_EXT

RAW_LIMIT = 65536          # characters of an offending record kept in rejects.raw
MAX_LINE_BYTES = 256 * 1024 * 1024   # a single "line" beyond this is skipped unparsed
READ_BLOCK = 8 * 1024 * 1024


@dataclass
class Source:
    """One input: a file, or the Arrow shards of a Hugging Face ``save_to_disk`` directory."""

    key: str                 # absolute path, the identity used by rejects and progress
    path: Path
    fmt: str                 # jsonl | json | parquet | csv | hf
    parts: list[Path] = field(default_factory=list)   # hf arrow shards
    refused: str | None = None     # why it cannot be read (a FIFO found in a directory, ...)

    @property
    def size(self) -> int:
        if self.parts:
            return sum(p.stat().st_size for p in self.parts)
        return self.path.stat().st_size


@dataclass
class Batch:
    """One unit of work: raw records with their 1-based line/record numbers."""

    file: str
    line_no: np.ndarray            # int64, 1-based
    raw: pa.Array                  # large_binary: one JSON text per record
    resume_units: int              # lines/records done in this file after this batch
    resume_bytes: int | None       # byte offset after this batch (JSONL only)
    pre_rejects: list[dict] = field(default_factory=list)   # found while reading
    progress_bytes: int = 0        # bytes or records this batch covers
    parsed: pa.Table | None = None  # parse_sql's output, filled by parse.BatchParser



def open_bytes(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")

def strip_bom(block: bytes, path: Path) -> bytes:
    if block.startswith(b"\xef\xbb\xbf"):
        return block[3:]
    if block.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            f"{path}: file is UTF-16 encoded; ingest reads UTF-8",
            hint=f"convert it first, e.g. iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8.jsonl",
        )
    return block


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


def _detect_format(p: Path, name: str | None = None) -> str | None:
    """Format of the regular file ``p`` from ``name`` (default: ``p``'s own name); a ``.json``
    is looked into (array or JSON Lines)."""
    name = (name or p.name).lower()
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


def _format_by_name(name: str) -> str:
    name = name.lower()
    for exts, fmt in ((PARQUET_EXT, "parquet"), (CSV_EXT, "csv"), (ARROW_EXT, "arrow"),
                      (JSONL_EXT, "jsonl"), (JSON_EXT, "json")):
        if name.endswith(exts):
            return fmt
    return "unknown"


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return what
    return "not a regular file"


def _file_source(given: Path) -> Source | None:
    """The source for one file path, symlinks followed first; None when its format is unknown.

    The format comes from the target's name, or from the link's name when the target's name
    says nothing (a Hugging Face cache ``snapshots/.../train.jsonl`` links to an extension-less
    blob). Anything but a regular file (FIFO, socket, device) is refused: opening a FIFO would
    block forever. Raises InputError naming the path."""
    try:
        target = given.resolve(strict=True)
        st = target.stat()
    except FileNotFoundError:
        raise InputError(f"{given}: broken symbolic link (its target does not exist)",
                         hint="fix or remove the link") from None
    except (OSError, RuntimeError) as e:      # symlink loop, permission denied on a directory
        raise InputError(f"{given}: cannot be resolved: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{given}: {_kind(st.st_mode)}, not a regular file; ingest reads "
                         "regular files only", hint="copy the data into a regular file first")
    if not os.access(target, os.R_OK):
        raise InputError(f"{given}: file is not readable (permission denied)")
    fmt = _detect_format(target) or _detect_format(target, given.name)
    if fmt is None:
        return None
    return Source(str(target), target, fmt, [target] if fmt == "arrow" else [])


def resolve_sources(paths: Sequence[str | os.PathLike]) -> list[Source]:
    """Expand files and directories (recursive, sorted; HF save_to_disk dirs as one source).

    Symbolic links are followed before the format is detected. Raises InputError (exit 2)
    before anything is written when a path given is missing or unusable: an unknown format, a
    special file (FIFO, socket, device), a broken link, no read permission. Such a file found
    in a directory (with a supported extension) becomes a Source with ``refused`` set, which
    :func:`file_signature` raises when its turn comes, without opening it.
    """
    out: list[Source] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists() and not p.is_symlink():
            raise InputError(f"{p}: no such file or directory",
                             hint="check the path; directories are read recursively")
        if p.is_dir():
            p = p.resolve()
            if _is_hf_dir(p):
                shards = _hf_shards(p)
                if not shards:
                    raise InputError(f"{p}: looks like a Hugging Face dataset directory but has "
                                     "no .arrow files")
                out.append(Source(str(p), p, "hf", shards))
                continue
            found = False
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                d = Path(dirpath)
                if d != p and _is_hf_dir(d):
                    dirnames[:] = []
                    out.append(Source(str(d), d, "hf", _hf_shards(d)))
                    found = True
                    continue
                for fn in sorted(filenames):
                    if fn.startswith(".") or not fn.lower().endswith(SUPPORTED_EXT):
                        continue
                    # a file a directory holds that cannot be read is refused at its turn
                    # (an ``unreadable_file`` reject); the others are ingested
                    try:
                        src = _file_source(d / fn)
                    except InputError as e:
                        src = Source(str(d / fn), d / fn, _format_by_name(fn), refused=e.message)
                    if src is not None:
                        out.append(src)
                        found = True
            if not found:
                raise InputError(f"{p}: directory holds no supported files",
                                 hint="supported: " + ", ".join(SUPPORTED_EXT))
            continue
        src = _file_source(p)
        if src is None:
            raise InputError(f"{p}: unknown format (extension)",
                             hint="supported: " + ", ".join(SUPPORTED_EXT))
        out.append(src)
    return out


def file_signature(src: Source) -> str:
    """size + hash of the first and last MiB: stable across copies/touches, changes on edits.

    InputError naming the file when it cannot be read (or was refused by resolve_sources)."""
    if src.refused:
        raise InputError(src.refused)
    try:
        return _signature(src)
    except OSError as e:
        raise InputError(f"{src.key}: cannot read: {e.strerror or e}") from None


def _signature(src: Source) -> str:
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


def records_to_batch(file_key: str, rb: pa.RecordBatch, first: int, units_before: int,
                      pre: list[dict] | None = None) -> Batch:
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
    return Batch(file_key, line_no, raw, units_before + n, None, pre or [], n)
