# %% [markdown]
# # nla-forensics from Python
#
# The same chain as `make demo`, through the Python API instead of the CLI (the CLI is a thin
# layer over these calls). Run it as a script, or cell by cell (`# %%`) in an editor that
# understands cells:
#
#     .venv/bin/python examples/api_walkthrough.py [--workspace api-workspace] [--rows 600]
#
# Every result lands in one DuckDB file, so each step ends with the SQL a data team would run.

# %%
from __future__ import annotations

import argparse
import json
from pathlib import Path

import forensics
from forensics import report, triage
from forensics.triage import anomaly
from forensics.search import index
from forensics.triage.anomaly import read_explanation_file
from forensics.ingest import ingest
from forensics.quality import load_pipeline, run_pipeline

HERE = Path(__file__).resolve().parent
ap = argparse.ArgumentParser()
ap.add_argument("--workspace", default="api-workspace")
ap.add_argument("--rows", type=int, default=None, help="ingest only the first N rows")
args, _ = ap.parse_known_args()

# %% [markdown]
# ## 1. A workspace and a dataset
# `forensics.init` creates the directory (idempotent); ingest is idempotent too: re-running it
# adds nothing. Language identification runs per row at ingest time.

# %%
ws = forensics.init(args.workspace)
data = HERE / "data" / "demo_corpus.jsonl"
if args.rows:
    lines = data.read_text(encoding="utf-8").splitlines()[: args.rows]
    data = Path(args.workspace) / f"first-{args.rows}.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
summary = ingest(ws, data, dataset="api", id_field="id", prompt_field="prompt",
                 reply_field="reply", meta_fields=["source", "shard"])
print(f"ingest: {summary.rows_added} added, {summary.rows_unchanged} unchanged, "
      f"{summary.rows_rejected} rejected")
print(ws.sql("SELECT prompt_lang, reply_lang, count(*) AS n FROM samples WHERE dataset = 'api' "
             "GROUP BY ALL ORDER BY n DESC LIMIT 6"))

# %% [markdown]
# ## 2. Data-quality pipelines
# A shipped definition by name (or a TOML path); findings go to `quality_findings`.

# %%
for name in ("mistranslation", "hygiene"):
    res = run_pipeline(ws, load_pipeline(name), "api", engine="local", workers=2)
    print(name, "->", res.pipeline_run_id)
print(ws.sql('SELECT pipeline, "check", count(*) AS n FROM v_quality_findings '
             "WHERE dataset = 'api' GROUP BY ALL ORDER BY n DESC"))

# %% [markdown]
# ## 3. Indexes
# One FAISS index per dataset and field; embeddings are cached in DuckDB, so a rebuild after a
# crash or a re-run only embeds what is missing.

# %%
m = index.build(ws, "api", field="pair")
print(f"index: {m.rows} rows, {m.index_type}, model {m.model_id}")
for hit in index.search(ws, "api", ["Who won the football game?"], k=3)[0]:
    print(f"  {hit.score:.3f} {hit.row_id} {(hit.prompt or '')[:70]!r}")

# %% [markdown]
# ## 4. The anomaly and its NLA explanations
# An English question the model answered in German; the explanation file holds two decodes in
# `<explanation>` blocks.

# %%
a = json.loads((HERE / "data" / "demo_anomalies.json").read_text(encoding="utf-8"))["de"]
aid = anomaly.add(ws, "English question answered in German (API walkthrough)",
                  prompt=a["prompt"], reply=a["reply"],
                  explanations=read_explanation_file(HERE / "anomaly_explanation.txt"))
print("anomaly", aid, anomaly.get(ws, aid).prompt_lang, "->", anomaly.get(ws, aid).reply_lang)

# %% [markdown]
# ## 5. Triage
# Signals (behaviour, phrases, explanation search, prompt/reply search, quality findings) are
# fused, clustered, expanded over the whole dataset and profiled; the run is stored.

# %%
result = triage.triage(ws, aid, "api", limit=200)
for c in result.to_json()["clusters"][:5]:
    print(f"cluster {c['cluster_id']}: {c['size']} rows, score {c['score']:.3f}, {c['label']}")

# %% [markdown]
# ## 6. Findings are tables
# The whole top cluster (every member, not only the top findings), ready to drop or fix:

# %%
top = ws.sql("SELECT row_id, score, prompt_lang, reply_lang, prompt, reply FROM v_cluster_members "
             "WHERE run_id = ? AND cluster_rank = 1 ORDER BY score DESC", [result.run_id])
print(top.head(5))
labels = {json.loads(x)["id"]: json.loads(x)["label"]
          for x in (HERE / "data" / "demo_labels.jsonl").read_text().splitlines() if x}
planted = sum(labels.get(r) == "planted:de" for r in top["row_id"])
print(f"top cluster: {top.height} rows, {planted} of them from the planted batch")

# %% [markdown]
# ## 7. The report
# One self-contained HTML page (no network), safe to attach to a ticket.

# %%
out = report.write_report(ws, result.run_id, Path(args.workspace) / f"triage-{result.run_id}.html")
print("report:", out)
ws.close()
