"""FAISS indexes over a dataset's sample texts and explanations: build, update, open, search.

Layout: ``<workspace>/indexes/<dataset>/<field>.faiss`` plus ``<field>.manifest.json``; each
index is also recorded in the ``indexes`` table. Vectors are L2-normalised, so the metric is
inner product = cosine. FAISS ids are the workspace's ``sample_id`` (or ``explanation_id`` for
the ``explanation`` field), so a hit joins straight back to DuckDB.

Why a manifest: an index is only meaningful together with the model that produced its
vectors and the dataset state it was built from. The manifest records both (model id, dataset
version / explanation count), plus a sha256 of the .faiss file, so a stale or corrupted index
is reported instead of silently used (``open_index`` raises ``StaleError``).

Crash safety: the new .faiss and manifest are written to temp files in the same directory and
fsynced, then renamed over the old files (``.faiss`` first, manifest last) and the directory is
fsynced. A crash before the first rename leaves the old pair untouched; a crash between the two
renames leaves a pending ``.manifest.json.new`` whose checksum matches the new ``.faiss``, which
:func:`_recover` rolls forward on the next open.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.errors import CheckFailed, NotFoundError, StaleError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.search.embed import Embedder
    from forensics.workspace import Workspace

FIELDS = ("prompt", "reply", "pair", "explanation", "reply_segment", "prompt_segment")
# segment fields: the base field's texts cut by forensics.search.segments; ids are packed
# segment ids (sample id and position), freshness is the base field's
SEGMENT_FIELDS = {"reply_segment": "reply", "prompt_segment": "prompt"}
INDEX_TYPES = ("flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq")
# Below this many rows exact search is fast enough (about 1 ms per query at 50k x 384-d) and
# needs no tuning, so ``auto`` picks ``flat``; above it ``ivf-sq8`` (measured in docs/index.md:
# recall@10 >= 0.95 at about 0.4 GB per million vectors).
FLAT_THRESHOLD = 50_000
MANIFEST_FORMAT = 1
TARGET_RECALL = 0.95
# Test-only fault injection points (see tests/test_index.py): crash the build process at a
# named step with os._exit, as a power cut or kill -9 would.
_FAIL_ENV = "FORENSICS_TEST_INDEX_CRASH_AT"


# ---------------------------------------------------------------------------- dataclasses
@dataclass
class Manifest:
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

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Hit:
    rank: int
    score: float
    sample_id: int | None
    row_id: str | None
    explanation_id: int | None
    prompt: str | None
    reply: str | None
    text: str | None


@dataclass
class IndexStatus:
    dataset: str
    field: str
    state: str                      # fresh | stale | missing file | corrupt
    detail: str
    path: str
    rows: int | None = None
    current_rows: int | None = None
    index_type: str | None = None
    model_id: str | None = None
    built_at: str | None = None
    dataset_version: int | None = None
    current_version: int | None = None


@dataclass
class VerifyReport:
    dataset: str
    field: str
    ok: bool
    problems: list[str] = dc_field(default_factory=list)
    checks: dict = dc_field(default_factory=dict)


@dataclass
class _Source:
    """The rows of one field as DuckDB has them now."""

    count: int
    max_id: int
    fingerprint: str
    version: int


# ---------------------------------------------------------------------------- paths
def index_paths(ws: "Workspace", dataset: str, field: str) -> tuple[Path, Path]:
    _check_field(field)
    d = ws.indexes_dir / _safe_name(dataset)
    return d / f"{field}.faiss", d / f"{field}.manifest.json"


def _safe_name(dataset: str) -> str:
    """Dataset names become directory names: keep them on one path component."""
    if not dataset or dataset in (".", "..") or "/" in dataset or "\\" in dataset or "\0" in dataset:
        raise UsageError(f"dataset name {dataset!r} cannot be used as an index directory name")
    return dataset


def _check_field(field: str) -> None:
    if field not in FIELDS:
        raise UsageError(f"unknown field {field!r}", hint="one of: " + ", ".join(FIELDS))


# ---------------------------------------------------------------------------- source rows
_SAMPLE_TEXT = {
    "prompt": "coalesce(prompt, '')",
    "reply": "coalesce(reply, '')",
    "pair": "coalesce(prompt, '') || chr(10) || chr(10) || coalesce(reply, '')",
}


def _field_sql(field: str) -> tuple[str, str, str]:
    """(id column, text expression, FROM+WHERE) for one field; rows with empty text are left out.
    A segment field reads its base field's rows."""
    field = SEGMENT_FIELDS.get(field, field)
    if field == "explanation":
        return ("explanation_id", "text",
                "FROM explanations WHERE dataset = ? AND sample_id IS NOT NULL AND text <> ''")
    cond = {"prompt": "coalesce(prompt, '') <> ''", "reply": "coalesce(reply, '') <> ''",
            "pair": "(coalesce(prompt, '') <> '' OR coalesce(reply, '') <> '')"}[field]
    return "sample_id", _SAMPLE_TEXT[field], f"FROM samples WHERE dataset = ? AND {cond}"


