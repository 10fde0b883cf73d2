"""forensics._arrow: numpy views of DuckDB results without pyarrow's pandas-importing path."""

import duckdb
import numpy as np
import pytest

from forensics._arrow import flat_values, to_numpy


def test_fixed_and_variable_lists_from_duckdb():
    con = duckdb.connect()
    con.execute("CREATE TABLE t(h VARCHAR, v FLOAT[3], r BIGINT[])")
    con.execute("INSERT INTO t VALUES ('a', [1, 2, 3], [5, 6]), ('b', [4, 5, 6], []), "
                "('c', [7, 8, 9], [1])")
    tb = con.sql("SELECT * FROM t ORDER BY h").to_arrow_table()
    flat, off = flat_values(tb.column("v"))
    assert off is None and flat.dtype == np.float32
    assert flat.reshape(3, 3).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    vals, off = flat_values(tb.column("r"))
    assert vals.tolist() == [5, 6, 1] and off.tolist() == [0, 2, 2, 3]
    # a sliced array keeps its offset
    sl = tb.column("v").combine_chunks().slice(1, 2)
    assert flat_values(sl)[0].tolist() == [4, 5, 6, 7, 8, 9]


def test_nulls_and_non_primitive_types_are_refused():
    con = duckdb.connect()
    tb = con.sql("SELECT * FROM (VALUES (1), (NULL)) t(x)").to_arrow_table()
    with pytest.raises(TypeError, match="null"):
        to_numpy(tb.column("x"))
    tb = con.sql("SELECT 'a' AS s").to_arrow_table()
    with pytest.raises(TypeError):
        to_numpy(tb.column("s"))


def test_empty_and_many_chunk_results_without_importing_pandas():
    """An empty DuckDB result is a ChunkedArray with NO chunks; pyarrow's combine_chunks() on it
    imported pandas (~0.25 s of every triage CLI run whose token lookup matched nothing).
    Checked in a fresh interpreter: this test process may have pandas loaded already."""
    import subprocess
    import sys

    code = r"""
import sys, duckdb
from forensics._arrow import flat_values, to_numpy
con = duckdb.connect()
q = "SELECT [1, 2]::BIGINT[] AS r, 1.5::FLOAT AS f FROM range(?) WHERE range >= ?"
e = con.sql(q, params=[5, 5]).to_arrow_table()
assert e.column("r").num_chunks == 0
v, off = flat_values(e.column("r"))
assert v.tolist() == [] and off.tolist() == [0] and to_numpy(e.column("f")).tolist() == []
m = con.sql(q, params=[3_000_000, 0]).to_arrow_table()
assert m.column("r").num_chunks > 1
v, off = flat_values(m.column("r"))
assert len(v) == 6_000_000 and off[-1] == 6_000_000 and to_numpy(m.column("f")).sum() == 4_500_000
print("pandas" in sys.modules or "pyarrow.compute" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sliced_variable_lists_rebase_offsets():
    con = duckdb.connect()
    tb = con.sql("SELECT * FROM (VALUES ([1, 2]), ([3]), ([4, 5, 6]), ([7])) t(r)").to_arrow_table()
    arr = tb.column("r").combine_chunks().slice(1, 2)          # [[3], [4, 5, 6]]
    vals, off = flat_values(arr)
    assert vals.tolist() == [3, 4, 5, 6] and off.tolist() == [0, 1, 4]
