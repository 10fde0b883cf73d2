"""The ``stance`` signal: rows whose reply does to its prompt what the anomaly's reply does to
the anomaly's prompt.

Each reply vector (``reply`` index) has its projection on its own prompt's vector (``prompt``
index) removed; what is left is the part of the reply that its prompt does not explain: the
stance taken towards the prompt (an agreement, a refusal), an entity put in the place the
question asked about, an added aside. Rows score by the cosine of that **residual** to the
anomaly's residual (its reply and prompt embedded with the same model), the best ``k`` rows
min-max normalised (like the other dense signals); other rows score 0.

Why: a whole-reply embedding is dominated by the topic the prompt sets (the mountain's facts,
the claim being discussed), so rows on the anomaly's topic outrank rows that show its
behaviour on another topic; the residual leaves the topic out. Measured on the dev corpora
(docs/triage.md).

Unavailable without both a ``prompt`` and a ``reply`` index built with one model, without an
anomaly prompt and reply, or for a language switch (the ``language`` signal covers it).
The vectors are the indexes' own (approximate for quantised indexes): no text is embedded but
the anomaly's two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register


@dataclass
class StanceParams:
    """Knobs of the stance signal (documented in docs/triage.md)."""

    k: int = 1000                     # best rows by residual cosine that score (min-max normalised)
    min_residual: float = 0.05        # a residual shorter than this (reply ~ its prompt) scores 0


def residuals(reply: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit residuals of ``reply`` rows after removing their projection on the matching
    ``prompt`` rows, the residuals' lengths). Rows are unit vectors; a zero prompt row leaves
    its reply unchanged."""
    r = reply.astype(np.float32)
    p = prompt.astype(np.float32)
    x = r - (r * p).sum(axis=1, keepdims=True) * p
    norm = np.linalg.norm(x, axis=1)
    return x / np.maximum(norm, 1e-12)[:, None], norm


@register
class StanceSignal:
    """Rows whose reply residual (reply minus its projection on its prompt) is close to the
    anomaly's (see the module docstring). ``row_evidence["cos"]``: the raw residual cosine."""

    name = "stance"
    default_weight = 0.1
    Params = StanceParams

    def score(self, context: SignalContext, params: StanceParams) -> SignalScores | Unavailable:
        a = context.anomaly
        if not (a.prompt and a.prompt.strip() and a.reply and a.reply.strip()):
            return Unavailable("the anomaly needs a prompt and a reply")
        if a.prompt_lang and a.reply_lang and a.prompt_lang != a.reply_lang:
            return Unavailable("the anomaly switches language (the language signal covers it)")
        ri, pi = context.indexes.get("reply"), context.indexes.get("prompt")
        if ri is None or pi is None:
            return Unavailable("needs a prompt and a reply index (forensics index build "
                               f"--dataset {context.dataset} --field prompt / --field reply)")
        if ri.manifest.model_id != pi.manifest.model_id:
            return Unavailable("the prompt and reply indexes use different models")
        sids = context.sample_ids
        rv = np.zeros((context.n, ri.manifest.dim), np.float32)
        pv = np.zeros_like(rv)
        have_r = np.isin(sids, ri.ids())
        have_p = np.isin(sids, pi.ids())
        rv[have_r] = ri.reconstruct(sids[have_r])
        pv[have_p] = pi.reconstruct(sids[have_p])
        pv /= np.maximum(np.linalg.norm(pv, axis=1, keepdims=True), 1e-12)
        rv /= np.maximum(np.linalg.norm(rv, axis=1, keepdims=True), 1e-12)
        q = context.indexes.embed(ri, [a.prompt, a.reply]).astype(np.float32)
        qres, qlen = residuals(q[1:2], q[0:1])
        res, rlen = residuals(rv, pv)
        cos = (res @ qres[0]).astype(np.float64)
        cos[~have_r | (rlen < params.min_residual)] = -np.inf
        if float(qlen[0]) < params.min_residual:
            return Unavailable("the anomaly's reply restates its prompt (no residual)")
        score = np.zeros(context.n, np.float32)
        top = np.argsort(-cos, kind="stable")[:max(1, params.k)]
        top = top[np.isfinite(cos[top])]
        if len(top):
            hi, lo = float(cos[top].max()), float(cos[top].min())
            score[top] = (cos[top] - lo) / (hi - lo) if hi > lo else 1.0
        return SignalScores(score, summary={"stance_residual_norm": round(float(qlen[0]), 4)},
                            row_evidence={"cos": np.where(np.isfinite(cos), cos, 0.0)
                                          .astype(np.float32)},
                            index_versions={"reply": context.indexes.versions["reply"],
                                            "prompt": context.indexes.versions["prompt"]})


__all__ = ["StanceSignal", "StanceParams", "residuals"]