def field_texts(ws: "Workspace", dataset: str, field: str, min_id_exclusive: int | None = None,
                segment_params: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """(ids int64, texts) of a dataset's field, ordered by id.

    ids are ``sample_id`` (``explanation_id`` for ``explanation``, packed segment ids for a
    segment field, cut with ``segment_params``: :class:`~forensics.search.segments.SegmentParams`
    fields); the pair text is prompt + "\\n\\n" + reply. Rows whose text is empty are not
    indexed.
    """
    _check_field(field)
    if field in SEGMENT_FIELDS:
        from forensics.search.segments import SegmentParams, split_many

        sids, texts = field_texts(ws, dataset, SEGMENT_FIELDS[field], min_id_exclusive)
        return split_many(sids, texts, SegmentParams(**(segment_params or {})))
    idc, expr, frm = _field_sql(field)
    params: list[Any] = [dataset]
    if min_id_exclusive is not None:
        frm += f" AND {idc} > ?"
        params.append(int(min_id_exclusive))
    tb = ws.con.sql(f"SELECT {idc} AS id, {expr} AS t {frm} ORDER BY {idc}",
                    params=params).to_arrow_table()
    ids = tb.column(0).to_numpy().astype(np.int64)
    return ids, tb.column(1).to_pylist()


def _source_state(ws: "Workspace", dataset: str, field: str) -> _Source:
    idc, expr, frm = _field_sql(field)
    row = ws.one(f"SELECT count(*), coalesce(max({idc}), 0), "
                 f"coalesce(bit_xor(hash({idc}, {expr})), 0) {frm}", [dataset])
    vrow = ws.one("SELECT version FROM datasets WHERE name = ?", [dataset])
    return _Source(count=int(row[0]), max_id=int(row[1]), fingerprint=f"{int(row[2]):016x}",
                   version=int(vrow[0]) if vrow else -1)


def _fingerprint_of(ws: "Workspace", dataset: str, field: str, ids: np.ndarray) -> str:
    """Fingerprint of the rows with these ids as they are now (to see whether indexed rows changed)."""
    import pyarrow as pa

    idc, expr, frm = _field_sql(field)
    name = f"_fp_ids_{os.getpid()}"
    ws.con.register(name, pa.table({"id": pa.array(ids, pa.int64())}))
    try:
        row = ws.one(f"SELECT count(*), coalesce(bit_xor(hash({idc}, {expr})), 0) {frm} "
                     f"AND {idc} IN (SELECT id FROM {name})", [dataset])
    finally:
        ws.con.unregister(name)
    return f"{int(row[1]):016x}" if int(row[0]) == len(ids) else "rows-missing"


def _is_stale(m: Manifest, src: _Source) -> str | None:
    """Why the index no longer matches DuckDB, or None when it is fresh."""
    if m.field == "explanation":
        if (src.count, src.max_id, src.fingerprint) != (m.source_count, m.source_max_id,
                                                         m.source_fingerprint):
            return (f"explanations changed since build ({m.source_count} -> {src.count} rows, "
                    f"max id {m.source_max_id} -> {src.max_id})")
        return None
    if src.version != m.dataset_version:
        return (f"dataset version {m.dataset_version} at build, now {src.version} "
                f"({m.source_count} -> {src.count} rows)")
    if src.count != m.source_count:
        return f"row count {m.source_count} at build, now {src.count}"
    return None


# ---------------------------------------------------------------------------- faiss helpers
def _faiss():
    import faiss

    return faiss


def _choose_type(n: int, requested: str | None) -> str:
    if requested in (None, "", "auto"):
        return "flat" if n < FLAT_THRESHOLD else "ivf-sq8"
    if requested not in INDEX_TYPES:
        raise UsageError(f"unknown index type {requested!r}",
                         hint="one of: auto, " + ", ".join(INDEX_TYPES))
    return requested


def _new_index(kind: str, dim: int, n: int, train: np.ndarray | None) -> tuple[Any, dict]:
    """An empty index of ``kind`` (trained when it needs training) and its parameters."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), {}
    if kind in ("hnsw", "hnsw-sq8"):
        m, efc, efs = 32, 80, 128
        if kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, m, ip)
        else:
            base = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, ip)
            base.train(train)
        base.hnsw.efConstruction = efc
        base.hnsw.efSearch = efs
        return faiss.IndexIDMap2(base), {"M": m, "efConstruction": efc, "efSearch": efs}
    # IVF: about 4 * sqrt(n) lists, trained on at most 50 points per list
    nlist = int(max(16, min(65536, 4 * np.sqrt(max(n, 1)))))
    nlist = min(nlist, max(1, len(train) // 39)) if train is not None else nlist
    quant = faiss.IndexFlatIP(dim)
    if kind == "ivf-sq8":
        base = faiss.IndexIVFScalarQuantizer(quant, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        params = {"nlist": nlist}
    elif kind == "ivf-pq":
        msub = _pq_m(dim)
        # 8-bit codes need >= 256 training points per sub-quantiser; tiny corpora get fewer bits
        nbits = int(min(8, max(1, np.floor(np.log2(max(len(train), 2))))))
        base = faiss.IndexIVFPQ(quant, dim, nlist, msub, nbits, ip)
        params = {"nlist": nlist, "pq_m": msub, "pq_bits": nbits}
    else:  # pragma: no cover - guarded by _choose_type
        raise UsageError(f"unknown index type {kind!r}")
    # the python wrapper keeps ``quant`` alive through base.referenced_objects
    base.cp.seed = 1234
    base.train(train)
    base.set_direct_map_type(faiss.DirectMap.Hashtable)
    params["nprobe"] = min(nlist, 32)
    return base, params


def _pq_m(dim: int) -> int:
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m and dim % m == 0 and m <= 96:
            return m
    return 1


def _apply_params(index: Any, kind: str, params: dict) -> None:
    faiss = _faiss()
    if kind.startswith("ivf"):
        faiss.extract_index_ivf(index).nprobe = int(params.get("nprobe", 32))
    elif kind.startswith("hnsw"):
        faiss.downcast_index(index.index).hnsw.efSearch = int(params.get("efSearch", 128))


def _tune(index: Any, kind: str, params: dict, vecs: np.ndarray, ids: np.ndarray,
          nq: int = 200, seed: int = 0) -> float | None:
    """Raise nprobe / efSearch until recall@10 against exact search reaches TARGET_RECALL.

    Queries are indexed vectors plus noise (an unseen query near the data, like a real one);
    the exact answer comes from brute force over all vectors. Returns the measured recall.
    """
    if kind == "flat" or len(vecs) < 20:
        return 1.0 if kind == "flat" else None
    faiss = _faiss()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vecs), size=min(nq, len(vecs)), replace=False)
    q = vecs[pick] + rng.normal(0, 0.5 / np.sqrt(vecs.shape[1]), size=(len(pick), vecs.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = min(10, len(vecs))
    _, truth = faiss.knn(q, vecs, k, metric=faiss.METRIC_INNER_PRODUCT)  # no copy of vecs
    truth_ids = ids[truth]
    key, steps = (("nprobe", [8, 16, 32, 64, 128, 256, 512]) if kind.startswith("ivf")
                  else ("efSearch", [64, 128, 256, 512]))
    if key == "nprobe":
        steps = [s for s in steps if s <= params["nlist"]] or [params["nlist"]]
    recall = 0.0
    for s in steps:
        params[key] = s
        _apply_params(index, kind, params)
        _, got = index.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth_ids)]))
        if recall >= TARGET_RECALL:
            break
    return round(recall, 4)


@contextlib.contextmanager
def few_query_threads(n_queries: int, threshold: int = 8):
    """Search one or a few queries on a single OpenMP thread.

    Why: FAISS parallelises a single query over the database with OpenMP; on a shared 2-core
    box under load the threads' spin-waits made exact single-query search 4x slower (measured
    p50 128 ms with 2 threads vs 29 ms with 1 at 100k, load average 8). Batches keep all threads.
    """
    if n_queries >= threshold:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _sha256_file(path: Path) -> str:
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


def _crash_point(name: str) -> None:
    if os.environ.get(_FAIL_ENV) == name:
        os._exit(86)


def _write_pair(index: Any, manifest: Manifest, faiss_path: Path, man_path: Path) -> Manifest:
    """Atomically replace the .faiss / manifest pair (see module docstring)."""
    faiss = _faiss()
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
        _crash_point("after-faiss-tmp")
        manifest.checksum = _sha256_file(tmp_idx)
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
        _crash_point("between-renames")
        os.replace(pending_man, man_path)
        _fsync_dir(d)
    finally:
        for p in (tmp_idx, d / f".{man_path.name}.tmp-{os.getpid()}"):
            if p.exists():
                p.unlink()
    return manifest


def _recover(faiss_path: Path, man_path: Path) -> str | None:
    """Finish or discard a write interrupted by a crash; say what was done."""
    pending = man_path.parent / f"{man_path.name}.new"
    if not pending.exists():
        return None
    try:
        m = json.loads(pending.read_text(encoding="utf-8"))
        if faiss_path.exists() and _sha256_file(faiss_path) == m.get("checksum"):
            os.replace(pending, man_path)
            _fsync_dir(man_path.parent)
            return "rolled forward an interrupted index write"
    except (OSError, ValueError):
        pass
    try:
        pending.unlink()
    except OSError:  # pragma: no cover
        pass
    return "discarded an interrupted index write"


def read_manifest(ws: "Workspace", dataset: str, field: str) -> Manifest:
    faiss_path, man_path = index_paths(ws, dataset, field)
    _recover(faiss_path, man_path)
    if not man_path.exists():
        raise NotFoundError(f"no {field!r} index for dataset {dataset!r} ({man_path} missing)",
                            hint=f"build it: forensics index build --dataset {dataset} --field {field}")
    try:
        return Manifest.from_dict(json.loads(man_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise CheckFailed(f"index manifest {man_path} is unreadable: {e}",
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}") from e


def _record(ws: "Workspace", m: Manifest, faiss_path: Path) -> None:
    if ws.read_only:
        return
    rel = os.path.relpath(faiss_path, ws.root)
    ws.con.execute(
        "INSERT OR REPLACE INTO indexes (dataset, field, path, manifest, built_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [m.dataset, m.field, rel, json.dumps(asdict(m)), _dt.datetime.fromisoformat(m.built_at)])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def _tool_version() -> str:
    from forensics import __version__

    return __version__


def _err(msg: str, progress: bool) -> None:
    if progress:
        import sys

        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- build / update
def build(ws: "Workspace", dataset: str, field: str = "pair", index_type: str | None = None,
          model: str | None = None, device: str | None = None, progress: bool = True,
          embedder: "Embedder | None" = None, segment_params: dict | None = None) -> Manifest:
    """Embed every row of ``dataset``'s ``field`` (cache-backed) and write a fresh index.

    A segment field (``reply_segment``, ``prompt_segment``) embeds each row's segments
    (:mod:`forensics.search.segments`, cut with ``segment_params``: SegmentParams fields,
    recorded in the manifest's ``params["segments"]``); its manifest's ``rows`` counts segments,
    ``source_count`` the rows they came from."""
    from forensics.search.embed import Embedder, embed_texts

    _check_field(field)
    ws.require_dataset(dataset)
    t0 = time.perf_counter()
    src = _source_state(ws, dataset, field)
    seg = None
    if field in SEGMENT_FIELDS:
        import dataclasses

        from forensics.search.segments import SegmentParams

        seg = dataclasses.asdict(SegmentParams(**(segment_params or {})))
    ids, texts = field_texts(ws, dataset, field, segment_params=seg)
    if len(ids) == 0:
        what = "explanations" if field == "explanation" else f"non-empty {field} texts"
        raise NotFoundError(f"dataset {dataset!r} has no {what} to index",
                            hint="ingest samples (or import explanations) first")
    emb = embedder or Embedder(model, device=device)
    _err(f"{dataset}/{field}: {len(ids)} rows, model {emb.model_id}", progress)
    vecs = embed_texts(ws, texts, emb, progress=progress)
    kind = _choose_type(len(ids), index_type)
    train = None
    if kind not in ("flat", "hnsw"):
        rng = np.random.default_rng(0)
        nt = min(len(vecs), 50 * int(max(16, 4 * np.sqrt(len(vecs)))))
        train = vecs[np.sort(rng.choice(len(vecs), size=nt, replace=False))] if nt < len(vecs) else vecs
    _err(f"{dataset}/{field}: building {kind} index", progress)
    index, params = _new_index(kind, emb.dim, len(ids), train)
    index.add_with_ids(vecs, ids)
    recall = _tune(index, kind, params, vecs, ids)
    if seg is not None:
        params["segments"] = seg
    faiss_path, man_path = index_paths(ws, dataset, field)
    m = Manifest(dataset=dataset, field=field, model_id=emb.model_id, model_spec=emb.spec,
                 dim=emb.dim, metric="inner_product", index_type=kind, params=params,
                 rows=int(index.ntotal), max_id=int(ids.max()), checksum="", file_size=0,
                 dataset_version=src.version, source_count=src.count, source_max_id=src.max_id,
                 source_fingerprint=src.fingerprint, built_at=_now(), tool_version=_tool_version(),
                 measured_recall_at_10=recall)
    m.build_seconds = round(time.perf_counter() - t0, 3)
    _write_pair(index, m, faiss_path, man_path)
    _record(ws, m, faiss_path)
    if recall is not None and recall < TARGET_RECALL:
        _err(f"warning: {kind} reaches recall@10 {recall} < {TARGET_RECALL} on this data even at "
             f"the largest {'nprobe' if kind.startswith('ivf') else 'efSearch'} tried; consider "
             f"--index-type flat or ivf-sq8", progress)
    _err(f"{dataset}/{field}: {m.rows} vectors, {kind} {params}, "
         f"recall@10 {recall}, {m.build_seconds:.1f}s -> {faiss_path}", progress)
    return m


def update(ws: "Workspace", dataset: str, field: str = "pair", progress: bool = True,
           device: str | None = None) -> Manifest:
    """Add only rows that are not in the index yet.

    When rows already indexed were changed or deleted (their fingerprint differs), adding
    cannot repair the index, so it is rebuilt with the same model and index type; the
    manifest's ``updated_from`` stays None in that case.
    """
    from forensics.search.embed import embed_texts

    faiss_path, man_path = index_paths(ws, dataset, field)
    try:
        old = read_manifest(ws, dataset, field)
    except NotFoundError:
        _err(f"{dataset}/{field}: no index yet, building", progress)
        return build(ws, dataset, field, progress=progress, device=device)
    oi = open_index(ws, dataset, field, allow_stale=True, device=device)
    src = _source_state(ws, dataset, field)
    if _is_stale(old, src) is None:
        _err(f"{dataset}/{field}: already fresh ({old.rows} rows)", progress)
        return old
    if field in SEGMENT_FIELDS:
        # segment ids are not sample ids: no incremental add, a rebuild (the embedding cache
        # keeps unchanged segments from being embedded again)
        _err(f"{dataset}/{field}: rows changed; rebuilding the segment index", progress)
        return build(ws, dataset, field, index_type=old.index_type, progress=progress,
                     embedder=oi.embedder(), segment_params=old.params.get("segments"))
    indexed = oi.ids()
    if _fingerprint_of(ws, dataset, field, indexed) != old.source_fingerprint:
        _err(f"{dataset}/{field}: indexed rows changed or were removed; rebuilding", progress)
        return build(ws, dataset, field, index_type=old.index_type, progress=progress,
                     embedder=oi.embedder())
    ids, texts = field_texts(ws, dataset, field)
    new = ~np.isin(ids, indexed)
    ids, texts = ids[new], [t for t, keep in zip(texts, new) if keep]
    t0 = time.perf_counter()
    if len(ids):
        vecs = embed_texts(ws, texts, oi.embedder(), progress=progress)
        oi.index.add_with_ids(vecs, ids)
    m = Manifest.from_dict(asdict(old))
    m.rows = int(oi.index.ntotal)
    m.max_id = int(max(old.max_id, ids.max() if len(ids) else 0))
    m.dataset_version, m.source_count = src.version, src.count
    m.source_max_id, m.source_fingerprint = src.max_id, src.fingerprint
    m.updated_from, m.built_at = old.built_at, _now()
    m.build_seconds = round(time.perf_counter() - t0, 3)
    _write_pair(oi.index, m, faiss_path, man_path)
    _record(ws, m, faiss_path)
    _err(f"{dataset}/{field}: added {len(ids)} rows -> {m.rows} vectors", progress)
    return m


def default_fields(ws: "Workspace", dataset: str) -> list[str]:
    """``pair``, plus ``explanation`` when the dataset has sample explanations."""
    n = ws.one("SELECT count(*) FROM explanations WHERE dataset = ? AND sample_id IS NOT NULL",
               [dataset])[0]
    return ["pair", "explanation"] if n else ["pair"]


# ---------------------------------------------------------------------------- open / search
class OpenIndex:
    """A loaded, checked index. ``search`` takes query vectors; ``embedder()`` gives the model."""

    def __init__(self, ws: "Workspace", manifest: Manifest, index: Any, path: Path,
                 stale_reason: str | None, device: str | None = None):
        self.ws = ws
        self.manifest = manifest
        self.index = index
        self.path = path
        self.stale_reason = stale_reason
        self._device = device
        self._embedder: "Embedder | None" = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def embedder(self) -> "Embedder":
        """The embedder matching the manifest's model (loaded once per OpenIndex)."""
        if self._embedder is None:
            from forensics.search.embed import Embedder

            e = Embedder.from_spec(self.manifest.model_spec, device=self._device)
            if e.model_id != self.manifest.model_id:
                raise StaleError(
                    f"index {self.path} was built with model {self.manifest.model_id!r} but "
                    f"{self.manifest.model_spec or 'the default model'} is now {e.model_id!r}",
                    hint=f"rebuild: forensics index build --dataset {self.manifest.dataset} "
                         f"--field {self.manifest.field}")
            self._embedder = e
        return self._embedder

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (= cosine). Returns (scores [q,k], ids [q,k]); missing ids are
        -1 with score -inf."""
        q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if q.shape[1] != self.manifest.dim:
            raise UsageError(f"query vectors have dimension {q.shape[1]}, index has {self.manifest.dim}",
                             hint="embed queries with OpenIndex.embedder()")
        k = int(k)
        if k <= 0:
            raise UsageError("k must be positive")
        if self.ntotal == 0 or len(q) == 0:
            return (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
        with few_query_threads(len(q)):
            scores, ids = self.index.search(q, k)
        scores = scores.astype(np.float32, copy=False)
        scores[ids < 0] = -np.inf
        return scores, ids.astype(np.int64, copy=False)

    def ids(self) -> np.ndarray:
        """Every id held by the index."""
        faiss = _faiss()
        if self.manifest.index_type.startswith("ivf"):
            ivf = faiss.extract_index_ivf(self.index)
            invlists = ivf.invlists
            out = []
            for lst in range(ivf.nlist):
                n = invlists.list_size(lst)
                if n:
                    out.append(faiss.rev_swig_ptr(invlists.get_ids(lst), n).copy())
            return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)
        return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))

    def vectors(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Stored vectors for ``ids`` ([n, dim] float32). Exact for flat/hnsw; for quantised
        indexes the exact vectors are re-read from the embedding cache (falling back to the
        index's approximate reconstruction for rows the cache lacks)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.manifest.dim), np.float32)
        if self.manifest.index_type in ("flat", "hnsw"):
            return self.reconstruct(ids)
        out = self.reconstruct(ids)
        cached = _cached_vectors(self.ws, self.manifest, ids)
        for i, v in cached.items():
            out[i] = v
        return out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """What the index itself stores for ``ids`` (lossy for sq8/pq)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), self.manifest.dim), np.float32)
        for i, x in enumerate(ids):
            try:
                out[i] = self.index.reconstruct(int(x))
            except RuntimeError as e:
                raise NotFoundError(f"id {int(x)} is not in index {self.path}") from e
        return out


