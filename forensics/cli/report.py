"""``forensics report RUN_ID --output FILE.html``: the triage report page (thin wrapper over
:mod:`forensics.report`)."""

from __future__ import annotations

import click

from forensics.cli._common import Ctx, emit_json, err_console, handle_errors, json_option


@click.command("report")
@click.argument("run_id", type=int)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, writable=True),
              metavar="FILE.html", help="Where to write the self-contained HTML page.")
@click.option("--no-embed", is_flag=True,
              help="Never load an embedding model: the map uses the dataset's index if built, "
                   "else character trigrams (faster).")
@json_option
@click.pass_obj
@handle_errors
def report_cmd(obj: Ctx, run_id: int, output: str, no_embed: bool, as_json: bool) -> None:
    """Write the HTML report of triage run RUN_ID: the anomaly, ranked clusters, a 2-D map of
    the candidate pool, sample rows with a filter box, and the SQL behind each view.

    \b
    Example:
      forensics report 3 --output triage-3.html
    """
    from forensics import report

    with obj.open(read_only=True) as ws:
        data = report.load_report_data(ws, run_id, embed=not no_embed)
        page = report.render_html(data)
    from pathlib import Path

    out = Path(output).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    summary = {"run_id": run_id, "path": str(out.resolve()), "bytes": len(page.encode("utf-8")),
               "clusters": data.counts["clusters"], "findings": data.counts["findings"],
               "rows_in_page": data.counts["rows_in_page"], "map_points": data.counts["map_points"],
               "map_source": data.map_info.get("source")}
    if as_json:
        emit_json(summary)
    else:
        err_console.print(
            f"wrote [bold]{summary['path']}[/] ({summary['bytes'] / 1024:.0f} KiB): "
            f"{summary['clusters']} clusters, {summary['findings']} findings, "
            f"{summary['map_points']} map points; open it in a browser")


def register(main: click.Group) -> None:
    main.add_command(report_cmd)
