"""Workspace orchestration: register NLAs, explain anomalies and datasets, import, check.

This is the Python API behind ``forensics nla ...``, ``forensics explain ...`` and
``forensics explanations import``; the CLI only parses options and renders results.

Storage conventions (table ``explanations``):
- ``explanation_key`` = ``s{sample_id}|{nla}|{position}|L{layer}|h{hidden_state_index}`` for
  samples, ``a{anomaly_id}|...`` for anomalies: re-runs never duplicate.
- ``layer`` and ``hidden_state_index`` record the extraction convention of every row.
- ``mse``/``cos``/``fve``: the AR's round-trip score (mse on vectors rescaled to mse_scale);
  ``fve`` is NULL when no dataset variance is known.
- ``explain dataset`` commits one batch at a time (explanations + ``explain_progress`` rows in
  one transaction), so a killed run resumes where it stopped without duplicates.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from forensics._interrupt import deferred_interrupt
from forensics.errors import InputError, NotFoundError
from forensics.nla.activations import default_hidden_state_index, parse_positions
from forensics.nla.meta import NLAContractError, check_ar_sidecar, check_av_sidecar, load_tokenizer, parse_sidecar

MIN_VECTORS_FOR_VARIANCE = 16
VARIANCE_SAMPLE = 64


# ---------------------------------------------------------------------------------- registry


@dataclass
class NLARecord:
    """One row of ``nlas``."""

    name: str
    av_path: str
    ar_path: str | None
    target_path: str
    layer: int
    hidden_state_index: int
    d_model: int
    meta: dict = field(default_factory=dict)

    def variance(self) -> float | None:
        """The dataset variance recorded for this NLA's convention (given or estimated)."""
        v = (self.meta.get("variance") or {}).get(f"L{self.layer}|h{self.hidden_state_index}")
        return float(v["value"]) if isinstance(v, dict) and v.get("value") else None


def _read_config(path: Path):
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise NLAContractError(f"{path}: config.json: cannot load ({type(e).__name__}: {e})",
                               hint="point at a local Hugging Face model directory") from None
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def validate_nla(av: str | Path, target: str | Path, ar: str | Path | None = None,
                 layer: int | None = None, hidden_state_index: int | None = None) -> dict:
    """Load and cross-check everything an NLA needs without loading any weights.

    Returns a dict with the resolved layer, hidden_state_index, d_model and parsed sidecars.
    Raises :class:`NLAContractError` (exit 2) naming the file and field on any mismatch.
    """
    from safetensors import safe_open

    av, target = Path(av).resolve(), Path(target).resolve()
    for p, what in ((av, "--av"), (target, "--target")):
        if not p.is_dir():
            raise InputError(f"{what} {p}: not a directory")
    av_tok = load_tokenizer(av)
    av_sc = parse_sidecar(av, role="av")
    slot = check_av_sidecar(av_sc, av_tok)
    d = av_sc.d_model
    tcfg = _read_config(target)
    if int(tcfg.hidden_size) != d:
        raise NLAContractError(f"{av_sc.path}: d_model: sidecar says {d}, the target "
                               f"{target} has hidden_size {tcfg.hidden_size}",
                               hint="this NLA was trained for another model")
    avcfg = _read_config(av)
    if int(avcfg.hidden_size) != d:
        raise NLAContractError(f"{av_sc.path}: d_model: sidecar says {d}, the AV's config has "
                               f"hidden_size {avcfg.hidden_size}")
    load_tokenizer(target)  # the target must be usable on its own
    n_layers = int(tcfg.num_hidden_layers)
    ar_sc = None
    if ar is not None:
        ar = Path(ar).resolve()
        if not ar.is_dir():
            raise InputError(f"--ar {ar}: not a directory")
        ar_sc = parse_sidecar(ar, role="ar")
        check_ar_sidecar(ar_sc, load_tokenizer(ar))
        if ar_sc.d_model != d:
            raise NLAContractError(f"{ar_sc.path}: d_model: AR says {ar_sc.d_model}, AV says {d}")
        arcfg = _read_config(ar)
        if int(arcfg.num_hidden_layers) != ar_sc.layer + 1:
            raise NLAContractError(f"{ar_sc.path}: ar.num_hidden_layers: sidecar says K={ar_sc.layer}, "
                                   f"the AR's config.json keeps {arcfg.num_hidden_layers} blocks "
                                   f"(expected K+1={ar_sc.layer + 1})")
        vh = ar / "value_head.safetensors"
        if not vh.exists():
            raise NLAContractError(f"{ar}: value_head.safetensors: missing")
        with safe_open(str(vh), framework="pt") as f:
            shapes = [list(f.get_slice(k).get_shape()) for k in f.keys()]
        if [d, d] not in shapes:
            raise NLAContractError(f"{vh}: weight: expected a [{d}, {d}] tensor, found shapes {shapes}")
    # layer: --layer, else the AR's K, else the AV sidecar's extraction.layer
    known = {k: v for k, v in (("AR sidecar ar.num_hidden_layers", ar_sc.layer if ar_sc else None),
                                ("AV sidecar extraction.layer", av_sc.layer)) if v is not None}
    if layer is None:
        if not known:
            raise InputError("--layer is required: neither sidecar records the extraction layer")
        layer = next(iter(known.values()))
    for src, v in known.items():
        if v != layer:
            raise NLAContractError(f"--layer {layer} disagrees with the {src} = {v}",
                                   hint="an NLA only reads the layer it was trained on")
    if not 0 <= layer < n_layers:
        raise InputError(f"--layer {layer}: the target {target} has {n_layers} blocks (0..{n_layers - 1})")
    hsi = default_hidden_state_index(layer) if hidden_state_index is None else int(hidden_state_index)
    if not 0 <= hsi <= n_layers:
        raise InputError(f"--hidden-state-index {hsi}: the target has hidden_states[0..{n_layers}]")
    return {"av": str(av), "ar": str(ar) if ar else None, "target": str(target), "layer": layer,
            "hidden_state_index": hsi, "d_model": d, "av_sidecar": av_sc.to_json(),
            "ar_sidecar": ar_sc.to_json() if ar_sc else None, "av_slot": slot,
            "target_config": {"model_type": tcfg.model_type, "hidden_size": int(tcfg.hidden_size),
                              "num_hidden_layers": n_layers}}


