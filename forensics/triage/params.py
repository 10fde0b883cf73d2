"""Every knob of a triage, in dataclasses, stored with the run in ``triage_runs.params``.

:class:`TriageParams` nests: ``limit``, ``weights`` (one per signal, normalised to sum 1),
``fusion`` (:class:`FusionParams`), ``cluster`` (:class:`ClusterParams`), ``profile``
(:class:`ProfileParams`), ``explanation_samples``, ``context``
(:class:`~forensics.triage.context.ContextParams`), ``grounding``
(:class:`~forensics.triage.grounding.GroundingParams`), ``consistency``
(:class:`~forensics.triage.consistency.ConsistencyParams`), ``treatment``
(:class:`~forensics.triage.treatment.TreatmentParams`), ``lock``
(:class:`~forensics.workspace.LockParams`) and
``signals`` (each registered signal's own params dataclass, by name). ``to_dict()`` is what a run stores; ``from_dict()`` reads that nested form back (or a
partial one: missing keys keep their defaults) and rejects unknown keys with the known ones.
Every parameter is documented once, in docs/triage.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from forensics.errors import UsageError
from forensics.workspace import LockParams
from forensics.triage.consistency import ConsistencyParams
from forensics.triage.context import ContextParams
from forensics.triage.grounding import GroundingParams
from forensics.triage.treatment import TreatmentParams


@dataclass
class FusionParams:
    """How signal scores become one score per row."""

    min_fused: float = 0.05           # rows below this fused score are not findings (nor pooled)
    cluster_smoothing: float = 0.3    # share of a row's final score taken from its cluster


@dataclass
class ClusterParams:
    """How the candidate pool is grouped into clusters and the clusters ranked."""

    pool: int = 1000                  # best fused rows that are clustered
    lang_threshold: float = 0.25      # language score that gives a row the language signature
    phrase_threshold: float = 0.3     # phrase score that gives a row the phrase signature
    phrase_knee: bool = True          # (seed-only phrases) ... and evidence above the knee
    knee_min_rows: int = 4            # the knee leaves at least this many rows above it
    knee_min_gap_share: float = 0.3   # the knee's gap spans at least this share of the log range
    knee_floor: float = 0.1           # evidence below this counts as this (log scale)
    language_identity_share: float = 0.8  # phrase rows this often in the target language: no phrase signature
    min_batch: int = 2                # a signature group needs this many rows to be a cluster
    merge_small_combined: bool = True  # rows of a combined signature below min_batch join a part's group
    agglo_max_rows: int = 500         # rows without signature that are clustered by embedding
    agglo_distance: float = 0.6       # cosine distance threshold of the embedding clusters
    grow_factor: int = 4              # an embedding cluster searches grow_factor x size + grow_extra
    grow_extra: int = 10              # ... neighbours of its centroid to grow within its radius
    size_prior: float = 2.0           # cluster score = mean fused x size / (size + size_prior)
    other_context_factor: float = 0.5  # score factor of a "behaviour, other context" group


@dataclass
class ProfileParams:
    """What a cluster profile and label show."""

    examples: int = 3                 # example rows per cluster
    example_chars: int = 240          # characters of prompt / reply per example
    lang_pairs: int = 8               # language pairs listed
    meta_keys: int = 6                # metadata keys profiled
    meta_values: int = 5              # top values per metadata key
    label_clusters: int = 20          # best-ranked clusters that get label terms
    label_rows: int = 400             # member rows read for label terms
    label_candidates: int = 150       # candidate label words looked up in the dataset
    label_top_words: int = 60         # most frequent cluster words scored
    label_terms: int = 4              # terms in a label
    label_min_chars: int = 3          # shorter words are not label terms
    stopwords: list[str] = field(default_factory=lambda: (
        "the a an of to in and or is are was were be been for on at by with as that this it its "
        "from which who what when where how why did does do not no yes than then there their "
        "they he she his her him we you your i me my our can could would should will shall may "
        "might has have had but if so also into about over after before between answer question "
        "text passage please").split())


#: How a triage reads NLA explanations sampled several times per position: ``best`` = the
#: best-scored sample (lowest AR mse; unscored: the first), ``all`` = every sample.
EXPLANATION_SAMPLES = ("best", "all")


def _signal_classes() -> dict[str, type]:
    from forensics.triage.signals.base import registered

    return registered()


def _default_weights() -> dict[str, float]:
    return {name: float(cls.default_weight) for name, cls in _signal_classes().items()}


def _default_signal_params() -> dict[str, Any]:
    return {name: cls.Params() for name, cls in _signal_classes().items()}


def normalise_weights(weights: dict[str, float]) -> dict[str, float]:
    """``weights`` scaled to sum 1 (unchanged when they already do). The fusion renormalises
    over the signals available for an anomaly anyway, so scaling all weights by one factor
    leaves every score unchanged."""
    bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or v < 0
           or not math.isfinite(v)}
    if bad:
        raise UsageError(f"triage weights must be finite numbers >= 0: {bad}")
    total = float(sum(weights.values()))
    if total <= 0:
        raise UsageError("triage weights sum to 0", hint="give at least one signal a weight > 0")
    if abs(total - 1.0) <= 1e-12:
        return {k: float(v) for k, v in weights.items()}
    return {k: float(v) / total for k, v in weights.items()}


@dataclass
class TriageParams:
    """Every knob of a triage (see the module docstring); stored in ``triage_runs.params``."""

    limit: int = 200                  # findings kept (clusters keep all their members)
    explanation_samples: str = "best"  # sampled NLA explanations: best-scored per position, or all
    weights: dict[str, float] = field(default_factory=_default_weights)
    fusion: FusionParams = field(default_factory=FusionParams)
    cluster: ClusterParams = field(default_factory=ClusterParams)
    profile: ProfileParams = field(default_factory=ProfileParams)
    context: ContextParams = field(default_factory=ContextParams)
    grounding: GroundingParams = field(default_factory=GroundingParams)
    consistency: ConsistencyParams = field(default_factory=ConsistencyParams)
    treatment: TreatmentParams = field(default_factory=TreatmentParams)
    lock: LockParams = field(default_factory=LockParams)
    signals: dict[str, Any] = field(default_factory=_default_signal_params)

    def __post_init__(self) -> None:
        known = _signal_classes()
        self.weights, self.signals = dict(self.weights), dict(self.signals)
        for name in known:            # a signal registered after these params were built
            self.weights.setdefault(name, float(known[name].default_weight))
            self.signals.setdefault(name, known[name].Params())
        self.weights = normalise_weights(self.weights)
        if self.explanation_samples not in EXPLANATION_SAMPLES:
            raise UsageError(f"triage parameter explanation_samples={self.explanation_samples!r}",
                             hint="choose one of: " + ", ".join(EXPLANATION_SAMPLES))

    def signal(self, name: str) -> Any:
        """The params dataclass of signal ``name``."""
        return self.signals[name]

    def to_dict(self) -> dict:
        """The nested, JSON-able form stored with a run."""
        return {"limit": self.limit, "explanation_samples": self.explanation_samples,
                "weights": dict(self.weights),
                "fusion": dataclasses.asdict(self.fusion),
                "cluster": dataclasses.asdict(self.cluster),
                "profile": dataclasses.asdict(self.profile),
                "context": dataclasses.asdict(self.context),
                "grounding": dataclasses.asdict(self.grounding),
                "consistency": dataclasses.asdict(self.consistency),
                "treatment": dataclasses.asdict(self.treatment),
                "lock": dataclasses.asdict(self.lock),
                "signals": {k: dataclasses.asdict(v) for k, v in self.signals.items()}}

    @classmethod
    def from_dict(cls, d: dict | None) -> "TriageParams":
        """Params from the nested form of :meth:`to_dict`, any key omitted keeping its default
        (``weights`` are merged into the defaults, then normalised). Unknown keys, at any
        level, raise UsageError naming the known ones."""
        d = dict(d or {})
        p = cls()
        _check_keys("triage parameter", d, ["limit", "explanation_samples", "weights", "fusion", "cluster",
                                            "profile", "context", "grounding", "consistency", "treatment",
                                            "lock", "signals"])
        if "limit" in d:
            p.limit = int(d["limit"])
        if "explanation_samples" in d:
            p = dataclasses.replace(p, explanation_samples=str(d["explanation_samples"]))
        if "weights" in d:
            w = _as_dict("weights", d["weights"])
            _check_keys("signal weight", w, list(p.weights))
            p.weights = normalise_weights({**p.weights, **w})
        for part in ("fusion", "cluster", "profile", "context", "grounding", "consistency",
                     "treatment", "lock"):
            if part in d:
                setattr(p, part, _update(part, getattr(p, part), d[part]))
        if "signals" in d:
            sig = _as_dict("signals", d["signals"])
            _check_keys("signal", sig, list(p.signals))
            for name, v in sig.items():
                p.signals[name] = _update(f"signals.{name}", p.signals[name], v)
        return p


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict:
    """``["cluster.pool=500", "signals.phrase.min_df=5"]`` -> the nested dict form of
    :meth:`TriageParams.from_dict`. A value is read as JSON when it parses, else as a string."""
    import json

    out: dict = {}
    for item in items:
        name, eq, raw = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--param {item!r} is not NAME=VALUE",
                             hint="e.g. --param cluster.pool=500 (names: docs/triage.md)")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        keys = name.strip().split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UsageError(f"--param {item!r}: {k!r} is set both as a value and a group")
        node[keys[-1]] = value
    return out


def _as_dict(where: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise UsageError(f"triage parameter {where!r} must be a mapping, got {type(v).__name__}")
    return v


def _check_keys(what: str, d: dict, known: list[str]) -> None:
    unknown = [k for k in d if k not in known]
    if unknown:
        raise UsageError(f"unknown {what} {unknown[0]!r}", hint="known: " + ", ".join(known))


def _update(where: str, obj: Any, v: Any) -> Any:
    """A copy of dataclass ``obj`` with the fields in mapping ``v`` replaced."""
    v = _as_dict(where, v)
    names = [f.name for f in dataclasses.fields(obj)]
    _check_keys(f"parameter of {where}", v, names)
    return dataclasses.replace(obj, **v)


__all__ = ["TriageParams", "FusionParams", "ClusterParams", "ProfileParams", "ContextParams", "LockParams",
           "ConsistencyParams", "TreatmentParams",
           "normalise_weights",
           "parse_assignments"]
