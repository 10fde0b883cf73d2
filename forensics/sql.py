"""Read-only SQL over a workspace, with a guard that a query cannot talk its way past.

``read_query(path, query)`` is what ``forensics sql`` (without ``--write``) runs. Two layers:

1. **Statement types, from DuckDB's own parser** (``duckdb.extract_statements``): every statement
   in the text must be a ``SELECT`` (which covers ``WITH``, ``VALUES``, ``FROM t``, ``DESCRIBE``,
   ``SHOW``, ``SUMMARIZE``), an ``EXPLAIN`` of such a statement (``EXPLAIN ANALYZE`` runs the
   statement, so the explained text is parsed and checked too) or a ``PRAGMA`` from a short list
   of read-only ones. ``COPY``, ``ATTACH``, ``EXPORT``, ``INSTALL``/``LOAD``, ``SET``/``USE``,
   ``CALL``, DDL and DML are refused with the statement type named. DuckDB's ``query()`` table
   function accepts only a single ``SELECT`` itself.
2. **The connection**: opened ``read_only``, extensions are neither installed nor auto-loaded,
   and the configuration is locked (``lock_configuration``), so nothing inside a query can
   re-enable them.

Policy on files: a read query MAY read files through DuckDB's table functions
(``read_parquet``, ``read_csv``, ``read_json``), because pipelines write their findings as
Parquet for exactly that; it can never write, attach or export anything.
"""

from __future__ import annotations

import re
from pathlib import Path

from forensics.errors import UsageError

READ_PRAGMAS = frozenset({"table_info", "show_tables", "show_tables_expanded", "database_size",
                          "storage_info", "version", "platform", "database_list", "show",
                          "functions", "collations", "metadata_info"})

_EXPLAIN = re.compile(r"^\s*explain\s+(?:analy[sz]e\s+)?", re.IGNORECASE)
_PRAGMA_NAME = re.compile(r"^\s*pragma\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)

SAFE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
               "allow_community_extensions": False}


def check_read_only(query: str) -> None:
    """Raise :class:`UsageError` unless every statement in ``query`` only reads."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise UsageError(f"SQL error: {e}") from e
    if not statements:
        raise UsageError("no SQL statement given")
    for st in statements:
        kind = str(st.type).rsplit(".", 1)[-1]
        text = st.query
        if kind == "SELECT":
            continue
        if kind == "EXPLAIN":
            check_read_only(_EXPLAIN.sub("", text, count=1))
            continue
        if kind == "PRAGMA":
            m = _PRAGMA_NAME.match(text)
            if m and m.group(1).lower() in READ_PRAGMAS:
                continue
        raise UsageError(
            f"`forensics sql` runs read-only queries; this is a {kind} statement: "
            f"{' '.join(text.split())[:120]}",
            hint="only SELECT (WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE), EXPLAIN and read-only "
                 "PRAGMAs run without --write; add --write to change the workspace",
        )


def connect_read_only(db_path: str | Path):
    """A DuckDB connection to ``db_path`` that cannot write, load extensions or change its own
    configuration."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True, config=dict(SAFE_CONFIG))
    con.execute("SET enable_progress_bar = false")   # stdout is a command's --json document
    con.execute("SET lock_configuration = true")
    return con


__all__ = ["check_read_only", "connect_read_only", "READ_PRAGMAS"]