def register_nla(ws, name: str, av: str | Path, target: str | Path, ar: str | Path | None = None,
                 layer: int | None = None, hidden_state_index: int | None = None,
                 variance: float | None = None, replace: bool = False) -> tuple[NLARecord, str]:
    """Validate and record an NLA; returns (record, 'added' | 'unchanged' | 'replaced')."""
    if not name or any(c in name for c in "|\n\r\t"):
        raise InputError(f"NLA name {name!r}: must be non-empty without '|' or control characters")
    v = validate_nla(av, target, ar, layer, hidden_state_index)
    meta = {"av": v["av_sidecar"], "ar": v["ar_sidecar"], "av_slot": v["av_slot"],
            "target": v["target_config"], "variance": {}}
    if variance is not None:
        if not (variance > 0 and math.isfinite(variance)):
            raise InputError(f"--variance {variance}: must be a positive number")
        meta["variance"][f"L{v['layer']}|h{v['hidden_state_index']}"] = {"value": float(variance),
                                                                         "source": "given"}
    old = get_nla(ws, name, missing_ok=True)
    status = "added"
    if old is not None:
        same = (old.av_path, old.ar_path, old.target_path, old.layer, old.hidden_state_index) == (
            v["av"], v["ar"], v["target"], v["layer"], v["hidden_state_index"])
        if same:
            if variance is None:
                meta["variance"] = old.meta.get("variance", {})
            status = "unchanged" if variance is None else "replaced"
        elif not replace:
            raise InputError(f"NLA {name!r} is already registered with other paths or layer",
                             hint="pick another name, or pass --replace")
        else:
            status = "replaced"
    ws.execute("DELETE FROM nlas WHERE name = ?", [name])
    ws.execute("INSERT INTO nlas (name, av_path, ar_path, target_path, layer, hidden_state_index, d_model, meta)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [name, v["av"], v["ar"], v["target"], v["layer"], v["hidden_state_index"], v["d_model"],
                json.dumps(meta)])
    return get_nla(ws, name), status


