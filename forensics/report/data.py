"""The report's data: one triage run read back from the workspace (run, anomaly, clusters and
their rows, metadata facts) and its 2-D map.

The map is a PCA of the stored embeddings of the candidate pool (cluster members and
findings), read back from the dataset's FAISS index (``index.open_index(...).vectors``);
without an index it embeds the texts through the workspace cache, and without a model it
falls back to hashed character trigrams, so a report can always be drawn. The projection
is computed here with numpy; :mod:`forensics.report.html` draws it as inline SVG.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.errors import NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace


MAX_ROWS_PER_CLUSTER = 250   # sample rows embedded per cluster (the SQL shown gives them all)
MAX_CLUSTERS = 60            # cluster cards (and their rows) in the page; the rest via SQL
MAX_UNCLUSTERED = 250        # findings without a cluster
MAX_MAP_POINTS = 4000        # points drawn on the map
MAX_CELL = 1500              # characters of prompt/reply kept per row in the page
MAP_W, MAP_H, MAP_PAD = 760, 470, 22
# colour-blind-friendly palette (Okabe-Ito + Tableau extras) for cluster ranks 1..10
PALETTE = ["#d1495b", "#2e86ab", "#edae49", "#00a878", "#8f5bd6", "#e07a1f", "#3d5a80",
           "#c2185b", "#6a994e", "#577590"]
OTHER_COLOUR = "#b8bec9"
UNCLUSTERED_COLOUR = "#dde1e7"

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# ------------------------------------------------------------------------------ data
@dataclass
class ReportData:
    """Everything the page shows, gathered from DuckDB (plain data, also ``--json``)."""

    run: dict
    anomaly: dict
    clusters: list[dict]
    rows: list[dict]
    points: list[list]
    map_info: dict
    sql: dict
    counts: dict = field(default_factory=dict)


def _clean(s: Any, limit: int | None = None) -> str:
    """Text for display: control characters made visible, optionally truncated."""
    if s is None:
        return ""
    t = _CTRL.sub("\ufffd", str(s))
    if limit is not None and len(t) > limit:
        t = t[:limit] + f" … [{len(t) - limit} more characters]"
    return t


def _json_load(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return v
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return None


def load_report_data(ws: "Workspace", run_id: int, embed: bool = True) -> ReportData:
    """Read one triage run and everything around it (anomaly, clusters, members, map).

    ``embed=False`` never loads an embedding model: the map uses the dataset's index when
    there is one, else hashed character trigrams (fast, for quick or scripted reports)."""
    run_id = int(run_id)
    row = ws.one(
        "SELECT run_id, anomaly_id, dataset, status, CAST(params AS VARCHAR), "
        "CAST(index_versions AS VARCHAR), CAST(summary AS VARCHAR), CAST(started_at AS VARCHAR), "
        "CAST(finished_at AS VARCHAR) FROM triage_runs WHERE run_id = ?", [run_id])
    if row is None:
        known = [r[0] for r in ws.rows("SELECT run_id FROM triage_runs ORDER BY run_id DESC LIMIT 10")]
        raise NotFoundError(
            f"triage run {run_id} not found in {ws.root}",
            hint=("recent runs: " + ", ".join(map(str, known))) if known
            else "run one first: forensics triage ANOMALY_ID --dataset NAME")
    run = {"run_id": row[0], "anomaly_id": row[1], "dataset": row[2], "status": row[3],
           "params": _json_load(row[4]) or {}, "index_versions": _json_load(row[5]) or {},
           "summary": _json_load(row[6]) or {}, "started_at": row[7], "finished_at": row[8]}
    dataset = run["dataset"]
    aid = run["anomaly_id"]

    a = ws.one("SELECT anomaly_id, title, prompt, reply, prompt_lang, reply_lang, "
               "CAST(created_at AS VARCHAR) FROM anomalies WHERE anomaly_id = ?", [aid])
    expl = [{"text": _clean(t, 20000), "nla_id": n, "position": p} for t, n, p in ws.rows(
        "SELECT text, nla_id, position FROM explanations WHERE anomaly_id = ? "
        "ORDER BY token_index NULLS LAST, explanation_id", [aid])]
    anomaly = ({"anomaly_id": a[0], "title": _clean(a[1]), "prompt": _clean(a[2], 20000),
                "reply": _clean(a[3], 20000), "prompt_lang": a[4], "reply_lang": a[5],
                "created_at": a[6], "explanations": expl} if a else
               {"anomaly_id": aid, "title": f"(anomaly {aid} was deleted)", "prompt": "",
                "reply": "", "prompt_lang": None, "reply_lang": None, "explanations": expl})

    n_samples = int(ws.one("SELECT count(*) FROM samples WHERE dataset = ?", [dataset])[0])
    n_findings = int(ws.one("SELECT count(*) FROM findings WHERE run_id = ?", [run_id])[0])

    # ---- clusters, ranked; colours by rank
    n_clusters = int(ws.one("SELECT count(*) FROM clusters WHERE run_id = ?", [run_id])[0])
    crow = ws.rows("SELECT cluster_id, rank, size, label, score, CAST(profile AS VARCHAR) "
                   "FROM clusters WHERE run_id = ? ORDER BY rank NULLS LAST, score DESC NULLS LAST, "
                   "cluster_id LIMIT ?", [run_id, MAX_CLUSTERS])
    pairs: dict[int, list] = {}
    for cid, pair, n in ws.rows(
            "SELECT m.cluster_id, coalesce(s.prompt_lang, '?') || ' → ' || coalesce(s.reply_lang, '?'), "
            "count(*) FROM cluster_members m JOIN samples s USING (sample_id) WHERE m.run_id = ? "
            "GROUP BY ALL ORDER BY 1, 3 DESC, 2", [run_id]):
        pairs.setdefault(int(cid), []).append([pair, int(n)])
    member_counts = dict(ws.rows("SELECT cluster_id, count(*) FROM cluster_members WHERE run_id = ? "
                                 "GROUP BY 1", [run_id]))
    clusters = []
    verified = _verifications(ws, run_id)
    for i, (cid, rank, size, label, score, prof) in enumerate(crow):
        profile = _json_load(prof) or {}
        cid = int(cid)
        members = int(member_counts.get(cid, 0))
        clusters.append({
            "cluster_id": cid, "rank": rank if rank is not None else i + 1,
            "size": int(size) if size is not None else members, "members": members,
            "label": _clean(label, 300) if label else f"cluster {cid}",
            "score": float(score) if score is not None else None,
            "colour": PALETTE[i] if i < len(PALETTE) else OTHER_COLOUR,
            "lang_pairs": pairs.get(cid, [])[:6],
            "metadata": _metadata(ws, dataset, run_id, cid, profile),
            "mean_scores": {str(k): float(v) for k, v in (profile.get("mean_scores") or {}).items()
                            if isinstance(v, (int, float))},
            "facts": _profile_facts(profile),
            "verification": verified.get(cid),
            "sql": (f"SELECT row_id, score, prompt_lang, reply_lang, prompt, reply, meta\n"
                    f"FROM v_cluster_members\nWHERE run_id = {run_id} AND cluster_id = {cid}\n"
                    f"ORDER BY score DESC;"),
        })

    # ---- sample rows per cluster (top by member score) + unclustered findings
    rows: list[dict] = []
    frank = dict(ws.rows("SELECT sample_id, rank FROM findings WHERE run_id = ?", [run_id]))
    res = ws.rows(
        "SELECT * FROM (SELECT m.cluster_id, m.sample_id, s.row_id, m.score, s.prompt_lang, "
        "s.reply_lang, s.prompt, s.reply, CAST(s.meta AS VARCHAR), row_number() OVER "
        "(PARTITION BY m.cluster_id ORDER BY m.score DESC NULLS LAST, m.sample_id) AS k "
        "FROM cluster_members m JOIN samples s USING (sample_id) WHERE m.run_id = ? "
        "AND m.cluster_id IN (SELECT UNNEST(?::INTEGER[]))) "
        "WHERE k <= ? ORDER BY cluster_id, k",
        [run_id, [c["cluster_id"] for c in clusters], MAX_ROWS_PER_CLUSTER])
    res += ws.rows(
        "SELECT NULL, f.sample_id, s.row_id, f.score, s.prompt_lang, s.reply_lang, s.prompt, "
        "s.reply, CAST(s.meta AS VARCHAR), f.rank FROM findings f JOIN samples s USING (sample_id) "
        "WHERE f.run_id = ? AND f.sample_id NOT IN (SELECT sample_id FROM cluster_members "
        "WHERE run_id = ?) ORDER BY f.rank LIMIT ?", [run_id, run_id, MAX_UNCLUSTERED])
    for cid, sid, rid, score, pl_, rl, p, r, meta, _k in res:
        rows.append({"c": None if cid is None else int(cid), "sid": int(sid), "id": _clean(rid, 200),
                     "s": None if score is None else round(float(score), 4), "pl": pl_, "rl": rl,
                     "p": _clean(p, MAX_CELL), "r": _clean(r, MAX_CELL),
                     "m": _clean(_meta_text(meta), 300), "f": frank.get(sid)})
    n_unclustered = int(ws.one(
        "SELECT count(*) FROM findings WHERE run_id = ? AND sample_id NOT IN "
        "(SELECT sample_id FROM cluster_members WHERE run_id = ?)", [run_id, run_id])[0])

    points, map_info = _map(ws, run, anomaly, clusters, embed)

    sql = {
        "run": f"SELECT * FROM triage_runs WHERE run_id = {run_id};",
        "anomaly": (f"SELECT * FROM anomalies WHERE anomaly_id = {aid};\n"
                    f"SELECT text FROM explanations WHERE anomaly_id = {aid}\n"
                    f"ORDER BY token_index, explanation_id;"),
        "clusters": (f"SELECT rank, cluster_id, size, label, score, profile\nFROM clusters\n"
                     f"WHERE run_id = {run_id}\nORDER BY rank;"),
        "findings": (f"SELECT rank, row_id, score, cluster_id, cluster_label, prompt, reply\n"
                     f"FROM v_findings\nWHERE run_id = {run_id}\nORDER BY rank;"),
        "map": (f"-- the map's points: every cluster member plus findings outside clusters\n"
                f"SELECT sample_id, cluster_id FROM cluster_members WHERE run_id = {run_id}\n"
                f"UNION\nSELECT sample_id, cluster_id FROM findings WHERE run_id = {run_id};\n"
                f"-- coordinates: PCA (2 components) of their vectors in "
                f"{map_info.get('source', 'the index')}"),
        "unclustered": (f"SELECT rank, row_id, score, prompt, reply FROM v_findings\n"
                        f"WHERE run_id = {run_id} AND cluster_id IS NULL ORDER BY rank;"),
        "export": f"forensics findings export {run_id} --format csv > run-{run_id}.csv",
        "verifications": (f"SELECT verification_id, cluster_id, verdict, rate_trained, rate_without,\n"
                          f"       rate_random, effect, probes, removed_rows, detail\n"
                          f"FROM verifications WHERE run_id = {run_id} ORDER BY verification_id;"),
    }
    counts = {"samples": n_samples, "findings": n_findings, "clusters": n_clusters,
              "clusters_in_page": len(clusters),
              "cluster_members": int(sum(member_counts.values())), "unclustered_findings": n_unclustered,
              "rows_in_page": len(rows), "map_points": len(points)}
    return ReportData(run=run, anomaly=anomaly, clusters=clusters, rows=rows, points=points,
                      map_info=map_info, sql=sql, counts=counts)


def _verifications(ws: "Workspace", run_id: int) -> dict[int, dict]:
    """The latest verification of each cluster of the run (``forensics verify``); one that
    retrained wins over a later one that only wrote a script (``not_run``)."""
    out: dict[int, dict] = {}
    for vid, cid, verdict, rt, rw, rr, eff, n, removed, det in ws.rows(
            "SELECT verification_id, cluster_id, verdict, rate_trained, rate_without, rate_random, effect, "
            "probes, removed_rows, detail FROM verifications WHERE run_id = ? "
            "ORDER BY verdict <> 'not_run', verification_id",
            [run_id]):
        d = _json_load(det) or {}
        out[int(cid)] = {"verification_id": int(vid), "verdict": verdict, "rate_trained": rt,
                         "rate_without": rw, "rate_random": rr, "effect": eff, "probes": n,
                         "removed_rows": removed, "ci_without": d.get("ci_without"),
                         "ci_random": d.get("ci_random"), "cohens_h": d.get("cohens_h"),
                         "seeds": len(d.get("rates_random") or [])}
    return out


def _meta_text(meta: str | None) -> str:
    d = _json_load(meta)
    if isinstance(d, dict):
        return ", ".join(f"{k}={v}" for k, v in d.items())
    return "" if meta is None else str(meta)


def _profile_facts(profile: dict) -> list[list[str]]:
    """Readable scalar facts from a cluster profile (whatever triage chose to record)."""
    skip = {"size", "lang_pairs", "mean_scores", "metadata", "examples"}
    out = []
    for k, v in profile.items():
        if k in skip or v is None:
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v, ensure_ascii=False)
        out.append([k.replace("_", " "), _clean(v, 200)])
    return out[:8]


def _metadata(ws: "Workspace", dataset: str, run_id: int, cid: int, profile: dict) -> dict:
    """Metadata concentration: ``{key: [{value, count, share, dataset_share, lift}]}``.

    Taken from the triage profile when it has one; otherwise computed here over every member,
    with JSON paths passed as parameters (keys come from training data)."""
    md = profile.get("metadata")
    if isinstance(md, dict) and md:
        out = {}
        for k, vals in list(md.items())[:4]:
            if isinstance(vals, list):
                out[_clean(k, 60)] = [{"value": _clean(v.get("value"), 80), "count": v.get("count"),
                                       "share": v.get("share"), "dataset_share": v.get("dataset_share"),
                                       "lift": v.get("lift")} for v in vals[:4] if isinstance(v, dict)]
        return out
    metas = [_json_load(m) for (m,) in ws.rows(
        "SELECT CAST(s.meta AS VARCHAR) FROM cluster_members m JOIN samples s USING (sample_id) "
        "WHERE m.run_id = ? AND m.cluster_id = ?", [run_id, cid])]
    metas = [m for m in metas if isinstance(m, dict)]
    keys = sorted({k for m in metas for k, v in m.items() if isinstance(v, (str, int, float, bool))})[:4]
    out = {}
    for k in keys:
        vals = [str(m[k]) for m in metas if k in m]
        if not vals:
            continue
        path = '$."' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'
        base = dict(ws.rows("SELECT json_extract_string(meta, ?), count(*) FROM samples "
                            "WHERE dataset = ? GROUP BY 1", [path, dataset]))
        tot_all = sum(base.values()) or 1
        cnt: dict[str, int] = {}
        for v in vals:
            cnt[v] = cnt.get(v, 0) + 1
        lst = []
        for v, c in sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:4]:
            share, ds = c / len(vals), base.get(v, 0) / tot_all
            lst.append({"value": _clean(v, 80), "count": c, "share": round(share, 3),
                        "dataset_share": round(ds, 3), "lift": round(share / ds, 2) if ds else None})
        out[_clean(k, 60)] = lst
    return out


# ------------------------------------------------------------------------------ the map
def _map(ws: "Workspace", run: dict, anomaly: dict, clusters: list[dict],
         embed: bool = True) -> tuple[list[list], dict]:
    """PCA of the candidate pool's vectors -> ``[[x, y, cluster_id|None, row_id, snippet], ...]``
    in SVG coordinates, plus where the vectors came from."""
    run_id, dataset = run["run_id"], run["dataset"]
    pool = ws.rows(
        "SELECT sample_id, cluster_id, score FROM cluster_members WHERE run_id = ? "
        "UNION ALL SELECT f.sample_id, NULL, f.score FROM findings f WHERE f.run_id = ? AND "
        "f.sample_id NOT IN (SELECT sample_id FROM cluster_members WHERE run_id = ?) "
        "ORDER BY 1", [run_id, run_id, run_id])
    info: dict[str, Any] = {"pool": len(pool)}
    if len(pool) > MAX_MAP_POINTS:
        # deterministic thinning: keep the best-scored rows of each cluster in proportion
        rng = np.random.default_rng(run_id)
        keep = np.sort(rng.choice(len(pool), MAX_MAP_POINTS, replace=False))
        pool = [pool[i] for i in keep]
        info["thinned_to"] = MAX_MAP_POINTS
    if len(pool) < 2:
        info["note"] = "fewer than two rows in the candidate pool: nothing to project"
        return [], info
    ids = np.array([p[0] for p in pool], dtype=np.int64)
    vecs, source = _vectors(ws, dataset, ids, embed)
    info["source"] = source
    texts = dict(ws.rows(
        "SELECT sample_id, left(coalesce(prompt, ''), 110) || ' ⏎ ' || left(coalesce(reply, ''), 90) "
        "FROM samples WHERE sample_id IN (SELECT UNNEST(?::BIGINT[]))", [ids.tolist()]))
    rowids = dict(ws.rows("SELECT sample_id, row_id FROM samples WHERE sample_id IN "
                          "(SELECT UNNEST(?::BIGINT[]))", [ids.tolist()]))
    x = vecs.astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    try:
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        comps = vt[:2]
        var = (sv ** 2) / max((sv ** 2).sum(), 1e-12)
        info["explained_variance"] = [round(float(v), 3) for v in var[:2]]
    except np.linalg.LinAlgError:  # pragma: no cover - degenerate input
        comps = np.eye(2, x.shape[1])
    xy = xc @ comps.T
    if xy.shape[1] < 2:
        xy = np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
    anomaly_xy = None
    avec = _anomaly_vector(ws, dataset, anomaly, source, embed)
    if avec is not None:
        anomaly_xy = (avec.astype(np.float64) - mean) @ comps.T
    # robust bounds (0.5th-99.5th percentile, widened 4%): one outlier must not squash the
    # picture; points beyond the bounds are drawn on the edge
    lo, hi = np.percentile(xy, 0.5, axis=0), np.percentile(xy, 99.5, axis=0)
    if anomaly_xy is not None:
        lo, hi = np.minimum(lo, anomaly_xy), np.maximum(hi, anomaly_xy)
    pad = (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad
    span = np.where(hi - lo > 1e-9, hi - lo, 1.0)

    def scale(p: np.ndarray) -> tuple[float, float]:
        q = np.clip((p - lo) / span, 0.0, 1.0)
        sx = MAP_PAD + q[0] * (MAP_W - 2 * MAP_PAD)
        sy = MAP_H - MAP_PAD - q[1] * (MAP_H - 2 * MAP_PAD)
        return round(float(sx), 1), round(float(sy), 1)

    pts = []
    for (sid, cid, _sc), p in zip(pool, xy):
        sx, sy = scale(p)
        pts.append([sx, sy, None if cid is None else int(cid), _clean(rowids.get(sid), 120),
                    _clean(texts.get(sid, ""), 220)])
    if anomaly_xy is not None:
        info["anomaly_xy"] = list(scale(anomaly_xy))
    return pts, info


def _vectors(ws: "Workspace", dataset: str, ids: np.ndarray,
             embed: bool = True) -> tuple[np.ndarray, str]:
    """Stored vectors of ``ids``: the pair index, else the embedder via the cache, else hashed
    character trigrams. Returns (vectors, a description of the source)."""
    from forensics.errors import ForensicsError

    for fld in ("pair", "prompt", "reply"):
        try:
            from forensics.search.index import open_index

            oi = open_index(ws, dataset, fld, allow_stale=True, read_only=True)
            have = set(oi.ids().tolist())
            if all(int(i) in have for i in ids):
                return oi.vectors(ids), f"the {fld} index ({oi.manifest.model_id})"
        except (ForensicsError, ImportError, RuntimeError, OSError, AttributeError, TypeError):
            continue
    texts = _pair_texts(ws, ids)
    if not embed:
        return _trigram_vectors(texts), "hashed character trigrams (no index; --no-embed)"
    try:
        from forensics.search.embed import Embedder, embed_texts

        emb = Embedder()
        return embed_texts(ws, texts, emb), f"embeddings of prompt + reply ({emb.model_id})"
    except Exception:  # noqa: BLE001 - any model failure: the map still gets drawn
        return _trigram_vectors(texts), "hashed character trigrams (no index or model available)"


def _pair_texts(ws: "Workspace", ids: np.ndarray) -> list[str]:
    got = dict(ws.rows("SELECT sample_id, coalesce(prompt, '') || '\n\n' || coalesce(reply, '') "
                       "FROM samples WHERE sample_id IN (SELECT UNNEST(?::BIGINT[]))", [ids.tolist()]))
    return [got.get(int(i), "") for i in ids]


def _trigram_vectors(texts: list[str], dim: int = 512) -> np.ndarray:
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        t = f"  {t.lower()}  "
        for j in range(len(t) - 2):
            h = int.from_bytes(hashlib.blake2b(t[j:j + 3].encode(), digest_size=4).digest(), "little")
            out[i, h % dim] += 1.0
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n > 0, n, 1.0)


def _anomaly_vector(ws: "Workspace", dataset: str, anomaly: dict, source: str,
                    embed: bool = True) -> np.ndarray | None:
    """The anomaly in the map's space (a star), when the map uses an index or embedder.

    Why the cache first: triage already embedded the anomaly's prompt and reply with the
    index's model, so their vectors are usually in ``embedding_cache`` and the page needs no
    model load; only on a miss (and with ``embed``) is the model loaded."""
    prompt, reply = anomaly.get("prompt") or "", anomaly.get("reply") or ""
    pair = f"{prompt}\n\n{reply}".strip()
    if not pair or source.startswith("hashed"):
        return None
    try:
        from forensics.search.embed import cached_vectors, embed_texts, text_hash

        if source.startswith("the "):
            from forensics.search.index import open_index

            oi = open_index(ws, dataset, source.split()[1], allow_stale=True, read_only=True)
            model_id, dim = oi.manifest.model_id, oi.manifest.dim
        else:
            oi, model_id, dim = None, None, None
        if model_id is not None:
            for texts in ([pair], [t for t in (prompt, reply) if t.strip()]):
                found = cached_vectors(ws, model_id, [text_hash(t) for t in texts], dim)
                if len(found) == len(texts):
                    v = np.mean(list(found.values()), axis=0)
                    return v / (np.linalg.norm(v) or 1.0)
        if not embed:
            return None
        return embed_texts(ws, [pair], oi.embedder() if oi is not None else None)[0]
    except Exception:  # noqa: BLE001 - the star is decoration; never fail the report on it
        return None
