import duckdb
import pytest

import forensics
from forensics import store
from forensics.errors import WorkspaceError


def test_init_creates_schema_and_is_idempotent(tmp_path, cli):
    p = tmp_path / "w"
    out = cli("init", "--json", workspace=p).json()
    assert out["schema_version"] == store.latest_version()
    assert (p / "forensics.duckdb").exists() and (p / "indexes").is_dir()
    again = cli("init", "--json", workspace=p).json()
    assert again["schema_version"] == out["schema_version"]
    with forensics.open(p) as ws:
        tables = set(ws.sql("SELECT table_name FROM information_schema.tables")["table_name"])
    for t in ["datasets", "samples", "rejects", "explanations", "anomalies", "triage_runs",
              "findings", "clusters", "quality_findings", "v_findings", "v_quality_findings"]:
        assert t in tables


def test_missing_and_foreign_workspace_refused(tmp_path, cli):
    r = cli("sql", "SELECT 1", workspace=tmp_path / "nope", check=False)
    assert r.returncode == 3 and "does not exist" in r.stderr and "forensics" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("sql", "SELECT 1", workspace=empty, check=False)
    assert r.returncode == 3 and "forensics.duckdb is missing" in r.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    con = duckdb.connect(str(foreign / "forensics.duckdb"))
    con.execute("CREATE TABLE t(x INT)")
    con.close()
    r = cli("sql", "SELECT 1", workspace=foreign, check=False)
    assert r.returncode == 3 and "not an nla-forensics workspace" in r.stderr
    with pytest.raises(WorkspaceError):
        forensics.open(foreign)


def test_workspace_from_env(tmp_path, cli):
    p = tmp_path / "envws"
    cli("init", workspace=p)
    r = cli("sql", "SELECT count(*) AS n FROM samples", "--json", env={"FORENSICS_WORKSPACE": str(p)})
    assert r.json() == [{"n": 0}]


def test_sql_read_only_guard_and_formats(ws_path, cli, tmp_path):
    r = cli("sql", "INSERT INTO datasets (name) VALUES ('x')", workspace=ws_path, check=False)
    assert r.returncode == 2 and "--write" in r.stderr
    cli("sql", "INSERT INTO datasets (name) VALUES ('x')", "--write", workspace=ws_path)
    assert cli("sql", "SELECT name FROM datasets", "--json", workspace=ws_path).json() == [{"name": "x"}]
    csv = cli("sql", "SELECT name FROM datasets", "--format", "csv", workspace=ws_path).stdout
    assert csv.splitlines() == ["name", "x"]
    pq = tmp_path / "o.parquet"
    cli("sql", "SELECT name FROM datasets", "--format", "parquet", "-o", pq, workspace=ws_path)
    import polars as pl
    assert pl.read_parquet(pq)["name"].to_list() == ["x"]
    bad = cli("sql", "SELEC nonsense", workspace=ws_path, check=False)
    assert bad.returncode == 2 and "SQL error" in bad.stderr


def test_python_api_returns_polars(ws_path):
    import polars as pl
    with forensics.open(ws_path) as ws:
        df = ws.sql("SELECT 1 AS a")
    assert isinstance(df, pl.DataFrame) and df["a"].to_list() == [1]


def test_migrations_are_numbered_one_to_n():
    assert [m.version for m in store.MIGRATIONS] == list(range(1, len(store.MIGRATIONS) + 1))
    # the legacy numbering covers migrations 2..k (those older releases had); later ones have none
    legacy = sorted(store.LEGACY_VERSIONS.values())
    assert legacy == list(range(2, legacy[-1] + 1)) and legacy[-1] <= len(store.MIGRATIONS)