def get_nla(ws, name: str, missing_ok: bool = False) -> NLARecord | None:
    row = ws.one("SELECT name, av_path, ar_path, target_path, layer, hidden_state_index, d_model, meta "
                 "FROM nlas WHERE name = ?", [name])
    if row is None:
        if missing_ok:
            return None
        known = [r[0] for r in ws.rows("SELECT name FROM nlas ORDER BY 1")]
        raise NotFoundError(f"NLA {name!r} is not registered in {ws.root}",
                            hint=("known: " + ", ".join(known)) if known else
                            "register one: forensics nla register NAME --av DIR --ar DIR --target DIR")
    meta = row[7]
    meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
    return NLARecord(*row[:7], meta=meta)


def list_nlas(ws):
    return ws.sql("SELECT name, layer, hidden_state_index, d_model, av_path, ar_path, target_path, "
                  "registered_at FROM nlas ORDER BY name")


def _save_variance(ws, rec: NLARecord, value: float, source: str) -> None:
    meta = dict(rec.meta)
    var = dict(meta.get("variance") or {})
    var[f"L{rec.layer}|h{rec.hidden_state_index}"] = {"value": value, "source": source}
    meta["variance"] = var
    rec.meta = meta
    ws.execute("UPDATE nlas SET meta = ? WHERE name = ?", [json.dumps(meta), rec.name])


# ---------------------------------------------------------------------------------- explainer


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


# ---------------------------------------------------------------------------------- storage


def explanation_key(owner: str, nla: str, position: str, layer: int | None, hsi: int | None) -> str:
    """Idempotency key; ``owner`` is ``s{sample_id}`` or ``a{anomaly_id}``."""
    return f"{owner}|{nla}|{position}|L{'' if layer is None else layer}|h{'' if hsi is None else hsi}"


_COLS = ["sample_id", "anomaly_id", "dataset", "nla_id", "position", "token_index", "layer",
         "hidden_state_index", "text", "raw_output", "truncated", "flags", "activation_norm", "mse",
         "cos", "fve", "explanation_key"]


def insert_explanations(ws, records: list[dict]) -> int:
    """Bulk insert rows (dicts with ``_COLS`` keys) from an Arrow frame; no SQL from data."""
    if not records:
        return 0
    import pyarrow as pa

    schema = pa.schema([("sample_id", pa.int64()), ("anomaly_id", pa.int64()), ("dataset", pa.string()),
                        ("nla_id", pa.string()), ("position", pa.string()), ("token_index", pa.int32()),
                        ("layer", pa.int32()), ("hidden_state_index", pa.int32()), ("text", pa.string()),
                        ("raw_output", pa.string()), ("truncated", pa.bool_()), ("flags", pa.string()),
                        ("activation_norm", pa.float64()), ("mse", pa.float64()), ("cos", pa.float64()),
                        ("fve", pa.float64()), ("explanation_key", pa.string())])
    cols = {c: [r.get(c) for r in records] for c in _COLS}
    cols["flags"] = [json.dumps(f or []) for f in cols["flags"]]
    cols = {c: [None if isinstance(x, float) and not math.isfinite(x) else x for x in v] if
            schema.field(c).type == pa.float64() else v for c, v in cols.items()}
    tbl = pa.table(cols, schema=schema)
    name = f"_nla_ins_{id(tbl)}"
    ws.con.register(name, tbl)
    try:
        ws.execute(f"INSERT INTO explanations (explanation_id, {', '.join(_COLS)}) "
                   f"SELECT nextval('explanation_id_seq'), {', '.join(c if c != 'flags' else 'CAST(flags AS JSON)' for c in _COLS)} "
                   f"FROM {name}")
    finally:
        ws.con.unregister(name)
    return len(records)


_PROGRESS_COLS = ("nla_id", "sample_id", "position", "layer", "hidden_state_index", "dataset", "status",
                  "n_explanations", "detail")


