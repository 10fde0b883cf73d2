"""Index builds in shards: embed slices of a dataset (in-process or on Ray), keep each slice's
vectors as a Parquet file, then train one quantiser on a sample and fill a sharded index.

Why shards: a build of millions of rows must survive a crash without starting over, and must not
need every vector in one process's memory. The rows (ordered by id) are cut into slices of
``shard_rows``; each slice's vectors go to ``indexes/<dataset>/<field>.vectors/<key>.parquet``
(written to a temp file and renamed), where ``key`` hashes the model, the field, the segment
cut and the slice's ids and text fingerprint. A build killed at any point re-runs only the
slices whose Parquet file is missing; an ``update`` after rows were appended re-embeds only the
slices whose rows changed (the last one, plus new ones). After the index is written the vector
files of slices no longer in the plan are removed; the current ones stay (the exact vectors of a
quantised index, and the resume points of the next update).

The index is filled from the Parquet files one slice at a time (:mod:`forensics.search.shards`):
IVF types are trained once on a sample of at most 50 points per list, read from the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from forensics import progress as _progress
from forensics.errors import NotFoundError, UsageError
from forensics.search.ann import TARGET_RECALL, choose_type, load_faiss, new_index
from forensics.search.embed import COMMIT_SECONDS
from forensics.search.manifest import (SEGMENT_FIELDS, Manifest, field_sql, index_paths,
                                       record_index, source_state)

if TYPE_CHECKING:  # pragma: no cover
    from forensics.search.embed import Embedder
    from forensics.workspace import Workspace

ENGINES = ("local", "ray")


@dataclass
class ShardParams:
    """How a sharded build runs (recorded in the manifest's ``build``; documented in docs/index.md).

    ``engine``: ``local`` embeds in this process through the embedding cache; ``ray`` embeds on
    Ray Data actors (``workers`` of them, ``cpus_per_worker`` CPUs or one GPU each) and keeps the
    vectors only in the Parquet slices. ``shard_rows``: rows per slice (resume unit and index
    shard). ``block_rows``: rows per Ray Data block (one ``map_batches`` call on one actor).
    ``ray_address``: None starts a local Ray; ``auto`` or ``ray://host:10001`` joins a cluster.
    """

    engine: str = "local"
    shard_rows: int = 100_000
    workers: int = 2
    cpus_per_worker: int = 1
    block_rows: int = 1024
    window_rows: int = 1_000_000
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}", hint="local or ray")
        if min(int(self.shard_rows), int(self.workers), int(self.block_rows),
               int(self.window_rows), int(self.cpus_per_worker)) < 1:
            raise UsageError("shard_rows, workers, cpus_per_worker, block_rows and window_rows "
                             "must be positive")


@dataclass
class Slice:
    """One slice of the dataset's rows (ids ``lo..hi``) and where its vectors live."""

    pos: int
    lo: int
    hi: int
    count: int
    fingerprint: str
    key: str
    path: Path


def _vec_dir(ws: "Workspace", dataset: str, field: str) -> Path:
    faiss_path, _ = index_paths(ws, dataset, field)
    return faiss_path.parent / f"{field}.vectors"


def plan(ws: "Workspace", dataset: str, field: str, model_id: str, shard_rows: int,
         seg: dict | None) -> list[Slice]:
    """Cut the field's rows (ordered by id) into slices of ``shard_rows`` (SQL only: no texts
    are read); each slice's key names its vector file."""
    idc, expr, frm = field_sql(field)
    n = int(shard_rows)
    rows = ws.rows(
        f"SELECT s, min(id), max(id), count(*), coalesce(bit_xor(h), 0) FROM ("
        f"SELECT {idc} AS id, hash({idc}, {expr}) AS h, "
        f"(row_number() OVER (ORDER BY {idc}) - 1) // {n} AS s {frm}) GROUP BY s ORDER BY s",
        [dataset])
    vd = _vec_dir(ws, dataset, field)
    out = []
    for s, lo, hi, cnt, fp in rows:
        ident = json.dumps([model_id, field, seg, int(lo), int(hi), int(cnt), f"{int(fp):016x}"])
        key = hashlib.sha256(ident.encode()).hexdigest()[:20]
        out.append(Slice(int(s), int(lo), int(hi), int(cnt), f"{int(fp):016x}", key,
                         vd / f"{key}.parquet"))
    return out


def slice_texts(ws: "Workspace", dataset: str, field: str, sl: Slice, seg: dict | None
                ) -> tuple[np.ndarray, list[str]]:
    """(ids, texts) of one slice, as :func:`~forensics.search.manifest.field_texts` gives them."""
    idc, expr, frm = field_sql(field)
    tb = ws.con.sql(f"SELECT {idc} AS id, {expr} AS t {frm} AND {idc} BETWEEN ? AND ? "
                    f"ORDER BY {idc}", params=[dataset, sl.lo, sl.hi]).to_arrow_table()
    ids = tb.column(0).to_numpy().astype(np.int64)
    texts = tb.column(1).to_pylist()
    if field in SEGMENT_FIELDS:
        from forensics.search.segments import SegmentParams, split_many

        return split_many(ids, texts, SegmentParams(**(seg or {})))
    return ids, texts


def write_vectors(path: Path, ids: np.ndarray, vecs: np.ndarray) -> None:
    """Write one slice's vectors (sorted by id) atomically: temp file, fsync, rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.argsort(ids, kind="stable")
    ids, vecs = np.asarray(ids, np.int64)[order], np.ascontiguousarray(vecs[order], np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    arr = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1])
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "vector": arr}), tmp,
                   compression="none")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_vectors(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors float32 [n, dim]) of one slice file."""
    import pyarrow.parquet as pq

    from forensics._arrow import flat_values

    tb = pq.read_table(path)
    ids = np.asarray(tb.column(0).to_numpy(), np.int64)
    flat, _ = flat_values(tb.column(1))
    return ids, np.ascontiguousarray(np.asarray(flat, np.float32).reshape(len(ids), dim))


def iter_vectors(path: Path, dim: int, batch_rows: int = 32768
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of one slice file in batches of ``batch_rows`` (bounded memory)."""
    import pyarrow.parquet as pq

    from forensics._arrow import flat_values

    for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        ids = np.asarray(rb.column(0).to_numpy(), np.int64)
        flat, _ = flat_values(rb.column(1))
        yield ids, np.ascontiguousarray(np.asarray(flat, np.float32).reshape(len(ids), dim))


def _embed_local(ws: "Workspace", dataset: str, field: str, todo: list[Slice], seg: dict | None,
                 emb: "Embedder", prog: _progress.Progress, done: Callable[[Slice, int], None],
                 commit_seconds: float = COMMIT_SECONDS) -> int:
    from forensics.search.embed import embed_texts_stats

    embedded = 0
    for sl in todo:
        with ws.locked():
            ids, texts = slice_texts(ws, dataset, field, sl, seg)
        vecs, st = embed_texts_stats(ws, texts, emb, progress=prog, release=True,
                                     commit_seconds=commit_seconds)
        write_vectors(sl.path, ids, vecs)
        embedded += st.embedded
        done(sl, len(ids))
    return embedded


def _read_slices(ws: "Workspace", dataset: str, field: str, todo: list[Slice], seg: dict | None
                 ) -> Iterator[tuple[Slice, np.ndarray, list[str]]]:
    """Each slice's rows, read with the workspace held only for that slice."""
    for sl in todo:
        with ws.locked():
            ids, texts = slice_texts(ws, dataset, field, sl, seg)
        yield sl, ids, texts


def embed_slices(ws: "Workspace", dataset: str, field: str, slices: list[Slice], seg: dict | None,
                 emb: "Embedder", sp: ShardParams, device: str | None,
                 prog: _progress.Progress, on_stage: Callable[[str], None],
                 commit_seconds: float = COMMIT_SECONDS) -> tuple[int, int]:
    """Embed the slices whose vector file is missing; returns (slices reused, rows embedded).
    ``commit_seconds``: how often the local engine writes vectors to the embedding cache."""
    todo = [sl for sl in slices if not sl.path.exists()]
    reused = len(slices) - len(todo)
    if reused:
        prog.note(f"{dataset}/{field}: {reused} of {len(slices)} slices already embedded")
    if not todo:
        return reused, 0
    task = prog.start(f"slices ({sp.engine})", len(todo))

    def done(sl: Slice, n: int) -> None:
        prog.advance(task, 1)
        on_stage("shard-embedded")

    try:
        if sp.engine == "local":
            embedded = _embed_local(ws, dataset, field, todo, seg, emb, prog, done, commit_seconds)
        else:
            from forensics.search.ray_embed import embed_on_ray

            embedded = embed_on_ray(_read_slices(ws, dataset, field, todo, seg), emb.spec,
                                    emb.dim, sp, device, done)
    finally:
        prog.finish(task)
    return reused, embedded


def _sample(slices: list[Slice], dim: int, n_total: int, nt: int, seed: int = 0) -> np.ndarray:
    """``nt`` vectors drawn uniformly from the slice files (read one at a time)."""
    if nt >= n_total:
        return np.concatenate([read_vectors(sl.path, dim)[1] for sl in slices])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n_total, size=nt, replace=False))
    out = np.empty((nt, dim), np.float32)
    start = filled = 0
    for sl in slices:
        for _, v in iter_vectors(sl.path, dim):
            lo, hi = np.searchsorted(pick, [start, start + len(v)])
            out[filled:filled + hi - lo] = v[pick[lo:hi] - start]
            filled += hi - lo
            start += len(v)
    return out