def test_unrecorded_migration_applied_to_existing_workspace(ws_path, cli):
    """open() applies every unrecorded migration, not only those above the max."""
    with forensics.open(ws_path) as ws:
        ws.execute("DELETE FROM schema_version WHERE version = 2")
        ws.execute("ALTER TABLE ingest_progress DROP COLUMN bytes_done")
        assert 2 in store.pending(ws.con)
    with forensics.open(ws_path) as ws:
        assert store.pending(ws.con) == []
        cols = set(ws.sql("SELECT column_name FROM information_schema.columns "
                          "WHERE table_name = 'ingest_progress'")["column_name"])
    assert "bytes_done" in cols


_LEGACY = {2: 10, 3: 11, 4: 30, 5: 40, 6: 50}     # new version -> the number older releases used


def _legacy_workspace(root, legacy_applied: list[int]):
    """A workspace as older releases left it: migration 1 plus the migrations whose legacy
    numbers are in ``legacy_applied``, recorded under those numbers."""
    root.mkdir()
    (root / "indexes").mkdir()
    con = duckdb.connect(str(root / "forensics.duckdb"))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR,"
                " applied_at TIMESTAMP DEFAULT current_timestamp)")
    by_version = {m.version: m for m in store.MIGRATIONS}
    con.execute(store._V1)
    con.execute("INSERT INTO schema_version (version, description) VALUES (1, ?)",
                [by_version[1].description])
    for new, old in _LEGACY.items():
        if old in legacy_applied:
            con.execute(by_version[new].sql)
            con.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)",
                        [old, by_version[new].description])
    con.execute("INSERT INTO workspace_meta VALUES ('product', ?)", [store.PRODUCT_MARKER])
    con.execute("INSERT INTO datasets (name) VALUES ('d')")
    con.execute("INSERT INTO samples (sample_id, dataset, row_id, prompt, reply, content_hash) "
                "VALUES (1, 'd', 'r1', 'p', 'r', 'h')")
    con.close()


@pytest.mark.parametrize("legacy_applied", [[30, 40, 50], [10, 11, 30, 40, 50]])
def test_workspace_with_legacy_migration_numbers_opens_and_migrates(tmp_path, legacy_applied, cli):
    """Older releases recorded per-area numbers (1, 10, 11, 30, 40, 50) and could leave a
    workspace at 50 without 10 and 11. Opening renumbers the recorded rows to 1..N, applies
    what is missing exactly once, and keeps the data."""
    root = tmp_path / "old"
    _legacy_workspace(root, legacy_applied)
    with forensics.open(root, read_only=True) as ws:
        rows = ws.rows("SELECT version, description FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, store.latest_version() + 1))
        assert [r[1] for r in rows] == [m.description for m in store.MIGRATIONS]
        assert ws.schema_version() == store.latest_version() and store.pending(ws.con) == []
        cols = set(ws.sql("SELECT column_name FROM information_schema.columns "
                          "WHERE table_name = 'ingest_progress'")["column_name"])
        assert "bytes_done" in cols
        assert "USING COMPRESSION ZSTD" in ws.one(
            "SELECT sql FROM duckdb_tables() WHERE table_name = 'samples'")[0]
        assert ws.rows("SELECT row_id, prompt FROM samples") == [("r1", "p")]
        assert ws.one("SELECT count(*) FROM pipeline_state")[0] == 0
        assert ws.one("SELECT count(*) FROM explain_runs")[0] == 0
    con = duckdb.connect(str(root / "forensics.duckdb"))
    assert store.migrate(con) == []                     # renumbered once, nothing re-applied
    con.close()
    out = cli("init", "--json", workspace=root).json()
    assert out["schema_version"] == store.latest_version()


def test_cli_module_that_fails_to_import_is_an_error():
    """A missing or broken CLI module stops the CLI with its error, not a silently absent command."""
    import click

    from forensics import cli

    assert set(cli.MODULES) >= {"core", "pipeline", "nla", "nla_train", "report"}
    with pytest.raises(ModuleNotFoundError, match="forensics.cli.not_an_area"):
        cli._register(click.Group(), ("core", "not_an_area"))
    for name in ("init", "sql", "pipeline", "nla", "explain", "probe", "report"):
        assert name in cli.main.commands