def _cached_vectors(ws: "Workspace", m: Manifest, ids: np.ndarray) -> dict[int, np.ndarray]:
    from forensics.search.embed import _cache_lookup, text_hash

    rows = _id_texts(ws, m, ids)
    hashes = {int(i): text_hash(t) for i, t in rows}
    found = _cache_lookup(ws, m.model_id, list(set(hashes.values())), m.dim)
    pos = {int(x): i for i, x in enumerate(ids)}
    return {pos[i]: found[h] for i, h in hashes.items() if h in found}


def _id_texts(ws: "Workspace", m: Manifest, ids: np.ndarray) -> list[tuple[int, str]]:
    """(id, indexed text) of ``ids`` as DuckDB has them now (segments re-cut)."""
    if m.field in SEGMENT_FIELDS:
        from forensics.search.segments import SegmentParams, segment_sample, split_many

        base = Manifest.from_dict({**asdict(m), "field": SEGMENT_FIELDS[m.field]})
        sids = np.unique(segment_sample(np.asarray(ids, np.int64)))
        rows = _id_texts(ws, base, sids)
        got = split_many(np.asarray([r[0] for r in rows], np.int64), [r[1] for r in rows],
                         SegmentParams(**m.params.get("segments", {})))
        want = {int(x) for x in ids}
        return [(int(i), t) for i, t in zip(*got) if int(i) in want]
    idc, expr, frm = _field_sql(m.field)
    # ids as a list parameter, not a registered Arrow table (that imports pandas, ~0.3 s)
    return ws.rows(f"SELECT {idc}, {expr} {frm} AND {idc} IN (SELECT unnest(?::BIGINT[]))",
                   [m.dataset, [int(x) for x in ids]])


