"""One progress protocol for every long job (ingest, embedding, index builds, pipelines, NLA
explain and training, triage).

The library reports progress through a :class:`Progress` callback object and never prints:
a notebook passes nothing (silent), the CLI passes a rich renderer (``forensics.cli._progress``),
a Ray driver can forward events wherever it likes. Contract:

- ``task = progress.start(label, total)`` opens a task (``total`` may be ``None`` when unknown);
- ``progress.advance(task, n)`` records ``n`` more units done;
- ``progress.note(message)`` is a one-line status message (phase changes, timings, warnings);
- ``progress.finish(task)`` closes the task.

Callbacks must be cheap and must not raise; the library calls them from its own thread only.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """Receives progress events from a long job."""

    def start(self, label: str, total: int | None = None) -> int: ...

    def advance(self, task: int, n: int = 1) -> None: ...

    def note(self, message: str) -> None: ...

    def finish(self, task: int) -> None: ...


class Silent:
    """The default: drops every event."""

    def start(self, label: str, total: int | None = None) -> int:
        return 0

    def advance(self, task: int, n: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self, task: int) -> None:
        pass


class Recorder:
    """Keeps every event in ``events`` (tests, notebooks that want a log)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._next = 0

    def start(self, label: str, total: int | None = None) -> int:
        self._next += 1
        self.events.append(("start", self._next, label, total))
        return self._next

    def advance(self, task: int, n: int = 1) -> None:
        self.events.append(("advance", task, n))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def finish(self, task: int) -> None:
        self.events.append(("finish", task))

    @property
    def notes(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "note"]


SILENT = Silent()


def resolve(progress: Progress | None) -> Progress:
    """``progress`` itself, or the silent default when ``None``."""
    return SILENT if progress is None else progress


__all__ = ["Progress", "Silent", "Recorder", "SILENT", "resolve"]
