"""Ingest: training files (JSONL, JSON arrays, Parquet, CSV/TSV, HF datasets) into ``samples``.

``ingest(ws, paths, dataset, ...) -> IngestSummary`` is the entry point; ``stats`` and
``datasets`` describe what is stored.
"""

from forensics.ingest.engine import (DEFAULT_BATCH_ROWS, DEFAULT_MAX_CHARS, SUPPORTED_EXT, FileSummary,
                                     IngestOptions, IngestSummary, datasets, ingest, resolve_sources,
                                     stats)

__all__ = ["ingest", "stats", "datasets", "IngestOptions", "IngestSummary", "FileSummary",
           "resolve_sources", "DEFAULT_BATCH_ROWS", "DEFAULT_MAX_CHARS", "SUPPORTED_EXT"]
