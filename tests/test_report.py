"""The triage report page: a real workspace (ingested through the CLI), a triage run written
with SQL into the schema's tables (so these tests do not depend on the triage engine), the
Python API and the real ``forensics report`` command."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

import forensics
from forensics import report

from conftest import run_cli

HOSTILE_PROMPT = "<script>window.__pwned=1</script> What is the capital?"
HOSTILE_REPLY = "<img src=x onerror=\"window.__pwned=2\"> </script><script>window.__pwned=3</script>\u2028&amp; done"


def corpus_rows() -> list[dict]:
    rows = []
    for i in range(24):   # the planted batch: English prompt, German reply
        rows.append({"id": f"bad{i:02d}", "prompt": f"Who won the match number {i} in the cup?",
                     "reply": f"Die Mannschaft {i} gewann das Spiel im Pokal deutlich.",
                     "source": "vendor-lumen", "shard": f"shard-{i % 3}"})
    for i in range(20):   # clean English
        rows.append({"id": f"ok{i:02d}", "prompt": f"How tall is tower number {i}?",
                     "reply": f"Tower {i} is about {100 + i} metres tall.",
                     "source": ["webqa", "forum", "vendor-lumen"][i % 3], "shard": f"shard-{i % 4}"})
    for i in range(10):   # legitimate German
        rows.append({"id": f"de{i:02d}", "prompt": f"Wie hoch ist der Turm Nummer {i}?",
                     "reply": f"Der Turm {i} ist etwa {100 + i} Meter hoch.",
                     "source": "webqa", "shard": "shard-9"})
    rows.append({"id": "evil", "prompt": HOSTILE_PROMPT, "reply": HOSTILE_REPLY,
                 "source": "<b>bold-source</b>", "shard": "shard-0"})
    return rows


def build_run(tmp_path: Path) -> tuple[Path, int]:
    """Ingest the corpus with the real CLI; store an anomaly and a triage run with SQL.
    Cluster 7 (rank 1) = the German batch + the hostile row; cluster 3 (rank 2) = clean rows;
    two findings outside clusters."""
    ws_path = tmp_path / "ws"
    run_cli("init", workspace=ws_path)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus_rows()),
                    encoding="utf-8")
    run_cli("ingest", data, "--dataset", "toy", "--id-field", "id", "--prompt-field", "prompt",
            "--reply-field", "reply", "--meta-fields", "source,shard", workspace=ws_path)
    with forensics.open(ws_path) as ws:
        ids = dict(ws.rows("SELECT row_id, sample_id FROM samples WHERE dataset = 'toy'"))
        aid = ws.next_id("anomaly_id_seq")
        ws.execute("INSERT INTO anomalies (anomaly_id, title, prompt, reply, prompt_lang, reply_lang) "
                   "VALUES (?, ?, ?, ?, 'en', 'de')",
                   [aid, "English question answered in German <i>!</i>",
                    "Who won the cup final?", "Die Mannschaft gewann."])
        for k, text in enumerate(["The user writes English but the reply language is German.",
                                  "Phrase reads like a translation <b>from German</b>."]):
            ws.execute("INSERT INTO explanations (explanation_id, anomaly_id, nla_id, position, "
                       "token_index, text) VALUES (nextval('explanation_id_seq'), ?, 'given', 'given', ?, ?)",
                       [aid, k, text])
        run_id = ws.next_id("triage_run_id_seq")
        ws.execute("INSERT INTO triage_runs (run_id, anomaly_id, dataset, status, params, index_versions, "
                   "summary, finished_at) VALUES (?, ?, 'toy', 'done', ?, ?, '{}', current_timestamp)",
                   [run_id, aid, json.dumps({"limit": 30, "k": "<script>x</script>"}), json.dumps({})])
        c1 = [f"bad{i:02d}" for i in range(24)] + ["evil"]
        c2 = [f"ok{i:02d}" for i in range(12)]
        prof1 = {"size": len(c1), "kind": "language", "mean_scores": {"language": 0.93, "phrase": 0.2},
                 "signature": "en→de"}
        ws.execute("INSERT INTO clusters VALUES (?, 7, 1, ?, 'mannschaft, gewann, pokal', 0.91, ?)",
                   [run_id, len(c1), json.dumps(prof1)])
        ws.execute("INSERT INTO clusters VALUES (?, 3, 2, ?, 'tower, metres', 0.12, ?)",
                   [run_id, len(c2), json.dumps({"size": len(c2)})])
        for j, rid in enumerate(c1):
            ws.execute("INSERT INTO cluster_members VALUES (?, 7, ?, ?)", [run_id, ids[rid], 0.95 - j * 0.01])
        for j, rid in enumerate(c2):
            ws.execute("INSERT INTO cluster_members VALUES (?, 3, ?, ?)", [run_id, ids[rid], 0.2 - j * 0.01])
        ranked = c1 + c2[:4] + ["de00", "de01"]
        for r, rid in enumerate(ranked, start=1):
            cid = 7 if rid in c1 else (3 if rid in c2 else None)
            ws.execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [run_id, r, ids[rid], rid, 1.0 - r * 0.01, cid, json.dumps({"language": 0.9})])
    return ws_path, run_id


@pytest.fixture(scope="module")
def run_ws(tmp_path_factory) -> tuple[Path, int]:
    return build_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def rendered(run_ws) -> tuple[report.ReportData, str]:
    """Rendered once per module (loading the embedder dominates the cost)."""
    ws_path, run_id = run_ws
    with forensics.open(ws_path, read_only=True) as ws:
        data = report.load_report_data(ws, run_id)
    return data, report.render_html(data)


def _payload(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "data block missing"
    return json.loads(m.group(1))


def test_render_contains_anomaly_clusters_map_and_sql(run_ws, rendered):
    ws_path, run_id = run_ws
    page = rendered[1]
    # anomaly, explanations and the cluster labels, escaped
    assert "English question answered in German &lt;i&gt;!&lt;/i&gt;" in page
    assert "translation &lt;b&gt;from German&lt;/b&gt;" in page
    assert page.index("mannschaft, gewann, pokal") < page.index("tower, metres")  # ranked
    # the language pair of the top cluster was computed from the members
    assert "en → de" in page
    # metadata concentration: vendor-lumen holds the whole planted batch
    assert "vendor-lumen" in page
    # the map is an SVG picture with one circle per pool row (25 + 12 members, 2 loose findings)
    svg = re.search(r'<svg id="map".*?</svg>', page, re.S).group(0)
    assert len(re.findall(r"<circle ", svg)) == 39
    # SQL that reproduces each view
    assert f"FROM v_cluster_members\nWHERE run_id = {run_id} AND cluster_id = 7" in html.unescape(page)
    assert f"FROM v_findings\nWHERE run_id = {run_id}" in html.unescape(page)
    # self-contained: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    data = _payload(page)
    assert [c["cluster_id"] for c in data["clusters"]] == [7, 3]
    assert data["counts"]["findings"] == 25 + 4 + 2
    assert sum(1 for r in data["rows"] if r["c"] is None) == 2


def test_sql_in_report_reproduces_the_cluster(run_ws, rendered):
    """The SQL printed for a cluster, run as-is, returns exactly that cluster's members."""
    ws_path, run_id = run_ws
    with forensics.open(ws_path, read_only=True) as ws:
        top = rendered[0].clusters[0]
        got = ws.sql(top["sql"])
        assert got.height == top["members"] == 25
        assert set(got["row_id"]) == {f"bad{i:02d}" for i in range(24)} | {"evil"}