def _tune(sh: Any, kind: str, params: dict, slices: list[Slice], dim: int, sample: np.ndarray,
          nq: int = 200, seed: int = 0) -> float | None:
    """:func:`~forensics.search.ann.tune` over a sharded index: exact top-10 computed slice by
    slice, then nprobe / efSearch raised until recall@10 reaches TARGET_RECALL."""
    if kind == "flat":
        return 1.0
    faiss = load_faiss()
    rng = np.random.default_rng(seed)
    q = sample[rng.choice(len(sample), size=min(nq, len(sample)), replace=False)]
    q = q + rng.normal(0, 0.5 / np.sqrt(dim), size=q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = 10
    best_d = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for sl in slices:
        for ids, v in iter_vectors(sl.path, dim):
            d, i = faiss.knn(q, v, min(k, len(v)), metric=faiss.METRIC_INNER_PRODUCT)
            D = np.concatenate([best_d, d], 1)
            I = np.concatenate([best_i, ids[i]], 1)
            top = np.argsort(-D, axis=1, kind="stable")[:, :k]
            best_d, best_i = np.take_along_axis(D, top, 1), np.take_along_axis(I, top, 1)
    key, steps = (("nprobe", [8, 16, 32, 64, 128, 256, 512]) if kind.startswith("ivf")
                  else ("efSearch", [64, 128, 256, 512]))
    if key == "nprobe":
        steps = [s for s in steps if s <= params["nlist"]] or [params["nlist"]]
    recall = 0.0
    kk = best_i.shape[1]
    for s in steps:
        params[key] = s
        sh.set_params(params)
        _, got = sh.search(q, kk)
        recall = float(np.mean([len(set(a) & set(b)) / kk for a, b in zip(got, best_i)]))
        if recall >= TARGET_RECALL:
            break
    return round(recall, 4)


def fill(faiss_path: Path, slices: list[Slice], kind: str, dim: int, n_total: int
         ) -> tuple[list[dict], dict, float | None, Path]:
    """Train on a sample, add each slice to its own shard, tune; returns (shard entries, params,
    recall@10, the new shard directory). Holds one slice's vectors at a time (plus the sample)."""
    from forensics.search.shards import ShardedIndex, new_tag_dir, open_sharded, write_shard

    faiss = load_faiss()
    nt = min(n_total, 50 * int(max(16, 4 * np.sqrt(n_total))))
    sample = _sample(slices, dim, n_total, nt)
    template, params = new_index(kind, dim, n_total, sample if kind not in ("flat", "hnsw") else None)
    tag_dir = new_tag_dir(faiss_path, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
    entries = []
    for sl in slices:
        if kind.startswith("ivf"):
            idx = faiss.clone_index(template)
            idx.set_direct_map_type(faiss.DirectMap.Hashtable)
        elif kind == "hnsw-sq8":
            idx, _ = new_index(kind, dim, n_total, sample)
        else:
            idx, _ = new_index(kind, dim, n_total, None)
        lo = hi = None
        for ids, v in iter_vectors(sl.path, dim):    # added in batches: bounded memory
            if len(ids):
                idx.add_with_ids(v, ids)
                lo = int(ids[0]) if lo is None else lo
                hi = int(ids[-1])
        if lo is None:          # a slice whose rows have no segments
            continue
        entries.append({**write_shard(idx, tag_dir / f"shard-{sl.pos:05d}.faiss", lo, hi),
                        "vectors": os.path.relpath(sl.path, faiss_path.parent)})
        del idx
    m = Manifest(dataset="", field="", model_id="", model_spec=None, dim=dim, metric="",
                 index_type=kind, params=params, rows=0, max_id=0, checksum="", file_size=0,
                 dataset_version=0, source_count=0, source_max_id=0, source_fingerprint="",
                 built_at="", tool_version="", shards=entries)
    sh: ShardedIndex = open_sharded(faiss_path, m)
    recall = _tune(sh, kind, params, slices, dim, sample)
    return entries, params, recall, tag_dir


def build_sharded(ws: "Workspace", dataset: str, field: str, sp: ShardParams,
                  index_type: str | None, emb: "Embedder", device: str | None,
                  prog: _progress.Progress, on_stage: Callable[[str], None],
                  seg: dict | None, now: str, tool_version: str,
                  commit_seconds: float = COMMIT_SECONDS) -> Manifest:
    """Plan, embed what is missing, fill and write a sharded index (see module docstring);
    ``commit_seconds`` as for :func:`embed_slices`, recorded in the manifest's ``build``."""
    from forensics.search.shards import commit_manifest

    t0 = time.perf_counter()
    with ws.locked():
        ws.require_dataset(dataset)
        src = source_state(ws, dataset, field)
        slices = plan(ws, dataset, field, emb.model_id, sp.shard_rows, seg)
    if not slices:
        what = "explanations" if field == "explanation" else f"non-empty {field} texts"
        raise NotFoundError(f"dataset {dataset!r} has no {what} to index",
                            hint="ingest samples (or import explanations) first")
    prog.note(f"{dataset}/{field}: {src.count} rows in {len(slices)} slices, model {emb.model_id}, "
              f"engine {sp.engine}")
    reused, embedded = embed_slices(ws, dataset, field, slices, seg, emb, sp, device, prog, on_stage,
                                    commit_seconds)
    on_stage("embedded")
    n_total = int(sum(_rows_in(sl.path) for sl in slices))
    kind = choose_type(n_total, index_type)
    prog.note(f"{dataset}/{field}: building {kind} index in {len(slices)} shards")
    faiss_path, man_path = index_paths(ws, dataset, field)
    entries, params, recall, tag_dir = fill(faiss_path, slices, kind, emb.dim, n_total)
    if seg is not None:
        params["segments"] = seg
    on_stage("index-built")
    m = Manifest(dataset=dataset, field=field, model_id=emb.model_id, model_spec=emb.spec,
                 dim=emb.dim, metric="inner_product", index_type=kind, params=params,
                 rows=n_total, max_id=int(max(e["max_id"] for e in entries)), checksum="",
                 file_size=0, dataset_version=src.version, source_count=src.count,
                 source_max_id=src.max_id, source_fingerprint=src.fingerprint, built_at=now,
                 tool_version=tool_version, measured_recall_at_10=recall, shards=entries,
                 build={**asdict(sp), "shards": len(slices), "reused_shards": reused,
                        "embedded_rows": int(embedded), "commit_seconds": commit_seconds})
    m.build_seconds = round(time.perf_counter() - t0, 3)
    commit_manifest(m, faiss_path, man_path, tag_dir)
    on_stage("written")
    keep = {sl.path.name for sl in slices}
    for p in _vec_dir(ws, dataset, field).glob("*.parquet"):
        if p.name not in keep:
            p.unlink(missing_ok=True)
    with ws.locked():
        record_index(ws, m, faiss_path)
    on_stage("recorded")
    prog.note(f"{dataset}/{field}: {m.rows} vectors in {len(entries)} shards, {kind} {params}, "
              f"recall@10 {recall}, {embedded} rows embedded, {reused} slices reused, "
              f"{m.build_seconds:.1f}s")
    return m


def _rows_in(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def drop_vectors(ws: "Workspace", dataset: str, field: str) -> None:
    """Remove a field's vector slices (a single-file build replaced the sharded index)."""
    import shutil

    shutil.rmtree(_vec_dir(ws, dataset, field), ignore_errors=True)


__all__ = ["ShardParams", "Slice", "ENGINES", "plan", "slice_texts", "write_vectors",
           "read_vectors", "embed_slices", "fill", "build_sharded", "drop_vectors"]
