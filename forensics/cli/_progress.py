"""The CLI's renderer of :class:`forensics.progress.Progress`: rich bars and notes on stderr
(stdout stays clean for ``--json``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console


class RichProgress:
    """Bars for tasks (units done, rate, elapsed; a spinner when the total is unknown), dim
    lines for notes. Use as a context manager so the live display is stopped on exit."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.enabled = enabled
        self._bars: Any = None

    def _ensure(self) -> Any:
        if self._bars is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)

            self._bars = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=self.console, transient=False)
            self._bars.start()
        return self._bars

    def start(self, label: str, total: int | None = None) -> int:
        if not self.enabled:
            return 0
        return int(self._ensure().add_task(label, total=total))

    def advance(self, task: int, n: int = 1) -> None:
        if self.enabled and self._bars is not None:
            self._bars.advance(task, n)

    def note(self, message: str) -> None:
        if self.enabled:   # messages carry data (paths, dataset names): never read as markup
            from rich.markup import escape

            self.console.print(f"[dim]{escape(message)}[/]", markup=True, highlight=False)

    def finish(self, task: int) -> None:
        if self.enabled and self._bars is not None:
            t = self._bars.tasks[[x.id for x in self._bars.tasks].index(task)]
            if t.total is None:
                self._bars.update(task, total=t.completed)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
