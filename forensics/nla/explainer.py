"""The explainer: target + AV (+ AR) loaded once, turning (prompt, reply) items into
explanations with round-trip scores, in memory (storage is :mod:`forensics.nla.explanations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from forensics.nla.meta import load_tokenizer

if TYPE_CHECKING:
    from forensics.nla.registry import NLARecord

MIN_VECTORS_FOR_VARIANCE = 16


@dataclass
class ExplainedRow:
    """One explained position (before storage)."""

    item: int
    position: str
    token_index: int
    text: str
    raw_output: str
    truncated: bool
    flags: list[str]
    activation_norm: float
    n_tokens: int
    mse: float | None = None
    cos: float | None = None
    fve: float | None = None
    vector: Any = None


class Explainer:
    """Target + AV (+ AR) loaded once; :meth:`run` explains (prompt, reply) items.

    The notebook entry point::

        ex = Explainer(get_nla(ws, "qwen-l20"))
        rows = ex.run([("prompt", "reply")], ["last_prompt", "first_reply"])
    """

    def __init__(self, rec: NLARecord, backend: str = "local", server: str | None = None,
                 device: str | None = None, dtype: str | None = None, max_new_tokens: int = 200,
                 server_model: str | None = None, use_ar: bool = True):
        from forensics.nla.activations import load_causal_lm, pick_device
        from forensics.nla.ar import AR
        from forensics.nla.av import AV

        self.rec = rec
        dev = pick_device(device)
        self.device = dev
        self.target = load_causal_lm(rec.target_path, device=dev, dtype=dtype)
        self.target_tok = load_tokenizer(rec.target_path)
        self.av = AV.load(rec.av_path, backend=backend, server=server, device=dev, dtype=dtype,
                          server_model=server_model, max_new_tokens=max_new_tokens)
        self.ar = AR.load(rec.ar_path, device=dev, dtype=dtype) if (use_ar and rec.ar_path) else None
        self.backend = backend

    def activations(self, items: Sequence, positions: Sequence[str], batch_size: int = 8):
        from forensics.nla.activations import extract_activations

        return extract_activations(self.target, self.target_tok, items, positions, self.rec.layer,
                                   self.rec.hidden_state_index, batch_size=batch_size)

    def run(self, items: Sequence, positions: Sequence[str], batch_size: int = 8,
            variance: float | None = None) -> tuple[list[ExplainedRow], list]:
        """Explain every (item, position); returns (rows, non-finite activations)."""
        import torch

        from forensics.nla.ar import score

        acts = self.activations(items, positions, batch_size)
        good = [a for a in acts if a.ok]
        bad = [a for a in acts if not a.ok]
        exps = self.av.explain([a.vector for a in good], batch_size=batch_size) if good else []
        rows = [ExplainedRow(item=a.item, position=a.position, token_index=a.token_index, text=e.text,
                             raw_output=e.raw_output, truncated=e.truncated, flags=a.flags + e.flags,
                             activation_norm=a.norm, n_tokens=e.n_tokens, vector=a.vector)
                for a, e in zip(good, exps)]
        if self.ar is not None and rows:
            pred = self.ar.predict([r.text for r in rows], batch_size=batch_size)
            mse, cos, fve = score(pred, torch.stack([r.vector for r in rows]), self.ar.mse_scale, variance)
            for i, r in enumerate(rows):
                r.mse, r.cos = float(mse[i]), float(cos[i])
                r.fve = float(fve[i]) if fve is not None else None
        return rows, bad

    @property
    def mse_scale(self) -> float | None:
        return self.ar.mse_scale if self.ar is not None else None


def apply_variance(rows: Sequence[ExplainedRow], variance: float | None) -> None:
    for r in rows:
        r.fve = None if (variance is None or r.mse is None) else 1.0 - r.mse / variance


def resolve_variance(rec: NLARecord, given: float | None, vectors: list, source: str
                     ) -> tuple[float | None, str]:
    """(variance, source): given > recorded for this NLA > estimated from >= 16 vectors > None."""
    from forensics.nla.ar import dataset_variance

    if given is not None:
        return float(given), "given"
    v = rec.variance()
    if v is not None:
        src = ((rec.meta.get("variance") or {}).get(f"L{rec.layer}|h{rec.hidden_state_index}") or {}).get("source")
        return v, f"recorded ({src})"
    if len(vectors) >= MIN_VECTORS_FOR_VARIANCE:
        mse_scale = (rec.meta.get("ar") or {}).get("mse_scale")
        return dataset_variance(vectors, mse_scale), f"estimated from {len(vectors)} {source} vectors"
    return None, "unknown (fewer than 16 vectors and none recorded; fve left NULL)"

