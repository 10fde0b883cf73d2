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


def to_numpy(arr) -> np.ndarray:
    """A read-only numpy view of a null-free primitive pyarrow Array (or ChunkedArray)."""
    if hasattr(arr, "combine_chunks"):
        arr = arr.combine_chunks()
    dtype = _DTYPES.get(str(arr.type))
    if dtype is None or arr.null_count:
        raise TypeError(f"to_numpy: want a null-free primitive array, got {arr.type} "
                        f"with {arr.null_count} nulls")
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * np.dtype(dtype).itemsize)


def flat_values(list_arr) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of a (fixed-size) list column as one flat array, plus the offsets for
    variable-size lists (None for fixed-size ones)."""
    if hasattr(list_arr, "combine_chunks"):
        list_arr = list_arr.combine_chunks()
    offsets = getattr(list_arr, "offsets", None)
    return to_numpy(list_arr.flatten()), (to_numpy(offsets) if offsets is not None else None)
