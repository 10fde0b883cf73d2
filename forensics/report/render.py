"""The triage report: one self-contained HTML page for one triage run.

Why a single static file: the person judging clusters is often not the person who ran the
triage; an HTML file can be attached to a ticket or opened from disk on a laptop with no
server and no network. Everything (CSS, JS, data, the map) is inline; nothing is fetched.

Why so much escaping: the page shows training text, and training data is hostile input. Text
rendered on the server goes through :func:`html.escape`; data for the page's script is JSON
inside ``<script type="application/json">`` with ``<``, ``>``, ``&``, U+2028 and U+2029
escaped (so no sample can close the script element), and the script builds the DOM with
``textContent`` only. A sample holding ``<script>`` therefore shows as text.

The 2-D map is a PCA of the stored embeddings of the candidate pool (cluster members and
findings), read back from the dataset's FAISS index (``index.open_index(...).vectors``);
without an index it embeds the texts through the workspace cache, and without a model it
falls back to hashed character trigrams, so a report can always be drawn. The projection
is computed here with numpy and emitted as inline SVG: a picture, readable without JS.

API::

    import forensics
    from forensics.report import render_report, write_report
    with forensics.open("ws", read_only=True) as ws:
        write_report(ws, run_id=3, path="triage-3.html")
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.errors import NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

ASSETS = Path(__file__).resolve().parent / "assets"

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
    }
    counts = {"samples": n_samples, "findings": n_findings, "clusters": n_clusters,
              "clusters_in_page": len(clusters),
              "cluster_members": int(sum(member_counts.values())), "unclustered_findings": n_unclustered,
              "rows_in_page": len(rows), "map_points": len(points)}
    return ReportData(run=run, anomaly=anomaly, clusters=clusters, rows=rows, points=points,
                      map_info=map_info, sql=sql, counts=counts)


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


# ------------------------------------------------------------------------------ HTML
def _e(s: Any) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no sequence in the output can
    close the element or start a comment, and U+2028/2029 cannot break a JS parser."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _svg(data: ReportData) -> str:
    colour = {c["cluster_id"]: c["colour"] for c in data.clusters}
    rank = {c["cluster_id"]: c["rank"] for c in data.clusters}
    order = sorted(range(len(data.points)),
                   key=lambda i: -(rank.get(data.points[i][2], 10 ** 6) if data.points[i][2] is not None
                                   else 10 ** 7))
    parts = [f'<svg id="map" viewBox="0 0 {MAP_W} {MAP_H}" role="img" '
             f'aria-label="2-D map of the candidate pool coloured by cluster" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="0" y="0" width="{MAP_W}" height="{MAP_H}" class="map-bg"/>']
    for gx in range(1, 6):
        x = MAP_W * gx / 6
        parts.append(f'<line x1="{x:.0f}" y1="0" x2="{x:.0f}" y2="{MAP_H}" class="grid"/>')
    for gy in range(1, 4):
        y = MAP_H * gy / 4
        parts.append(f'<line x1="0" y1="{y:.0f}" x2="{MAP_W}" y2="{y:.0f}" class="grid"/>')
    for i in order:
        x, y, cid, _rid, _t = data.points[i]
        fill = colour.get(cid, OTHER_COLOUR) if cid is not None else UNCLUSTERED_COLOUR
        r = 4.2 if cid is not None and rank.get(cid, 99) <= 3 else 3.4
        c = "" if cid is None else str(int(cid))
        parts.append(f'<circle cx="{x}" cy="{y}" r="{r}" fill="{fill}" data-i="{i}" data-c="{c}"/>')
    axy = data.map_info.get("anomaly_xy")
    if axy:
        x, y = axy
        star = []
        for k in range(10):
            ang = -np.pi / 2 + k * np.pi / 5
            rad = 11 if k % 2 == 0 else 4.6
            star.append(f"{x + rad * np.cos(ang):.1f},{y + rad * np.sin(ang):.1f}")
        parts.append(f'<polygon id="anomaly-star" points="{" ".join(star)}" class="star">'
                     f'<title>the anomaly (prompt + reply)</title></polygon>')
    parts.append("</svg>")
    return "".join(parts)


def _metadata_html(md: dict) -> str:
    out = []
    for k, vals in md.items():
        chips = []
        for v in vals[:3]:
            share = v.get("share")
            lift = v.get("lift")
            tip = (f"{v.get('count')} rows; {_fmt(share * 100 if share is not None else None, 0)}% "
                   f"of the cluster vs {_fmt((v.get('dataset_share') or 0) * 100, 0)}% of the dataset")
            hot = " hot" if isinstance(lift, (int, float)) and lift >= 2 else ""
            chips.append(f'<span class="chip meta{hot}" title="{_e(tip)}">{_e(v.get("value"))} '
                         f'<b>{_fmt(share * 100 if share is not None else None, 0)}%</b>'
                         + (f' <i>×{_fmt(lift, 1)}</i>' if lift is not None else "") + "</span>")
        out.append(f'<div class="kv"><span class="k">{_e(k)}</span>{"".join(chips)}</div>')
    return "".join(out)


def _cluster_card(c: dict, n_members_total: int) -> str:
    pairs = "".join(f'<span class="chip lang">{_e(p)} <b>{n}</b></span>' for p, n in c["lang_pairs"])
    scores = "".join(
        f'<div class="bar"><span class="bl">{_e(k)}</span><span class="bt"><span class="bf" '
        f'style="width:{max(0.0, min(1.0, v)) * 100:.0f}%"></span></span><span class="bv">{v:.2f}</span></div>'
        for k, v in list(c["mean_scores"].items())[:7])
    facts = "".join(f'<span class="fact"><span class="k">{_e(k)}</span> {_e(v)}</span>' for k, v in c["facts"])
    share = c["members"] / n_members_total * 100 if n_members_total else 0
    return (
        f'<article class="cluster" data-c="{c["cluster_id"]}" tabindex="0" '
        f'style="--cc:{c["colour"]}">'
        f'<header><span class="rank">#{_e(c["rank"])}</span>'
        f'<h3 class="clabel">{_e(c["label"])}</h3>'
        f'<span class="score" title="cluster score">{_fmt(c["score"])}</span></header>'
        f'<div class="sizes"><b>{c["size"]}</b> rows'
        f'<span class="muted"> · cluster {c["cluster_id"]} · {share:.0f}% of all cluster members</span></div>'
        f'<div class="kv"><span class="k">languages</span>{pairs or "<span class=muted>–</span>"}</div>'
        f'{_metadata_html(c["metadata"])}'
        + (f'<div class="scores">{scores}</div>' if scores else "")
        + (f'<div class="facts">{facts}</div>' if facts else "")
        + f'<details class="sql"><summary>SQL for this cluster</summary><pre>{_e(c["sql"])}</pre></details>'
        '</article>')


def _sql_block(title: str, sql: str) -> str:
    return (f'<details class="sql"><summary>{_e(title)}</summary><pre class="code">{_e(sql)}</pre>'
            '</details>')


def render_html(data: ReportData) -> str:
    """The page for already-loaded :class:`ReportData` (pure: no database access)."""
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    js = (ASSETS / "report.js").read_text(encoding="utf-8")
    run, a, cnt = data.run, data.anomaly, data.counts
    title = f"Triage run {run['run_id']} — {a['title']}"
    expl = "".join(
        f'<figure class="expl"><figcaption>explanation {i + 1}'
        f'<span class="muted"> · {_e(x.get("nla_id") or "given")}</span></figcaption>'
        f'<p class="text">{_e(x["text"])}</p></figure>' for i, x in enumerate(a["explanations"]))
    members_total = cnt.get("cluster_members", 0)
    more = cnt.get("clusters", 0) - len(data.clusters)
    cards = "".join(_cluster_card(c, members_total) for c in data.clusters) + (
        f'<p class="caption">{more} lower-ranked clusters are not shown here; '
        f'the SQL below lists them all.</p>' if more > 0 else "") or (
        '<p class="empty">This run produced no clusters (an empty dataset, or nothing scored '
        'above the threshold).</p>')
    legend = "".join(
        f'<button class="lg" data-c="{c["cluster_id"]}" style="--cc:{c["colour"]}">'
        f'<span class="sw"></span>#{_e(c["rank"])} {_e(c["label"][:48])} '
        f'<span class="muted">({c["size"]})</span></button>' for c in data.clusters[:12])
    if any(p[2] is None for p in data.points):
        legend += ('<span class="lg static" style="--cc:#dde1e7"><span class="sw"></span>'
                   'findings outside clusters</span>')
    mi = data.map_info
    ev = mi.get("explained_variance")
    map_caption = (f'{len(data.points)} rows of the candidate pool ({mi.get("pool", 0)} in all'
                   + (f', thinned to {mi["thinned_to"]}' if mi.get("thinned_to") else "")
                   + f'); PCA of {_e(mi.get("source", "–"))}'
                   + (f'; the two axes explain {ev[0] * 100:.0f}% and {ev[1] * 100:.0f}% of the variance'
                      if ev and len(ev) == 2 else "")
                   + ('. The star is the anomaly itself.' if mi.get("anomaly_xy") else "."))
    map_html = (_svg(data) if data.points else
                f'<p class="empty">{_e(mi.get("note", "no map"))}</p>')
    params = json.dumps(run["params"], ensure_ascii=False, indent=1, sort_keys=True, default=str)
    versions = json.dumps(run["index_versions"], ensure_ascii=False, indent=1, sort_keys=True, default=str)
    payload = {"run_id": run["run_id"], "clusters": [
        {k: c[k] for k in ("cluster_id", "rank", "size", "label", "colour", "sql", "members")}
        for c in data.clusters], "rows": data.rows, "points": data.points, "sql": data.sql,
        "counts": cnt}
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lang = (f'<span class="chip lang">prompt {_e(a.get("prompt_lang") or "?")}</span>'
            f'<span class="chip lang">reply {_e(a.get("reply_lang") or "?")}</span>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{_e(title)}</title>
<style>{css}</style>
</head>
<body>
<header class="top">
  <div class="brand">nla-forensics · triage report</div>
  <h1>{_e(a['title'])}</h1>
  <div class="runline">run <b>{run['run_id']}</b> · dataset <b>{_e(run['dataset'])}</b> ·
    anomaly <b>{_e(a['anomaly_id'])}</b> · status <b>{_e(run['status'])}</b> ·
    {_e(run.get('started_at') or '')}</div>
  <div class="stats">
    <div class="stat"><b>{cnt['samples']:,}</b><span>rows in dataset</span></div>
    <div class="stat"><b>{cnt['findings']:,}</b><span>findings</span></div>
    <div class="stat"><b>{cnt['clusters']:,}</b><span>clusters</span></div>
    <div class="stat"><b>{members_total:,}</b><span>rows in clusters</span></div>
    <div class="stat top1"><b>{_e(data.clusters[0]['size'] if data.clusters else 0)}</b>
      <span>rows in the top cluster</span></div>
  </div>
</header>
<main>
<section id="anomaly" class="card">
  <h2>The anomaly</h2>
  <div class="pair">
    <div><div class="lbl">prompt {lang}</div><p class="text quote">{_e(a['prompt']) or '<span class="muted">(none)</span>'}</p></div>
    <div><div class="lbl">observed reply</div><p class="text quote reply">{_e(a['reply']) or '<span class="muted">(none)</span>'}</p></div>
  </div>
  <h3>NLA explanations <span class="muted">({len(a['explanations'])})</span></h3>
  <div class="expls">{expl or '<p class="muted">No explanations were given for this anomaly.</p>'}</div>
  {_sql_block('SQL: the anomaly and its explanations', data.sql['anomaly'])}
</section>

<section id="overview" class="grid2">
  <div class="card" id="map-card">
    <h2>Map of the candidate pool</h2>
    <div class="mapwrap">{map_html}<div id="tip" class="tip" hidden></div></div>
    <p class="caption">{map_caption} Hover a point to read it; click a cluster to select it.</p>
    <div class="legend">{legend}</div>
    {_sql_block('SQL: the points on this map', data.sql['map'])}
  </div>
  <div class="card" id="clusters-card">
    <h2>Clusters, ranked <span class="muted">by how well they explain the anomaly</span></h2>
    <div id="clusters">{cards}</div>
    {_sql_block('SQL: all clusters of this run', data.sql['clusters'])}
  </div>
</section>

<section id="samples" class="card">
  <h2>Rows <span id="rows-title" class="muted"></span></h2>
  <div class="controls">
    <select id="cluster-select" aria-label="cluster"></select>
    <input id="filter" type="search" placeholder="filter rows: words in prompt, reply, id, language, metadata…" autocomplete="off" aria-label="filter rows">
    <span id="count" class="muted"></span>
  </div>
  <div class="tablewrap">
  <table id="rows">
    <thead><tr><th>#</th><th>row id</th><th>score</th><th>lang</th><th>prompt</th><th>reply</th><th>metadata</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
  <p class="caption" id="rows-note"></p>
  <details class="sql" open><summary>SQL for the rows shown</summary><pre class="code" id="rows-sql"></pre></details>
  {_sql_block('SQL: ranked findings of this run', data.sql['findings'])}
  {_sql_block('Export the findings for a data team', data.sql['export'])}
</section>

<section id="run" class="card">
  <h2>Run parameters</h2>
  <div class="grid2 tight">
    <div><div class="lbl">parameters</div><pre class="code small">{_e(params)}</pre></div>
    <div><div class="lbl">index versions</div><pre class="code small">{_e(versions)}</pre></div>
  </div>
  {_sql_block('SQL: this run', data.sql['run'])}
</section>
</main>
<footer>Generated by nla-forensics on {generated}. Self-contained: no network requests. All training text is shown as text.</footer>
<script type="application/json" id="report-data">{script_json(payload)}</script>
<script>{js}</script>
</body>
</html>
"""


def render_report(ws: "Workspace", run_id: int, embed: bool = True) -> str:
    """The HTML page for triage run ``run_id`` (see the module docstring)."""
    return render_html(load_report_data(ws, run_id, embed=embed))


def write_report(ws: "Workspace", run_id: int, path: str | Path, embed: bool = True) -> Path:
    """Render and write the page atomically (temp file + rename); return its path."""
    out = Path(path).expanduser()
    page = render_report(ws, run_id, embed=embed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out.resolve()


__all__ = ["render_report", "write_report", "load_report_data", "render_html", "ReportData",
           "script_json"]
