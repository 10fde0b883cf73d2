"""Running a pipeline: run bookkeeping (resume, idempotence) and the executors.

What vs where: :class:`~forensics.quality.core.Pipeline` says what to compute; an executor
says where batches run — ``local`` (in-process for 1 worker, a process pool otherwise) or
``ray`` (Ray Data ``from_arrow`` + ``map_batches``, local or a cluster via ``ray_address``).
Every executor calls the same :func:`process_batch` on the same batches, and the driver
commits results the same way, so findings are identical whatever the engine.

Bookkeeping (tables ``pipeline_runs``, ``pipeline_batches``, ``pipeline_state``):

* a run is identified by (dataset, definition hash, dataset version);
* each batch commits in ONE transaction: its findings, the map output of global checks,
  and its ``pipeline_batches`` row; a killed run therefore restarts after its last committed
  batch, with nothing duplicated and nothing lost;
* global checks reduce in the driver after the last batch, and their findings are written in
  the same transaction that marks the run ``done``;
* re-running a finished pipeline on an unchanged dataset returns the existing run
  (``reused=True``) and writes nothing; ``fresh=True`` starts a new run instead.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from forensics._interrupt import deferred_interrupt
from forensics._ray import ray_session
from forensics.errors import BackendError, UsageError
from forensics.progress import Progress, resolve
from forensics.quality.core import Batch, Finding, Pipeline, Step, StepStats
from forensics.workspace import POLL_SECONDS

# Seconds a run holds the workspace before releasing it after a committed batch (a reader
# waits about this plus one batch at most); the pause of each release lets a waiting command in.
HOLD_SECONDS = 2.0

DEFAULT_BATCH_SIZE = 2000


@dataclass
class BatchResult:
    batch_id: int
    rows_in: int
    findings: list[Finding]
    states: dict[int, bytes]           # step index (in pipeline.middle) -> Arrow IPC bytes
    stats: list[StepStats]             # one per middle step


@dataclass
class RunResult:
    pipeline_run_id: int
    pipeline: str
    dataset: str
    engine: str
    status: str
    reused: bool = False
    resumed: bool = False
    batches_total: int = 0
    batches_skipped: int = 0           # already committed by an earlier (killed) attempt
    rows: int = 0
    seconds: float = 0.0
    steps: list[StepStats] = field(default_factory=list)
    findings: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- batch work
def _ipc(table) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _from_ipc(b: bytes):
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(b)).read_all()


def process_batch(steps: list[Step], batch: Batch) -> BatchResult:
    """Run transforms and checks on one batch. Pure: same input, same output, anywhere."""
    findings: list[Finding] = []
    states: dict[int, bytes] = {}
    stats = []
    rows_in = len(batch)
    cur = batch
    for idx, step in enumerate(steps):
        t = time.perf_counter()
        n = len(cur)
        cur, f = step.process(cur)
        if step.scope == "global":
            states[idx] = _ipc(step.map(cur))
        findings.extend(f)
        stats.append(StepStats(step.name, rows_in=n, rows_out=len(cur), findings=len(f),
                               seconds=time.perf_counter() - t))
    return BatchResult(batch.batch_id, rows_in, findings, states, stats)


_WORKER_STEPS: list[Step] | None = None


def _init_worker(steps: list[Step]) -> None:
    global _WORKER_STEPS  # per-process state of a pool worker, set once at start
    _WORKER_STEPS = steps
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Ctrl-C reaches the whole process group; the driver decides when to stop (after the batch
    # in flight commits) and closes the pool, so a worker must not die mid-task on its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(batch_id: int, table) -> BatchResult:
    # the driver ships Arrow (cheap to pickle: raw buffers) and the worker converts to
    # Python lists, keeping the single-threaded driver off the critical path
    return process_batch(_WORKER_STEPS, Batch(batch_id, table.to_pydict()))


# --------------------------------------------------------------------------- executors
def _run_local(pipeline: Pipeline, load: Callable[[Any, int], Batch], pending: list,
               workers: int, load_arrow: Callable[[Any], Any] | None = None
               ) -> Iterator[tuple[BatchResult, float]]:
    steps = pipeline.middle
    if workers <= 1:
        for bid, ref in pending:
            t = time.perf_counter()
            b = load(ref, bid)
            lt = time.perf_counter() - t
            yield process_batch(steps, b), lt
        return
    import multiprocessing as mp

    # forkserver, not fork: the driver holds DuckDB, fastText and BLAS threads, and a child
    # forked from a threaded parent can deadlock on a lock held by a thread that did not
    # survive the fork (observed: ingest + pipeline in one process hung).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["forensics.quality"])
    window = 2 * workers
    with ctx.Pool(workers, initializer=_init_worker, initargs=(steps,)) as pool:
        inflight: list = []
        it = iter(pending)
        load_t: dict[int, float] = {}

        def submit() -> bool:
            try:
                bid, ref = next(it)
            except StopIteration:
                return False
            t = time.perf_counter()
            tb = load_arrow(ref)
            load_t[bid] = time.perf_counter() - t
            inflight.append(pool.apply_async(_work, (bid, tb)))
            return True

        while len(inflight) < window and submit():
            pass
        while inflight:
            res = inflight.pop(0).get()
            submit()
            yield res, load_t.pop(res.batch_id, 0.0)


def _ray_read_fn(steps: list[Step], reader: Step):
    """Ray task for readers that workers can reach themselves (Parquet on shared storage):
    the input rows are batch REFERENCES; each task loads its own slice."""

    def fn(table):
        import pyarrow as pa

        out_ids, out_rows, out_blobs = [], [], []
        for bid, ref in zip(table.column("batch_id").to_pylist(), table.column("ref").to_pylist()):
            b = reader.load(None, None, tuple(json.loads(ref)), int(bid))
            res = process_batch(steps, b)
            out_ids.append(res.batch_id)
            out_rows.append(res.rows_in)
            out_blobs.append(pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
        return pa.table({"batch_id": pa.array(out_ids, pa.int64()),
                         "rows": pa.array(out_rows, pa.int64()),
                         "result": pa.array(out_blobs, pa.binary())})

    return fn


def _ray_fn(steps: list[Step]):
    def fn(table):
        import pyarrow as pa

        bids = table.column("__batch_id").to_pylist()
        cols = table.drop_columns(["__batch_id"]).to_pydict()
        out_ids, out_rows, out_blobs = [], [], []
        start = 0
        while start < len(bids):  # one result per batch id present in this block
            end = start
            while end < len(bids) and bids[end] == bids[start]:
                end += 1
            b = Batch(int(bids[start]), {k: v[start:end] for k, v in cols.items()})
            res = process_batch(steps, b)
            out_ids.append(res.batch_id)
            out_rows.append(res.rows_in)
            out_blobs.append(pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
            start = end
        return pa.table({"batch_id": pa.array(out_ids, pa.int64()),
                         "rows": pa.array(out_rows, pa.int64()),
                         "result": pa.array(out_blobs, pa.binary())})

    return fn


def _merge(a: BatchResult, b: BatchResult) -> BatchResult:
    """Ray may split a block; re-assemble a batch from its parts (order by first sample_id)."""
    import pyarrow as pa

    parts = sorted([a, b], key=lambda r: min((f.sample_id for f in r.findings), default=0))
    states = {}
    for k in set(a.states) | set(b.states):
        tbls = [_from_ipc(p.states[k]) for p in parts if k in p.states]
        states[k] = _ipc(pa.concat_tables(tbls).sort_by("sample_id"))
    stats = []
    for sa, sb in zip(a.stats, b.stats):
        s = StepStats(sa.step)
        s.add(sa)
        s.add(sb)
        stats.append(s)
    return BatchResult(a.batch_id, a.rows_in + b.rows_in, a.findings + b.findings, states, stats)


def _run_ray(pipeline: Pipeline, load_arrow: Callable[[Any], Any], pending: list, workers: int,
             address: str | None) -> Iterator[tuple[BatchResult, float]]:
    import pyarrow as pa

    with ray_session(address, workers) as ray:
        if not pending:
            return
        from forensics.quality.steps import ReadParquet

        t = time.perf_counter()
        expected: dict[int, int] = {}
        conc = max(1, workers) if not address else None
        if isinstance(pipeline.reader, ReadParquet):
            # workers read their own slices from shared storage; the driver only plans
            items = [{"batch_id": bid, "ref": json.dumps(list(ref))} for bid, ref in pending]
            expected = {bid: int(ref[2]) for bid, ref in pending}
            ds = ray.data.from_items(items).map_batches(
                _ray_read_fn(pipeline.middle, pipeline.reader), batch_size=1,
                batch_format="pyarrow", num_cpus=1, concurrency=conc)
        else:
            tables = []
            for bid, ref in pending:
                tb = load_arrow(ref)
                expected[bid] = len(tb)
                tables.append(tb.append_column("__batch_id", pa.array([bid] * len(tb), pa.int64())))
            ds = ray.data.from_arrow(tables).map_batches(
                _ray_fn(pipeline.middle), batch_size=None, batch_format="pyarrow",
                num_cpus=1, concurrency=conc)
        lt = (time.perf_counter() - t) / max(1, len(pending))
        partial: dict[int, BatchResult] = {}
        for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for blob in out.column("result").to_pylist():
                res: BatchResult = pickle.loads(blob)
                if res.batch_id in partial:
                    res = _merge(partial.pop(res.batch_id), res)
                if res.rows_in < expected.get(res.batch_id, res.rows_in):
                    partial[res.batch_id] = res
                    continue
                yield res, lt
        if partial:
            raise BackendError(f"ray returned incomplete batches {sorted(partial)}")


# --------------------------------------------------------------------------- runs
def _json(obj: Any) -> str:
    return json.dumps(obj, default=lambda o: o.__dict__, ensure_ascii=False)


def _stats_from_json(s: str | None, pipeline: Pipeline) -> list[StepStats]:
    names = [st.name for st in pipeline.steps]
    if not s:
        return [StepStats(n) for n in names]
    d = json.loads(s)
    got = d.get("steps") or []
    if len(got) != len(names):
        return [StepStats(n) for n in names]
    return [StepStats(**g) for g in got]


def find_run(ws, pipeline: Pipeline, dataset: str, version: int) -> tuple | None:
    return ws.one(
        "SELECT pipeline_run_id, status, stats FROM pipeline_runs WHERE dataset = ? AND "
        "definition_hash = ? AND dataset_version = ? ORDER BY pipeline_run_id DESC LIMIT 1",
        [dataset, pipeline.definition_hash(), version])


def summarize(ws, run_id: int) -> tuple[dict[str, int], dict[str, int]]:
    by_check = {r[0]: int(r[1]) for r in ws.rows(
        'SELECT "check", count(*) FROM quality_findings WHERE pipeline_run_id = ? '
        "GROUP BY 1 ORDER BY 1", [run_id])}
    by_sev = {r[0]: int(r[1]) for r in ws.rows(
        "SELECT severity, count(*) FROM quality_findings WHERE pipeline_run_id = ? "
        "GROUP BY 1 ORDER BY 1", [run_id])}
    return by_check, by_sev


def run_pipeline(ws, pipeline: Pipeline, dataset: str, *, engine: str = "local",
                 workers: int | None = None, batch_size: int | None = None,
                 ray_address: str | None = None, fresh: bool = False,
                 progress: Progress | None = None,
                 on_batch_committed: Callable[[int], None] | None = None,
                 hold_seconds: float = HOLD_SECONDS) -> RunResult:
    """Run ``pipeline`` over ``dataset`` (resuming or reusing a matching run; see module doc).

    ``progress`` receives one task counting batches (already committed ones count as done)
    and a note when the global reduce starts; ``None`` is silent.
    ``on_batch_committed(batch_id)`` is called in the driver right after each batch's
    transaction commits (a notebook can log commits; tests use it to observe commits and to
    stop a run between two of them). An exception it raises stops the run like any error.
    ``hold_seconds``: after a committed batch the workspace connection is released (other
    commands get in) once it has been held this long; the next load or commit reopens it,
    waiting up to ``ws.wait``; recorded in ``pipeline_runs.stats``. Wrap the call in
    ``ws.locked()`` to hold it throughout.
    """
    prog = resolve(progress)
    if engine not in ("local", "ray"):
        raise UsageError(f"unknown engine {engine!r}: use local or ray")
    if batch_size is not None and batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    workers = workers or min(2, os.cpu_count() or 1)
    from forensics.quality.steps import ReadSamples

    if isinstance(pipeline.reader, ReadSamples):
        ws.require_dataset(dataset)
        version = ws.dataset_version(dataset)
    else:
        version = 0
    t0 = time.perf_counter()
    row = None if fresh else find_run(ws, pipeline, dataset, version)
    resumed = False
    if row is not None and row[1] == "done":
        by_check, by_sev = summarize(ws, row[0])
        st = json.loads(row[2] or "{}")
        return RunResult(row[0], pipeline.name, dataset, st.get("engine", engine), "done",
                         reused=True, batches_total=st.get("batches_total", 0),
                         batches_skipped=st.get("batches_total", 0), rows=st.get("rows", 0),
                         seconds=0.0, steps=_stats_from_json(row[2], pipeline),
                         findings=by_check, by_severity=by_sev)
    if row is not None:
        run_id, resumed = int(row[0]), True
        prev = json.loads(row[2] or "{}")
        batch_size = int(prev.get("batch_size") or batch_size or DEFAULT_BATCH_SIZE)
        stats = _stats_from_json(row[2], pipeline)
        ws.execute("UPDATE pipeline_runs SET status = 'running', engine = ? WHERE pipeline_run_id = ?",
                   [engine, run_id])
    else:
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        run_id = ws.next_id("pipeline_run_id_seq")
        stats = [StepStats(s.name) for s in pipeline.steps]
        ws.execute(
            "INSERT INTO pipeline_runs (pipeline_run_id, pipeline, dataset, definition, "
            "definition_hash, dataset_version, engine, status, stats) VALUES (?,?,?,?,?,?,?,?,?)",
            [run_id, pipeline.name, dataset, json.dumps(pipeline.to_dict()),
             pipeline.definition_hash(), version, engine, "running",
             json.dumps({"batch_size": batch_size, "hold_seconds": hold_seconds})])

    reader, writer, middle = pipeline.reader, pipeline.writer, pipeline.middle
    plan = reader.plan(ws, dataset, batch_size)
    done = {int(r[0]) for r in ws.rows(
        "SELECT batch_id FROM pipeline_batches WHERE pipeline_run_id = ?", [run_id])}
    pending = [(bid, ref) for bid, ref in plan if bid not in done]
    n_done = len(done)

    def save_stats(status: str | None = None) -> str:
        return json.dumps({"batch_size": batch_size, "engine": engine, "workers": workers,
                           "hold_seconds": hold_seconds,
                           "batches_total": len(plan), "rows": stats[0].rows_out,
                           "steps": [s.__dict__ for s in stats], "status": status})

    def commit(res: BatchResult, load_s: float) -> None:
        nonlocal n_done
        t = time.perf_counter()
        with ws.transaction():
            writer.write(ws, run_id, res.findings, res.batch_id)
            for idx, blob in res.states.items():
                ws.execute("INSERT OR REPLACE INTO pipeline_state VALUES (?, ?, ?, ?)",
                           [run_id, idx, res.batch_id, blob])
            ws.execute("INSERT INTO pipeline_batches (pipeline_run_id, batch_id, rows_in) "
                       "VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [run_id, res.batch_id, res.rows_in])
            stats[0].rows_in += res.rows_in
            stats[0].rows_out += res.rows_in
            stats[0].seconds += load_s
            for s, bs in zip(stats[1:-1], res.stats):
                s.add(bs)
            stats[-1].rows_in += len(res.findings)
            stats[-1].findings += len(res.findings)
            stats[-1].seconds += time.perf_counter() - t
            ws.execute("UPDATE pipeline_runs SET stats = ? WHERE pipeline_run_id = ?",
                       [save_stats("running"), run_id])
        n_done += 1
        prog.advance(task)
        if on_batch_committed is not None:
            on_batch_committed(res.batch_id)

    task = prog.start(f"{pipeline.name}: batches", len(plan))
    if n_done:
        prog.advance(task, n_done)
    intr_ctx = deferred_interrupt()
    intr = intr_ctx.__enter__()
    try:
        if engine == "local":
            it = _run_local(pipeline, lambda ref, bid: reader.load(ws, dataset, ref, bid),
                            pending, workers, lambda ref: reader.load_arrow(ws, dataset, ref))
        else:
            it = _run_ray(pipeline, lambda ref: reader.load_arrow(ws, dataset, ref), pending,
                          workers, ray_address)
        held_since = time.monotonic()
        for res, lt in it:
            commit(res, lt)
            if time.monotonic() - held_since >= hold_seconds \
                    and ws.release(pause=2 * POLL_SECONDS):
                held_since = time.monotonic()
            intr.check()     # Ctrl-C takes effect here, after a whole batch committed
        # global reduce in the driver
        prog.finish(task)
        t = time.perf_counter()
        if any(step.scope == "global" for step in middle):
            prog.note(f"{pipeline.name}: reducing whole-dataset checks")
        gfind: list[Finding] = []
        for idx, step in enumerate(middle):
            if step.scope != "global":
                continue
            tr = time.perf_counter()
            blobs = ws.rows("SELECT payload FROM pipeline_state WHERE pipeline_run_id = ? AND "
                            "step_index = ? ORDER BY batch_id", [run_id, idx])
            f = step.reduce([_from_ipc(b[0]) for b in blobs])
            gfind.extend(f)
            stats[idx + 1].findings += len(f)
            stats[idx + 1].seconds += time.perf_counter() - tr
        with ws.transaction():
            writer.write(ws, run_id, gfind, None)
            stats[-1].rows_in += len(gfind)
            stats[-1].findings += len(gfind)
            stats[-1].seconds += time.perf_counter() - t
            ws.execute("DELETE FROM pipeline_state WHERE pipeline_run_id = ?", [run_id])
            ws.execute("UPDATE pipeline_runs SET status = 'done', finished_at = current_timestamp, "
                       "stats = ? WHERE pipeline_run_id = ?", [save_stats("done"), run_id])
    except BaseException as e:
        interrupted = intr.explains(e)
        try:
            ws.execute("UPDATE pipeline_runs SET status = ? WHERE pipeline_run_id = ?",
                       ["interrupted" if interrupted else "failed", run_id])
        except Exception:
            pass
        if interrupted and not isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt from e
        raise
    finally:
        intr_ctx.__exit__(None, None, None)
    by_check, by_sev = summarize(ws, run_id)
    return RunResult(run_id, pipeline.name, dataset, engine, "done", reused=False,
                     resumed=resumed, batches_total=len(plan), batches_skipped=len(done),
                     rows=stats[0].rows_out, seconds=time.perf_counter() - t0, steps=stats,
                     findings=by_check, by_severity=by_sev)