def open_index(ws: "Workspace", dataset: str, field: str = "pair", allow_stale: bool = False,
               device: str | None = None, embedder: "Embedder | None" = None,
               read_only: bool = False) -> OpenIndex:
    """Load an index after checking its manifest, checksum and freshness.

    Raises NotFoundError when it was never built, CheckFailed when the file is missing or
    corrupt, StaleError when the dataset changed since build (unless ``allow_stale``).
    ``embedder``: an already loaded Embedder to reuse for queries when its model id matches the
    manifest's (saves a model load per index when several indexes are opened).
    ``read_only``: map the file instead of reading it (IO_FLAG_MMAP: 5-8 ms instead of ~40 ms
    for a 100k-row IVF-SQ8 index; what a triage or search, which never add vectors, wants).
    """
    faiss_path, _ = index_paths(ws, dataset, field)
    m = read_manifest(ws, dataset, field)
    if not faiss_path.exists():
        raise CheckFailed(f"index file {faiss_path} is missing (its manifest exists)",
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}")
    # checksum before reading: faiss may crash or allocate wildly on a corrupted file
    if _sha256_file(faiss_path) != m.checksum:
        raise CheckFailed(f"index file {faiss_path} is corrupt: sha256 does not match its manifest",
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}")
    reason = _is_stale(m, _source_state(ws, dataset, field))
    if reason and not allow_stale:
        raise StaleError(f"index {dataset}/{field} is stale: {reason}",
                         hint=f"run `forensics index update --dataset {dataset} --field {field}`")
    faiss = _faiss()
    index = None
    if read_only and device in (None, "cpu"):
        try:
            index = faiss.read_index(str(faiss_path), faiss.IO_FLAG_MMAP)
        except RuntimeError:      # a type faiss cannot map: read it whole
            index = None
    if index is None:
        index = faiss.read_index(str(faiss_path))
    _apply_params(index, m.index_type, m.params)
    oi = OpenIndex(ws, m, index, faiss_path, reason, device=device)
    if embedder is not None and embedder.model_id == m.model_id:
        oi._embedder = embedder
    return oi


