"""A triage run in DuckDB: ``triage_runs`` (params, index versions, summary), ``findings``,
``clusters`` and ``cluster_members``, written in one transaction; read back and exported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from forensics.errors import NotFoundError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.profile import Cluster
    from forensics.workspace import Workspace


@dataclass
class Finding:
    """One ranked row of a run; ``signals`` holds its per-signal and fused scores."""

    rank: int
    row_id: str
    sample_id: int
    score: float
    cluster_id: int | None
    signals: dict[str, float]

    def to_json(self) -> dict:
        return {"row_id": self.row_id, "sample_id": self.sample_id, "score": self.score,
                "cluster_id": self.cluster_id, "signals": self.signals, "rank": self.rank}


def store_run(ws: "Workspace", anomaly_id: int, dataset: str, params: dict, versions: dict,
              findings: list[Finding], clusters: list["Cluster"], summary: dict) -> int:
    """Write a finished run; returns its ``run_id``. All or nothing, in one short hold of the
    workspace (:meth:`~forensics.workspace.Workspace.locked`)."""
    with ws.locked():
        return _store_run(ws, anomaly_id, dataset, params, versions, findings, clusters, summary)


def _store_run(ws: "Workspace", anomaly_id: int, dataset: str, params: dict, versions: dict,
               findings: list[Finding], clusters: list["Cluster"], summary: dict) -> int:
    run_id = ws.next_id("triage_run_id_seq")
    with ws.transaction() as con:
        con.execute("INSERT INTO triage_runs (run_id, anomaly_id, dataset, status, params, "
                    "index_versions, summary) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                    [run_id, anomaly_id, dataset, json.dumps(params), json.dumps(versions),
                     json.dumps(summary, ensure_ascii=False, default=str)])
        if findings:
            f = pl.DataFrame({
                "run_id": [run_id] * len(findings),
                "rank": [x.rank for x in findings],
                "sample_id": [x.sample_id for x in findings],
                "row_id": [x.row_id for x in findings],
                "score": [x.score for x in findings],
                "cluster_id": [x.cluster_id for x in findings],
                "signals": [json.dumps(x.signals) for x in findings],
            }, schema={"run_id": pl.Int64, "rank": pl.Int32, "sample_id": pl.Int64,
                       "row_id": pl.Utf8, "score": pl.Float64, "cluster_id": pl.Int32,
                       "signals": pl.Utf8})
            _insert(con, "findings", f, "run_id, rank, sample_id, row_id, score, cluster_id, "
                                        "signals::JSON")
        if clusters:
            c = pl.DataFrame({
                "run_id": [run_id] * len(clusters),
                "cluster_id": [x.cluster_id for x in clusters],
                "rank": [x.rank for x in clusters],
                "size": [x.size for x in clusters],
                "label": [x.label for x in clusters],
                "score": [x.score for x in clusters],
                "profile": [json.dumps(x.profile, ensure_ascii=False) for x in clusters],
            }, schema={"run_id": pl.Int64, "cluster_id": pl.Int32, "rank": pl.Int32,
                       "size": pl.Int32, "label": pl.Utf8, "score": pl.Float64, "profile": pl.Utf8})
            _insert(con, "clusters", c, "run_id, cluster_id, rank, size, label, score, profile::JSON")
            mem = [(x.cluster_id, sid, sc) for x in clusters for sid, sc in x.member_scores]
            m = pl.DataFrame({"run_id": [run_id] * len(mem), "cluster_id": [a for a, _, _ in mem],
                              "sample_id": [b for _, b, _ in mem], "score": [s for _, _, s in mem]},
                             schema={"run_id": pl.Int64, "cluster_id": pl.Int32,
                                     "sample_id": pl.Int64, "score": pl.Float64})
            _insert(con, "cluster_members", m, "run_id, cluster_id, sample_id, score")
        con.execute("UPDATE triage_runs SET status = 'done', finished_at = current_timestamp "
                    "WHERE run_id = ?", [run_id])
    return run_id


def _insert(con: Any, table: str, frame: pl.DataFrame, select: str) -> None:
    view = f"_triage_new_{table}"
    con.register(view, frame)
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM {view}")
    finally:
        con.unregister(view)


def load_run(ws: "Workspace", run_id: int) -> dict:
    """A run's record: ``run_id, anomaly_id, dataset, status, params, index_versions, summary``."""
    row = ws.one("SELECT run_id, anomaly_id, dataset, status, CAST(params AS VARCHAR), "
                 "CAST(index_versions AS VARCHAR), CAST(summary AS VARCHAR) FROM triage_runs "
                 "WHERE run_id = ?", [int(run_id)])
    if row is None:
        raise NotFoundError(f"triage run {run_id} not found",
                            hint="list runs with: forensics sql \"SELECT * FROM triage_runs\"")
    return {"run_id": row[0], "anomaly_id": row[1], "dataset": row[2], "status": row[3],
            "params": json.loads(row[4] or "{}"), "index_versions": json.loads(row[5] or "{}"),
            "summary": json.loads(row[6] or "{}")}


def export_frame(ws: "Workspace", run_id: int) -> pl.DataFrame:
    """Findings joined with sample text, plus every cluster member that is not a finding
    (``rank`` null), so a data team can drop or fix all suspect rows."""
    load_run(ws, run_id)
    return ws.sql(
        "WITH f AS (SELECT run_id, rank, sample_id, score, cluster_id, CAST(signals AS VARCHAR) "
        "AS signals FROM findings WHERE run_id = ?), "
        "m AS (SELECT run_id, NULL::INTEGER AS rank, sample_id, score, cluster_id, NULL AS signals "
        "FROM cluster_members WHERE run_id = ? AND sample_id NOT IN (SELECT sample_id FROM f)), "
        "u AS (SELECT * FROM f UNION ALL SELECT * FROM m) "
        "SELECT u.run_id, u.rank, s.row_id, u.sample_id, u.score, u.cluster_id, c.rank AS cluster_rank, "
        "c.label AS cluster_label, s.dataset, s.prompt, s.reply, s.prompt_lang, s.reply_lang, "
        "CAST(s.meta AS VARCHAR) AS meta, u.signals "
        "FROM u JOIN samples s USING (sample_id) "
        "LEFT JOIN clusters c ON c.run_id = u.run_id AND c.cluster_id = u.cluster_id "
        "ORDER BY u.rank NULLS LAST, c.rank NULLS LAST, u.score DESC, u.sample_id",
        [int(run_id), int(run_id)])


def export(ws: "Workspace", run_id: int, fmt: str, path: str) -> int:
    """Write :func:`export_frame` as csv, parquet or jsonl; returns the row count."""
    if fmt not in ("csv", "parquet", "jsonl"):
        raise UsageError(f"unknown format {fmt!r}", hint="csv, parquet or jsonl")
    df = export_frame(ws, run_id)
    if fmt == "csv":
        df.write_csv(path)
    elif fmt == "parquet":
        df.write_parquet(path)
    else:
        df.write_ndjson(path)
    return df.height


__all__ = ["Finding", "store_run", "load_run", "export_frame", "export"]
