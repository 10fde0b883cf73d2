"""Embedding on Ray Data: actors hold the model, the driver feeds slices and writes their vectors.

The driver puts each slice's rows into Ray's object store (sorted by text length so each block
carries little padding, cut into blocks of ``block_rows``) and runs a Ray Data pipeline over
each group of about ``window_rows`` rows: ``map_batches`` runs :class:`EmbedActor` on ``workers`` actors (``cpus_per_worker`` CPUs each,
or one GPU each when the device is CUDA or the cluster has GPUs and no device was named). The
driver collects each slice's vectors and writes its Parquet file as soon as the slice is
complete, so a killed build keeps every finished slice. Only the driver touches the workspace;
workers need the package and the model, not the workspace (a cluster's nodes need not share a
disk with the driver).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from forensics._ray import ray_session
from forensics.errors import BackendError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.search.sharded_build import ShardParams, Slice


class EmbedActor:
    """A Ray Data actor holding one Embedder: ``(id, shard, text)`` -> ``(id, shard, vector)``."""

    def __init__(self, spec: str | None, device: str | None, threads: int):
        import torch

        from forensics.search.embed import Embedder

        torch.set_num_threads(max(1, int(threads)))
        self.emb = Embedder.from_spec(spec, device=device)

    def __call__(self, table):
        import pyarrow as pa

        vecs = self.emb.encode(table.column("text").to_pylist())
        arr = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1])
        return pa.table({"id": table.column("id"), "shard": table.column("shard"), "vector": arr})


def embed_on_ray(slices: Iterable[tuple["Slice", np.ndarray, list[str]]],
                 spec: str | None, dim: int, sp: "ShardParams", device: str | None,
                 done: Callable[["Slice", int], None]) -> int:
    """Embed every slice on Ray, writing each slice's vector file as soon as all its rows are
    back; returns the rows embedded.

    The driver puts each slice's rows into the object store as it reads them (blocks of
    ``block_rows``, sorted by text length inside the slice) and keeps none of the texts itself.
    Slices are grouped into runs of about ``window_rows`` rows: one Ray Data run per group (its
    actors load the model once per run), so the object store holds at most one group's texts.
    Blocks are fed in slice order, so slices complete roughly in order and the driver holds the
    vectors of about one slice at a time."""
    embedded = 0
    with ray_session(sp.ray_address, sp.workers) as ray:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        use_gpu = (device or "").startswith("cuda") or (device is None and gpus >= 1)
        dev = (device or "cuda") if use_gpu else "cpu"
        res: dict[str, Any] = {"num_gpus": 1} if use_gpu else {"num_cpus": sp.cpus_per_worker}
        group: list[tuple["Slice", np.ndarray, list[str]]] = []
        rows = 0
        for item in slices:
            group.append(item)
            rows += len(item[1])
            if rows >= sp.window_rows:
                embedded += _run_group(ray, group, spec, dim, sp, dev, res, done)
                group, rows = [], 0
        if group:
            embedded += _run_group(ray, group, spec, dim, sp, dev, res, done)
    return embedded


def _run_group(ray: Any, group: list[tuple["Slice", np.ndarray, list[str]]], spec: str | None,
               dim: int, sp: "ShardParams", dev: str, res: dict[str, Any],
               done: Callable[["Slice", int], None]) -> int:
    """One Ray Data run over a group of slices (see :func:`embed_on_ray`)."""
    import pyarrow as pa

    from forensics._arrow import flat_values
    from forensics.search.sharded_build import write_vectors

    refs, want, meta = [], {}, {}
    for pos, (sl, ids, texts) in enumerate(group):
        meta[pos], want[pos] = sl, len(ids)
        if not len(ids):     # a slice whose rows have no segments
            write_vectors(sl.path, np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
            done(sl, 0)
            continue
        order = np.argsort(-np.fromiter((len(t) for t in texts), np.int64, len(texts)),
                           kind="stable")
        tb = pa.table({"id": pa.array(ids[order], pa.int64()),
                       "shard": pa.array(np.full(len(ids), pos, np.int64)),
                       "text": pa.array([texts[i] for i in order], pa.string())})
        refs += [ray.put(tb.slice(s, sp.block_rows)) for s in range(0, tb.num_rows, sp.block_rows)]
    group.clear()          # the texts now live only in the object store
    if not refs:
        return 0
    ds = ray.data.from_arrow_refs(refs).map_batches(
        EmbedActor, fn_constructor_kwargs={"spec": spec, "device": dev,
                                           "threads": sp.cpus_per_worker},
        batch_size=None, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=sp.workers), **res)
    del refs
    embedded = 0
    got: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    have = dict.fromkeys(want, 0)
    for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        oid = np.asarray(out.column("id").to_numpy(), np.int64)
        osh = np.asarray(out.column("shard").to_numpy(), np.int64)
        flat, _ = flat_values(out.column("vector"))
        vec = np.asarray(flat, np.float32).reshape(len(oid), dim)
        for s in np.unique(osh).tolist():
            sel = osh == s
            got.setdefault(s, []).append((oid[sel], vec[sel]))
            have[s] += int(sel.sum())
            if have[s] == want[s]:
                parts = got.pop(s)
                write_vectors(meta[s].path, np.concatenate([a for a, _ in parts]),
                              np.concatenate([b for _, b in parts]))
                embedded += want[s]
                done(meta[s], want[s])
    short = {meta[s].pos: (have[s], want[s]) for s in want if have[s] != want[s]}
    if short:
        raise BackendError(f"ray returned incomplete slices (slice: got, want): {short}")
    return embedded


__all__ = ["ray_session", "EmbedActor", "embed_on_ray"]