def search(ws: "Workspace", dataset: str, queries: list[str], field: str = "pair", k: int = 10,
           oi: OpenIndex | None = None) -> list[list[Hit]]:
    """Embed ``queries`` with the index's model and return the top-k hits of each, joined
    back to the samples (and explanations) in DuckDB."""
    from forensics.search.embed import embed_texts

    oi = oi or open_index(ws, dataset, field)
    qv = embed_texts(ws, list(queries), oi.embedder())
    scores, ids = oi.search(qv, k)
    if field in SEGMENT_FIELDS:
        return _segment_hits(ws, oi.manifest, scores, ids)
    return hits_for(ws, field, scores, ids)


def _segment_hits(ws: "Workspace", m: Manifest, scores: np.ndarray, ids: np.ndarray
                  ) -> list[list[Hit]]:
    """Segment hits: ``sample_id`` the segment's row, ``text`` the segment itself."""
    from forensics.search.segments import segment_sample

    seg = dict(_id_texts(ws, m, ids[ids >= 0]))
    base = hits_for(ws, "pair", scores, segment_sample(ids))
    for hrow, irow in zip(base, ids):
        for h, i in zip(hrow, irow[irow >= 0]):
            h.text = seg.get(int(i))
    return base


def hits_for(ws: "Workspace", field: str, scores: np.ndarray, ids: np.ndarray) -> list[list[Hit]]:
    """Turn search arrays into Hit rows with sample text (one DuckDB query for all queries;
    the ids travel as a list parameter: registering an Arrow table imports pandas, ~0.3 s)."""
    flat = sorted({int(x) for x in ids.ravel() if x >= 0})
    info: dict[int, tuple] = {}
    if flat:
        if field == "explanation":
            rows = ws.rows(
                "SELECT e.explanation_id, e.sample_id, s.row_id, s.prompt, s.reply, e.text "
                "FROM explanations e LEFT JOIN samples s USING (sample_id) "
                "WHERE e.explanation_id IN (SELECT unnest(?::BIGINT[]))", [flat])
            info = {r[0]: (r[1], r[2], r[0], r[3], r[4], r[5]) for r in rows}
        else:
            expr = _SAMPLE_TEXT[field]
            rows = ws.rows(f"SELECT sample_id, row_id, prompt, reply, {expr} FROM samples "
                           f"WHERE sample_id IN (SELECT unnest(?::BIGINT[]))", [flat])
            info = {r[0]: (r[0], r[1], None, r[2], r[3], r[4]) for r in rows}
    out: list[list[Hit]] = []
    for srow, irow in zip(scores, ids):
        hits = []
        for s, i in zip(srow, irow):
            if i < 0:
                continue
            sid, rid, eid, p, r, t = info.get(int(i), (None if field == "explanation" else int(i),
                                                       None, int(i) if field == "explanation" else None,
                                                       None, None, None))
            hits.append(Hit(rank=len(hits) + 1, score=float(s), sample_id=sid, row_id=rid,
                            explanation_id=eid, prompt=p, reply=r, text=t))
        out.append(hits)
    return out


