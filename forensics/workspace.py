"""A workspace: one directory with ``forensics.duckdb`` and ``indexes/``.

Why a class and no module-level connection: a notebook may hold several workspaces, and
DuckDB allows one writer per file across processes, so connections are opened per
workspace object and closed promptly (``with forensics.open(p) as ws: ...``).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import duckdb
import polars as pl

from forensics import store
from forensics.errors import InputError, NotFoundError, WorkspaceError

DB_NAME = "forensics.duckdb"
INDEX_DIR = "indexes"
ENV_VAR = "FORENSICS_WORKSPACE"
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_WAIT = 5.0   # seconds a command waits for another process's lock on the database
POLL_SECONDS = 0.1   # the longest a waiting command sleeps between two tries to open it


@dataclass
class LockParams:
    """How long a job keeps the workspace open between its reads and writes
    (:meth:`Workspace.lingering`): triage (``TriageParams.lock``), explain anomaly, nla train
    and influence scoring; no effect on any result."""

    linger_seconds: float = 0.3       # closed once unused this long (0: after every read)
    hold_seconds: float = 2.0         # open this long through back-to-back reads: released


def check_dataset_name(name: str) -> str:
    """The one rule for dataset names, applied wherever a dataset is created: 1-64 characters
    from letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit (a name is also a
    directory name under ``indexes/``). Returns the name; raises InputError otherwise."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise InputError(
            f"dataset name {name!r} is not allowed (field: --dataset)",
            hint="use 1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit, "
                 "e.g. train-v2",
        )
    return name


def resolve_path(path: str | os.PathLike | None) -> Path:
    """Explicit path, else $FORENSICS_WORKSPACE, else the current directory."""
    if path is None:
        path = os.environ.get(ENV_VAR) or "."
    return Path(path).expanduser().resolve()


