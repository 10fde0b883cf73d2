"""Explaining into the workspace: an anomaly's positions (``explain_anomaly``) and a dataset's
samples (``explain_dataset``: resumable, idempotent, local or Ray engine).

``explain dataset`` commits one batch at a time (explanations + ``explain_progress`` rows in
one transaction), so a killed run resumes where it stopped without duplicates; each run is a
row of ``explain_runs`` (running | done | interrupted | failed, with its stats).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from forensics._interrupt import deferred_interrupt
from forensics.errors import InputError, NotFoundError
from forensics.nla.activations import parse_positions
from forensics.nla.backends import Sampling
from forensics.nla.explainer import (ExplainedRow, Explainer, apply_variance, generation_record, generation_variant,
                                     resolve_variance)
from forensics.nla.explanations import insert_explanations, insert_progress, row_record
from forensics.nla.meta import load_tokenizer
from forensics.nla.registry import NLARecord, get_nla, save_variance
from forensics.progress import Progress, resolve
from forensics.workspace import LockParams

VARIANCE_SAMPLE = 64


def _start_run(ws, rec: NLARecord, params: dict, dataset=None, anomaly_id=None) -> int:
    rid = ws.next_id("explain_run_id_seq")
    ws.execute("INSERT INTO explain_runs (run_id, nla_id, dataset, anomaly_id, params, status) "
               "VALUES (?, ?, ?, ?, ?, 'running')", [rid, rec.name, dataset, anomaly_id, json.dumps(params)])
    return rid


def _finish_run(ws, rid: int, stats: dict, status: str) -> None:
    ws.execute("UPDATE explain_runs SET stats = ?, status = ?, finished_at = current_timestamp "
               "WHERE run_id = ?", [json.dumps(stats), status, rid])


# ---------------------------------------------------------------------------------- anomaly


def explain_anomaly(ws, anomaly_id: int, nla: str, positions=None, *, backend: str = "local",
                    server: str | None = None, device: str | None = None, variance: float | None = None,
                    max_new_tokens: int = 200, batch_size: int = 16,
                    explainer: Explainer | None = None, sampling: Sampling | None = None,
                    ar_input: str = "raw", av_prompt: str | None = None,
                    lock: LockParams | None = None) -> dict:
    """Explain positions of an anomaly's (prompt, reply) and store them on the anomaly.

    Re-running replaces the anomaly's rows for the same NLA/position/convention and generation
    settings. Default positions: ``last_prompt`` and ``first_reply``. ``sampling`` (default
    greedy) gives ``n`` scored samples per position; an ``explainer`` brings its own settings.
    The workspace is held while the anomaly is read and while the explanations are written,
    not while the model loads and generates (wrap the call in ``ws.locked()`` to hold it);
    between them the connection lingers (``ws.lingering`` with ``lock``, default
    :class:`~forensics.workspace.LockParams`, see :meth:`~forensics.workspace.Workspace.lingering_for`;
    returned as ``lock``), so calls run back to back with a loaded ``explainer`` share one open.
    """
    with ws.lingering_for(lock) as lock:
        res = _explain_anomaly(ws, anomaly_id, nla, positions, backend, server, device, variance,
                               max_new_tokens, batch_size, explainer, sampling, ar_input, av_prompt)
    return {**res, "lock": asdict(lock)}


def _explain_anomaly(ws, anomaly_id, nla, positions, backend, server, device, variance,
                     max_new_tokens, batch_size, explainer, sampling, ar_input, av_prompt) -> dict:
    """The body of :func:`explain_anomaly`, run inside ``ws.lingering``."""
    with ws.locked():
        rec = get_nla(ws, nla)
        row = ws.one("SELECT prompt, reply, title FROM anomalies WHERE anomaly_id = ?",
                     [int(anomaly_id)])
    if row is None:
        raise NotFoundError(f"anomaly {anomaly_id} not found", hint="list them: forensics sql "
                            "\"SELECT anomaly_id, title FROM anomalies\"")
    prompt, reply, title = row
    if not (prompt or reply):
        raise InputError(f"anomaly {anomaly_id} has neither prompt nor reply to run the model on")
    pos = parse_positions(positions or ["last_prompt", "first_reply"])
    t0 = time.perf_counter()
    ex = explainer or Explainer(rec, backend=backend, server=server, device=device, max_new_tokens=max_new_tokens,
                                sampling=sampling, ar_input=ar_input, av_prompt=av_prompt)
    rows, bad = ex.run([(prompt or "", reply or "")], pos, batch_size)
    var, var_src = resolve_variance(rec, variance, [r.vector for r in rows if r.sample_index == 0], "anomaly")
    apply_variance(rows, var)
    gen = ex.generation()
    recs = [row_record(r, rec, anomaly_id=int(anomaly_id), variant=ex.variant, generation=gen) for r in rows]

    with ws.locked(), ws.transaction():
        keys = [r["explanation_key"] for r in recs]
        if keys:
            ws.execute("DELETE FROM explanations WHERE explanation_key IN (SELECT unnest(?))", [keys])
        n = insert_explanations(ws, recs)
    secs = time.perf_counter() - t0
    return {"anomaly_id": int(anomaly_id), "title": title, "nla": rec.name, "layer": rec.layer,
            "hidden_state_index": rec.hidden_state_index, "positions": pos, "stored": n,
            "non_finite": len(bad), "variance": var, "variance_source": var_src, "seconds": round(secs, 3),
            "generation": gen,
            "explanations": [{k: v for k, v in r.items() if k in ("position", "token_index", "sample_index", "text",
                                                                   "truncated", "flags", "activation_norm", "mse",
                                                                   "cos", "fve")}
                             for r in recs]}


# ---------------------------------------------------------------------------------- dataset


def _done_samples(ws, rec: NLARecord, positions: list[str], variant: str = "") -> set[int]:
    """Samples whose every requested position is recorded in explain_progress (for these
    generation settings)."""
    rows = ws.rows("SELECT sample_id FROM explain_progress WHERE nla_id = ? AND layer = ? AND "
                   "hidden_state_index = ? AND variant = ? AND position IN (SELECT unnest(?)) "
                   "GROUP BY sample_id HAVING count(DISTINCT position) = ?",
                   [rec.name, rec.layer, rec.hidden_state_index, variant, positions, len(positions)])
    return {int(r[0]) for r in rows}


def _progress_records(rec: NLARecord, dataset: str, sample_ids: list[int], positions: list[str],
                      rows_by_item: dict[int, list[ExplainedRow]], bad_items: dict[int, int],
                      variant: str = "") -> list[tuple]:
    out = []
    for i, sid in enumerate(sample_ids):
        for p in positions:
            if p == "every_reply":
                n = sum(1 for r in rows_by_item.get(i, []) if r.position.startswith("reply:"))
            else:
                n = sum(1 for r in rows_by_item.get(i, []) if r.position == p)
            status = "ok" if n else ("failed" if bad_items.get(i) else "no_position")
            out.append((rec.name, sid, p, rec.layer, rec.hidden_state_index, dataset, status, n,
                        "non-finite activation" if status == "failed" else None, variant))
    return out


def _estimate_dataset_variance(ws, rec: NLARecord, dataset: str, positions, ex: "Explainer | None" = None,
                               device: str | None = None) -> tuple[float | None, str]:
    """Estimate the FVE denominator from the first 64 samples' activations and record it on
    the NLA, so every later batch, resume and anomaly uses the same value."""
    from forensics.nla.activations import extract_activations, load_causal_lm, pick_device
    from forensics.nla.ar import dataset_variance

    if not rec.ar_path:
        return None, "unknown (no AR)"
    rows = ws.rows("SELECT prompt, reply FROM samples WHERE dataset = ? ORDER BY sample_id LIMIT ?",
                   [dataset, VARIANCE_SAMPLE])
    items = [(p or "", r or "") for p, r in rows]
    if ex is not None:
        acts = ex.activations(items, positions)
    else:  # ray driver: load only the target
        model = load_causal_lm(rec.target_path, device=pick_device(device))
        acts = extract_activations(model, load_tokenizer(rec.target_path), items, positions, rec.layer,
                                   rec.hidden_state_index)
    vecs = [a.vector for a in acts if a.ok]
    if len(vecs) < 2:
        return None, "unknown"
    v = dataset_variance(vecs, (rec.meta.get("ar") or {}).get("mse_scale"))
    src = f"estimated from {len(vecs)} vectors of dataset {dataset}"
    save_variance(ws, rec, v, src)
    return v, src


@dataclass
class DatasetRunStats:
    run_id: int
    dataset: str
    nla: str
    engine: str
    backend: str
    positions: list[str]
    candidates: int = 0
    skipped_done: int = 0
    samples_processed: int = 0
    explanations_stored: int = 0
    non_finite: int = 0
    truncated: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    samples_per_s: float = 0.0
    explanations_per_s: float = 0.0
    tokens_per_s: float = 0.0
    variance: float | None = None
    variance_source: str = ""
    setup_seconds: float = 0.0  # model loading + variance estimate; rates exclude it
    status: str = "running"
    generation: dict | None = None  # sampling / prompt / AR-input settings of every stored row


def explain_dataset(ws, dataset: str, nla: str, positions=None, *, limit: int | None = None,
                    batch_size: int = 8, engine: str = "local", backend: str = "local",
                    server: str | None = None, device: str | None = None, variance: float | None = None,
                    max_new_tokens: int = 200, actors: int = 1, commit_every: int = 256,
                    progress: Progress | None = None,
                    explainer: Explainer | None = None, sampling: Sampling | None = None,
                    ar_input: str = "raw", av_prompt: str | None = None) -> DatasetRunStats:
    """Explain training samples of ``dataset`` into ``explanations`` (sample_id + dataset set).

    Candidates are the first ``limit`` samples by ``sample_id``; those already done for this
    NLA, position and convention (``explain_progress``) are skipped, so re-runs are no-ops and
    a killed run resumes; other generation settings (``sampling``, ``av_prompt``) are stored
    and resumed apart (their own explanation keys and progress rows). With ``sampling.n > 1``
    every position gets n explanations, each scored by the AR. Each batch commits atomically. ``progress`` gets one task counting
    the samples to explain and, after every commit, a note ``committed N/M samples, ...``;
    ``None`` is silent. The Ray engine groups results into
    commits of up to ``commit_every`` samples (or every 5 s), the local engine commits each batch.
    The workspace is released (:meth:`Workspace.release`) while the model loads and generates,
    and taken back for each commit; wrap the call in ``ws.locked()`` to hold it throughout.
    """
    ws.require_dataset(dataset)
    rec = get_nla(ws, nla)
    pos = parse_positions(positions or ["last_prompt"])
    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine!r}: choose local or ray")
    q = "SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? ORDER BY sample_id"
    params: list[Any] = [dataset]
    if limit is not None:
        q += " LIMIT ?"
        params.append(int(limit))
    cands = ws.rows(q, params)
    if explainer is not None:
        sampling, ar_input, av_prompt = explainer.sampling, explainer.ar_input, explainer.av.av_prompt
    sampling = sampling or Sampling()
    variant = generation_variant(sampling, av_prompt)
    gen = generation_record(sampling, av_prompt, ar_input, explainer.backend if explainer else backend)
    done = _done_samples(ws, rec, pos, variant)
    todo = [r for r in cands if int(r[0]) not in done]
    rid = _start_run(ws, rec, {"positions": pos, "limit": limit, "batch_size": batch_size, "engine": engine,
                               "backend": backend, "server": server, "generation": gen}, dataset=dataset)
    st = DatasetRunStats(run_id=rid, dataset=dataset, nla=rec.name, engine=engine, backend=backend,
                         positions=pos, candidates=len(cands), skipped_done=len(cands) - len(todo),
                         generation=gen)
    commit = dict(variant=variant, generation=gen)
    prog = resolve(progress)
    task = prog.start("explaining", len(todo)) if todo else None
    t0 = time.perf_counter()
    intr_ctx = deferred_interrupt()
    intr = intr_ctx.__enter__()
    try:
        if todo:
            if engine == "ray":
                from forensics.nla.ray_engine import run_ray

                var, src = resolve_variance(rec, variance, [], "dataset")
                if var is None:
                    var, src = _estimate_dataset_variance(ws, rec, dataset, pos, device=device)
                st.variance, st.variance_source = var, src
                st.setup_seconds = round(time.perf_counter() - t0, 3)  # (actors load inside the run)
                ws.release()
                # group arriving results into larger commits: a DuckDB commit costs tens of ms
                # (bench/nla.py), which would cap a many-GPU cluster's throughput
                buf_ids: list[int] = []
                buf_rows: dict[int, list[ExplainedRow]] = {}
                buf_bad: dict[int, int] = {}
                last = time.perf_counter()

                def flush():
                    nonlocal buf_ids, buf_rows, buf_bad, last
                    if buf_ids:
                        _commit_batch(ws, rec, dataset, pos, buf_ids, buf_rows, buf_bad, st, **commit)
                        ws.release()   # generation goes on without the workspace lock
                        _tick(st, t0, prog, task, len(buf_ids), len(todo))
                    buf_ids, buf_rows, buf_bad, last = [], {}, {}, time.perf_counter()

                for batch_ids, rows_by_item, bad_items in run_ray(
                        rec, todo, pos, batch_size=batch_size, backend=backend, server=server,
                        max_new_tokens=max_new_tokens, actors=actors, variance=var, device=device,
                        options=dict(sampling=sampling.to_json(), ar_input=ar_input, av_prompt=av_prompt)):
                    base = len(buf_ids)
                    buf_ids.extend(batch_ids)
                    buf_rows.update({base + i: r for i, r in rows_by_item.items()})
                    buf_bad.update({base + i: n for i, n in bad_items.items()})
                    if len(buf_ids) >= commit_every or time.perf_counter() - last > 5.0 \
                            or intr.requested:
                        flush()
                    intr.check()     # Ctrl-C takes effect after what arrived is committed
                flush()
            else:
                ws.release()   # the model loads, and generates, without the workspace lock
                ex = explainer or Explainer(rec, backend=backend, server=server, device=device,
                                            max_new_tokens=max_new_tokens, sampling=sampling,
                                            ar_input=ar_input, av_prompt=av_prompt)
                var, src = resolve_variance(rec, variance, [], "dataset")
                if var is None:
                    var, src = _estimate_dataset_variance(ws, rec, dataset, pos, ex)
                    ws.release()
                st.variance, st.variance_source = var, src
                st.setup_seconds = round(time.perf_counter() - t0, 3)
                for s in range(0, len(todo), batch_size):
                    chunk = todo[s:s + batch_size]
                    rows, bad = ex.run([(p or "", r or "") for _, p, r in chunk], pos, batch_size, var)
                    by_item: dict[int, list[ExplainedRow]] = {}
                    for r in rows:
                        by_item.setdefault(r.item, []).append(r)
                    bad_items: dict[int, int] = {}
                    for a in bad:
                        bad_items[a.item] = bad_items.get(a.item, 0) + 1
                    _commit_batch(ws, rec, dataset, pos, [int(c[0]) for c in chunk], by_item, bad_items, st,
                                  **commit)
                    ws.release()   # the next batch generates without the workspace lock
                    _tick(st, t0, prog, task, len(chunk), len(todo))
                    intr.check()     # Ctrl-C takes effect here, after a whole batch committed
        st.status = "done"
    except BaseException as e:
        st.status = "interrupted" if intr.explains(e) else "failed"
        if st.status == "interrupted" and not isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt from e
        raise
    finally:
        intr_ctx.__exit__(None, None, None)
        if task is not None:
            prog.finish(task)
        st.seconds = round(time.perf_counter() - t0, 3)
        _rates(st)
        try:
            _finish_run(ws, rid, _stats_json(st), st.status)
        except Exception:  # noqa: BLE001 - never mask the original error
            pass
    return st


def _rates(st: DatasetRunStats) -> None:
    s = max(st.seconds - st.setup_seconds, 1e-9)
    st.samples_per_s = round(st.samples_processed / s, 3)
    st.explanations_per_s = round(st.explanations_stored / s, 3)
    st.tokens_per_s = round(st.generated_tokens / s, 1)


def _tick(st: DatasetRunStats, t0: float, prog: Progress, task: int | None, n: int, total: int) -> None:
    """After a commit of ``n`` samples: refresh the rates, advance the task, log one line."""
    st.seconds = round(time.perf_counter() - t0, 3)
    _rates(st)
    if task is not None:
        prog.advance(task, n)
    prog.note(f"committed {st.samples_processed}/{total} samples, {st.explanations_stored} "
              f"explanations, {st.explanations_per_s:.2f} expl/s")


def _stats_json(st: DatasetRunStats) -> dict:
    import dataclasses

    return dataclasses.asdict(st)


def _commit_batch(ws, rec, dataset, pos, sample_ids, rows_by_item, bad_items, st: DatasetRunStats,
                  variant: str = "", generation: dict | None = None) -> None:
    recs = []
    for i, sid in enumerate(sample_ids):
        for r in rows_by_item.get(i, []):
            recs.append(row_record(r, rec, sample_id=sid, dataset=dataset, variant=variant,
                                   generation=generation))
    prog = _progress_records(rec, dataset, sample_ids, pos, rows_by_item, bad_items, variant)

    with ws.transaction():
        keys = [r["explanation_key"] for r in recs]
        if keys:  # a crashed run cannot leave keys behind (atomic batches), but an import can
            have = {k for (k,) in ws.rows("SELECT explanation_key FROM explanations WHERE "
                                          "explanation_key IN (SELECT unnest(?))", [keys])}
            new = [r for r in recs if r["explanation_key"] not in have]
        else:
            new = []
        n = insert_explanations(ws, new)
        insert_progress(ws, prog)
    st.samples_processed += len(sample_ids)
    st.explanations_stored += n
    st.non_finite += sum(bad_items.values())
    st.truncated += sum(1 for r in new if r["truncated"])
    st.generated_tokens += sum(r.n_tokens for rs in rows_by_item.values() for r in rs)


# ---------------------------------------------------------------------------------- check