def insert_progress(ws, prog: list[tuple]) -> None:
    """Bulk insert ``explain_progress`` tuples (Arrow; DuckDB executemany is row-by-row slow)."""
    if not prog:
        return
    import pyarrow as pa

    types = [pa.string(), pa.int64(), pa.string(), pa.int32(), pa.int32(), pa.string(), pa.string(),
             pa.int32(), pa.string()]
    tbl = pa.table({c: pa.array([p[i] for p in prog], type=t) for i, (c, t) in enumerate(zip(_PROGRESS_COLS, types))})
    name = f"_nla_prog_{id(tbl)}"
    ws.con.register(name, tbl)
    try:
        ws.execute(f"INSERT INTO explain_progress ({', '.join(_PROGRESS_COLS)}) SELECT * FROM {name} "
                   "ON CONFLICT DO NOTHING")
    finally:
        ws.con.unregister(name)


def _row_record(r: ExplainedRow, rec: NLARecord, *, sample_id=None, anomaly_id=None, dataset=None) -> dict:
    owner = f"s{sample_id}" if sample_id is not None else f"a{anomaly_id}"
    return {"sample_id": sample_id, "anomaly_id": anomaly_id, "dataset": dataset, "nla_id": rec.name,
            "position": r.position, "token_index": r.token_index, "layer": rec.layer,
            "hidden_state_index": rec.hidden_state_index, "text": r.text, "raw_output": r.raw_output,
            "truncated": r.truncated, "flags": r.flags, "activation_norm": r.activation_norm,
            "mse": r.mse, "cos": r.cos, "fve": r.fve,
            "explanation_key": explanation_key(owner, rec.name, r.position, rec.layer, rec.hidden_state_index)}


def _transaction(ws, fn: Callable[[], Any]) -> Any:
    ws.execute("BEGIN TRANSACTION")
    try:
        out = fn()
        ws.execute("COMMIT")
        return out
    except BaseException:
        ws.execute("ROLLBACK")
        raise


def _start_run(ws, rec: NLARecord, params: dict, dataset=None, anomaly_id=None) -> int:
    rid = ws.next_id("explain_run_id_seq")
    ws.execute("INSERT INTO explain_runs (run_id, nla_id, dataset, anomaly_id, params, status) "
               "VALUES (?, ?, ?, ?, ?, 'running')", [rid, rec.name, dataset, anomaly_id, json.dumps(params)])
    return rid


def _finish_run(ws, rid: int, stats: dict, status: str) -> None:
    ws.execute("UPDATE explain_runs SET stats = ?, status = ?, finished_at = current_timestamp "
               "WHERE run_id = ?", [json.dumps(stats), status, rid])


def _resolve_variance(ws, rec: NLARecord, given: float | None, vectors: list, source: str):
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


# ---------------------------------------------------------------------------------- anomaly


def explain_anomaly(ws, anomaly_id: int, nla: str, positions=None, *, backend: str = "local",
                    server: str | None = None, device: str | None = None, variance: float | None = None,
                    max_new_tokens: int = 200, batch_size: int = 16,
                    explainer: Explainer | None = None) -> dict:
    """Explain positions of an anomaly's (prompt, reply) and store them on the anomaly.

    Re-running replaces the anomaly's rows for the same NLA/position/convention.
    Default positions: ``last_prompt`` and ``first_reply``.
    """
    rec = get_nla(ws, nla)
    row = ws.one("SELECT prompt, reply, title FROM anomalies WHERE anomaly_id = ?", [int(anomaly_id)])
    if row is None:
        raise NotFoundError(f"anomaly {anomaly_id} not found", hint="list them: forensics sql "
                            "\"SELECT anomaly_id, title FROM anomalies\"")
    prompt, reply, title = row
    if not (prompt or reply):
        raise InputError(f"anomaly {anomaly_id} has neither prompt nor reply to run the model on")
    pos = parse_positions(positions or ["last_prompt", "first_reply"])
    t0 = time.perf_counter()
    ex = explainer or Explainer(rec, backend=backend, server=server, device=device, max_new_tokens=max_new_tokens)
    rows, bad = ex.run([(prompt or "", reply or "")], pos, batch_size)
    var, var_src = _resolve_variance(ws, rec, variance, [r.vector for r in rows], "anomaly")
    apply_variance(rows, var)
    recs = [_row_record(r, rec, anomaly_id=int(anomaly_id)) for r in rows]

    def write():
        keys = [r["explanation_key"] for r in recs]
        if keys:
            ws.execute("DELETE FROM explanations WHERE explanation_key IN (SELECT unnest(?))", [keys])
        return insert_explanations(ws, recs)

    n = _transaction(ws, write)
    secs = time.perf_counter() - t0
    return {"anomaly_id": int(anomaly_id), "title": title, "nla": rec.name, "layer": rec.layer,
            "hidden_state_index": rec.hidden_state_index, "positions": pos, "stored": n,
            "non_finite": len(bad), "variance": var, "variance_source": var_src, "seconds": round(secs, 3),
            "explanations": [{k: v for k, v in r.items() if k in ("position", "token_index", "text", "truncated",
                                                                   "flags", "activation_norm", "mse", "cos", "fve")}
                             for r in recs]}