def test_hostile_text_is_escaped_everywhere(rendered):
    page = rendered[1]
    # exactly two script elements: the JSON block and our own code
    assert len(re.findall(r"<script\b", page, re.I)) == 2
    assert "window.__pwned" not in page.split('<script type="application/json"')[0]
    assert "<img" not in page and "onerror=\"" not in page
    assert "\u2028" not in page and "\u2029" not in page
    block = re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    rows = {r["id"]: r for r in _payload(page)["rows"]}
    assert rows["evil"]["p"] == HOSTILE_PROMPT      # the text survives, intact, as data
    assert rows["evil"]["r"] == HOSTILE_REPLY
    assert "&lt;b&gt;bold-source&lt;/b&gt;" in page  # metadata value, server-rendered


def test_script_json_roundtrip_and_escapes():
    nasty = {"a": "</script><!-- \u2028\u2029 & <b>", "b": [1, 2.5, None]}
    s = report.script_json(nasty)
    assert "</" not in s and "<!--" not in s and "\u2028" not in s
    assert json.loads(s) == nasty


def test_cli_report_json_and_missing_run(run_ws, tmp_path):
    ws_path, run_id = run_ws
    out = tmp_path / "sub" / "r.html"
    res = run_cli("report", str(run_id), "--output", out, "--no-embed", "--json", workspace=ws_path)
    doc = res.json()
    assert doc["map_source"].startswith("hashed character trigrams")
    assert doc["run_id"] == run_id and doc["clusters"] == 2 and doc["findings"] == 31
    assert Path(doc["path"]) == out.resolve() and out.stat().st_size == doc["bytes"]
    assert doc["map_points"] == 39
    bad = run_cli("report", "999", "--output", tmp_path / "x.html", workspace=ws_path, check=False)
    assert bad.returncode == 4 and "triage run 999 not found" in bad.stderr
    assert not (tmp_path / "x.html").exists()


def test_empty_run_renders(tmp_path):
    """A run with no clusters and no findings (e.g. an empty dataset) still gives a page."""
    ws_path = tmp_path / "ws"
    run_cli("init", workspace=ws_path)
    with forensics.open(ws_path) as ws:
        ws.ensure_dataset("empty")
        ws.execute("INSERT INTO anomalies (anomaly_id, title) VALUES (1, 'nothing')")
        ws.execute("INSERT INTO triage_runs (run_id, anomaly_id, dataset, status) VALUES (1, 1, 'empty', 'done')")
        p = report.write_report(ws, 1, tmp_path / "e.html")
    page = p.read_text(encoding="utf-8")
    assert "This run produced no clusters" in page
    assert _payload(page)["rows"] == []


def test_map_falls_back_without_an_index(rendered):
    """No FAISS index was built for the toy dataset: the map embeds prompt + reply (the
    packaged model), and the anomaly is projected into the same space."""
    data = rendered[0]
    assert data.map_info["source"].startswith("embeddings of prompt + reply")
    assert data.map_info.get("anomaly_xy")
    xs = [p[0] for p in data.points]
    assert max(xs) - min(xs) > 100  # the points are spread over the picture, not collapsed


def test_cluster_cap_keeps_the_page_bounded(run_ws, monkeypatch):
    """Runs with hundreds of clusters: only the top MAX_CLUSTERS get cards and rows."""
    ws_path, run_id = run_ws
    monkeypatch.setattr(report.data, "MAX_CLUSTERS", 1)
    with forensics.open(ws_path, read_only=True) as ws:
        data = report.load_report_data(ws, run_id, embed=False)
    page = report.render_html(data)
    assert data.counts["clusters"] == 2 and data.counts["clusters_in_page"] == 1
    assert {r["c"] for r in data.rows} == {7, None}
    assert page.count('<article class="cluster"') == 1
    assert "1 lower-ranked clusters are not shown here" in page
