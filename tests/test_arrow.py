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
