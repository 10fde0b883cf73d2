"""What an index was built from, and its files on disk.

An index is only meaningful together with the model that produced its vectors and the dataset
state it was built from. Its manifest records both (model id, dataset version / explanation
count and fingerprint), plus a sha256 of the .faiss file, so a stale or corrupted index is
reported instead of silently used. This module holds the :class:`Manifest`, the paths, the
field rows as DuckDB has them now (:func:`field_texts`, :func:`source_state`,
:func:`stale_reason`), and the crash-safe write.

Crash safety: the new .faiss and manifest are written to temp files in the same directory and
fsynced, then renamed over the old files (``.faiss`` first, manifest last) and the directory is
fsynced. A crash before the first rename leaves the old pair untouched; a crash between the two
renames leaves a pending ``.manifest.json.new`` whose checksum matches the new ``.faiss``, which
:func:`recover` rolls forward on the next open.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from forensics.errors import CheckFailed, NotFoundError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

FIELDS = ("prompt", "reply", "pair", "explanation", "reply_segment", "prompt_segment")
# segment fields: the base field's texts cut by forensics.search.segments; ids are packed
# segment ids (sample id and position), freshness is the base field's
SEGMENT_FIELDS = {"reply_segment": "reply", "prompt_segment": "prompt"}
MANIFEST_FORMAT = 1


@dataclass
class Manifest:
    """What an index was built from and how; stored as ``<field>.manifest.json``."""

    dataset: str
    field: str
    model_id: str
    model_spec: str | None          # what Embedder() needs to rebuild the model (None = default)
    dim: int
    metric: str
    index_type: str
    params: dict
    rows: int
    max_id: int
    checksum: str                   # sha256 of the .faiss file
    file_size: int
    dataset_version: int
    source_count: int               # rows of the field in DuckDB at build time
    source_max_id: int
    source_fingerprint: str         # xor of per-row hashes of (id, text) at build time
    built_at: str
    tool_version: str
    build_seconds: float = 0.0
    measured_recall_at_10: float | None = None
    format: int = MANIFEST_FORMAT
    updated_from: str | None = None  # built_at of the index an update started from
    # a sharded index (forensics.search.shards): one entry per shard file (path relative to the
    # dataset's index directory, rows, min_id, max_id, checksum, file_size); None = one .faiss
    shards: list | None = None
    # how it was built: ``commit_seconds`` (embedding-cache writes), and for a sharded index its
    # ShardParams (engine, shard_rows, workers, ...) and reuse counts
    build: dict | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class SourceState:
    """The rows of one field as DuckDB has them now."""

    count: int
    max_id: int
    fingerprint: str
    version: int


def index_paths(ws: "Workspace", dataset: str, field: str) -> tuple[Path, Path]:
    """(``.faiss`` path, manifest path) of a dataset's field index."""
    check_field(field)
    d = ws.indexes_dir / _safe_name(dataset)
    return d / f"{field}.faiss", d / f"{field}.manifest.json"


def _safe_name(dataset: str) -> str:
    """Dataset names become directory names: keep them on one path component."""
    if not dataset or dataset in (".", "..") or "/" in dataset or "\\" in dataset or "\0" in dataset:
        raise UsageError(f"dataset name {dataset!r} cannot be used as an index directory name")
    return dataset


def check_field(field: str) -> None:
    """Raise UsageError unless ``field`` is one of :data:`FIELDS`."""
    if field not in FIELDS:
        raise UsageError(f"unknown field {field!r}", hint="one of: " + ", ".join(FIELDS))


# ---------------------------------------------------------------------------- source rows
SAMPLE_TEXT = {
    "prompt": "coalesce(prompt, '')",
    "reply": "coalesce(reply, '')",
    "pair": "coalesce(prompt, '') || chr(10) || chr(10) || coalesce(reply, '')",
}


def field_sql(field: str) -> tuple[str, str, str]:
    """(id column, text expression, FROM+WHERE) for one field; rows with empty text are left out.
    A segment field reads its base field's rows."""
    field = SEGMENT_FIELDS.get(field, field)
    if field == "explanation":
        return ("explanation_id", "text",
                "FROM explanations WHERE dataset = ? AND sample_id IS NOT NULL AND text <> ''")
    cond = {"prompt": "coalesce(prompt, '') <> ''", "reply": "coalesce(reply, '') <> ''",
            "pair": "(coalesce(prompt, '') <> '' OR coalesce(reply, '') <> '')"}[field]
    return "sample_id", SAMPLE_TEXT[field], f"FROM samples WHERE dataset = ? AND {cond}"


