"""What ingest reads: the supported formats, path resolution (files, directories, Hugging Face
``save_to_disk`` directories), format detection, the file signature that keys resume, and the
:class:`Batch` every reader yields.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
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


def resolve_sources(paths: Sequence[str | os.PathLike]) -> list[Source]:
    """Expand files and directories (recursive, sorted; HF save_to_disk dirs as one source).

    Raises InputError (exit 2) before anything is written when a path is missing or unusable.
    """
    out: list[Source] = []
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
                    if fn.startswith("."):
                        continue
                    fp = d / fn
                    fmt = _detect_format(fp)
                    if fmt is not None:
                        out.append(Source(str(fp), fp, fmt))
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
        out.append(Source(str(p), p, fmt, [p] if fmt == "arrow" else []))
    return out


def file_signature(src: Source) -> str:
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

