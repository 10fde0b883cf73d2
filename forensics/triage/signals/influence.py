"""The ``influence`` signal: each row's influence on the anomaly's reply under the target model
(:mod:`forensics.attribution.influence`: EK-FAC via kronfluence by default), measured on the
anomaly and (``probe_queries``) its stored probe variants that keep the behaviour, cached per
(target, dataset version, anomaly, knobs) in ``influence_runs`` / ``influence_scores``.

The target is ``params.target`` when set, else the target of the registered NLA that explained
the anomaly (``nlas.target_path``). Unavailable, with the reason, when there is no target, the
anomaly has no prompt or reply, or the target has more than ``max_params`` parameters (an
influence pass costs several backward passes over the dataset). Scores: negative influence
counts as 0, the rest is divided by the largest. Its weight defaults to 0 (not computed: the
pass costs minutes on a CPU); docs/triage.md gives the measurement.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register


@dataclass
class InfluenceParams:
    """Knobs of the influence signal (documented in docs/triage.md)."""

    target: str = ""                 # target model directory; "" = the target of the anomaly's NLA
    max_params: int = 20_000_000     # targets with more parameters: unavailable
    method: str = "ekfac"            # kronfluence: ekfac | kfac | diagonal | identity; gradcos (dattri TracIn)
    max_len: int = 64                # tokens per pair
    batch_size: int = 32             # rows per gradient batch
    damping: float | None = None     # EK-FAC damping (None: kronfluence's heuristic)
    proj_dim: int = 512              # gradcos: random projection dimension
    lm_head: bool = True             # ekfac: also track the output layer
    query_token_mean: bool = True    # measurement: the reply's mean token NLL (False: its sum)
    query_tokens: int = 0            # measurement: only each query's first N reply tokens (0: all)
    train_tokens: int = 0            # training-row loss when scoring: only its first N reply tokens (0: all)
    train_token_mean: bool = False   # training-row loss when scoring: mean reply-token NLL (False: sum)
    query_combine: str = "unit_abs"  # sum | unit | abs | unit_abs: how the queries' scores make one score
    query_scale: str = "median"      # unit / unit_abs: each query's size over the rows: median |score| | rms
    probe_queries: bool = True       # also measure on the anomaly's stored probe variants that keep the behaviour


def resolve_target(ws, anomaly_id: int, explicit: str) -> str | None:
    """``explicit``, else the target directory of the most recent NLA that explained the anomaly."""
    if explicit:
        return explicit
    row = ws.one("SELECT n.target_path FROM explanations e JOIN nlas n ON n.name = e.nla_id "
                 "WHERE e.anomaly_id = ? ORDER BY e.explanation_id DESC LIMIT 1", [anomaly_id])
    return row[0] if row else None


@register
class InfluenceSignal:
    """Influence of each row on the anomaly's reply; ``summary["influence"]`` records the target,
    method, whether the pass was cached and its seconds."""

    name = "influence"
    default_weight = 0.0
    Params = InfluenceParams
    #: the run skips this signal (reported unavailable) while its weight is 0: a pass is costly
    skip_when_unweighted = True

    def score(self, context: SignalContext, params: InfluenceParams) -> SignalScores | Unavailable:
        from forensics.attribution import influence as inf
        from forensics.errors import ForensicsError

        a = context.anomaly
        if not a.prompt or not a.reply:
            return Unavailable("the anomaly has no prompt and reply to measure influence on")
        with context.ws.locked():
            target = resolve_target(context.ws, a.anomaly_id, params.target)
        if not target:
            return Unavailable("no target model registered for this anomaly (explain it with a registered NLA, "
                               "or set signals.influence.target)")
        if not Path(target).is_dir():
            return Unavailable(f"target {target}: not a directory")
        try:
            n_params = inf.count_params(target)
        except ForensicsError as e:
            return Unavailable(str(e))
        if n_params > params.max_params:
            return Unavailable(f"target has {n_params:,} parameters, above signals.influence.max_params="
                               f"{params.max_params:,}: too large to differentiate here")
        lib = "kronfluence" if params.method in inf.KRON_METHODS else "dattri"
        if importlib.util.find_spec(lib) is None:
            return Unavailable(f"signals.influence.method={params.method} needs {lib}, which is not installed "
                               f"(`make venv` installs kronfluence; see docs/verify.md)")
        cfg = inf.InfluenceConfig(method=params.method, max_len=params.max_len, batch_size=params.batch_size,
                                  damping=params.damping, proj_dim=params.proj_dim, lm_head=params.lm_head,
                                  query_token_mean=params.query_token_mean, query_tokens=params.query_tokens,
                                  train_tokens=params.train_tokens, train_token_mean=params.train_token_mean,
                                  query_combine=params.query_combine, query_scale=params.query_scale)
        if context.progress is not None:
            context.progress.note(f"influence: {params.method} pass over {context.n} rows ({n_params:,} params)")
        extra = []
        if params.probe_queries:
            with context.ws.locked():
                got = context.ws.rows(
                    "SELECT prompt, reply FROM probes WHERE anomaly_id = ? AND behaviour_persists "
                    "AND prompt IS NOT NULL AND reply IS NOT NULL ORDER BY probe_id", [a.anomaly_id])
            extra = [(p, r) for p, r in got if p and r and (p, r) != (a.prompt, a.reply)]
        ids, vals, info = inf.dataset_scores(context.ws, target, context.dataset, (a.prompt, a.reply), cfg,
                                             extra_queries=extra)
        v = np.zeros(context.n, np.float32)
        pos = context.position
        for sid, s in zip(ids.tolist(), vals.tolist()):
            j = pos.get(int(sid))
            if j is not None:
                v[j] = s
        v = np.clip(v, 0, None)
        top = float(v.max()) if v.size else 0.0
        if top > 0:
            v /= top
        return SignalScores(v, summary={"influence": {"target": target, "method": params.method,
                                                      "params": n_params, **info}})


__all__ = ["InfluenceParams", "InfluenceSignal", "resolve_target"]
