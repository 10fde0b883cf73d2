"""FAISS indexes over a dataset's sample texts and explanations: build, update, open, search.

Layout: ``<workspace>/indexes/<dataset>/<field>.faiss`` plus ``<field>.manifest.json``; each
index is also recorded in the ``indexes`` table. Vectors are L2-normalised, so the metric is
inner product = cosine. FAISS ids are the workspace's ``sample_id`` (or ``explanation_id`` for
the ``explanation`` field), so a hit joins straight back to DuckDB.

Why a manifest: an index is only meaningful together with the model that produced its
vectors and the dataset state it was built from. The manifest records both (model id, dataset
version / explanation count), plus a sha256 of the .faiss file, so a stale or corrupted index
is reported instead of silently used (``open_index`` raises ``StaleError``).

The manifest, the field rows and the crash-safe write live in :mod:`forensics.search.manifest`;
FAISS construction and tuning in :mod:`forensics.search.ann`. Longer than 500 lines because it
is one public surface -- build, update, open, search, status, verify -- whose functions share
the same freshness and checksum checks.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from forensics import progress as _progress
from forensics.search.embed import COMMIT_SECONDS
from forensics.errors import CheckFailed, NotFoundError, StaleError, UsageError
from forensics.search.ann import (FLAT_THRESHOLD, INDEX_TYPES, TARGET_RECALL, apply_params, choose_type,
                                  few_query_threads, load_faiss, new_index, tune)
from forensics.search.manifest import (FIELDS, SAMPLE_TEXT, SEGMENT_FIELDS, Manifest, check_field, field_sql, field_texts,
                                       fingerprint_of, index_paths, read_manifest, record_index,
                                       sha256_file, source_state, stale_reason, write_pair)

if TYPE_CHECKING:  # pragma: no cover
    from forensics.search.embed import Embedder
    from forensics.search.sharded_build import ShardParams
    from forensics.workspace import Workspace


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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def _tool_version() -> str:
    from forensics import __version__

    return __version__



# ---------------------------------------------------------------------------- build / update
# The named points of a build, in order (``on_stage``): vectors ready; index trained, filled and
# tuned; new .faiss written to its temp file; .faiss renamed, manifest pending; both files in
# place; the ``indexes`` row written.
# A sharded build (``shards``) also passes ``shard-embedded`` once per slice whose vectors it
# wrote, before ``embedded``.
BUILD_STAGES = ("embedded", "index-built", "after-faiss-tmp", "between-renames", "written",
                "recorded")


def _no_stage(name: str) -> None:
    pass


def build(ws: "Workspace", dataset: str, field: str = "pair", index_type: str | None = None,
          model: str | None = None, device: str | None = None,
          progress: _progress.Progress | None = None, embedder: "Embedder | None" = None,
          on_stage: Callable[[str], None] | None = None,
          commit_seconds: float = COMMIT_SECONDS, segment_params: dict | None = None,
          shards: "ShardParams | None" = None) -> Manifest:
    """Embed every row of ``dataset``'s ``field`` (cache-backed) and write a fresh index.

    The workspace is held only while the rows are read, while each batch of vectors is written
    to the embedding cache (every ``commit_seconds``, see :func:`~forensics.search.embed.embed_texts`)
    and while the ``indexes`` row is written; embedding and FAISS work run with it released, so
    other commands use the workspace meanwhile. Rows ingested during the build are not in the
    index, which then shows as stale (``update`` adds them). Wrap the call in ``ws.locked()``
    to keep the lock throughout. ``commit_seconds`` is recorded in the manifest's ``build``.

    A segment field (``reply_segment``, ``prompt_segment``) embeds each row's segments
    (:mod:`forensics.search.segments`, cut with ``segment_params``: SegmentParams fields,
    recorded in the manifest's ``params["segments"]``); its manifest's ``rows`` counts segments,
    ``source_count`` the rows they came from.
    ``progress`` gets the embedding task and one note per phase (``None``: silent).
    ``on_stage`` is called with each name of :data:`BUILD_STAGES` as the build passes it (a
    test can stop the process there to check crash safety; it must not raise otherwise).
    ``shards``: build in slices, in-process or on Ray, into a sharded index that resumes after a
    crash (:mod:`forensics.search.sharded_build`); None writes one .faiss file as before.
    """
    from forensics.search.embed import Embedder, embed_texts

    prog = _progress.resolve(progress)
    stage = on_stage or _no_stage
    check_field(field)
    t0 = time.perf_counter()
    seg = None
    if field in SEGMENT_FIELDS:
        import dataclasses

        from forensics.search.segments import SegmentParams

        seg = dataclasses.asdict(SegmentParams(**(segment_params or {})))
    if shards is not None:
        from forensics.search.sharded_build import build_sharded

        emb = embedder or Embedder(model, device=device)
        return build_sharded(ws, dataset, field, shards, index_type, emb, device, prog, stage,
                             seg, _now(), _tool_version(), commit_seconds)
    with ws.locked():   # inputs read under the lock; embedding and FAISS run without it
        ws.require_dataset(dataset)
        src = source_state(ws, dataset, field)
        ids, texts = field_texts(ws, dataset, field, segment_params=seg)
    if len(ids) == 0:
        what = "explanations" if field == "explanation" else f"non-empty {field} texts"
        raise NotFoundError(f"dataset {dataset!r} has no {what} to index",
                            hint="ingest samples (or import explanations) first")
    emb = embedder or Embedder(model, device=device)
    prog.note(f"{dataset}/{field}: {len(ids)} rows, model {emb.model_id}")
    vecs = embed_texts(ws, texts, emb, progress=prog, release=True, commit_seconds=commit_seconds)
    stage("embedded")
    kind = choose_type(len(ids), index_type)
    train = None
    if kind not in ("flat", "hnsw"):
        rng = np.random.default_rng(0)
        nt = min(len(vecs), 50 * int(max(16, 4 * np.sqrt(len(vecs)))))
        train = vecs[np.sort(rng.choice(len(vecs), size=nt, replace=False))] if nt < len(vecs) else vecs
    prog.note(f"{dataset}/{field}: building {kind} index")
    index, params = new_index(kind, emb.dim, len(ids), train)
    index.add_with_ids(vecs, ids)
    recall = tune(index, kind, params, vecs, ids)
    if seg is not None:
        from forensics.search.segments import SPLIT_VERSION

        params["segments"] = seg
        params["split_version"] = SPLIT_VERSION
    stage("index-built")
    faiss_path, man_path = index_paths(ws, dataset, field)
    m = Manifest(dataset=dataset, field=field, model_id=emb.model_id, model_spec=emb.spec,
                 dim=emb.dim, metric="inner_product", index_type=kind, params=params,
                 rows=int(index.ntotal), max_id=int(ids.max()), checksum="", file_size=0,
                 dataset_version=src.version, source_count=src.count, source_max_id=src.max_id,
                 source_fingerprint=src.fingerprint, built_at=_now(), tool_version=_tool_version(),
                 measured_recall_at_10=recall, build={"commit_seconds": commit_seconds})
    m.build_seconds = round(time.perf_counter() - t0, 3)
    write_pair(index, m, faiss_path, man_path, on_stage=stage)
    stage("written")
    _drop_sharded(ws, dataset, field, faiss_path)
    with ws.locked():
        record_index(ws, m, faiss_path)
    stage("recorded")
    if recall is not None and recall < TARGET_RECALL:
        prog.note(f"warning: {kind} reaches recall@10 {recall} < {TARGET_RECALL} on this data even at "
             f"the largest {'nprobe' if kind.startswith('ivf') else 'efSearch'} tried; consider "
             f"--index-type flat or ivf-sq8")
    prog.note(f"{dataset}/{field}: {m.rows} vectors, {kind} {params}, "
         f"recall@10 {recall}, {m.build_seconds:.1f}s -> {faiss_path}")
    return m


def _drop_sharded(ws: "Workspace", dataset: str, field: str, faiss_path: Path) -> None:
    """A single-file index replaced a sharded one: remove its shard and vector files."""
    from forensics.search.sharded_build import drop_vectors
    from forensics.search.shards import drop_other_shards

    drop_other_shards(faiss_path)
    drop_vectors(ws, dataset, field)


def update(ws: "Workspace", dataset: str, field: str = "pair",
           progress: _progress.Progress | None = None, device: str | None = None,
           on_stage: Callable[[str], None] | None = None,
           commit_seconds: float = COMMIT_SECONDS,
           shards: "ShardParams | None" = None) -> Manifest:
    """Add only rows that are not in the index yet (holding the workspace as :func:`build` does).

    A sharded index (or ``shards`` given) is brought up to date by a sharded build with the same
    model and index type that re-embeds only the slices whose rows changed; ``shards`` None on a
    sharded index reuses the parameters it was built with.

    When rows already indexed were changed or deleted (their fingerprint differs), adding
    cannot repair the index, so it is rebuilt with the same model and index type; the
    manifest's ``updated_from`` stays None in that case. ``progress`` and ``on_stage`` as for
    :func:`build` (an update passes ``embedded`` and the write stages; no ``index-built``).
    """
    from forensics.search.embed import embed_texts

    prog = _progress.resolve(progress)
    stage = on_stage or _no_stage

    faiss_path, man_path = index_paths(ws, dataset, field)
    with ws.locked():   # read under the lock; embedding and FAISS run without it
        try:
            old = read_manifest(ws, dataset, field)
        except NotFoundError:
            old = None
        if old is not None:
            oi = open_index(ws, dataset, field, allow_stale=True, device=device)
            src = source_state(ws, dataset, field)
            fresh = stale_reason(old, src) is None
            # a sharded update plans its own slices: no ids or texts read here
            sharded = shards is not None or old.shards is not None
            indexed = None if fresh or sharded else oi.ids()
            changed = not fresh and not sharded and (field in SEGMENT_FIELDS or fingerprint_of(
                ws, dataset, field, indexed) != old.source_fingerprint)
            if not fresh and not changed and not sharded:
                ids, texts = field_texts(ws, dataset, field)
    if old is None:
        prog.note(f"{dataset}/{field}: no index yet, building")
        return build(ws, dataset, field, progress=prog, device=device, on_stage=on_stage,
                     commit_seconds=commit_seconds, shards=shards)
    if fresh:
        prog.note(f"{dataset}/{field}: already fresh ({old.rows} rows)")
        return old
    if shards is not None or old.shards is not None:
        from forensics.search.sharded_build import ShardParams

        if shards is None:
            known = ShardParams.__dataclass_fields__
            shards = ShardParams(**{k: v for k, v in (old.build or {}).items() if k in known})
        prog.note(f"{dataset}/{field}: sharded update (slices whose rows did not change are reused)")
        return build(ws, dataset, field, index_type=old.index_type, progress=prog, device=device,
                     embedder=oi.embedder(), on_stage=on_stage, shards=shards,
                     segment_params=old.params.get("segments"), commit_seconds=commit_seconds)
    if field in SEGMENT_FIELDS:
        # segment ids are not sample ids: no incremental add, a rebuild (the embedding cache
        # keeps unchanged segments from being embedded again)
        prog.note(f"{dataset}/{field}: rows changed; rebuilding the segment index")
        return build(ws, dataset, field, index_type=old.index_type, progress=prog,
                     embedder=oi.embedder(), on_stage=on_stage, commit_seconds=commit_seconds,
                     segment_params=old.params.get("segments"))
    if changed:
        prog.note(f"{dataset}/{field}: indexed rows changed or were removed; rebuilding")
        return build(ws, dataset, field, index_type=old.index_type, progress=prog,
                     embedder=oi.embedder(), on_stage=on_stage, commit_seconds=commit_seconds)
    new = ~np.isin(ids, indexed)
    ids, texts = ids[new], [t for t, keep in zip(texts, new) if keep]
    t0 = time.perf_counter()
    if len(ids):
        vecs = embed_texts(ws, texts, oi.embedder(), progress=prog, release=True,
                           commit_seconds=commit_seconds)
        oi.index.add_with_ids(vecs, ids)
    stage("embedded")
    m = Manifest.from_dict(asdict(old))
    m.rows = int(oi.index.ntotal)
    m.max_id = int(max(old.max_id, ids.max() if len(ids) else 0))
    m.dataset_version, m.source_count = src.version, src.count
    m.source_max_id, m.source_fingerprint = src.max_id, src.fingerprint
    m.updated_from, m.built_at = old.built_at, _now()
    m.build = {**(old.build or {}), "commit_seconds": commit_seconds}
    m.build_seconds = round(time.perf_counter() - t0, 3)
    write_pair(oi.index, m, faiss_path, man_path, on_stage=stage)
    stage("written")
    with ws.locked():
        record_index(ws, m, faiss_path)
    stage("recorded")
    prog.note(f"{dataset}/{field}: added {len(ids)} rows -> {m.rows} vectors")
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

    def share_embedder(self, embedder: "Embedder | None") -> bool:
        """Use an already loaded ``embedder`` for queries when its model id is the manifest's
        and none is loaded yet (saves a model load per index); returns whether it was taken.
        ``embedder`` may be any object with ``model_id`` / ``dim`` / ``encode``."""
        if embedder is None or self._embedder is not None \
                or embedder.model_id != self.manifest.model_id:
            return False
        self._embedder = embedder
        return True

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

    def search_wide(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """The ids of about the ``k`` rows nearest each query (inner product), with the
        search breadth raised so that ``k`` rows can come back: an IVF index probes enough
        lists to hold about ``2 k`` rows, an HNSW index searches with ``efSearch >= k``, a
        flat index is exact. Returns the sorted union of the ids found (no ``-1``). A
        sharded index searches with its own breadth."""
        faiss = load_faiss()
        q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        k = max(1, min(int(k), self.ntotal))
        if self.ntotal == 0 or len(q) == 0:
            return np.zeros(0, np.int64)
        kind = self.manifest.index_type
        sp = None
        if self.manifest.shards is None and kind.startswith("ivf"):
            ivf = faiss.extract_index_ivf(self.index)
            per_list = max(1.0, self.ntotal / max(1, ivf.nlist))
            sp = faiss.SearchParametersIVF(
                nprobe=int(min(ivf.nlist, max(ivf.nprobe, np.ceil(2 * k / per_list)))))
        elif self.manifest.shards is None and kind.startswith("hnsw"):
            base = faiss.downcast_index(self.index.index)
            sp = faiss.SearchParametersHNSW(efSearch=int(max(base.hnsw.efSearch, k)))
        with few_query_threads(len(q)):
            _, ids = (self.index.search(q, k) if sp is None
                      else self.index.search(q, k, params=sp))
        ids = np.asarray(ids, np.int64).ravel()
        return np.unique(ids[ids >= 0])

    def ids(self) -> np.ndarray:
        """Every id held by the index."""
        from forensics.search.shards import index_ids

        if self.manifest.shards is not None:
            return self.index.ids()
        return index_ids(self.index, self.manifest.index_type)

    def vectors(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Stored vectors for ``ids`` ([n, dim] float32). Exact for flat/hnsw; for quantised
        indexes the exact vectors are re-read from the embedding cache (a sharded index: from
        its Parquet vector slices), falling back to the index's approximate reconstruction for
        rows neither has."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.manifest.dim), np.float32)
        if self.manifest.index_type in ("flat", "hnsw"):
            return self.reconstruct(ids)
        out = self.reconstruct(ids)
        if self.manifest.shards is not None:     # a sharded index keeps its exact vectors
            from forensics.search.shards import exact_vectors

            for i, v in exact_vectors(self.path, self.manifest, ids).items():
                out[i] = v
            return out
        with self.ws.locked():
            cached = _cached_vectors(self.ws, self.manifest, ids)
        for i, v in cached.items():
            out[i] = v
        return out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """What the index itself stores for ``ids`` (lossy for sq8/pq)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids):
            try:                      # one call for all ids (a per-id loop costs ~2x)
                return np.asarray(self.index.reconstruct_batch(ids), np.float32).reshape(
                    len(ids), self.manifest.dim)
            except (RuntimeError, AttributeError):
                pass                  # an id missing, or no batch call: per id, to name it
        out = np.zeros((len(ids), self.manifest.dim), np.float32)
        for i, x in enumerate(ids):
            try:
                out[i] = self.index.reconstruct(int(x))
            except RuntimeError as e:
                raise NotFoundError(f"id {int(x)} is not in index {self.path}") from e
        return out


