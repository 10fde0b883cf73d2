"""Shared CLI plumbing: workspace selection, --json output, error-to-exit-code mapping.

Every command is a thin wrapper: parse options, call the Python API, render the result
either as rich output for people or as one JSON document for scripts (``--json``).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from forensics.errors import ForensicsError

# Human output goes to stderr when --json is set, so stdout stays one parseable document.
console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Ctx:
    """Per-invocation state carried on click's context object."""

    def __init__(self, workspace: str | None):
        self.workspace_arg = workspace

    def open(self, read_only: bool = False):
        from forensics import workspace

        return workspace.open(self.workspace_arg, read_only=read_only)

    def path(self) -> Path:
        from forensics import workspace

        return workspace.resolve_path(self.workspace_arg)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(f)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy scalars, datetimes, polars frames into JSON types."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    try:
        import polars as pl

        if isinstance(obj, pl.DataFrame):
            return to_jsonable(obj.to_dicts())
    except ImportError:  # pragma: no cover
        pass
    return obj


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(to_jsonable(obj), ensure_ascii=False, indent=None))


def frame_table(df, title: str | None = None, max_rows: int = 50, max_width: int = 80) -> Table:
    """Render a polars DataFrame as a rich Table, truncating long cells."""
    t = Table(title=title, show_lines=False)
    for c in df.columns:
        t.add_column(str(c), overflow="fold")
    for row in df.head(max_rows).iter_rows():
        cells = []
        for v in row:
            s = "" if v is None else str(v)
            if len(s) > max_width:
                s = s[: max_width - 1] + "…"
            cells.append(s)
        t.add_row(*cells)
    if df.height > max_rows:
        t.caption = f"{df.height - max_rows} more rows not shown"
    return t


def handle_errors(f: Callable) -> Callable:
    """Turn ForensicsError into a one-line message and its documented exit code."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ForensicsError as e:
            err_console.print(f"[bold red]error:[/] {e.message}", markup=True, highlight=False)
            if e.hint:
                err_console.print(f"[yellow]hint:[/] {e.hint}", markup=True, highlight=False)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/] (work committed so far is kept; re-run to resume)")
            sys.exit(130)

    return wrapper