# ---------------------------------------------------------------------------------- dataset


def _done_samples(ws, rec: NLARecord, positions: list[str]) -> set[int]:
    """Samples whose every requested position is recorded in explain_progress."""
    rows = ws.rows("SELECT sample_id FROM explain_progress WHERE nla_id = ? AND layer = ? AND "
                   "hidden_state_index = ? AND position IN (SELECT unnest(?)) GROUP BY sample_id "
                   "HAVING count(DISTINCT position) = ?",
                   [rec.name, rec.layer, rec.hidden_state_index, positions, len(positions)])
    return {int(r[0]) for r in rows}


def _progress_records(rec: NLARecord, dataset: str, sample_ids: list[int], positions: list[str],
                      rows_by_item: dict[int, list[ExplainedRow]], bad_items: dict[int, int]) -> list[tuple]:
    out = []
    for i, sid in enumerate(sample_ids):
        for p in positions:
            if p == "every_reply":
                n = sum(1 for r in rows_by_item.get(i, []) if r.position.startswith("reply:"))
            else:
                n = sum(1 for r in rows_by_item.get(i, []) if r.position == p)
            status = "ok" if n else ("failed" if bad_items.get(i) else "no_position")
            out.append((rec.name, sid, p, rec.layer, rec.hidden_state_index, dataset, status, n,
                        "non-finite activation" if status == "failed" else None))
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
    _save_variance(ws, rec, v, src)
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


