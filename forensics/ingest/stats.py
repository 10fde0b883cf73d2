"""What is stored: per-dataset statistics and the list of datasets."""

from __future__ import annotations

from typing import Any

from forensics.ingest.parse import json_path


def stats(ws, dataset: str, meta_top: int = 5) -> dict[str, Any]:
    """Row counts, language pairs, rejects by reason, and the most concentrated meta values."""
    ws.require_dataset(dataset)
    d = ws.one("SELECT version, created_at, updated_at FROM datasets WHERE name = ?", [dataset])
    n = ws.one("SELECT count(*), count(DISTINCT content_hash), sum(CASE WHEN n_turns > 2 THEN 1 "
               "ELSE 0 END), avg(length(prompt)), avg(length(reply)) FROM samples WHERE dataset = ?",
               [dataset])
    pairs = [dict(prompt_lang=a, reply_lang=b, rows=int(c)) for a, b, c in ws.rows(
        "SELECT coalesce(prompt_lang, '?'), coalesce(reply_lang, '?'), count(*) FROM samples "
        "WHERE dataset = ? GROUP BY ALL ORDER BY 3 DESC, 1, 2", [dataset])]
    rejects = {r: int(c) for r, c in ws.rows(
        "SELECT reason, count(*) FROM rejects WHERE dataset = ? GROUP BY 1 ORDER BY 2 DESC, 1",
        [dataset])}
    meta: dict[str, list[dict]] = {}
    keys = [r[0] for r in ws.rows(
        "SELECT DISTINCT unnest(json_keys(meta)) FROM (SELECT meta FROM samples WHERE dataset = ? "
        "AND meta IS NOT NULL LIMIT 10000) ORDER BY 1", [dataset])]
    total = int(n[0])
    for k in keys:
        rows = ws.rows(
            "SELECT json_extract_string(meta, ?) AS v, count(*) FROM samples WHERE dataset = ? "
            "GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST LIMIT ?", [json_path(k), dataset, meta_top])
        meta[k] = [dict(value=v, rows=int(c), share=round(c / total, 4) if total else 0.0)
                   for v, c in rows]
    runs = ws.rows("SELECT count(*), max(finished_at) FROM ingest_runs WHERE dataset = ?", [dataset])
    return dict(dataset=dataset, version=int(d[0]), rows=total, distinct_content=int(n[1]),
                multi_turn_rows=int(n[2] or 0),
                avg_prompt_chars=round(float(n[3]), 1) if n[3] is not None else None,
                avg_reply_chars=round(float(n[4]), 1) if n[4] is not None else None,
                language_pairs=pairs, rejects=rejects, rejected_rows=sum(rejects.values()),
                meta=meta, ingest_runs=int(runs[0][0]), last_ingest=runs[0][1])


def datasets(ws) -> list[dict[str, Any]]:
    """Every dataset with its sample and reject counts."""
    rows = ws.rows("""
SELECT d.name, d.version, d.description, d.created_at, d.updated_at,
       (SELECT count(*) FROM samples s WHERE s.dataset = d.name),
       (SELECT count(*) FROM rejects r WHERE r.dataset = d.name)
FROM datasets d ORDER BY d.name""")
    return [dict(dataset=r[0], version=int(r[1] or 0), description=r[2], created_at=r[3],
                 updated_at=r[4], samples=int(r[5]), rejects=int(r[6])) for r in rows]
