"""The signal protocol: what a triage signal is, what it sees, what it returns, and the registry.

A signal is a small class with

- ``name``: the key of its scores, weight and parameters (``"language"``, ``"phrase"``...);
- ``Params``: a dataclass of its knobs (every field documented in docs/triage.md); the run's
  :class:`~forensics.triage.params.TriageParams` holds one instance per signal and stores it
  with the run;
- ``default_weight``: its relative weight in the fusion (the run normalises the weights);
- ``score(context, params) -> SignalScores | Unavailable``.

:class:`SignalScores` holds one score in [0, 1] per dataset row plus evidence: a summary for the
run record (``triage_runs.summary``), optional per-row evidence arrays, index versions, and
notes. :class:`Unavailable` says why the signal cannot score this anomaly/dataset (shown to
the user, never a silent zero).

Adding a signal: one file defining the class, decorated with :func:`register` (or registered
by a caller with ``register(MySignal)``); the fusion, the findings' per-signal scores, the
stored parameters and ``signals_used`` / ``signals_unavailable`` pick it up by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from forensics.progress import Progress
    from forensics.triage.anomaly import Anomaly
    from forensics.triage.indexes import IndexCache
    from forensics.triage.rows import RowFeatures
    from forensics.triage.signals.language import LanguageTarget
    from forensics.triage.text import Hits
    from forensics.workspace import Workspace


@dataclass
class SignalContext:
    """Everything a signal may read: the anomaly, the dataset's rows (``frame`` in
    ``sample_id`` order, see :class:`~forensics.triage.rows.RowFeatures`), n-gram lookups over
    the normalised reply / prompt columns, the run's index cache, and the anomaly's language
    behaviour (``language_target``: a switch or an ignored request; inactive when it shows
    none)."""

    ws: "Workspace"
    dataset: str
    anomaly: "Anomaly"
    rows: "RowFeatures"
    sample_ids: np.ndarray
    hits_reply: "Hits"
    hits_prompt: "Hits"
    indexes: "IndexCache"
    language_target: "LanguageTarget"
    progress: "Progress | None" = None
    context_params: Any = None        # the run's ContextParams (the context split)
    started: float = field(default_factory=time.perf_counter)
    explanation_samples: str = "best"  # TriageParams.explanation_samples

    @property
    def frame(self) -> "pl.DataFrame":
        return self.rows.frame

    @property
    def n(self) -> int:
        return int(self.rows.frame.height)

    @cached_property
    def position(self) -> dict[int, int]:
        """sample_id -> row position (built once per run)."""
        return {int(s): i for i, s in enumerate(self.sample_ids)}


@dataclass
class SignalScores:
    """A signal's result: ``scores`` (float32, one per row, in [0, 1]); ``summary`` (JSON-able
    evidence stored in the run summary); ``row_evidence`` (named per-row arrays other steps may
    use, e.g. the phrase signal's unsaturated ``strength``); ``index_versions`` (the indexes it
    read); ``notes`` (partial unavailability, reported beside ``signals_unavailable``)."""

    scores: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)
    row_evidence: dict[str, np.ndarray] = field(default_factory=dict)
    index_versions: dict[str, dict] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Unavailable:
    """The signal cannot score this anomaly against this dataset; ``reason`` says why;
    ``summary`` (optional, JSON-able) is stored in the run summary as a scoring signal's is
    (which guard stopped it, the measured value against its threshold)."""

    reason: str
    summary: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Signal(Protocol):
    """A triage signal (see the module docstring)."""

    name: ClassVar[str]
    default_weight: ClassVar[float]
    Params: ClassVar[type]

    def score(self, context: SignalContext, params: Any) -> SignalScores | Unavailable: ...


_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Register a signal class under ``cls.name`` (usable as a decorator). Registration order is
    the fusion and reporting order. Re-registering a name replaces the class in place."""
    for attr in ("name", "default_weight", "Params", "score"):
        if not hasattr(cls, attr):
            raise TypeError(f"signal class {cls.__name__} lacks {attr!r}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a registered signal (no error when absent)."""
    _REGISTRY.pop(name, None)


def registered() -> dict[str, type]:
    """The registered signal classes by name, in registration order (built-ins first)."""
    import forensics.triage.signals  # noqa: F401 - registers the built-in signals

    return dict(_REGISTRY)


__all__ = ["SignalContext", "SignalScores", "Unavailable", "Signal", "register", "unregister",
           "registered"]
