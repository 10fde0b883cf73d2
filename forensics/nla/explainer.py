"""The explainer: target + AV (+ AR) loaded once, turning (prompt, reply) items into
explanations with round-trip scores, in memory (storage is :mod:`forensics.nla.explanations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from forensics.nla.backends import Sampling
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
    sample_index: int = 0


class Explainer:
    """Target + AV (+ AR) loaded once; :meth:`run` explains (prompt, reply) items.

    The notebook entry point::

        ex = Explainer(get_nla(ws, "qwen-l20"))
        rows = ex.run([("prompt", "reply")], ["last_prompt", "first_reply"])
    """

    def __init__(self, rec: NLARecord, backend: str = "local", server: str | None = None,
                 device: str | None = None, dtype: str | None = None, max_new_tokens: int = 200,
                 server_model: str | None = None, use_ar: bool = True, sampling: Sampling | None = None,
                 ar_input: str = "raw", av_prompt: str | None = None):
        from forensics.nla.activations import load_causal_lm, pick_device
        from forensics.nla.ar import AR
        from forensics.nla.av import AR_INPUTS, AV

        if ar_input not in AR_INPUTS:
            from forensics.errors import InputError

            raise InputError(f"--ar-input {ar_input!r}: choose one of {', '.join(AR_INPUTS)}")
        self.sampling = sampling or Sampling()
        self.ar_input = ar_input
        self.rec = rec
        dev = pick_device(device)
        self.device = dev
        self.target = load_causal_lm(rec.target_path, device=dev, dtype=dtype)
        self.target_tok = load_tokenizer(rec.target_path)
        self.av = AV.load(rec.av_path, backend=backend, server=server, device=dev, dtype=dtype,
                          server_model=server_model, max_new_tokens=max_new_tokens, av_prompt=av_prompt)
        self.ar = AR.load(rec.ar_path, device=dev, dtype=dtype) if (use_ar and rec.ar_path) else None
        self.backend = backend

    @property
    def variant(self) -> str:
        return generation_variant(self.sampling, self.av.av_prompt)

    def generation(self) -> dict:
        """The settings recorded with each explanation (``explanations.generation``)."""
        return generation_record(self.sampling, self.av.av_prompt, self.ar_input, self.backend)

    def activations(self, items: Sequence, positions: Sequence[str], batch_size: int = 8):
        from forensics.nla.activations import extract_activations

        return extract_activations(self.target, self.target_tok, items, positions, self.rec.layer,
                                   self.rec.hidden_state_index, batch_size=batch_size)

    def run(self, items: Sequence, positions: Sequence[str], batch_size: int = 8,
            variance: float | None = None) -> tuple[list[ExplainedRow], list]:
        """Explain every (item, position): ``sampling.n`` rows per position, each scored by the
        AR on :func:`~forensics.nla.av.ar_text` of ``ar_input``; returns (rows, non-finite
        activations)."""
        import torch

        from forensics.nla.ar import score
        from forensics.nla.av import ar_text

        acts = self.activations(items, positions, batch_size)
        good = [a for a in acts if a.ok]
        bad = [a for a in acts if not a.ok]
        n = self.sampling.n
        exps = self.av.explain([a.vector for a in good], batch_size=batch_size,
                               sampling=self.sampling) if good else []
        rows = [ExplainedRow(item=a.item, position=a.position, token_index=a.token_index, text=e.text,
                             raw_output=e.raw_output, truncated=e.truncated, flags=a.flags + e.flags,
                             activation_norm=a.norm, n_tokens=e.n_tokens, vector=a.vector,
                             sample_index=e.sample_index)
                for a, e in zip((a for a in good for _ in range(n)), exps)]
        if self.ar is not None and rows:
            pred = self.ar.predict([ar_text(r.raw_output, r.text, self.ar_input) for r in rows],
                                   batch_size=batch_size)
            mse, cos, fve = score(pred, torch.stack([r.vector for r in rows]), self.ar.mse_scale, variance)
            for i, r in enumerate(rows):
                r.mse, r.cos = float(mse[i]), float(cos[i])
                r.fve = float(fve[i]) if fve is not None else None
        return rows, bad

    @property
    def mse_scale(self) -> float | None:
        return self.ar.mse_scale if self.ar is not None else None


def generation_variant(sampling: Sampling, av_prompt: str | None) -> str:
    """Label of non-default generation settings ('' for greedy with the sidecar prompt): part
    of the explanation key and of the progress rows, so runs with other settings are stored
    next to each other instead of being skipped as done."""
    import hashlib

    parts = [sampling.key()]
    if av_prompt is not None:
        parts.append("prompt" + hashlib.sha256(av_prompt.encode("utf-8")).hexdigest()[:10])
    return "|".join(p for p in parts if p)


def generation_record(sampling: Sampling, av_prompt: str | None, ar_input: str, backend: str) -> dict:
    """What ``explanations.generation`` holds for one run's rows."""
    return {**sampling.to_json(), "av_prompt": av_prompt, "ar_input": ar_input, "backend": backend}


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