# ---------------------------------------------------------------------------- status / verify
def _known(ws: "Workspace", dataset: str | None) -> list[tuple[str, str]]:
    pairs = set()
    q = "SELECT dataset, field FROM indexes" + (" WHERE dataset = ?" if dataset else "")
    for d, f in ws.rows(q, [dataset] if dataset else []):
        pairs.add((d, f))
    root = ws.indexes_dir
    if root.exists():
        for d in root.iterdir():
            if not d.is_dir() or (dataset and d.name != dataset):
                continue
            for mf in d.glob("*.manifest.json*"):
                f = mf.name.split(".manifest.json")[0]
                if f in FIELDS:
                    pairs.add((d.name, f))
    return sorted(pairs)


def status(ws: "Workspace", dataset: str | None = None) -> list[IndexStatus]:
    """Every index of the workspace (or one dataset): fresh | stale | missing file | corrupt."""
    if dataset:
        ws.require_dataset(dataset)
    out = []
    for d, f in _known(ws, dataset):
        faiss_path, man_path = index_paths(ws, d, f)
        rel = os.path.relpath(faiss_path, ws.root)
        try:
            m = read_manifest(ws, d, f)
        except NotFoundError:
            out.append(IndexStatus(d, f, "missing file", f"manifest {man_path.name} missing", rel))
            continue
        except CheckFailed as e:
            out.append(IndexStatus(d, f, "corrupt", e.message, rel))
            continue
        st = IndexStatus(d, f, "fresh", "", rel, rows=m.rows, index_type=m.index_type,
                         model_id=m.model_id, built_at=m.built_at, dataset_version=m.dataset_version)
        try:
            src = _source_state(ws, d, f)
            st.current_rows, st.current_version = src.count, src.version
        except Exception as e:  # dataset gone
            src = None
            st.state, st.detail = "stale", f"cannot read dataset: {e}"
        if not faiss_path.exists():
            st.state, st.detail = "missing file", f"{faiss_path.name} missing"
        elif faiss_path.stat().st_size != m.file_size or _sha256_file(faiss_path) != m.checksum:
            st.state, st.detail = "corrupt", "sha256 of the .faiss file does not match the manifest"
        elif src is not None:
            reason = _is_stale(m, src)
            if reason:
                st.state, st.detail = "stale", reason
        out.append(st)
    return out


