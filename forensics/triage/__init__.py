"""Triage: from an anomaly (prompt, reply, NLA explanations) to ranked clusters of suspect
training rows.

``anomaly.add(ws, ...)`` stores an anomaly; ``triage(ws, anomaly_id, dataset)`` runs the
signals, fuses, clusters and stores a run; ``load_run`` / ``export`` read it back.
"""

from forensics.triage.run import (SIGNALS, TriageParams, TriageResult, export, export_frame, load_run,
                                  triage)

__all__ = ["triage", "TriageParams", "TriageResult", "load_run", "export_frame", "export", "SIGNALS"]
