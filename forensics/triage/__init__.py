"""Triage: from an anomaly (prompt, reply, NLA explanations) to ranked clusters of suspect
training rows.

``anomaly.add(ws, ...)`` stores an anomaly; ``triage(ws, anomaly_id, dataset)`` runs the
registered signals, fuses, clusters, profiles and stores a run; ``load_run`` / ``export`` read
it back. Parameters: :class:`TriageParams`; signals: :mod:`forensics.triage.signals`.
"""

from forensics.triage.params import ClusterParams, FusionParams, ProfileParams, TriageParams
from forensics.triage.run import TriageResult, fuse, triage
from forensics.triage.signals.base import (SignalContext, SignalScores, Unavailable, register,
                                           registered, unregister)
from forensics.triage.store import export, export_frame, load_run

SIGNALS = tuple(registered())

__all__ = ["triage", "TriageParams", "FusionParams", "ClusterParams", "ProfileParams",
           "TriageResult", "fuse", "load_run", "export_frame", "export", "SIGNALS",
           "SignalContext", "SignalScores", "Unavailable", "register", "unregister", "registered"]
