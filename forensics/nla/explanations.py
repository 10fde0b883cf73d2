"""Explanations in the workspace: the idempotency key, bulk inserts into ``explanations`` and
``explain_progress``, and importing explanations produced elsewhere (JSONL or Parquet).

Storage conventions (table ``explanations``):
- ``explanation_key`` = ``s{sample_id}|{nla}|{position}|L{layer}|h{hidden_state_index}`` for
  samples, ``a{anomaly_id}|...`` for anomalies: re-runs never duplicate. Non-default
  generation settings (sampling, a custom AV prompt) append ``|{variant}|i{sample_index}``.
- ``sample_index`` (0..n-1) and ``generation`` (JSON: temperature, top_p, n, seed,
  skip_special_tokens, av_prompt, ar_input, backend) record how each row was decoded.
- ``layer`` and ``hidden_state_index`` record the extraction convention of every row.
- ``mse``/``cos``/``fve``: the AR's round-trip score (mse on vectors rescaled to mse_scale);
  ``fve`` is NULL when no dataset variance is known.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from forensics.errors import InputError

if TYPE_CHECKING:
    from forensics.nla.explainer import ExplainedRow
    from forensics.nla.registry import NLARecord


def explanation_key(owner: str, nla: str, position: str, layer: int | None, hsi: int | None,
                    variant: str = "", sample_index: int = 0) -> str:
    """Idempotency key; ``owner`` is ``s{sample_id}`` or ``a{anomaly_id}``; ``variant`` is the
    label of non-default generation settings ('' = greedy with the sidecar's prompt)."""
    key = f"{owner}|{nla}|{position}|L{'' if layer is None else layer}|h{'' if hsi is None else hsi}"
    return f"{key}|{variant}|i{sample_index}" if variant else key


_COLS = ["sample_id", "anomaly_id", "dataset", "nla_id", "position", "token_index", "layer",
         "hidden_state_index", "text", "raw_output", "truncated", "flags", "activation_norm", "mse",
         "cos", "fve", "explanation_key", "sample_index", "generation"]
_JSON_COLS = ("flags", "generation")


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
                        ("fve", pa.float64()), ("explanation_key", pa.string()),
                        ("sample_index", pa.int32()), ("generation", pa.string())])
    cols = {c: [r.get(c) for r in records] for c in _COLS}
    cols["flags"] = [json.dumps(f or []) for f in cols["flags"]]
    cols["sample_index"] = [int(i or 0) for i in cols["sample_index"]]
    cols["generation"] = [None if g is None else json.dumps(g) for g in cols["generation"]]
    cols = {c: [None if isinstance(x, float) and not math.isfinite(x) else x for x in v] if
            schema.field(c).type == pa.float64() else v for c, v in cols.items()}
    tbl = pa.table(cols, schema=schema)
    name = f"_nla_ins_{id(tbl)}"
    ws.con.register(name, tbl)
    try:
        ws.execute(f"INSERT INTO explanations (explanation_id, {', '.join(_COLS)}) "
                   f"SELECT nextval('explanation_id_seq'), {', '.join(c if c not in _JSON_COLS else f'CAST({c} AS JSON)' for c in _COLS)} "
                   f"FROM {name}")
    finally:
        ws.con.unregister(name)
    return len(records)


_PROGRESS_COLS = ("nla_id", "sample_id", "position", "layer", "hidden_state_index", "dataset", "status",
                  "n_explanations", "detail", "variant")


def insert_progress(ws, prog: list[tuple]) -> None:
    """Bulk insert ``explain_progress`` tuples (Arrow; DuckDB executemany is row-by-row slow)."""
    if not prog:
        return
    import pyarrow as pa

    types = [pa.string(), pa.int64(), pa.string(), pa.int32(), pa.int32(), pa.string(), pa.string(),
             pa.int32(), pa.string(), pa.string()]
    tbl = pa.table({c: pa.array([p[i] for p in prog], type=t) for i, (c, t) in enumerate(zip(_PROGRESS_COLS, types))})
    name = f"_nla_prog_{id(tbl)}"
    ws.con.register(name, tbl)
    try:
        ws.execute(f"INSERT INTO explain_progress ({', '.join(_PROGRESS_COLS)}) SELECT * FROM {name} "
                   "ON CONFLICT DO NOTHING")
    finally:
        ws.con.unregister(name)


def row_record(r: ExplainedRow, rec: NLARecord, *, sample_id=None, anomaly_id=None, dataset=None,
               variant: str = "", generation: dict | None = None) -> dict:
    """The ``explanations`` row of one explained position (one sample of it)."""
    owner = f"s{sample_id}" if sample_id is not None else f"a{anomaly_id}"
    return {"sample_id": sample_id, "anomaly_id": anomaly_id, "dataset": dataset, "nla_id": rec.name,
            "position": r.position, "token_index": r.token_index, "layer": rec.layer,
            "hidden_state_index": rec.hidden_state_index, "text": r.text, "raw_output": r.raw_output,
            "truncated": r.truncated, "flags": r.flags, "activation_norm": r.activation_norm,
            "mse": r.mse, "cos": r.cos, "fve": r.fve, "sample_index": r.sample_index,
            "generation": generation,
            "explanation_key": explanation_key(owner, rec.name, r.position, rec.layer, rec.hidden_state_index,
                                               variant, r.sample_index)}


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

    with ws.transaction():
        n = 0
        for s in range(0, len(recs), 5000):
            n += insert_explanations(ws, recs[s:s + 5000])
        # re-importing the same file replaces its earlier rejects instead of piling them up
        ws.execute("DELETE FROM rejects WHERE dataset = ? AND file = ? AND ingest_id IS NULL",
                   [dataset, str(path)])
        if rejects:
            ws.executemany("INSERT INTO rejects (reject_id, dataset, file, line, reason, field, detail, raw) "
                           "VALUES (nextval('reject_id_seq'), ?, ?, ?, ?, ?, ?, ?)", rejects)
    st.added = n
    return st