def field_texts(ws: "Workspace", dataset: str, field: str, min_id_exclusive: int | None = None,
                segment_params: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """(ids int64, texts) of a dataset's field, ordered by id.

    ids are ``sample_id`` (``explanation_id`` for ``explanation``, packed segment ids for a
    segment field, cut with ``segment_params``: :class:`~forensics.search.segments.SegmentParams`
    fields); the pair text is prompt + "\\n\\n" + reply. Rows whose text is empty are not
    indexed.
    """
    check_field(field)
    if field in SEGMENT_FIELDS:
        from forensics.search.segments import SegmentParams, split_many

        sids, texts = field_texts(ws, dataset, SEGMENT_FIELDS[field], min_id_exclusive)
        return split_many(sids, texts, SegmentParams(**(segment_params or {})))
    idc, expr, frm = field_sql(field)
    params: list[Any] = [dataset]
    if min_id_exclusive is not None:
        frm += f" AND {idc} > ?"
        params.append(int(min_id_exclusive))
    tb = ws.con.sql(f"SELECT {idc} AS id, {expr} AS t {frm} ORDER BY {idc}",
                    params=params).to_arrow_table()
    ids = tb.column(0).to_numpy().astype(np.int64)
    return ids, tb.column(1).to_pylist()


def source_state(ws: "Workspace", dataset: str, field: str) -> SourceState:
    """Count, max id, fingerprint and dataset version of the field's rows now."""
    idc, expr, frm = field_sql(field)
    row = ws.one(f"SELECT count(*), coalesce(max({idc}), 0), "
                 f"coalesce(bit_xor(hash({idc}, {expr})), 0) {frm}", [dataset])
    vrow = ws.one("SELECT version FROM datasets WHERE name = ?", [dataset])
    return SourceState(count=int(row[0]), max_id=int(row[1]), fingerprint=f"{int(row[2]):016x}",
                   version=int(vrow[0]) if vrow else -1)


def fingerprint_of(ws: "Workspace", dataset: str, field: str, ids: np.ndarray) -> str:
    """Fingerprint of the rows with these ids as they are now (to see whether indexed rows changed)."""
    import pyarrow as pa

    idc, expr, frm = field_sql(field)
    name = f"_fp_ids_{os.getpid()}"
    ws.con.register(name, pa.table({"id": pa.array(ids, pa.int64())}))
    try:
        row = ws.one(f"SELECT count(*), coalesce(bit_xor(hash({idc}, {expr})), 0) {frm} "
                     f"AND {idc} IN (SELECT id FROM {name})", [dataset])
    finally:
        ws.con.unregister(name)
    return f"{int(row[1]):016x}" if int(row[0]) == len(ids) else "rows-missing"


def stale_reason(m: Manifest, src: SourceState) -> str | None:
    """Why the index no longer matches DuckDB, or None when it is fresh."""
    if m.field == "explanation":
        if (src.count, src.max_id, src.fingerprint) != (m.source_count, m.source_max_id,
                                                         m.source_fingerprint):
            return (f"explanations changed since build ({m.source_count} -> {src.count} rows, "
                    f"max id {m.source_max_id} -> {src.max_id})")
        return None
    if m.field in SEGMENT_FIELDS:
        from forensics.search.segments import SPLIT_VERSION

        got = (m.params or {}).get("split_version", 1)
        if got != SPLIT_VERSION:
            return (f"segments cut by splitter version {got}, now {SPLIT_VERSION} (rebuild: "
                    f"forensics index build --dataset {m.dataset} --field {m.field})")
    if src.version != m.dataset_version:
        return (f"dataset version {m.dataset_version} at build, now {src.version} "
                f"({m.source_count} -> {src.count} rows)")
    if src.count != m.source_count:
        return f"row count {m.source_count} at build, now {src.count}"
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(str(d), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pair(index: Any, manifest: Manifest, faiss_path: Path, man_path: Path,
               on_stage: Callable[[str], None] | None = None) -> Manifest:
    """Atomically replace the .faiss / manifest pair (see module docstring).

    ``on_stage`` is called with ``"after-faiss-tmp"`` (the new index is written and fsynced to
    its temp file, nothing renamed yet) and ``"between-renames"`` (the new ``.faiss`` is in
    place, its manifest still pending): the two crash windows the recovery handles."""
    from forensics.search.ann import load_faiss

    stage = on_stage or (lambda name: None)
    faiss = load_faiss()
    d = faiss_path.parent
    d.mkdir(parents=True, exist_ok=True)
    tmp_idx = d / f".{faiss_path.name}.tmp-{os.getpid()}"
    pending_man = d / f"{man_path.name}.new"
    # leftovers of a build killed before its first rename (the workspace's DuckDB write lock
    # keeps two builds of one workspace from running at once, so these are never live)
    for stale_tmp in [*d.glob(f".{faiss_path.name}.tmp-*"), *d.glob(f".{man_path.name}.tmp-*")]:
        stale_tmp.unlink(missing_ok=True)
    try:
        faiss.write_index(index, str(tmp_idx))
        with open(tmp_idx, "rb+") as f:
            os.fsync(f.fileno())
        stage("after-faiss-tmp")
        manifest.checksum = sha256_file(tmp_idx)
        manifest.file_size = tmp_idx.stat().st_size
        tmp_man = d / f".{man_path.name}.tmp-{os.getpid()}"
        with open(tmp_man, "w", encoding="utf-8") as f:
            json.dump(asdict(manifest), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_man, pending_man)
        _fsync_dir(d)
        os.replace(tmp_idx, faiss_path)
        _fsync_dir(d)
        stage("between-renames")
        os.replace(pending_man, man_path)
        _fsync_dir(d)
    finally:
        for p in (tmp_idx, d / f".{man_path.name}.tmp-{os.getpid()}"):
            if p.exists():
                p.unlink()
    return manifest


def _pending(man_path: Path) -> Path:
    return man_path.parent / f"{man_path.name}.new"


def _pending_matches(faiss_path: Path, pending: Path) -> bool:
    """Whether a pending manifest describes the .faiss file now in place."""
    try:
        m = json.loads(pending.read_text(encoding="utf-8"))
        return faiss_path.exists() and sha256_file(faiss_path) == m.get("checksum")
    except (OSError, ValueError, AttributeError):
        return False


def recover(faiss_path: Path, man_path: Path) -> str | None:
    """Finish or discard a write interrupted by a crash; say what was done."""
    pending = _pending(man_path)
    if not pending.exists():
        return None
    if _pending_matches(faiss_path, pending):
        try:
            os.replace(pending, man_path)
            _fsync_dir(man_path.parent)
            return "rolled forward an interrupted index write"
        except OSError:
            pass
    try:
        pending.unlink()
    except OSError:  # pragma: no cover
        pass
    return "discarded an interrupted index write"


def read_manifest(ws: "Workspace", dataset: str, field: str) -> Manifest:
    """The manifest of a built index; NotFoundError when it was never built, CheckFailed when
    unreadable.

    An interrupted write is finished first (:func:`recover`) and the ``indexes`` row is brought
    in line with the manifest file when they differ (a crash between the renames, or between
    the write and the row). A read-only workspace changes nothing: it reads a pending manifest
    that matches the .faiss in place, and leaves the roll-forward to the next writer."""
    faiss_path, man_path = index_paths(ws, dataset, field)
    path = man_path
    if not ws.read_only:
        recover(faiss_path, man_path)
    elif _pending(man_path).exists() and _pending_matches(faiss_path, _pending(man_path)):
        path = _pending(man_path)
    if not path.exists():
        raise NotFoundError(f"no {field!r} index for dataset {dataset!r} ({man_path} missing)",
                            hint=f"build it: forensics index build --dataset {dataset} --field {field}")
    try:
        m = Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise CheckFailed(f"index manifest {man_path} is unreadable: {e}",
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}") from e
    if not ws.read_only:
        row = ws.one("SELECT manifest FROM indexes WHERE dataset = ? AND field = ?", [dataset, field])
        if row is None or row[0] is None or json.loads(row[0]) != asdict(m):
            record_index(ws, m, faiss_path)
    return m


def record_index(ws: "Workspace", m: Manifest, faiss_path: Path) -> None:
    """Upsert the index's row in the ``indexes`` table (skipped on a read-only workspace)."""
    if ws.read_only:
        return
    rel = os.path.relpath(faiss_path, ws.root)
    ws.con.execute(
        "INSERT OR REPLACE INTO indexes (dataset, field, path, manifest, built_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [m.dataset, m.field, rel, json.dumps(asdict(m)), _dt.datetime.fromisoformat(m.built_at)])
