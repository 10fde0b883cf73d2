"""Data-quality pipelines: declarative checks over whole datasets, local or on Ray.

Python API (the CLI is a thin layer over it)::

    from forensics.quality import Pipeline, ReadSamples, MistranslationCheck, WriteFindings
    from forensics.quality import run_pipeline, load_pipeline

    p = Pipeline([ReadSamples(), MistranslationCheck(min_conf=0.6), WriteFindings()],
                 name="my-check")
    with forensics.open("ws") as ws:
        result = run_pipeline(ws, p, "train", engine="local", workers=2)
        ws.sql("SELECT * FROM v_quality_findings WHERE pipeline_run_id = ?", [result.pipeline_run_id])

    load_pipeline("duplicates")        # a shipped definition, or a path to a TOML file
"""

from forensics.quality.checks import DuplicatesCheck, HygieneCheck, MistranslationCheck
from forensics.quality.core import (Batch, Finding, Pipeline, Step, StepStats, builtin_pipelines, load_pipeline,
                   register, step_types)
from forensics.quality.engine import RunResult, process_batch, run_pipeline
from forensics.quality.steps import Normalize, ReadParquet, ReadSamples, RequireText, Truncate, WriteFindings, WriteParquet

__all__ = ["Pipeline", "Step", "StepStats", "Finding", "Batch", "register", "step_types",
           "load_pipeline", "builtin_pipelines", "run_pipeline", "RunResult", "process_batch",
           "ReadSamples", "ReadParquet", "Truncate", "Normalize", "RequireText", "WriteFindings",
           "WriteParquet", "MistranslationCheck", "DuplicatesCheck", "HygieneCheck"]
