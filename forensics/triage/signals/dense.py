"""Dense (ANN) signals: the anomaly's own ``prompt`` and ``reply`` searched against the dataset's
prompt / reply indexes (the pair index when the field has none).

Scores: see :mod:`forensics.triage.signals.ann`, averaged over the anomaly's texts. A stale
index is refused (StaleError), never silently used.
"""

from __future__ import annotations

import numpy as np

from forensics.triage.signals.ann import DenseParams, query_texts, search_scores
from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register


class _FieldSignal:
    """The anomaly's ``field`` text against the field's index, else the pair index."""

    name = ""
    default_weight = 0.0
    Params = DenseParams

    def score(self, context: SignalContext, params: DenseParams) -> SignalScores | Unavailable:
        texts = query_texts([getattr(context.anomaly, self.name)])
        if not texts:
            return Unavailable(f"the anomaly has no {self.name}")
        for fld in (self.name, "pair"):
            oi = context.indexes.get(fld)
            if oi is None:
                continue
            per_query = search_scores(context, oi, texts, params.k)
            return SignalScores(np.mean(per_query, axis=0).astype(np.float32),
                                index_versions={fld: context.indexes.versions[fld]})
        return Unavailable(f"no {self.name} or pair index for this dataset")


@register
class PromptSignal(_FieldSignal):
    """Rows whose prompt resembles the anomaly's prompt."""

    name = "prompt"
    default_weight = 0.03


@register
class ReplySignal(_FieldSignal):
    """Rows whose reply resembles the anomaly's reply."""

    name = "reply"
    default_weight = 0.07


__all__ = ["PromptSignal", "ReplySignal"]
