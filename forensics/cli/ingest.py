"""Data commands: ingest, datasets, stats (thin wrappers over ``forensics.ingest``)."""

from __future__ import annotations

import sys

import click

from forensics.cli._common import (Ctx, console, emit_json, err_console, frame_table, handle_errors,
                                   hold_seconds_option, json_option, lock_knobs)
from forensics.cli._progress import RichProgress


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--dataset", "-d", required=True, help="Dataset name (created on first ingest).")
@click.option("--id-field", default="id", show_default=True,
              help="Field holding the row id; rows without it get '<file>:<line>'. "
                   "Pass '' to always use file:line.")
@click.option("--prompt-field", default="prompt", show_default=True)
@click.option("--reply-field", default="reply", show_default=True)
@click.option("--meta-fields", default="", metavar="A,B",
              help="Comma-separated fields copied into samples.meta (e.g. source,shard).")
@click.option("--max-chars", default=200_000, show_default=True,
              help="Reject rows whose prompt or reply is longer than this.")
@click.option("--languages", default=None, metavar="CODES",
              help="Language-ID candidate set as ISO 639-1 codes (default: the documented broad "
                   "set); 'all' for every language the identifier knows.")
@click.option("--no-langid", is_flag=True, help="Skip language identification (langs stay NULL).")
@click.option("--batch-rows", default=122_880, show_default=True,   # = ingest.DEFAULT_BATCH_ROWS
              help="Rows per committed batch (the unit of resume).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@hold_seconds_option
@json_option
@click.pass_obj
@handle_errors
def ingest(obj: Ctx, files: tuple[str, ...], dataset: str, id_field: str, prompt_field: str,
           reply_field: str, meta_fields: str, max_chars: int, languages: str | None,
           no_langid: bool, batch_rows: int, quiet: bool, hold_seconds: float | None,
           as_json: bool) -> None:
    """Load training data (JSONL[.gz], JSON array, Parquet, CSV, HF save_to_disk dirs,
    directories of them) into DATASET. Safe to re-run; resumes after an interruption.

    \b
    Examples:
      forensics ingest train.jsonl --dataset sft --meta-fields source
      forensics ingest data/ --dataset sft --id-field uid --prompt-field question --reply-field answer
      forensics ingest chats.parquet --dataset chat      # OpenAI messages / ShareGPT conversations
    Exit codes: 0 ok (rejected rows are reported, not failures), 2 a file missing/unreadable.
    """
    from forensics import ingest as api

    langs = None
    if languages:
        langs = ["all"] if languages.strip().lower() == "all" else _csv_list(languages)
    ws = obj.open()
    try:
        with RichProgress(err_console, enabled=not quiet and not as_json) as bars:
            s = api.ingest(ws, list(files), dataset, id_field=id_field or None,
                           prompt_field=prompt_field, reply_field=reply_field,
                           meta_fields=_csv_list(meta_fields), max_chars=max_chars,
                           languages=langs, langid=not no_langid, batch_rows=batch_rows,
                           progress=bars if bars.enabled else None,
                           **lock_knobs(hold_seconds=hold_seconds))
    finally:
        ws.close()
    if as_json:
        emit_json(s)
    else:
        _print_summary(s)
    if s.files_failed:
        for f in s.files:
            if f.error:
                err_console.print(f"[bold red]error:[/] {f.error}", markup=True, highlight=False)
        sys.exit(2)


def _print_summary(s) -> None:
    out = err_console
    out.print(
        f"[bold]{s.dataset}[/]: read {s.rows_read:,} · [green]added {s.rows_added:,}[/] · "
        f"unchanged {s.rows_unchanged:,} · [yellow]conflicts {s.rows_conflict:,}[/] · "
        f"[red]rejected {s.rows_rejected:,}[/] in {s.seconds:.1f}s "
        f"({s.rows_per_s:,.0f} rows/s; language ID {s.langid_seconds:.1f}s)",
        markup=True, highlight=False)
    if s.rejects_by_reason:
        out.print("rejects: " + ", ".join(f"{k} {v}" for k, v in s.rejects_by_reason.items())
                  + f"  (see: forensics sql \"SELECT file, line, reason, field, detail FROM rejects"
                    f" WHERE ingest_id = {s.ingest_id}\")", highlight=False)
    resumed = [f for f in s.files if f.resumed_from]
    for f in resumed:
        out.print(f"resumed {f.file} after record {f.resumed_from:,}", highlight=False)
    out.print(f"dataset {s.dataset}: {s.dataset_rows:,} samples, version {s.dataset_version}",
              highlight=False)


@click.command("datasets")
@json_option
@click.pass_obj
@handle_errors
def datasets_cmd(obj: Ctx, as_json: bool) -> None:
    """List datasets with sample and reject counts."""
    import polars as pl

    from forensics import ingest as api

    ws = obj.open(read_only=True)
    try:
        rows = api.datasets(ws)
    finally:
        ws.close()
    if as_json:
        emit_json({"datasets": rows})
        return
    if not rows:
        console.print("no datasets yet: forensics ingest FILE --dataset NAME")
        return
    console.print(frame_table(pl.DataFrame(rows).select("dataset", "samples", "rejects", "version",
                                                        "updated_at")))


@click.command("stats")
@click.argument("dataset")
@click.option("--top", default=5, show_default=True, help="Values shown per meta field.")
@json_option
@click.pass_obj
@handle_errors
def stats_cmd(obj: Ctx, dataset: str, top: int, as_json: bool) -> None:
    """Row counts, prompt->reply language pairs, rejects by reason, meta concentration."""
    import polars as pl

    from forensics import ingest as api

    ws = obj.open(read_only=True)
    try:
        st = api.stats(ws, dataset, meta_top=top)
    finally:
        ws.close()
    if as_json:
        emit_json(st)
        return
    console.print(f"[bold]{dataset}[/]: {st['rows']:,} samples ({st['distinct_content']:,} distinct "
                  f"contents, {st['multi_turn_rows']:,} multi-turn), version {st['version']}, "
                  f"{st['rejected_rows']:,} rejects", highlight=False)
    if st["language_pairs"]:
        df = pl.DataFrame(st["language_pairs"]).with_columns(
            (pl.col("rows") / max(st["rows"], 1) * 100).round(1).alias("%"))
        console.print(frame_table(df, title="prompt_lang -> reply_lang", max_rows=20))
    if st["rejects"]:
        console.print(frame_table(pl.DataFrame([{"reason": k, "rows": v}
                                                for k, v in st["rejects"].items()]),
                                  title="rejects"))
    for k, vals in st["meta"].items():
        if vals:
            console.print(frame_table(pl.DataFrame(vals), title=f"meta.{k} (top {top})"))


def register(main: click.Group) -> None:
    main.add_command(ingest)
    main.add_command(datasets_cmd)
    main.add_command(stats_cmd)