def _cached_vectors(ws: "Workspace", m: Manifest, ids: np.ndarray) -> dict[int, np.ndarray]:
    from forensics.search.embed import cached_vectors, text_hash

    rows = _id_texts(ws, m, ids)
    hashes = {int(i): text_hash(t) for i, t in rows}
    found = cached_vectors(ws, m.model_id, list(set(hashes.values())), m.dim)
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
    idc, expr, frm = field_sql(m.field)
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
    if m.shards is not None:
        from forensics.search.shards import open_sharded, require_shards

        require_shards(faiss_path, m, dataset, field)
        reason = stale_reason(m, source_state(ws, dataset, field))
        if reason and not allow_stale:
            raise StaleError(f"index {dataset}/{field} is stale: {reason}",
                             hint=f"run `forensics index update --dataset {dataset} --field {field}`")
        oi = OpenIndex(ws, m, open_sharded(faiss_path, m, mmap=device in (None, "cpu")),
                       faiss_path, reason, device=device)
        oi.share_embedder(embedder)
        return oi
    if not faiss_path.exists():
        raise CheckFailed(f"index file {faiss_path} is missing (its manifest exists)",
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}")
    # checksum before reading: faiss may crash or allocate wildly on a corrupted file
    if sha256_file(faiss_path) != m.checksum:
        raise CheckFailed(f"index file {faiss_path} is corrupt: sha256 does not match its manifest",
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}")
    reason = stale_reason(m, source_state(ws, dataset, field))
    if reason and not allow_stale:
        raise StaleError(f"index {dataset}/{field} is stale: {reason}",
                         hint=f"run `forensics index update --dataset {dataset} --field {field}`")
    faiss = load_faiss()
    index = None
    if read_only and device in (None, "cpu"):
        try:
            index = faiss.read_index(str(faiss_path), faiss.IO_FLAG_MMAP)
        except RuntimeError:      # a type faiss cannot map: read it whole
            index = None
    if index is None:
        index = faiss.read_index(str(faiss_path))
    apply_params(index, m.index_type, m.params)
    oi = OpenIndex(ws, m, index, faiss_path, reason, device=device)
    oi.share_embedder(embedder)
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
            expr = SAMPLE_TEXT[field]
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
            src = source_state(ws, d, f)
            st.current_rows, st.current_version = src.count, src.version
        except Exception as e:  # dataset gone
            src = None
            st.state, st.detail = "stale", f"cannot read dataset: {e}"
        shard_problems = None
        if m.shards is not None:
            from forensics.search.shards import check_shards

            shard_problems = check_shards(faiss_path, m)
        if shard_problems:
            st.state = "missing file" if "missing" in shard_problems[0] else "corrupt"
            st.detail = "; ".join(shard_problems)
        elif shard_problems is not None:
            pass
        elif not faiss_path.exists():
            st.state, st.detail = "missing file", f"{faiss_path.name} missing"
        elif faiss_path.stat().st_size != m.file_size or sha256_file(faiss_path) != m.checksum:
            st.state, st.detail = "corrupt", "sha256 of the .faiss file does not match the manifest"
        if st.state == "fresh" and src is not None:
            reason = stale_reason(m, src)
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
    if m.shards is not None:
        from forensics.search.shards import check_shards

        bad = check_shards(faiss_path, m)
        rep.checks["shards"] = {"count": len(m.shards), "ok": len(m.shards) - len(bad)}
        rep.checks["checksum"] = "ok" if not bad else "mismatch"
        for b in bad:
            problem(b)
        if bad:
            return rep  # never hand a corrupted file to faiss
        if sum(int(sh["rows"]) for sh in m.shards) != m.rows:
            problem(f"shards hold {sum(int(sh['rows']) for sh in m.shards)} rows but the manifest "
                    f"says {m.rows}")
    elif not faiss_path.exists():
        problem(f"index file {faiss_path} is missing")
        return rep
    else:
        actual = sha256_file(faiss_path)
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
    for i, (part, sh) in enumerate(zip(getattr(oi.index, "shards", []), m.shards or [])):
        if int(part.ntotal) != int(sh["rows"]):
            problem(f"shard {i} ({sh['path']}) holds {int(part.ntotal)} vectors but the manifest "
                    f"says {sh['rows']}")
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


__all__ = ["FIELDS", "INDEX_TYPES", "FLAT_THRESHOLD", "BUILD_STAGES", "Manifest", "Hit",
           "IndexStatus", "VerifyReport", "OpenIndex", "field_texts", "build", "update",
           "open_index", "search", "hits_for", "status", "verify", "default_fields", "index_paths",
           "read_manifest", "few_query_threads"]
