"""A FAISS index stored as several shard files, searched together.

Layout: ``indexes/<dataset>/<field>.shards/<tag>/shard-NNNNN.faiss``; the manifest's ``shards``
lists each file (path relative to the dataset's index directory, rows, first/last id, sha256,
size, and the Parquet file of its exact vectors). Shards hold contiguous, ascending id ranges, so an id maps to its shard by binary search.
Quantised (IVF) shards are copies of one trained empty index, filled each with its own rows:
for a query every shard probes the same lists, so merging the shards' top-k gives exactly the
answer of one index holding all vectors. Each shard is opened memory-mapped where FAISS can map
its type, so a search does not need every vector in the process's memory.

A sharded write is crash-safe without the pending-manifest protocol of
:mod:`forensics.search.manifest`: the shards go to a fresh ``<tag>`` directory, are fsynced, and
only then the manifest is replaced (temp file + rename); a crash before the rename leaves the old
manifest pointing at the old shards, which are removed only after the new manifest is in place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from forensics.errors import CheckFailed, NotFoundError
from forensics.search.ann import apply_params, load_faiss
from forensics.search.manifest import Manifest, _fsync_dir, sha256_file


def shard_root(faiss_path: Path) -> Path:
    """``<field>.shards`` next to the (single-file) ``<field>.faiss`` path."""
    return faiss_path.parent / f"{faiss_path.stem}.shards"


def index_ids(index: Any, kind: str) -> np.ndarray:
    """Every id one FAISS index (IDMap2 or IVF with ids) holds, sorted."""
    faiss = load_faiss()
    if kind.startswith("ivf"):
        ivf = faiss.extract_index_ivf(index)
        invlists = ivf.invlists
        out = []
        for lst in range(ivf.nlist):
            n = invlists.list_size(lst)
            if n:
                out.append(faiss.rev_swig_ptr(invlists.get_ids(lst), n).copy())
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)
    return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))


class ShardedIndex:
    """The slice of the FAISS index interface :class:`~forensics.search.index.OpenIndex` uses
    (``ntotal``, ``d``, ``search``, ``reconstruct``), over several shard indexes."""

    def __init__(self, shards: list[Any], first_ids: list[int], dim: int, kind: str):
        self.shards = shards
        self.first_ids = np.asarray(first_ids, np.int64)
        self.d = dim
        self.kind = kind

    @property
    def ntotal(self) -> int:
        return int(sum(s.ntotal for s in self.shards))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over all shards (each shard's top-k merged by score)."""
        ds, is_ = [], []
        for s in self.shards:
            if s.ntotal == 0:
                continue
            d, i = s.search(q, k)
            ds.append(d)
            is_.append(i)
        if not ds:
            return (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
        D = np.concatenate(ds, axis=1)
        ID = np.concatenate(is_, axis=1)
        D = np.where(ID < 0, -np.inf, D).astype(np.float32)
        top = np.argsort(-D, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(D, top, 1), np.take_along_axis(ID, top, 1)

    def reconstruct(self, i: int) -> np.ndarray:
        """The stored vector of id ``i`` (RuntimeError when no shard holds it, like FAISS)."""
        pos = int(np.searchsorted(self.first_ids, int(i), side="right")) - 1
        if pos < 0:
            raise RuntimeError(f"id {i} not found")
        return self.shards[pos].reconstruct(int(i))

    def ids(self) -> np.ndarray:
        out = [index_ids(s, self.kind) for s in self.shards]
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def set_params(self, params: dict) -> None:
        for s in self.shards:
            apply_params(s, self.kind, params)


def exact_vectors(faiss_path: Path, m: Manifest, ids: np.ndarray) -> dict[int, np.ndarray]:
    """Exact vectors of ``ids`` from the shards' Parquet vector files (``{position in ids:
    vector}``); ids whose file is gone are absent."""
    from forensics.search.sharded_build import read_vectors

    ids = np.asarray(ids, np.int64)
    firsts = np.asarray([int(sh["min_id"]) for sh in m.shards or []], np.int64)
    where = np.searchsorted(firsts, ids, side="right") - 1
    out: dict[int, np.ndarray] = {}
    for s in np.unique(where[where >= 0]).tolist():
        vf = (m.shards or [])[s].get("vectors")
        p = faiss_path.parent / vf if vf else None
        if p is None or not p.exists():
            continue
        fids, vecs = read_vectors(p, m.dim)
        pos = np.flatnonzero(where == s)
        at = np.searchsorted(fids, ids[pos])
        for i, a in zip(pos.tolist(), at.tolist()):
            if a < len(fids) and fids[a] == ids[i]:
                out[i] = vecs[a]
    return out


def check_shards(faiss_path: Path, m: Manifest) -> list[str]:
    """Problems with the shard files a manifest lists (missing, size or sha256 mismatch),
    each naming its file; empty when all are intact."""
    base = faiss_path.parent
    problems = []
    for i, sh in enumerate(m.shards or []):
        p = base / sh["path"]
        if not p.exists():
            problems.append(f"shard {i} file {p} is missing")
        elif p.stat().st_size != sh["file_size"]:
            problems.append(f"shard {i} file {p} has {p.stat().st_size} bytes, manifest says "
                            f"{sh['file_size']} (truncated or replaced)")
        elif sha256_file(p) != sh["checksum"]:
            problems.append(f"shard {i} file {p} is corrupt: sha256 does not match the manifest")
    return problems


def open_sharded(faiss_path: Path, m: Manifest, mmap: bool = True) -> ShardedIndex:
    """Load a sharded index whose files :func:`check_shards` found intact."""
    faiss = load_faiss()
    shards = []
    for sh in m.shards or []:
        p = str(faiss_path.parent / sh["path"])
        idx = None
        if mmap:
            try:
                idx = faiss.read_index(p, faiss.IO_FLAG_MMAP)
            except RuntimeError:
                idx = None
        shards.append(idx if idx is not None else faiss.read_index(p))
    out = ShardedIndex(shards, [int(sh["min_id"]) for sh in m.shards or []], m.dim, m.index_type)
    out.set_params(m.params)
    return out


def new_tag_dir(faiss_path: Path, tag: str) -> Path:
    """A fresh directory for one build's shard files."""
    d = shard_root(faiss_path) / tag
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write_shard(index: Any, path: Path, first_id: int, last_id: int) -> dict:
    """Write one shard index (fsynced) and return its manifest entry."""
    faiss = load_faiss()
    faiss.write_index(index, str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return {"path": os.path.relpath(path, path.parent.parent.parent), "rows": int(index.ntotal),
            "min_id": int(first_id), "max_id": int(last_id), "checksum": sha256_file(path),
            "file_size": path.stat().st_size}


def commit_manifest(m: Manifest, faiss_path: Path, man_path: Path, tag_dir: Path) -> Manifest:
    """Point the manifest at the shards in ``tag_dir`` (atomic rename), then remove what the
    old manifest pointed at (other shard directories, a single-file index)."""
    import hashlib

    _fsync_dir(tag_dir)
    m.checksum = hashlib.sha256("".join(s["checksum"] for s in m.shards or []).encode()).hexdigest()
    m.file_size = int(sum(s["file_size"] for s in m.shards or []))
    d = man_path.parent
    tmp = d / f".{man_path.name}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(m), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    (d / f"{man_path.name}.new").unlink(missing_ok=True)   # never roll a stale write forward
    os.replace(tmp, man_path)
    _fsync_dir(d)
    drop_other_shards(faiss_path, keep=tag_dir)
    faiss_path.unlink(missing_ok=True)
    return m


def drop_other_shards(faiss_path: Path, keep: Path | None = None) -> None:
    """Remove shard directories of earlier builds (all of them when ``keep`` is None)."""
    root = shard_root(faiss_path)
    if not root.exists():
        return
    for d in root.iterdir():
        if keep is None or d.resolve() != keep.resolve():
            shutil.rmtree(d, ignore_errors=True)
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)


def require_shards(faiss_path: Path, m: Manifest, dataset: str, field: str) -> None:
    """Raise CheckFailed naming the first broken shard (never hand a corrupt file to FAISS)."""
    problems = check_shards(faiss_path, m)
    if problems:
        raise CheckFailed(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                          hint=f"rebuild: forensics index build --dataset {dataset} --field {field}")
    if not m.shards:
        raise NotFoundError(f"sharded index {dataset}/{field} lists no shards")


__all__ = ["ShardedIndex", "check_shards", "exact_vectors", "open_sharded", "write_shard", "commit_manifest",
           "drop_other_shards", "shard_root", "new_tag_dir", "index_ids", "require_shards"]