def verify(ws: "Workspace", dataset: str, field: str, sample: int = 32, seed: int | None = None,
           device: str | None = None) -> VerifyReport:
    """Check one index end to end; ``ok`` is False with named problems on any failure.

    Checks: manifest readable and consistent, file present, sha256, loadable, vector count
    vs manifest and vs DuckDB, freshness, and ``sample`` random rows re-embedded without the
    cache and compared with what the index stores (cosine > 0.99; > 0.9 for ivf-pq, whose
    product quantisation is lossy by design).
    """
    rep = VerifyReport(dataset, field, ok=True)
    faiss_path, man_path = index_paths(ws, dataset, field)

    def problem(msg: str) -> None:
        rep.ok = False
        rep.problems.append(msg)

    try:
        m = read_manifest(ws, dataset, field)
    except (NotFoundError, CheckFailed) as e:
        problem(e.message)
        return rep
    rep.checks["manifest"] = "ok"
    if (m.dataset, m.field) != (dataset, field):
        problem(f"manifest {man_path} describes {m.dataset}/{m.field}, not {dataset}/{field}")
    if not faiss_path.exists():
        problem(f"index file {faiss_path} is missing")
        return rep
    actual = _sha256_file(faiss_path)
    rep.checks["checksum"] = "ok" if actual == m.checksum else "mismatch"
    if actual != m.checksum:
        problem(f"checksum mismatch: {faiss_path} has sha256 {actual[:16]}…, manifest says "
                f"{m.checksum[:16]}… (file corrupted or replaced)")
        return rep  # never hand a corrupted file to faiss
    try:
        oi = open_index(ws, dataset, field, allow_stale=True, device=device)
    except Exception as e:
        problem(f"cannot load {faiss_path}: {e}")
        return rep
    rep.checks["rows_index"] = oi.ntotal
    rep.checks["rows_manifest"] = m.rows
    if oi.ntotal != m.rows:
        problem(f"index holds {oi.ntotal} vectors but the manifest says {m.rows}")
    if oi.index.d != m.dim:
        problem(f"index dimension {oi.index.d} != manifest dimension {m.dim}")
    ids, texts = field_texts(ws, dataset, field, segment_params=m.params.get("segments"))
    rep.checks["rows_duckdb"] = len(ids)
    if len(ids) != oi.ntotal:
        problem(f"index holds {oi.ntotal} vectors but DuckDB has {len(ids)} {field} rows for "
                f"{dataset!r}")
    if oi.stale_reason:
        problem(f"stale: {oi.stale_reason} (run `forensics index update --dataset {dataset} "
                f"--field {field}`)")
    rep.checks["fresh"] = oi.stale_reason is None
    indexed = oi.ids()
    common = np.isin(ids, indexed)
    missing_ids = ids[~common]
    if len(missing_ids):
        problem(f"{len(missing_ids)} DuckDB rows are not in the index (e.g. id {int(missing_ids[0])})")
    extra = np.setdiff1d(indexed, ids)
    if len(extra):
        problem(f"{len(extra)} index ids no longer exist in DuckDB (e.g. id {int(extra[0])})")
    cand = np.flatnonzero(common)
    if sample > 0 and len(cand):
        rng = np.random.default_rng(seed)
        pick = rng.choice(cand, size=min(sample, len(cand)), replace=False)
        try:
            fresh = oi.embedder().encode([texts[i] for i in pick])
        except Exception as e:
            problem(f"cannot re-embed with model {m.model_id}: {e}")
        else:
            stored = oi.reconstruct(ids[pick])
            cos = np.sum(stored * fresh, axis=1) / np.maximum(
                np.linalg.norm(stored, axis=1) * np.linalg.norm(fresh, axis=1), 1e-12)
            thr = 0.9 if m.index_type == "ivf-pq" else 0.99
            bad = np.flatnonzero(cos <= thr)
            rep.checks["reembed"] = {"sampled": int(len(pick)), "min_cos": round(float(cos.min()), 5),
                                     "threshold": thr, "below": int(len(bad))}
            if len(bad):
                problem(f"{len(bad)} of {len(pick)} re-embedded rows differ from stored vectors "
                        f"(min cosine {float(cos.min()):.4f} <= {thr}; e.g. id {int(ids[pick][bad[0]])})")
    return rep


__all__ = ["FIELDS", "INDEX_TYPES", "FLAT_THRESHOLD", "Manifest", "Hit", "IndexStatus",
           "VerifyReport", "OpenIndex", "field_texts", "build", "update", "open_index", "search",
           "hits_for", "status", "verify", "default_fields", "index_paths", "read_manifest"]
