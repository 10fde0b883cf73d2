"""Arrow -> numpy without pandas.

Why: pyarrow's ``Array.to_numpy()`` imports pandas on first use (~0.3 s), and a triage or
search CLI run that reads a few vectors or postings from DuckDB would pay it on every start.
For the primitive, null-free columns we store (float vectors, integer row ids) the data
buffer can be viewed directly.
"""

from __future__ import annotations

import numpy as np

_DTYPES = {"float": np.float32, "double": np.float64, "int8": np.int8, "int16": np.int16,
           "int32": np.int32, "int64": np.int64, "uint32": np.uint32, "uint64": np.uint64}


def _one_array(arr):
    """A ChunkedArray as one Array. ``combine_chunks()`` of a ChunkedArray with NO chunks (an
    empty query result) builds the empty array from a Python list, and that imports pandas
    (~0.25 s of a triage CLI run whose token lookup found nothing); 0 and 1 chunks avoid it."""
    if not hasattr(arr, "combine_chunks"):
        return arr
    if arr.num_chunks == 1:
        return arr.chunk(0)
    if arr.num_chunks == 0:
        import pyarrow as pa

        return pa.nulls(0, arr.type)      # typed empty array, no Python-sequence conversion
    return arr.combine_chunks()


def to_numpy(arr) -> np.ndarray:
    """A read-only numpy view of a null-free primitive pyarrow Array (or ChunkedArray)."""
    arr = _one_array(arr)
    if not len(arr):
        dtype = _DTYPES.get(str(arr.type))
        if dtype is None:
            raise TypeError(f"to_numpy: want a primitive array, got {arr.type}")
        return np.empty(0, dtype)
    dtype = _DTYPES.get(str(arr.type))
    if dtype is None or arr.null_count:
        raise TypeError(f"to_numpy: want a null-free primitive array, got {arr.type} "
                        f"with {arr.null_count} nulls")
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * np.dtype(dtype).itemsize)


def flat_values(list_arr) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of a (fixed-size) list column as one flat array, plus the offsets for
    variable-size lists (None for fixed-size ones)."""
    # ``.values`` + offsets rather than ``.flatten()``: flatten imports pyarrow.compute
    # (~45 ms of a CLI run). Null-free lists only (what DuckDB ARRAY/LIST columns we store hold).
    list_arr = _one_array(list_arr)
    vals = to_numpy(list_arr.values)
    offsets = getattr(list_arr, "offsets", None)
    if offsets is None:                              # fixed-size list: slice by the array offset
        size = list_arr.type.list_size
        return vals[list_arr.offset * size:(list_arr.offset + len(list_arr)) * size], None
    off = to_numpy(offsets)
    if not len(off):
        return vals[:0], np.zeros(1, off.dtype)
    return vals[off[0]:off[-1]], off - off[0]        # a sliced array's offsets start above 0
