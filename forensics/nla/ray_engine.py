"""``explain dataset --engine ray``: Ray Data with a small pool of explainer actors.

Why this shape: model loading is the expensive part, so each actor loads target + AV + AR
once (``map_batches`` with a callable class and ``concurrency=actors``) and explains many
batches; on a cluster each actor would hold one GPU (``num_gpus=1``). Only the driver writes
to DuckDB (one writer per file), one sample-complete batch per transaction, so resume and
idempotency work exactly as with the local engine: samples whose marker row has not reached
the driver are simply redone by the next run.
"""

from __future__ import annotations

import json
from typing import Iterator, Sequence

from forensics.nla.explainer import ExplainedRow
from forensics.nla.registry import NLARecord


class _Worker:
    """Ray actor: one Explainer, reused for every batch it gets."""

    def __init__(self, rec: dict, positions: list[str], batch_size: int, backend: str, server: str | None,
                 max_new_tokens: int, variance: float | None, device: str | None, options: dict | None = None):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from forensics.nla.backends import Sampling
        from forensics.nla.explainer import Explainer

        opts = dict(options or {})
        if opts.get("sampling") is not None:
            opts["sampling"] = Sampling(**opts["sampling"])
        self.ex = Explainer(NLARecord(**rec), backend=backend, server=server, device=device,
                            max_new_tokens=max_new_tokens, **opts)
        self.positions = positions
        self.batch_size = batch_size
        self.variance = variance

    def __call__(self, batch: dict) -> dict:
        sids = [int(s) for s in batch["sample_id"]]
        items = list(zip((str(p) for p in batch["prompt"]), (str(r) for r in batch["reply"])))
        rows, bad = self.ex.run(items, self.positions, self.batch_size, self.variance)
        cols: dict[str, list] = {k: [] for k in ("kind", "sample_id", "position", "token_index", "text", "raw_output",
                                                 "truncated", "flags", "norm", "n_tokens", "mse", "cos", "fve",
                                                 "sample_index")}

        def add(kind, sid, r: ExplainedRow | None = None, n_bad: int = 0):
            cols["kind"].append(kind)
            cols["sample_id"].append(sid)
            cols["position"].append(r.position if r else "")
            cols["token_index"].append(r.token_index if r else -1)
            cols["text"].append(r.text if r else "")
            cols["raw_output"].append(r.raw_output if r else "")
            cols["truncated"].append(bool(r.truncated) if r else False)
            cols["flags"].append(json.dumps(r.flags) if r else "[]")
            cols["norm"].append(float(r.activation_norm) if r else 0.0)
            cols["n_tokens"].append(int(r.n_tokens) if r else n_bad)
            cols["sample_index"].append(int(r.sample_index) if r else 0)
            nan = float("nan")
            cols["mse"].append(nan if r is None or r.mse is None else r.mse)
            cols["cos"].append(nan if r is None or r.cos is None else r.cos)
            cols["fve"].append(nan if r is None or r.fve is None else r.fve)

        bad_by_item: dict[int, int] = {}
        for a in bad:
            bad_by_item[a.item] = bad_by_item.get(a.item, 0) + 1
        for i, sid in enumerate(sids):
            for r in rows:
                if r.item == i:
                    add("row", sid, r)
            add("done", sid, None, bad_by_item.get(i, 0))  # marker: everything of sid came before
        return cols


def run_ray(rec: NLARecord, todo: Sequence[tuple], positions: list[str], *, batch_size: int, backend: str,
            server: str | None, max_new_tokens: int, actors: int, variance: float | None,
            device: str | None = None, options: dict | None = None) -> Iterator[tuple[list[int], dict, dict]]:
    """Yield (sample_ids, rows_by_item, bad_items) per sample-complete group, as results arrive.
    ``options``: Explainer keyword arguments (``sampling`` as a dict, ``ar_input``, ``av_prompt``)."""
    import dataclasses
    import math

    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=max(2, actors), include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{"sample_id": int(s), "prompt": p or "", "reply": r or ""} for s, p, r in todo],
                             override_num_blocks=max(1, min(len(todo), actors * 4)))
    out = ds.map_batches(
        _Worker, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
        batch_format="numpy",
        fn_constructor_kwargs=dict(rec=dataclasses.asdict(rec), positions=positions, batch_size=batch_size,
                                   backend=backend, server=server, max_new_tokens=max_new_tokens,
                                   variance=variance, device=device, options=options),
        num_gpus=1 if device and device.startswith("cuda") else 0,
    )
    pending: dict[int, list[ExplainedRow]] = {}
    for b in out.iter_batches(batch_size=None, batch_format="numpy"):
        ready: list[int] = []
        bad: dict[int, int] = {}
        for j in range(len(b["kind"])):
            sid = int(b["sample_id"][j])
            if b["kind"][j] == "done":
                ready.append(sid)
                if int(b["n_tokens"][j]):
                    bad[sid] = int(b["n_tokens"][j])
                continue
            f = lambda k: None if math.isnan(float(b[k][j])) else float(b[k][j])  # noqa: E731
            pending.setdefault(sid, []).append(ExplainedRow(
                item=-1, position=str(b["position"][j]), token_index=int(b["token_index"][j]),
                text=str(b["text"][j]), raw_output=str(b["raw_output"][j]), truncated=bool(b["truncated"][j]),
                flags=json.loads(str(b["flags"][j])), activation_norm=float(b["norm"][j]),
                n_tokens=int(b["n_tokens"][j]), mse=f("mse"), cos=f("cos"), fve=f("fve"),
                sample_index=int(b["sample_index"][j])))
        if ready:
            rows_by_item = {i: pending.pop(sid, []) for i, sid in enumerate(ready)}
            bad_items = {i: bad[sid] for i, sid in enumerate(ready) if sid in bad}
            yield ready, rows_by_item, bad_items
