"""``forensics pipeline run|list|show``: data-quality pipelines over a dataset."""

from __future__ import annotations

import click

from forensics.cli._common import (Ctx, console, emit_json, err_console, handle_errors,
                                   hold_seconds_option, json_option, lock_knobs)


def register(main: click.Group) -> None:
    main.add_command(pipeline)


@click.group()
def pipeline() -> None:
    """Data-quality pipelines (mistranslation, duplicates, hygiene, or your own TOML)."""


@pipeline.command("run")
@click.argument("pipeline_spec", metavar="PIPELINE")
@click.option("--dataset", "-d", required=True, help="Dataset to check.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=int, default=None, help="Worker processes / Ray CPUs (default 2).")
@click.option("--ray-address", default=None, help="Ray cluster address (ray://host:10001, auto).")
@click.option("--batch-size", type=int, default=None, help="Rows per batch (default 2000; a "
              "resumed run keeps its original batch size).")
@click.option("--fresh", is_flag=True, help="Start a new run even if an identical run is done.")
@hold_seconds_option
@json_option
@click.pass_obj
@handle_errors
def run_cmd(obj: Ctx, pipeline_spec: str, dataset: str, engine: str, workers: int | None,
            ray_address: str | None, batch_size: int | None, fresh: bool,
            hold_seconds: float | None, as_json: bool) -> None:
    """Run PIPELINE (a shipped name or a TOML file) over --dataset; findings go to
    quality_findings (view v_quality_findings). Findings are not failures: exit 0."""
    from forensics.cli._progress import RichProgress
    from forensics.quality import load_pipeline, run_pipeline

    p = load_pipeline(pipeline_spec)
    with obj.open() as ws, RichProgress(err_console) as prog:
        res = run_pipeline(ws, p, dataset, engine=engine, workers=workers,
                           batch_size=batch_size, ray_address=ray_address, fresh=fresh,
                           progress=prog, **lock_knobs(hold_seconds=hold_seconds))
    if as_json:
        emit_json(res)
        return
    _print_summary(res)


def _print_summary(res) -> None:
    from rich.table import Table

    out = err_console
    if res.reused:
        out.print(f"pipeline [bold]{res.pipeline}[/] already done on {res.dataset} at this "
                  f"dataset version: run {res.pipeline_run_id} reused (use --fresh for a new run)")
    elif res.resumed:
        out.print(f"resumed run {res.pipeline_run_id}: {res.batches_skipped} of "
                  f"{res.batches_total} batches were already committed")
    t = Table(title=f"run {res.pipeline_run_id}: {res.pipeline} on {res.dataset} "
                    f"({res.engine}, {res.rows} rows, {res.seconds:.1f} s)")
    for c in ("step", "rows in", "rows out", "findings", "seconds"):
        t.add_column(c, justify="left" if c == "step" else "right")
    for s in res.steps:
        t.add_row(s.step, str(s.rows_in), str(s.rows_out), str(s.findings), f"{s.seconds:.2f}")
    console.print(t)
    f = Table(title="findings per check")
    f.add_column("check")
    f.add_column("rows", justify="right")
    for k, v in res.findings.items():
        f.add_row(k, str(v))
    if not res.findings:
        f.add_row("(none)", "0")
    console.print(f)
    console.print(f"inspect: forensics sql \"SELECT \\\"check\\\", severity, score, row_id, detail "
                  f"FROM v_quality_findings WHERE pipeline_run_id = {res.pipeline_run_id}\"")


@pipeline.command("list")
@json_option
@handle_errors
def list_cmd(as_json: bool) -> None:
    """Shipped pipelines (copy one from ``forensics pipeline show NAME`` to customise)."""
    from forensics.quality import builtin_pipelines, load_pipeline

    items = []
    for name, path in builtin_pipelines().items():
        p = load_pipeline(name)
        items.append({"name": name, "description": p.description, "path": str(path),
                      "steps": [s.type_name for s in p.steps]})
    if as_json:
        emit_json(items)
        return
    from rich.table import Table

    t = Table(title="shipped pipelines")
    t.add_column("name")
    t.add_column("description")
    t.add_column("steps")
    for it in items:
        t.add_row(it["name"], it["description"], " -> ".join(it["steps"]))
    console.print(t)


@pipeline.command("show")
@click.argument("pipeline_spec", metavar="PIPELINE")
@json_option
@handle_errors
def show_cmd(pipeline_spec: str, as_json: bool) -> None:
    """Print a pipeline's definition as TOML (or JSON), with its definition hash."""
    from forensics.quality import load_pipeline

    p = load_pipeline(pipeline_spec)
    if as_json:
        emit_json({**p.to_dict(), "definition_hash": p.definition_hash(), "source": p.source})
        return
    click.echo(f"# {p.source}  (definition hash {p.definition_hash()})")
    click.echo(p.to_toml(), nl=False)
