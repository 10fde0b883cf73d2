"""The ``explanation`` signal: the anomaly's NLA explanations searched against the dataset's
sample-explanation index (rows whose own explanations read alike) and its pair index (rows
whose text reads like the explanation). Each explanation is one query; a row's score is the
mean over queries and indexes (see :mod:`forensics.triage.signals.ann`)."""

from __future__ import annotations

import numpy as np

from forensics.triage.anomaly import BEST_SAMPLE_WINDOW
from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register
from forensics.triage.signals.ann import DenseParams, query_texts, search_scores


@register
class ExplanationSignal:
    """Rows matching the anomaly's explanations. ``notes["explanation_index"]`` says when the
    dataset has no sample-explanation index and the pair index stood in alone."""

    name = "explanation"
    default_weight = 0.10
    Params = DenseParams

    def score(self, context: SignalContext, params: DenseParams) -> SignalScores | Unavailable:
        texts = query_texts(list(context.anomaly.explanations))
        if not texts:
            return Unavailable("the anomaly has no explanations")
        per_query: list[np.ndarray] = []
        used: dict[str, dict] = {}
        for fld in ("explanation", "pair"):
            oi = context.indexes.get(fld)
            if oi is None:
                continue
            to_sample = None
            if fld == "explanation":
                # explanation index ids are explanation ids: map them to their samples
                # (only each position's best-scored sample, unless all samples count)
                keep = "" if context.explanation_samples == "all" else \
                    f" QUALIFY {BEST_SAMPLE_WINDOW.format(owner='sample_id')} = 1"
                with context.ws.locked():
                    expl = {int(a): int(b) for a, b in context.ws.rows(
                        "SELECT explanation_id, sample_id FROM explanations WHERE dataset = ? "
                        "AND sample_id IS NOT NULL" + keep, [context.dataset])}
                to_sample = expl.get
            per_query.extend(search_scores(context, oi, texts, params.k, to_sample))
            used[fld] = context.indexes.versions[fld]
        if not per_query:
            return Unavailable("no explanation or pair index for this dataset")
        notes = {}
        if "explanation" not in used:
            notes["explanation_index"] = ("no sample-explanation index (dataset has no "
                                          "explanations, or none indexed); used pair index")
        return SignalScores(np.mean(per_query, axis=0).astype(np.float32), index_versions=used,
                            notes=notes)


__all__ = ["ExplanationSignal"]
