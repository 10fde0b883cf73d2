"""Shared CLI plumbing: workspace selection, --json output, error-to-exit-code mapping.

Every command is a thin wrapper: parse options, call the Python API, render the result
either as rich output for people or as one JSON document for scripts (``--json``).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import json
import os
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

    def __init__(self, workspace: str | None, wait: float = 5.0):
        self.workspace_arg = workspace
        self.wait = wait

    def open(self, read_only: bool = False, guarded: bool = False):
        from forensics import workspace

        return workspace.open(self.workspace_arg, read_only=read_only, wait=self.wait,
                              guarded=guarded)

    def init(self):
        from forensics import workspace

        return workspace.init(self.workspace_arg, wait=self.wait)

    def path(self) -> Path:
        from forensics import workspace

        return workspace.resolve_path(self.workspace_arg)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(f)


def hold_seconds_option(f: Callable) -> Callable:
    """``--hold-seconds``: the ``hold_seconds`` knob of ingest and pipeline runs (None: the
    library default); see :func:`lock_knobs`."""
    return click.option(
        "--hold-seconds", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
        help="Release the workspace lock after a committed batch once it was held this long "
             "(default 2; 0: after every batch). Recorded with the run.")(f)


def commit_seconds_option(f: Callable) -> Callable:
    """``--commit-seconds``: the ``commit_seconds`` knob of index builds (None: the library
    default); see :func:`lock_knobs`."""
    return click.option(
        "--commit-seconds", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
        help="Write embedded vectors to the embedding cache (taking the workspace lock) after "
             "this many seconds of embedding (default 2; 0: after every chunk). Recorded in the "
             "manifest.")(f)


def lock_knobs(**given: float | None) -> dict[str, float]:
    """The lock timing options the user gave (``None``: left to the library's default)."""
    return {k: v for k, v in given.items() if v is not None}


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


def classify(exc: BaseException) -> ForensicsError | None:
    """The known kind of an exception that is not one of ours (disk full, out of memory, a name
    the file system refuses, a database lock, a damaged input file), as a ForensicsError with a
    hint; None for anything else."""
    import errno

    from forensics.errors import InputError, ResourceError, WorkspaceError

    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    if isinstance(exc, MemoryError) or "out of memory" in low or "failed to allocate" in low:
        return ResourceError(f"out of memory: {msg}",
                             hint="free memory or process less at once (e.g. smaller batches), "
                                  "then re-run; committed work is kept")
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "no space left" in low:
        return ResourceError(f"disk full: {msg}",
                             hint="free disk space, then re-run the same command; committed "
                                  "work is kept and the run resumes")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return InputError(f"a name is too long for the file system: {msg}",
                          hint="use a shorter dataset or file name")
    if "could not set lock" in low or "conflicting lock" in low:
        return WorkspaceError(f"the workspace is locked by another process: {msg}",
                              hint="wait for the other forensics command, or retry with --wait SECONDS")
    return None


def _write_traceback(exc: BaseException) -> str:
    import tempfile
    import time
    import traceback

    path = Path(tempfile.gettempdir()) / f"forensics-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    try:
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return "(could not be written)"
    return str(path)


def _fail(e: ForensicsError) -> None:
    err_console.print(f"[bold red]error:[/] {e.message}", markup=True, highlight=False)
    if e.hint:
        err_console.print(f"[yellow]hint:[/] {e.hint}", markup=True, highlight=False)
    sys.exit(e.exit_code)


def handle_errors(f: Callable) -> Callable:
    """The CLI's one error boundary: our errors and known failures (disk full, out of memory,
    locks, names the file system refuses) become one line + a hint and their exit code;
    anything unexpected prints one line and the path of a file holding the full traceback
    (exit 70). Ctrl-C exits 130."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ForensicsError as e:
            _fail(e)
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/] (work committed so far is kept; re-run to resume)")
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the boundary
            known = classify(e)
            if known is not None:
                _fail(known)
            from forensics.errors import INTERNAL_ERROR_EXIT

            where = _write_traceback(e)
            err_console.print(f"[bold red]internal error:[/] {type(e).__name__}: "
                              f"{(str(e).strip().splitlines() or [''])[0][:300]}",
                              markup=True, highlight=False)
            err_console.print(f"[yellow]hint:[/] full traceback in {where}; please report it",
                              markup=True, highlight=False)
            sys.exit(INTERNAL_ERROR_EXIT)

    return wrapper
