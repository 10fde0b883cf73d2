"""The triage report as one self-contained HTML page (rendering and escaping).

Why a single static file: the person judging clusters is often not the person who ran the
triage; an HTML file can be attached to a ticket or opened from disk on a laptop with no
server and no network. Everything (CSS, JS, data, the map) is inline; nothing is fetched.

Why so much escaping: the page shows training text, and training data is hostile input. Text
rendered on the server goes through :func:`html.escape`; data for the page's script is JSON
inside ``<script type="application/json">`` with ``<``, ``>``, ``&``, U+2028 and U+2029
escaped (so no sample can close the script element), and the script builds the DOM with
``textContent`` only. A sample holding ``<script>`` therefore shows as text.

API::

    import forensics
    from forensics.report import render_report, write_report
    with forensics.open("ws", read_only=True) as ws:
        write_report(ws, run_id=3, path="triage-3.html")
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.report.data import MAP_H, MAP_W, OTHER_COLOUR, UNCLUSTERED_COLOUR, ReportData, load_report_data

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

ASSETS = Path(__file__).resolve().parent / "assets"


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
        + _verification_html(c.get("verification"))
        + f'<details class="sql"><summary>SQL for this cluster</summary><pre>{_e(c["sql"])}</pre></details>'
        '</article>')


def _verification_html(v: dict | None) -> str:
    """One line on a cluster card: the latest ``forensics verify`` of the cluster."""
    if not v:
        return ""
    if v["verdict"] == "not_run":
        return (f'<div class="kv verify"><span class="k">verify</span> not run here (retraining script '
                f'written; verification {_e(v["verification_id"])})</div>')

    def ci(x):
        return f' [{_fmt(x[0], 2)}, {_fmt(x[1], 2)}]' if x else ""

    return (f'<div class="kv verify"><span class="k">verify</span> <b>{_e(v["verdict"])}</b>: behaviour rate on '
            f'{_e(v["probes"])} probe prompts {_fmt(v["rate_trained"], 2)} trained, '
            f'{_fmt(v["rate_without"], 2)}{ci(v["ci_without"])} retrained without these {_e(v["removed_rows"])} rows, '
            f'{_fmt(v["rate_random"], 2)}{ci(v["ci_random"])} without as many random rows '
            f'({_e(v["seeds"])} seeds); Cohen\'s h {_fmt(v["cohens_h"], 2)}</div>')


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
    notes = (run.get("summary") or {}).get("signals_unavailable") or {}
    undecided = notes.get("context_undecided")
    undecided_html = (f'<p class="caption undecided"><b>Context undecided.</b> '
                      f'{_e(undecided)}</p>' if undecided else "")
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
    {undecided_html}
    <div id="clusters">{cards}</div>
    {_sql_block('SQL: all clusters of this run', data.sql['clusters'])}
    {_sql_block('SQL: verifications of this run (forensics verify)', data.sql['verifications'])}
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