def explain_dataset(ws, dataset: str, nla: str, positions=None, *, limit: int | None = None,
                    batch_size: int = 8, engine: str = "local", backend: str = "local",
                    server: str | None = None, device: str | None = None, variance: float | None = None,
                    max_new_tokens: int = 200, actors: int = 1, commit_every: int = 256,
                    on_batch: Callable[[DatasetRunStats, int], None] | None = None,
                    explainer: Explainer | None = None) -> DatasetRunStats:
    """Explain training samples of ``dataset`` into ``explanations`` (sample_id + dataset set).

    Candidates are the first ``limit`` samples by ``sample_id``; those already done for this
    NLA, position and convention (``explain_progress``) are skipped, so re-runs are no-ops and
    a killed run resumes. Each batch commits atomically. ``on_batch(stats, total)`` is called
    after every commit (the CLI draws progress with it). The Ray engine groups results into
    commits of up to ``commit_every`` samples (or every 5 s), the local engine commits each batch.
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
    done = _done_samples(ws, rec, pos)
    todo = [r for r in cands if int(r[0]) not in done]
    rid = _start_run(ws, rec, {"positions": pos, "limit": limit, "batch_size": batch_size, "engine": engine,
                               "backend": backend, "server": server}, dataset=dataset)
    st = DatasetRunStats(run_id=rid, dataset=dataset, nla=rec.name, engine=engine, backend=backend,
                         positions=pos, candidates=len(cands), skipped_done=len(cands) - len(todo))
    t0 = time.perf_counter()
    intr_ctx = deferred_interrupt()
    intr = intr_ctx.__enter__()
    try:
        if todo:
            if engine == "ray":
                from forensics.nla.ray_engine import run_ray

                var, src = _resolve_variance(ws, rec, variance, [], "dataset")
                if var is None:
                    var, src = _estimate_dataset_variance(ws, rec, dataset, pos, device=device)
                st.variance, st.variance_source = var, src
                st.setup_seconds = round(time.perf_counter() - t0, 3)  # (actors load inside the run)
                # group arriving results into larger commits: a DuckDB commit costs tens of ms
                # (bench/nla.py), which would cap a many-GPU cluster's throughput
                buf_ids: list[int] = []
                buf_rows: dict[int, list[ExplainedRow]] = {}
                buf_bad: dict[int, int] = {}
                last = time.perf_counter()

                def flush():
                    nonlocal buf_ids, buf_rows, buf_bad, last
                    if buf_ids:
                        _commit_batch(ws, rec, dataset, pos, buf_ids, buf_rows, buf_bad, st)
                        _tick(st, t0, on_batch, len(todo))
                    buf_ids, buf_rows, buf_bad, last = [], {}, {}, time.perf_counter()

                for batch_ids, rows_by_item, bad_items in run_ray(
                        rec, todo, pos, batch_size=batch_size, backend=backend, server=server,
                        max_new_tokens=max_new_tokens, actors=actors, variance=var, device=device):
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
                ex = explainer or Explainer(rec, backend=backend, server=server, device=device,
                                            max_new_tokens=max_new_tokens)
                var, src = _resolve_variance(ws, rec, variance, [], "dataset")
                if var is None:
                    var, src = _estimate_dataset_variance(ws, rec, dataset, pos, ex)
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
                    _commit_batch(ws, rec, dataset, pos, [int(c[0]) for c in chunk], by_item, bad_items, st)
                    _tick(st, t0, on_batch, len(todo))
                    intr.check()     # Ctrl-C takes effect here, after a whole batch committed
        st.status = "done"
    except BaseException as e:
        st.status = "interrupted" if intr.explains(e) else "failed"
        if st.status == "interrupted" and not isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt from e
        raise
    finally:
        intr_ctx.__exit__(None, None, None)
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


def _tick(st: DatasetRunStats, t0: float, on_batch, total: int) -> None:
    st.seconds = round(time.perf_counter() - t0, 3)
    _rates(st)
    if on_batch:
        on_batch(st, total)


def _stats_json(st: DatasetRunStats) -> dict:
    import dataclasses

    return dataclasses.asdict(st)


def _commit_batch(ws, rec, dataset, pos, sample_ids, rows_by_item, bad_items, st: DatasetRunStats) -> None:
    recs = []
    for i, sid in enumerate(sample_ids):
        for r in rows_by_item.get(i, []):
            recs.append(_row_record(r, rec, sample_id=sid, dataset=dataset))
    prog = _progress_records(rec, dataset, sample_ids, pos, rows_by_item, bad_items)

    def write():
        keys = [r["explanation_key"] for r in recs]
        if keys:  # a crashed run cannot leave keys behind (atomic batches), but an import can
            have = {k for (k,) in ws.rows("SELECT explanation_key FROM explanations WHERE "
                                          "explanation_key IN (SELECT unnest(?))", [keys])}
            new = [r for r in recs if r["explanation_key"] not in have]
        else:
            new = []
        n = insert_explanations(ws, new)
        insert_progress(ws, prog)
        return n, new

    n, new = _transaction(ws, write)
    st.samples_processed += len(sample_ids)
    st.explanations_stored += n
    st.non_finite += sum(bad_items.values())
    st.truncated += sum(1 for r in new if r["truncated"])
    st.generated_tokens += sum(r.n_tokens for rs in rows_by_item.values() for r in rs)


# ---------------------------------------------------------------------------------- check


def _dist(xs: list[float]) -> dict:
    import numpy as np

    if not xs:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None}
    a = np.asarray(xs, dtype=np.float64)
    return {"n": int(a.size), "mean": round(float(a.mean()), 4), "median": round(float(np.median(a)), 4),
            "p10": round(float(np.percentile(a, 10)), 4), "p90": round(float(np.percentile(a, 90)), 4)}


def check_nla(ws, nla: str, dataset: str, n: int = 200, positions=None, *, batch_size: int = 8,
              backend: str = "local", server: str | None = None, device: str | None = None,
              variance: float | None = None, max_new_tokens: int = 200, seed: int = 0,
              explainer: Explainer | None = None) -> dict:
    """How faithfully this NLA reads this model on this data (nothing is stored).

    Runs target -> AV -> AR on ``n`` samples (a deterministic pseudo-random pick) and reports
    FVE and cos distributions, and the shares of truncated/failed decodes and of early /
    norm-outlier positions. FVE uses the given or recorded variance, else one estimated from
    the vectors of this check.
    """
    ws.require_dataset(dataset)
    rec = get_nla(ws, nla)
    if not rec.ar_path:
        raise InputError(f"NLA {nla!r} has no AR: the check needs one to score reconstructions",
                         hint="re-register with --ar DIR")
    pos = parse_positions(positions or ["last_prompt"])
    rows = ws.rows("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                   "ORDER BY hash(sample_id + ?) LIMIT ?", [dataset, int(seed), int(n)])
    if not rows:
        raise InputError(f"dataset {dataset!r} has no samples")
    t0 = time.perf_counter()
    ex = explainer or Explainer(rec, backend=backend, server=server, device=device, max_new_tokens=max_new_tokens)
    out, bad = ex.run([(p or "", r or "") for _, p, r in rows], pos, batch_size, None)
    if variance is not None or rec.variance() is not None:
        var, src = _resolve_variance(ws, rec, variance, [], "check")
    elif len(out) >= 2:
        from forensics.nla.ar import dataset_variance

        var, src = dataset_variance([r.vector for r in out], ex.mse_scale), f"estimated from the {len(out)} checked vectors"
    else:
        var, src = None, "unknown"
    apply_variance(out, var)
    attempted = len(out) + len(bad)
    failed = len(bad) + sum(1 for r in out if "empty" in r.flags or "cjk_output" in r.flags)
    share = (lambda k: round(k / attempted, 4) if attempted else None)
    secs = time.perf_counter() - t0
    return {"nla": rec.name, "dataset": dataset, "layer": rec.layer,
            "hidden_state_index": rec.hidden_state_index, "positions": pos, "samples": len(rows),
            "explained": len(out), "variance": var, "variance_source": src,
            "fve": _dist([r.fve for r in out if r.fve is not None]),
            "cos": _dist([r.cos for r in out if r.cos is not None]),
            "mse": _dist([r.mse for r in out if r.mse is not None]),
            "share_truncated": share(sum(1 for r in out if r.truncated)),
            "share_failed": share(failed),
            "share_early_position": share(sum(1 for r in out if "early_position" in r.flags)),
            "share_norm_outlier": share(sum(1 for r in out if "norm_outlier" in r.flags)),
            "seconds": round(secs, 2),
            "tokens_per_explanation": round(sum(r.n_tokens for r in out) / len(out), 1) if out else None}


# ---------------------------------------------------------------------------------- import


@dataclass
class ImportStats:
    file: str
    dataset: str
    nla_label: str
    rows_read: int = 0
    added: int = 0
    unchanged: int = 0
    rejected: int = 0
    reject_reasons: dict = field(default_factory=dict)


def _iter_records(path: Path) -> Iterable[tuple[int, dict | None, str | None, str]]:
    """(line, record or None, error or None, raw) for JSONL or Parquet."""
    suf = path.suffix.lower()
    if suf in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        line = 0
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                line += 1
                yield line, rec, None, json.dumps(rec, default=str)[:65536]
        return
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as e:
                yield line, None, f"malformed_json: {e.msg} at column {e.colno}", raw[:65536]
                continue
            if not isinstance(rec, dict):
                yield line, None, "malformed_json: a line must hold a JSON object", raw[:65536]
                continue
            yield line, rec, None, raw[:65536]


def _num(rec: dict, k: str) -> tuple[float | None, str | None]:
    v = rec.get(k)
    if v is None:
        return None, None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None, f"{k}: expected a number, found {v!r}"
    if not math.isfinite(float(v)):
        return None, f"{k}: not finite"
    return float(v), None


def _int(rec: dict, k: str) -> tuple[int | None, str | None]:
    v = rec.get(k)
    if v is None:
        return None, None
    if isinstance(v, bool):
        return None, f"{k}: expected an integer, found {v!r}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None, f"{k}: expected an integer, found {v!r}"
    if not f.is_integer():
        return None, f"{k}: expected an integer, found {v!r}"
    return int(f), None


def import_explanations(ws, file: str | Path, dataset: str, nla_label: str | None = None) -> ImportStats:
    """Import explanations produced elsewhere (JSONL or Parquet).

    Fields: ``row_id`` (the sample's id in ``dataset``), ``text`` (tags stripped if it holds
    ``<explanation>...``), optional ``position``, ``layer``, ``hidden_state_index``, ``mse``,
    ``cos``, ``fve``, ``raw_output``, ``token_index``. Bad rows go to ``rejects`` with
    file/line/reason; good rows are kept; re-importing is a no-op (explanation_key).
    """
    from forensics.nla.av import OPEN, parse_explanation

    path = Path(file)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    ws.require_dataset(dataset)
    label = nla_label or f"import:{path.stem}"
    if any(c in label for c in "|\n\r"):
        raise InputError(f"--nla-label {label!r}: must not contain '|' or newlines")
    st = ImportStats(file=str(path), dataset=dataset, nla_label=label)
    id_map = {str(r): int(s) for r, s in ws.rows("SELECT row_id, sample_id FROM samples WHERE dataset = ?", [dataset])}
    existing = {k for (k,) in ws.rows("SELECT explanation_key FROM explanations WHERE nla_id = ?", [label])}
    recs: list[dict] = []
    rejects: list[tuple] = []

    def reject(line, reason, fld, detail, raw):
        st.rejected += 1
        st.reject_reasons[reason] = st.reject_reasons.get(reason, 0) + 1
        rejects.append((dataset, str(path), line, reason, fld, detail, raw))

    seen: set[str] = set()
    for line, rec, err, raw in _iter_records(path):
        st.rows_read += 1
        if rec is None:
            reject(line, "malformed_json", None, err, raw)
            continue
        rid = rec.get("row_id")
        if rid is None or (isinstance(rid, str) and not rid.strip()):
            reject(line, "missing_field", "row_id", "row_id is required", raw)
            continue
        sid = id_map.get(str(rid))
        if sid is None:
            reject(line, "unknown_row_id", "row_id", f"row_id {str(rid)[:200]!r} is not a sample of dataset {dataset!r}", raw)
            continue
        text = rec.get("text")
        if not isinstance(text, str) or not text.strip():
            reject(line, "missing_field" if text is None else "empty_text", "text", "text must be a non-empty string", raw)
            continue
        truncated = False
        flags: list[str] = ["imported"]
        raw_out = rec.get("raw_output")
        if OPEN in text:
            if raw_out is None:
                raw_out = text
            text, truncated, fl = parse_explanation(text)
            flags += [f for f in fl if f != "no_open_tag"]
            if not text:
                reject(line, "empty_text", "text", "nothing inside <explanation> tags", raw)
                continue
        nums = {}
        bad = None
        for k in ("mse", "cos", "fve"):
            nums[k], e = _num(rec, k)
            bad = bad or e
        ints = {}
        for k in ("layer", "hidden_state_index", "token_index"):
            ints[k], e = _int(rec, k)
            bad = bad or e
        if bad:
            reject(line, "bad_field", bad.split(":")[0], bad, raw)
            continue
        position = str(rec.get("position") or "imported")
        key = explanation_key(f"s{sid}", label, position, ints["layer"], ints["hidden_state_index"])
        if key in existing or key in seen:
            st.unchanged += 1
            continue
        seen.add(key)
        recs.append({"sample_id": sid, "anomaly_id": None, "dataset": dataset, "nla_id": label,
                     "position": position, "token_index": ints["token_index"], "layer": ints["layer"],
                     "hidden_state_index": ints["hidden_state_index"], "text": text,
                     "raw_output": None if raw_out is None else str(raw_out), "truncated": truncated,
                     "flags": flags, "activation_norm": None, **nums, "explanation_key": key})

    def write():
        n = 0
        for s in range(0, len(recs), 5000):
            n += insert_explanations(ws, recs[s:s + 5000])
        # re-importing the same file replaces its earlier rejects instead of piling them up
        ws.execute("DELETE FROM rejects WHERE dataset = ? AND file = ? AND ingest_id IS NULL",
                   [dataset, str(path)])
        if rejects:
            ws.executemany("INSERT INTO rejects (reject_id, dataset, file, line, reason, field, detail, raw) "
                           "VALUES (nextval('reject_id_seq'), ?, ?, ?, ?, ?, ?, ?)", rejects)
        return n

    st.added = _transaction(ws, write)
    return st
