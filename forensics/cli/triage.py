"""CLI for anomalies, triage and findings export (thin layer over forensics.triage)."""

from __future__ import annotations

import click

from forensics.cli._common import Ctx, console, emit_json, err_console, handle_errors, json_option


@click.group("anomaly")
def anomaly_group() -> None:
    """Store and inspect anomalies (observed misbehaviour + NLA explanations)."""


@anomaly_group.command("add")
@click.option("--title", required=True, help="Short name of the misbehaviour.")
@click.option("--prompt", default=None, help="The prompt that triggered it.")
@click.option("--reply", default=None, help="The observed reply.")
@click.option("--explanation", "explanations", multiple=True, help="An NLA explanation (repeatable).")
@click.option("--explanation-file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="File with explanation text or raw AV output (<explanation> tags; repeatable).")
@json_option
@click.pass_obj
@handle_errors
def anomaly_add(obj: Ctx, title, prompt, reply, explanations, files, as_json) -> None:
    """Store an anomaly; prints its id."""
    from forensics.triage import anomaly

    expl = list(explanations)
    for f in files:
        expl.extend(anomaly.read_explanation_file(f))
    with obj.open() as ws:
        aid = anomaly.add(ws, title, prompt, reply, expl)
    if as_json:
        emit_json({"anomaly_id": aid})
    else:
        console.print(f"anomaly {aid} stored ({len(expl)} explanations)")


@anomaly_group.command("list")
@json_option
@click.pass_obj
@handle_errors
def anomaly_list(obj: Ctx, as_json) -> None:
    """List anomalies."""
    import polars as pl

    from forensics.triage import anomaly
    from forensics.cli._common import frame_table

    with obj.open(read_only=True) as ws:
        rows = anomaly.list_all(ws)
    if as_json:
        emit_json(rows)
    else:
        console.print(frame_table(pl.DataFrame(rows) if rows else pl.DataFrame({"anomaly_id": []})))


@anomaly_group.command("show")
@click.argument("anomaly_id", type=int)
@json_option
@click.pass_obj
@handle_errors
def anomaly_show(obj: Ctx, anomaly_id, as_json) -> None:
    """Show one anomaly with its explanations."""
    from rich.markup import escape

    from forensics.triage import anomaly

    with obj.open(read_only=True) as ws:
        a = anomaly.get(ws, anomaly_id)
    if as_json:
        emit_json(a)
        return
    console.print(f"[bold]anomaly {a.anomaly_id}[/]: {escape(a.title)}")
    console.print(f"prompt ({a.prompt_lang}): {escape(a.prompt or '-')}")
    console.print(f"reply  ({a.reply_lang}): {escape(a.reply or '-')}")
    for i, e in enumerate(a.explanations, 1):
        console.print(f"[dim]explanation {i}:[/]\n{escape(e)}")


@click.command("triage")
@click.argument("anomaly_id", type=int)
@click.option("--dataset", required=True, help="Dataset to search.")
@click.option("--limit", default=200, show_default=True, help="Findings kept (clusters keep all members).")
@click.option("--param", "param_items", multiple=True, metavar="NAME=VALUE",
              help="Set a triage parameter by its dotted name (docs/triage.md), e.g. "
                   "cluster.pool=500 or signals.phrase.min_df=5; VALUE is JSON or a string. "
                   "Repeatable; stored with the run.")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report.")
@json_option
@click.pass_obj
@handle_errors
def triage_cmd(obj: Ctx, anomaly_id, dataset, limit, param_items, report_path, as_json) -> None:
    """Rank and cluster the training rows that likely taught ANOMALY_ID's behaviour."""
    from rich.markup import escape

    from forensics import triage
    from forensics.cli._progress import RichProgress
    from forensics.triage.params import parse_assignments

    params = triage.TriageParams.from_dict(parse_assignments(param_items))
    with obj.open() as ws, RichProgress(err_console, enabled=not as_json) as prog:
        res = triage.triage(ws, anomaly_id, dataset, limit=limit, params=params,
                            progress=prog)
        if report_path:
            from forensics import report

            report.write_report(ws, res.run_id, report_path)
    if as_json:
        emit_json(res.to_json())
        return
    console.print(f"[bold]triage run {res.run_id}[/]: anomaly {res.anomaly_id} vs {escape(dataset)} "
                  f"({res.total_scored} rows, {res.seconds:.2f}s); signals: {', '.join(res.signals_used)}")
    for s, why in res.signals_unavailable.items():
        err_console.print(f"[dim]signal {s} unavailable: {escape(why)}[/]")
    for c in res.clusters[:5]:
        prof = c["profile"]
        src = prof.get("metadata", {}).get("source") or []
        srcs = ", ".join(f"{escape(str(v['value']))} {v['share']:.0%} (x{v['lift']})" for v in src[:3])
        pairs = ", ".join(f"{k} {v}" for k, v in list(prof.get("lang_pairs", {}).items())[:3])
        console.print(f"  cluster {c['cluster_id']}: size {c['size']}, score {c['score']:.3f}, "
                      f"{escape(c['label'])}\n    langs: {pairs}" + (f"; source: {srcs}" if srcs else ""))
    if report_path:
        console.print(f"report written to {escape(report_path)}")


@click.group("findings")
def findings_group() -> None:
    """Export triage findings."""


@findings_group.command("export")
@click.argument("run_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv",
              show_default=True)
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Output file (default: findings-RUN.FORMAT).")
@json_option
@click.pass_obj
@handle_errors
def findings_export(obj: Ctx, run_id, fmt, output, as_json) -> None:
    """Findings joined with sample text, plus every cluster member."""
    from forensics import triage

    path = output or f"findings-{run_id}.{fmt}"
    with obj.open(read_only=True) as ws:
        n = triage.export(ws, run_id, fmt, path)
    if as_json:
        emit_json({"run_id": run_id, "rows": n, "path": path, "format": fmt})
    else:
        console.print(f"{n} rows written to {path}")


@click.group("judge")
def judge_group() -> None:
    """Prompt judges for the triage context split (docs/triage.md)."""


@judge_group.command("train")
@click.option("--dataset", required=True, help="Dataset whose rows the labels name.")
@click.option("--labels", "labels_path", required=True, type=click.Path(dir_okay=False),
              help="CSV (header row_id,label) or JSONL ({row_id, label}); label is "
                   "legitimate or defect.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the classifier (JSON; use as context.classifier_path).")
@click.option("--c", "c", default=1.0, show_default=True, type=float,
              help="Inverse regularisation strength of the logistic regression.")
@json_option
@click.pass_obj
@handle_errors
def judge_train(obj: Ctx, dataset, labels_path, out, c, as_json) -> None:
    """Train the offline classifier judge from prompts labelled legitimate / defect."""
    from rich.markup import escape

    from forensics.triage.context import train_from_labels

    with obj.open(read_only=True) as ws:
        info = train_from_labels(ws, dataset, labels_path, out, c)
    if as_json:
        emit_json(info)
    else:
        console.print(f"classifier trained on {info['trained_on']} prompts "
                      f"({info['legitimate']} legitimate), training accuracy "
                      f"{info['train_accuracy']:.2f}; written to {escape(out)}\n"
                      f"use it: forensics triage ID --dataset {escape(dataset)} "
                      f"--param context.judge=classifier --param "
                      f"context.classifier_path={escape(out)}")


def register(main: click.Group) -> None:
    main.add_command(judge_group)
    main.add_command(anomaly_group)
    main.add_command(triage_cmd)
    main.add_command(findings_group)
