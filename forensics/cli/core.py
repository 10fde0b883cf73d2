"""Workspace-level commands: init and sql."""

from __future__ import annotations

import sys

import click

from forensics.cli._common import Ctx, console, emit_json, frame_table, handle_errors, json_option
from forensics.errors import UsageError


@click.command()
@json_option
@click.pass_obj
@handle_errors
def init(obj: Ctx, as_json: bool) -> None:
    """Create a workspace (forensics.duckdb + indexes/) in --workspace DIR. Safe to re-run."""
    from forensics import workspace, store

    ws = workspace.init(obj.workspace_arg)
    info = {"workspace": str(ws.root), "database": str(ws.db_path),
            "schema_version": ws.schema_version(), "latest_schema_version": store.latest_version()}
    ws.close()
    if as_json:
        emit_json(info)
    else:
        console.print(f"workspace ready at [bold]{info['workspace']}[/] (schema v{info['schema_version']})")


@click.command("sql")
@click.argument("query")
@click.option("--write", is_flag=True, help="Open read-write and allow statements that change data.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the result to this file.")
@click.option("--max-rows", default=50, show_default=True, help="Rows shown in table format.")
@json_option
@click.pass_obj
@handle_errors
def sql(obj: Ctx, query: str, write: bool, fmt: str, output: str | None, max_rows: int,
        as_json: bool) -> None:
    """Run SQL against the workspace (read-only unless --write).

    \b
    Examples:
      forensics sql "SELECT dataset, count(*) FROM samples GROUP BY 1"
      forensics sql "SELECT * FROM v_findings WHERE run_id = 1" --format csv -o findings.csv
    """
    import duckdb

    if as_json:
        fmt = "json"
    ws = obj.open(read_only=not write)
    try:
        try:
            df = ws.sql(query)
        except duckdb.Error as e:
            msg = str(e)
            if not write and ("read-only" in msg.lower() or "read only" in msg.lower()):
                raise UsageError(
                    "this statement writes to the workspace, which `forensics sql` opens read-only",
                    hint="add --write if you really mean to change the workspace",
                ) from e
            raise UsageError(f"SQL error: {msg}") from e
    finally:
        ws.close()
    if fmt == "parquet":
        if not output:
            raise UsageError("--format parquet needs --output FILE")
        df.write_parquet(output)
        console.print(f"wrote {df.height} rows to {output}", highlight=False)
        return
    if fmt == "csv":
        text = df.write_csv()
    elif fmt == "json":
        import json

        from forensics.cli._common import to_jsonable

        text = json.dumps(to_jsonable(df.to_dicts()), ensure_ascii=False) + "\n"
    else:
        if output:
            raise UsageError("--output needs --format csv, json or parquet")
        console.print(frame_table(df, max_rows=max_rows))
        console.print(f"{df.height} rows", style="dim")
        return
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def register(main: click.Group) -> None:
    main.add_command(init)
    main.add_command(sql)
