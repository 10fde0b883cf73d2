"""Ctrl-C at batch boundaries.

Why: a SIGINT that lands while DuckDB runs a statement does not surface as KeyboardInterrupt.
DuckDB's Python client calls the signal handler from inside its C++ code, and the exception it
raises there comes back wrapped in whatever DuckDB was doing ("Query interrupted", or
"InvalidInputException: reading the schema of the object registered as '_raw' failed:
KeyboardInterrupt"). Matching those messages is a losing game, and a job that cannot tell an
interrupt from a failure marks its run 'failed' and exits with the wrong code.

So long batch jobs (ingest, pipelines, NLA explain) run under :func:`deferred_interrupt`: the
first Ctrl-C only sets a flag, the job finishes the batch in flight (each batch commits whole),
then :meth:`Interrupt.check` raises a real KeyboardInterrupt at the boundary. A second Ctrl-C
interrupts at once, for a user who will not wait for the batch.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Interrupt:
    """What :func:`deferred_interrupt` yields: ``requested`` turns true on the first Ctrl-C."""

    requested: bool = False
    installed: bool = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed; call it between batches."""
        if self.requested:
            raise KeyboardInterrupt

    def explains(self, exc: BaseException) -> bool:
        """True when ``exc`` is (or was caused by) the interrupt rather than a real failure."""
        if isinstance(exc, KeyboardInterrupt) or self.requested:
            return True
        seen: set[int] = set()
        e: BaseException | None = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "InterruptException":
                return True
            msg = str(e)
            if "KeyboardInterrupt" in msg or "Query interrupted" in msg:
                return True
            e = e.__cause__ or e.__context__
        return False


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Interrupt]:
    """Defer the first SIGINT to the next :meth:`Interrupt.check`; restore the handler after.

    Outside the main thread, or when SIGINT is ignored or owned by someone else (a test runner,
    an embedding application), nothing is installed and Ctrl-C behaves as it always does.
    """
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield state
        return

    def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if state.requested:                    # second Ctrl-C: stop now
            raise KeyboardInterrupt
        state.requested = True
        try:
            sys.stderr.write("\nstopping after the batch in flight (Ctrl-C again to stop now)\n")
            sys.stderr.flush()
        except (OSError, ValueError):          # stderr closed: the flag is what matters
            pass

    signal.signal(signal.SIGINT, _handler)
    state.installed = True
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