class Workspace:
    """Handle on a workspace directory. Create with :func:`init` or :func:`open`."""

    def __init__(self, root: Path, read_only: bool = False, wait: float = DEFAULT_WAIT,
                 guarded: bool = False):
        self.root = Path(root)
        self.read_only = read_only
        self.wait = max(0.0, float(wait))
        self.guarded = guarded
        self._con: duckdb.DuckDBPyConnection | None = None
        self._holds = 0     # depth of enclosing ``locked()`` scopes
        self._linger = 0.0  # seconds a released scope keeps the connection (see lingering())
        self._mutex = threading.RLock()   # the connection vs the linger timer's close
        self._timer: threading.Timer | None = None
        self._hold_cap = float("inf")   # lingering(): longest a connection is kept open
        self._opened_at = 0.0
        self._lingering_depth = 0   # enclosing lingering() blocks

    # ------------------------------------------------------------------ paths
    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def indexes_dir(self) -> Path:
        return self.root / INDEX_DIR

    # ------------------------------------------------------------------ connection
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The open DuckDB connection (opened lazily). Using it outside a :meth:`locked`
        scope cancels a pending linger close (the connection then stays open until released)."""
        with self._mutex:
            self._cancel_linger()
            if self._con is None:
                self._con = self._connect()
                self._opened_at = time.monotonic()
            return self._con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Connect, retrying while another process holds the file lock, for at most
        ``self.wait`` seconds (DuckDB lets one process write, or several read, at a time)."""
        deadline = time.monotonic() + self.wait
        delay = 0.05
        while True:
            try:
                if self.guarded:
                    from forensics.sql import connect_read_only

                    return connect_read_only(self.db_path)
                con = duckdb.connect(str(self.db_path), read_only=self.read_only)
                # DuckDB draws a progress bar on stdout for queries over 2 s, which would
                # corrupt a command's --json document (seen on a 1M-row index build)
                con.execute("SET enable_progress_bar = false")
                return con
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise
                if time.monotonic() + delay > deadline:
                    raise WorkspaceError(
                        f"cannot open {self.db_path}: another process holds its lock "
                        f"(waited {self.wait:g} s)",
                        hint="another forensics command is using this workspace; wait for it to "
                             "finish, or retry with a longer --wait SECONDS",
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, POLL_SECONDS)

    def close(self) -> None:
        with self._mutex:
            self._cancel_linger()
            if self._con is not None:
                self._con.close()
                self._con = None

    def _cancel_linger(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _linger_expired(self, timer: threading.Timer) -> None:
        with self._mutex:    # closes only if nothing used the connection since it was scheduled
            if self._timer is timer and not self._holds:
                self._timer = None
                if self._con is not None:
                    self._con.close()
                    self._con = None

    def release_soon(self) -> None:
        """Close the connection once it has been unused for the :meth:`lingering` delay (at
        once outside a ``lingering`` block, like :meth:`release`); a :meth:`locked` scope or
        a use of :attr:`con` before then keeps it. A no-op inside a ``locked`` scope."""
        with self._mutex:
            if self._holds or self._con is None:
                return
            if self._linger <= 0:
                self.release()
                return
            if time.monotonic() - self._opened_at >= self._hold_cap:
                # held this long through back-to-back reads: let a waiting command in
                self.release(pause=2 * POLL_SECONDS)
                return
            self._cancel_linger()
            timer = threading.Timer(self._linger, lambda: self._linger_expired(timer))
            timer.daemon = True
            self._timer = timer
            timer.start()

    @contextlib.contextmanager
    def lingering(self, seconds: float, hold: float = float("inf")) -> Iterator[None]:
        """Inside the block, the end of an outermost :meth:`locked` scope closes the connection
        only after it has stayed unused for ``seconds`` (a timer thread closes it), so a job
        whose reads and writes come in quick succession opens the database once for a run of
        them instead of once each (an open costs tens of ms), and a command waiting for the
        lock still gets in within ``seconds`` plus its poll once the job computes. ``hold``:
        a scope ending when the connection has been open this long releases it at once and
        pauses ``2 * POLL_SECONDS`` (a waiting command gets in between back-to-back reads).
        ``seconds`` 0: release at once. At the block's end the same rule applies (the timer
        closes the connection ``seconds`` later unless a ``locked`` scope holds it or it is used
        again first), so jobs run back to back share one open too."""
        with self._mutex:
            outer = (self._linger, self._hold_cap)
            self._linger, self._hold_cap = max(0.0, float(seconds)), max(0.0, float(hold))
            self._lingering_depth += 1
        try:
            yield
        finally:
            with self._mutex:
                self._lingering_depth -= 1
                self.release_soon()   # with the block's delay: a job run right after reuses it
                self._linger, self._hold_cap = outer

    @contextlib.contextmanager
    def lingering_for(self, lock: "LockParams | None") -> Iterator["LockParams"]:
        """:meth:`lingering` with a job's ``lock`` params; yields the params in force (for the
        job to record). ``None``: inside another ``lingering`` block (a triage calling
        influence scoring) that block's settings stay, else :class:`LockParams` defaults."""
        if lock is None and self._lingering_depth:
            yield LockParams(self._linger, self._hold_cap)
            return
        lock = lock or LockParams()
        with self.lingering(lock.linger_seconds, lock.hold_seconds):
            yield lock

    def release(self, pause: float = 0.0) -> bool:
        """Close the connection so other processes can open the database (DuckDB's file lock
        goes with it); the next use of :attr:`con` reopens it, waiting up to ``wait`` seconds.
        ``pause``: then sleep that long, so a command waiting for the lock (it tries every
        ``POLL_SECONDS``) gets in before this process takes it back; a job whose next step
        is ready at once needs that, one that computes for seconds first does not.
        A no-op inside a :meth:`locked` scope, so a caller can keep the lock across a job by
        wrapping the job in ``with ws.locked():``. Returns whether the connection was closed.
        Relations and cursors of the closed connection become unusable."""
        with self._mutex:
            if self._holds or self._con is None:
                return False
            self.close()
        if pause > 0:
            time.sleep(pause)
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """``with ws.locked() as con:`` holds the connection (and so the database lock) for
        the block, then releases it when this is the outermost scope. Long jobs read their
        inputs and commit their results in such scopes and compute between them with the
        workspace closed, so ``forensics sql`` and other commands get in between commits.
        Combine with :meth:`transaction` for a short write:
        ``with ws.locked(), ws.transaction() as con: ...``. Inside :meth:`lingering`, the
        outermost scope's end closes the connection after the linger delay instead."""
        with self._mutex:
            con = self.con
            self._holds += 1
        try:
            yield con
        finally:
            with self._mutex:
                self._holds -= 1
                if not self._holds:
                    self.release_soon()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ------------------------------------------------------------------ queries
    def sql(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run SQL and return a polars DataFrame (empty frame for statements)."""
        rel = self.con.sql(query, params=list(params) if params else None)
        if rel is None:
            return pl.DataFrame()
        return rel.pl()

    def one(self, query: str, params: Sequence[Any] | None = None) -> tuple | None:
        """First row or None. Consumes the whole result: DuckDB 2 refuses new work on a
        connection whose previous ``execute`` result was not read to the end."""
        rows = self.con.execute(query, params or []).fetchall()
        return rows[0] if rows else None

    def rows(self, query: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self.con.execute(query, params or []).fetchall()

    def execute(self, query: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params or [])

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        self.con.executemany(query, list(rows))

    @contextlib.contextmanager
    def transaction(self, con: duckdb.DuckDBPyConnection | None = None
                    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """``with ws.transaction() as con:`` runs the block in one DuckDB transaction: COMMIT
        when it ends normally, ROLLBACK on any exception (re-raised), including
        KeyboardInterrupt. ``con`` defaults to the workspace connection (pass a cursor to
        commit on it instead). Not re-entrant: nested use raises DuckDB's own error."""
        with store.transaction(self.con if con is None else con) as c:
            yield c

    def next_id(self, sequence: str) -> int:
        """Next value of one of the schema's sequences (e.g. ``anomaly_id_seq``)."""
        return int(self.one(f"SELECT nextval('{_ident(sequence)}')")[0])

    # ------------------------------------------------------------------ datasets
    def datasets(self) -> pl.DataFrame:
        return self.sql(
            "SELECT d.name AS dataset, count(s.sample_id) AS samples, d.version, d.created_at, "
            "d.updated_at FROM datasets d LEFT JOIN samples s ON s.dataset = d.name "
            "GROUP BY ALL ORDER BY d.name"
        )

    def require_dataset(self, name: str) -> None:
        row = self.one("SELECT 1 FROM datasets WHERE name = ?", [name])
        if row is None:
            known = [r[0] for r in self.rows("SELECT name FROM datasets ORDER BY 1")]
            raise NotFoundError(
                f"dataset {name!r} not found in {self.root}",
                hint=("known datasets: " + ", ".join(known)) if known
                else "ingest one first: forensics ingest FILE --dataset NAME",
            )

    def ensure_dataset(self, name: str, description: str | None = None) -> None:
        """Create the dataset row if missing (the name must pass :func:`check_dataset_name`)."""
        check_dataset_name(name)
        self.con.execute(
            "INSERT INTO datasets (name, description) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [name, description],
        )

    def bump_dataset_version(self, name: str) -> int:
        """Record that a dataset's samples changed, so indexes built earlier show as stale."""
        self.con.execute(
            "UPDATE datasets SET version = version + 1, updated_at = current_timestamp WHERE name = ?",
            [name],
        )
        return self.dataset_version(name)

    def dataset_version(self, name: str) -> int:
        row = self.one("SELECT version FROM datasets WHERE name = ?", [name])
        if row is None:
            self.require_dataset(name)
        return int(row[0])

    # ------------------------------------------------------------------ meta
    def schema_version(self) -> int:
        return store.current_version(self.con)


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad identifier {name!r}")
    return name


def init(path: str | os.PathLike | None = None, wait: float = DEFAULT_WAIT) -> Workspace:
    """Create (or upgrade) a workspace directory and return it open for writing.

    Idempotent: running it on an existing workspace applies pending migrations only. ``wait``:
    seconds to wait for another process's lock on the database before failing (exit 3).
    """
    root = resolve_path(path)
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} exists and is not a directory")
    db = root / DB_NAME
    if root.exists() and db.exists():
        ws = open(root, wait=wait)  # validates the marker, migrates
        return ws
    root.mkdir(parents=True, exist_ok=True)
    (root / INDEX_DIR).mkdir(exist_ok=True)
    ws = Workspace(root, wait=wait)
    store.migrate(ws.con)
    ws.con.execute(
        "INSERT INTO workspace_meta VALUES ('product', ?), ('created_by_version', ?) "
        "ON CONFLICT DO NOTHING",
        [store.PRODUCT_MARKER, _version()],
    )
    return ws


def open(path: str | os.PathLike | None = None, read_only: bool = False,  # noqa: A001
         wait: float = DEFAULT_WAIT, guarded: bool = False) -> Workspace:
    """Open an existing workspace; refuse a missing or foreign directory with a clear message.

    ``wait``: seconds to wait for another process's lock (then exit 3). ``guarded`` (implies
    ``read_only``): the connection cannot load extensions or change its configuration, as
    :mod:`forensics.sql` requires for user-typed queries.
    """
    read_only = read_only or guarded
    root = resolve_path(path)
    db = root / DB_NAME
    if not root.is_dir():
        raise WorkspaceError(
            f"no workspace at {root}: the directory does not exist",
            hint=f"create one with: forensics --workspace {root} init",
        )
    if not db.exists():
        raise WorkspaceError(
            f"no workspace at {root}: {DB_NAME} is missing",
            hint=f"create one with: forensics --workspace {root} init "
                 f"(or point --workspace / ${ENV_VAR} at an existing workspace)",
        )
    ws = Workspace(root, read_only=read_only, wait=wait, guarded=guarded)
    try:
        marker = ws.one("SELECT value FROM workspace_meta WHERE key = 'product'")
    except duckdb.Error:
        marker = None
    if marker is None or marker[0] != store.PRODUCT_MARKER:
        ws.close()
        raise WorkspaceError(
            f"{db} is not an nla-forensics workspace (foreign DuckDB file)",
            hint="choose another directory, or run forensics init in an empty one",
        )
    if store.pending(ws.con):
        if read_only:
            ws.close()
            rw = Workspace(root, wait=wait)
            store.migrate(rw.con)
            rw.close()
            ws = Workspace(root, read_only=True, wait=wait, guarded=guarded)
        else:
            store.migrate(ws.con)
    (root / INDEX_DIR).mkdir(exist_ok=True)
    return ws


def _version() -> str:
    from forensics import __version__

    return __version__
