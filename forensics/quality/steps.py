"""Readers, transforms and writers.

Readers split the input into batches the engine can resume by (stable ``batch_id`` for a
given dataset version and batch size) and load one batch at a time. Writers persist the
findings of one batch inside the engine's per-batch transaction, so a batch is either fully
committed (findings + ``pipeline_batches`` row) or not at all.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensics.errors import InputError
from forensics.quality.core import COLUMNS, Batch, Finding, Step, register

_SAMPLE_COLS = ", ".join(COLUMNS)


# --------------------------------------------------------------------------- readers
@register("read.samples")
@dataclass
class ReadSamples(Step):
    """Rows of a workspace dataset (``samples``), in ``sample_id`` order."""

    kind = "reader"

    def plan(self, ws, dataset: str, batch_size: int) -> list[tuple[int, Any]]:
        ids = [r[0] for r in ws.rows(
            "SELECT sample_id FROM samples WHERE dataset = ? ORDER BY sample_id", [dataset])]
        out = []
        for k, i in enumerate(range(0, len(ids), batch_size)):
            chunk = ids[i:i + batch_size]
            out.append((k, (chunk[0], chunk[-1])))
        return out

    def load(self, ws, dataset: str, ref: Any, batch_id: int) -> Batch:
        lo, hi = ref
        tbl = ws.con.sql(
            f"SELECT {_SAMPLE_COLS} FROM samples WHERE dataset = ? AND sample_id BETWEEN ? AND ? "
            "ORDER BY sample_id", params=[dataset, lo, hi]).arrow()
        if hasattr(tbl, "read_all"):
            tbl = tbl.read_all()
        return Batch(batch_id, tbl.to_pydict())

    def load_arrow(self, ws, dataset: str, ref: Any):
        lo, hi = ref
        tbl = ws.con.sql(
            f"SELECT {_SAMPLE_COLS} FROM samples WHERE dataset = ? AND sample_id BETWEEN ? AND ? "
            "ORDER BY sample_id", params=[dataset, lo, hi]).arrow()
        return tbl.read_all() if hasattr(tbl, "read_all") else tbl


@register("read.parquet")
@dataclass
class ReadParquet(Step):
    """Rows from Parquet files (a file, a directory or a glob), e.g. on shared storage.

    The files need ``sample_id`` (BIGINT) and ``prompt``/``reply``; the other standard
    columns are optional. On Ray, each batch is read by the worker that processes it, so a
    multi-node cluster reads shared storage in parallel and the driver never holds the data.
    """

    kind = "reader"
    path: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            raise InputError("read.parquet needs path = \"...\"")

    def _files(self) -> list[str]:
        import glob

        p = os.path.expanduser(self.path)
        if os.path.isdir(p):
            files = sorted(str(f) for f in Path(p).rglob("*.parquet"))
        else:
            files = sorted(glob.glob(p))
        if not files:
            raise InputError(f"read.parquet: no Parquet files at {self.path!r}")
        return files

    def plan(self, ws, dataset: str, batch_size: int) -> list[tuple[int, Any]]:
        import pyarrow.parquet as pq

        out = []
        k = 0
        for f in self._files():
            n = pq.ParquetFile(f).metadata.num_rows
            for off in range(0, n, batch_size):
                out.append((k, (f, off, min(batch_size, n - off))))
                k += 1
        return out

    def load_arrow(self, ws, dataset: str, ref: Any):
        import pyarrow as pa
        import pyarrow.parquet as pq

        f, off, n = ref
        tbl = pq.read_table(f).slice(off, n)
        for c in COLUMNS:
            if c not in tbl.column_names:
                if c == "sample_id":
                    raise InputError(f"read.parquet: {f} has no sample_id column")
                tbl = tbl.append_column(c, pa.nulls(len(tbl), pa.string() if "conf" not in c
                                                    else pa.float64()))
        return tbl.select(list(COLUMNS))

    def load(self, ws, dataset: str, ref: Any, batch_id: int) -> Batch:
        return Batch(batch_id, self.load_arrow(ws, dataset, ref).to_pydict())


# --------------------------------------------------------------------------- transforms
@register("transform.truncate")
@dataclass
class Truncate(Step):
    """Cap prompt/reply length before checks (hostile multi-megabyte rows stay cheap).
    Checks that need the full length (hygiene length outliers) should come before it."""

    kind = "transform"
    max_chars: int = 20000

    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        m = self.max_chars
        b = batch
        for c in ("prompt", "reply"):
            b = b.with_col(c, [v[:m] if isinstance(v, str) and len(v) > m else v for v in b.col(c)])
        return b, []


@register("transform.normalize")
@dataclass
class Normalize(Step):
    """Unicode NFC normalisation of prompt/reply (so composed/decomposed forms compare equal)."""

    kind = "transform"
    form: str = "NFC"

    def __post_init__(self) -> None:
        if self.form not in ("NFC", "NFKC", "NFD", "NFKD"):
            raise InputError(f"transform.normalize: form must be NFC, NFKC, NFD or NFKD, not {self.form!r}")

    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        b = batch
        for c in ("prompt", "reply"):
            b = b.with_col(c, [unicodedata.normalize(self.form, v) if isinstance(v, str) else v
                               for v in b.col(c)])
        return b, []


@register("transform.require_text")
@dataclass
class RequireText(Step):
    """Drop rows whose prompt AND reply are empty (rows_out < rows_in shows how many)."""

    kind = "transform"

    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        keep = [i for i, (p, r) in enumerate(zip(batch.col("prompt"), batch.col("reply")))
                if (p or "").strip() or (r or "").strip()]
        return (batch if len(keep) == len(batch) else batch.take(keep)), []


# --------------------------------------------------------------------------- writers
def findings_table(findings: list[Finding], run_id: int):
    import pyarrow as pa

    return pa.table({
        "pipeline_run_id": pa.array([run_id] * len(findings), pa.int64()),
        "check": pa.array([f.check for f in findings], pa.string()),
        "sample_id": pa.array([f.sample_id for f in findings], pa.int64()),
        "severity": pa.array([f.severity for f in findings], pa.string()),
        "score": pa.array([f.score for f in findings], pa.float64()),
        "detail": pa.array([f.detail for f in findings], pa.string()),
        "group_id": pa.array([f.group_id for f in findings], pa.string()),
    })


@register("write.findings")
@dataclass
class WriteFindings(Step):
    """Findings into the workspace's ``quality_findings`` (inside the batch transaction)."""

    kind = "writer"

    def write(self, ws, run_id: int, findings: list[Finding], batch_id: int | None) -> None:
        if not findings:
            return
        tbl = findings_table(findings, run_id)
        ws.con.register("_h3_findings", tbl)
        try:
            ws.con.execute(
                'INSERT INTO quality_findings (pipeline_run_id, "check", sample_id, severity, '
                "score, detail, group_id) SELECT pipeline_run_id, \"check\", sample_id, severity, "
                "score, detail, group_id FROM _h3_findings ON CONFLICT DO NOTHING")
        finally:
            ws.con.unregister("_h3_findings")


@register("write.parquet")
@dataclass
class WriteParquet(Step):
    """Findings as Parquet files under ``path/run-<id>/`` (one file per batch, written
    atomically), for clusters whose driver should not funnel everything into DuckDB. Attach
    them later with ``forensics sql "SELECT * FROM read_parquet('path/run-*/*.parquet')"``.
    Batch commits are still recorded in the workspace so resume works the same."""

    kind = "writer"
    path: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            raise InputError("write.parquet needs path = \"...\"")

    def write(self, ws, run_id: int, findings: list[Finding], batch_id: int | None) -> None:
        import pyarrow.parquet as pq

        d = Path(os.path.expanduser(self.path)) / f"run-{run_id}"
        d.mkdir(parents=True, exist_ok=True)
        name = f"batch-{batch_id:08d}.parquet" if batch_id is not None else "global.parquet"
        tmp = d / (name + ".tmp")
        pq.write_table(findings_table(findings, run_id), tmp)
        os.replace(tmp, d / name)
