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


def test_lower_numbered_migration_applied_to_existing_workspace(ws_path, cli):
    """Areas number migrations in their own ranges, so a workspace can be at v50 and still
    miss v10: open() must apply every unrecorded migration, not only those above the max."""
    with forensics.open(ws_path) as ws:
        ws.execute("DELETE FROM schema_version WHERE version = 10")
        ws.execute("ALTER TABLE ingest_progress DROP COLUMN bytes_done")
        assert 10 in store.pending(ws.con)
    with forensics.open(ws_path) as ws:
        assert store.pending(ws.con) == []
        cols = set(ws.sql("SELECT column_name FROM information_schema.columns "
                          "WHERE table_name = 'ingest_progress'")["column_name"])
    assert "bytes_done" in cols
