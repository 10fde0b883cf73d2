"""The ``explanation_own`` signal: rows whose own explanations say, beyond the row's own words,
what the anomaly's explanations say.

An explanation of a row restates much of the row (the claim a prompt makes, the topic it
asks about) and adds a judgement of it ("a popular myth stated as fact", "an established
fact", "the reply accepts the premise"). Searched whole, an explanation finds the rows on the
anomaly's topic; with the word runs it copies from its own row's prompt and reply cut out
(:func:`forensics.triage.signals.stance.own_text`) what is left is the judgement, and rows
judged alike read alike whatever their topic. A row's score is the combination (``combine``:
mean or max) over its explanations (at ``positions``; all when empty) of the mean cosine to
the anomaly's explanations (with ``centre``, both after subtracting the mean of the row
explanations read: their shared framing), the best ``k`` rows min-max normalised, other rows 0. The raw
cosines (``row_evidence["cos"]``, ``["explained"]``) also judge the behaviour rows in the
context split (:func:`forensics.triage.context.explanation_judgement`).

Only the explanations of the ``candidates`` rows best by the sample-explanation index search
(the anomaly's explanations as queries) are embedded, through the workspace's embedding
cache. Unavailable without a sample-explanation index (``forensics index build --field
explanation``, after ``forensics explain dataset`` or ``forensics explanations import``) or
without anomaly explanations; the ``explanation`` signal reads the same index whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register
from forensics.triage.signals.ann import query_texts
from forensics.triage.signals.stance import _top_norm, own_text


@dataclass
class ExplanationOwnParams:
    """Knobs of the explanation_own signal (documented in docs/triage.md)."""

    k: int = 1000                     # best rows that score (min-max normalised)
    candidates: int = 2000            # rows whose explanations are embedded (best by the index search)
    positions: list[str] = field(default_factory=lambda: ["last_prompt"])  # explanation positions read (empty: all)
    copy_min_words: int = 3           # a word run copied from the row this long is cut ...
    copy_share: float = 0.5           # ... when it is this share of the longest copied run
    query_own: bool = False           # cut the anomaly's prompt and reply words from its explanations too
    combine: str = "mean"             # mean | max over a row's explanations
    centre: bool = True               # subtract the mean of the explanations read (rows' and query's) before the cosine
    members: bool = True              # rows above the two-way cut of the explained rows' cosines join the behaviour batch ...
    member_separation: float = 0.6    # ... when the cut explains this share of their variance


@register
class ExplanationOwnSignal:
    """Rows whose explanations, minus their own words, match the anomaly's explanations (see
    the module docstring). ``row_evidence["cos"]``: the combined raw cosine."""

    name = "explanation_own"
    default_weight = 0.2
    Params = ExplanationOwnParams

    def score(self, context: SignalContext,
              params: ExplanationOwnParams) -> SignalScores | Unavailable:
        if params.combine not in ("mean", "max"):
            return Unavailable(f"signals.explanation_own.combine must be mean or max, not "
                               f"{params.combine!r}")
        a = context.anomaly
        texts = query_texts(list(a.explanations))
        if not texts:
            return Unavailable("the anomaly has no explanations")
        oi = context.indexes.get("explanation")
        if oi is None or not oi.ntotal:
            return Unavailable("no sample-explanation index for this dataset (forensics index "
                               f"build --dataset {context.dataset} --field explanation)")
        if params.query_own:
            own = f"{a.prompt or ''}\n{a.reply or ''}"
            texts = [own_text(own, t, params.copy_min_words, params.copy_share) or t
                     for t in texts]
        qv = context.indexes.embed(oi, texts).astype(np.float32)
        sc, ids = oi.search(qv, min(max(1, params.candidates), oi.ntotal))
        best: dict[int, float] = {}
        for x, v in zip(ids.ravel(), sc.ravel()):
            if x >= 0:
                best[int(x)] = max(best.get(int(x), -np.inf), float(v))
        pos_sql = " AND position IN (SELECT unnest(?))" if params.positions else ""
        pos_arg = [list(params.positions)] if params.positions else []
        pos = context.position
        with context.ws.locked():
            owner = context.ws.rows(
                "SELECT explanation_id, sample_id FROM explanations WHERE dataset = ? AND "
                "sample_id IS NOT NULL AND explanation_id IN (SELECT unnest(?))" + pos_sql,
                [context.dataset, list(best), *pos_arg])
            row_best: dict[int, float] = {}
            for e, s_ in owner:
                if int(s_) in pos:
                    row_best[int(s_)] = max(row_best.get(int(s_), -np.inf), best[int(e)])
            # the ``candidates`` rows best by the index search, all their explanations
            cand = sorted(row_best, key=lambda s_: (-row_best[s_], s_))[:max(1, params.candidates)]
            got = context.ws.sql(
                "SELECT e.sample_id, e.position, e.text, s.prompt, s.reply FROM explanations e "
                "JOIN samples s "
                "USING (sample_id) WHERE e.dataset = ? AND e.sample_id IN (SELECT unnest(?))"
                + pos_sql.replace("position", "e.position")
                + " ORDER BY e.sample_id, e.explanation_id", [context.dataset, cand, *pos_arg])
        sids = got["sample_id"].to_list()
        keep = list(range(len(sids)))
        if not keep:
            return Unavailable("no explanation of a dataset row matched the anomaly's")
        own = [own_text(f"{got['prompt'][i] or ''}\n{got['reply'][i] or ''}", got["text"][i],
                        params.copy_min_words, params.copy_share) or got["text"][i]
               for i in keep]
        ev = context.indexes.embed(oi, own).astype(np.float32)
        q = qv
        if params.centre and len(ev) > 1:
            # what every explanation read here says (its framing: "the user states ...")
            # says nothing about which rows are judged like the anomaly: compare what differs
            m = ev.mean(axis=0, keepdims=True)
            ev, q = _unit(ev - m), _unit(qv - m)
        cos = (ev @ q.T).mean(axis=1)
        # the context split judges a row by the explanations of its prompt (the context
        # split's explanation_positions): what the user asserts, not what the reply does
        cp = getattr(context.context_params, "explanation_positions", None) or []
        per: dict[int, list[float]] = {}
        per_ctx: dict[int, list[float]] = {}
        for i, c in zip(keep, cos):
            per.setdefault(pos[sids[i]], []).append(float(c))
            if got["position"][i] in cp:
                per_ctx.setdefault(pos[sids[i]], []).append(float(c))
        row_cos = np.full(context.n, -np.inf)
        for j, v in per.items():
            row_cos[j] = float(np.mean(v)) if params.combine == "mean" else max(v)
        ctx_cos = np.full(context.n, np.nan)
        for j, v in per_ctx.items():
            ctx_cos[j] = float(np.mean(v))
        score = _top_norm(row_cos, params.k)
        member = np.zeros(context.n, np.float32)
        fin = np.isfinite(row_cos)
        if params.members and fin.sum() >= 2:
            from forensics.triage.context import two_way_cut

            cut, sep = two_way_cut(row_cos[fin])
            if sep >= params.member_separation:
                member[fin & (row_cos >= cut)] = 1.0
        return SignalScores(score, summary={"explanation_own_rows": len(per),
                                            "explanation_own_members": int(member.sum()),
                                            "explanation_own_texts": len(own)},
                            row_evidence={"cos": np.where(np.isfinite(row_cos), row_cos, 0.0)
                                          .astype(np.float32),
                                          "explained": np.isfinite(ctx_cos).astype(np.float32),
                                          "context_cos": np.nan_to_num(ctx_cos).astype(
                                              np.float32),
                                          "member": member},
                            index_versions={"explanation": context.indexes.versions["explanation"]})


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


__all__ = ["ExplanationOwnSignal", "ExplanationOwnParams"]
