"""Ingest: training files (JSONL, JSON arrays, Parquet, CSV/TSV, HF datasets) into ``samples``.

``ingest(ws, paths, dataset, ...) -> IngestSummary`` is the entry point; ``stats`` and
``datasets`` describe what is stored.

Modules: ``sources`` (path resolution, format detection, file signatures, the batch unit),
``readers`` (per-format batch readers, the prefetch thread), ``jsonarray`` (JSON arrays and
their recovery when damaged), ``csvfile`` (strict CSV/TSV with true line numbers), ``parse`` (the SQL parse pass and :class:`IngestOptions`),
``engine`` (the per-batch transaction, resume, ``ingest()``), ``stats``.
"""

from forensics.ingest.engine import FileSummary, IngestSummary, ingest
from forensics.ingest.parse import DEFAULT_BATCH_ROWS, DEFAULT_MAX_CHARS, IngestOptions
from forensics.ingest.sources import SUPPORTED_EXT, resolve_sources
from forensics.ingest.stats import datasets, stats

__all__ = ["ingest", "stats", "datasets", "IngestOptions", "IngestSummary", "FileSummary",
           "resolve_sources", "DEFAULT_BATCH_ROWS", "DEFAULT_MAX_CHARS", "SUPPORTED_EXT"]
