"""Errors with exit codes, so the CLI can map failures to meaningful statuses.

Exit codes (documented in the README):
  0 success · 1 a check found problems (verify, pipeline with errors) · 2 bad usage or bad input
  3 workspace missing, foreign or locked · 4 a resource is stale or missing (index, NLA) ·
  5 an external backend failed (HTTP server, model load) · 6 the machine ran out of a resource
  (disk full, out of memory) · 70 an unexpected internal error (traceback written to a file)
"""

from __future__ import annotations


class ForensicsError(Exception):
    """Base error. ``hint`` tells the user what to do next."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\nHint: {self.hint}" if self.hint else "")


class UsageError(ForensicsError):
    exit_code = 2


class InputError(ForensicsError):
    """Bad user input: a file, line or field is named in the message."""

    exit_code = 2


class WorkspaceError(ForensicsError):
    exit_code = 3


class StaleError(ForensicsError):
    exit_code = 4


class NotFoundError(ForensicsError):
    exit_code = 4


class BackendError(ForensicsError):
    exit_code = 5


class CheckFailed(ForensicsError):
    exit_code = 1


class ResourceError(ForensicsError):
    """Disk full, out of memory: nothing is wrong with the input; free the resource and re-run
    (committed work is kept)."""

    exit_code = 6


INTERNAL_ERROR_EXIT = 70
