"""The indexes one triage run reads: each opened once (read-only, the workspace held only while
it opens), one embedding model shared by all of them, versions recorded for the run, stale
indexes refused. Each open index is handed out as a :class:`RunIndex`: the index, with the
stored vectors and the ids it gives read once per run (the context split, the segment signal
and its code shape read the prompt vectors of overlapping rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.errors import NotFoundError, StaleError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace


class IndexCache:
    """``get(field)`` -> the dataset's open index for ``field`` or ``None`` when it has none;
    ``versions`` holds what each opened index was built from (stored with the run)."""

    def __init__(self, ws: "Workspace", dataset: str):
        self.ws, self.dataset = ws, dataset
        self.opened: dict[str, Any] = {}
        self.versions: dict[str, dict] = {}
        self.model: Any = None        # the run's one loaded embedder (loading costs seconds)

    def get(self, field: str) -> Any:
        if field not in self.opened:
            from forensics.search import index

            try:
                with self.ws.locked():
                    oi = index.open_index(self.ws, self.dataset, field, embedder=self.model,
                                          read_only=True)
            except NotFoundError:
                oi = None
            except StaleError as e:
                raise StaleError(f"triage refuses a stale index: {e.message}", hint=e.hint) from e
            self.opened[field] = oi = RunIndex(oi) if oi is not None else None
            if oi is not None:
                m = oi.manifest
                self.versions[field] = {"built_at": m.built_at, "model_id": m.model_id,
                                        "dataset_version": m.dataset_version, "rows": m.rows,
                                        "index_type": m.index_type, "checksum": m.checksum[:16]}
        return self.opened[field]

    def get_if_open(self, field: str) -> Any:
        """The index when this run opened it already (``None`` otherwise)."""
        return self.opened.get(field)

    def embed(self, oi: Any, texts: list[str]) -> np.ndarray:
        """``texts`` embedded for ``oi`` through the workspace's embedding cache; the model is
        loaded only when a text is not cached (a re-run triage finds its queries cached). The
        workspace is held for the cache lookups and writes only, not while the model runs."""
        from forensics.search import embed

        return embed.embed_texts(self.ws, texts, _LazyEmbedder(oi, self), release=True)


class RunIndex:
    """An open index for one triage run: every attribute is the index's, except that
    :meth:`vectors` reads each id's stored vector once (later calls take the copy in hand:
    the same values, as the index and the embedding cache do not change during a run) and
    :meth:`ids` lists the index's ids once."""

    def __init__(self, oi: Any):
        self._oi = oi
        self._vec: dict[int, np.ndarray] = {}
        self._ids: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._oi, name)

    def vectors(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """The index's ``vectors(ids)`` ([n, dim] float32, a new array), each id read once."""
        want = np.asarray(ids, dtype=np.int64).tolist()
        need = [i for i in dict.fromkeys(want) if i not in self._vec]
        if need:
            self._vec.update(zip(need, self._oi.vectors(np.asarray(need, np.int64))))
        if not want:
            return np.zeros((0, self._oi.manifest.dim), np.float32)
        return np.stack([self._vec[i] for i in want]).astype(np.float32, copy=False)

    def ids(self) -> np.ndarray:
        """Every id held by the index (listed once per run)."""
        if self._ids is None:
            self._ids = self._oi.ids()
        return self._ids


class _LazyEmbedder:
    """Stands in for an index's Embedder in :func:`forensics.search.embed.embed_texts`: the model
    id and dimension come from the index manifest, and the model is loaded only when a query
    text is not in the workspace's embedding cache. Why: loading the model costs a fraction of
    a second warm and seconds in a fresh process (the CLI)."""

    def __init__(self, oi: Any, cache: IndexCache):
        self.oi, self.cache = oi, cache
        self.model_id = oi.manifest.model_id
        self.dim = int(oi.manifest.dim)

    def encode(self, texts, show_progress: bool = False) -> np.ndarray:
        e = self.cache.model
        if e is None or e.model_id != self.model_id:
            e = self.oi.embedder()
            if self.cache.model is None:
                self.cache.model = e
        return e.encode(texts)


__all__ = ["IndexCache", "RunIndex"]
