"""NLAs: sidecars, activation extraction, the AV (vector -> text), the AR (text -> vector), and
their use on a workspace.

Modules: ``meta`` (sidecar contract + writers), ``tiny`` (locally built checkpoints),
``activations``, ``av``, ``ar``, ``backends``, ``registry`` (register / list / get / check NLAs),
``explainer`` (the in-memory :class:`Explainer`), ``explanations`` (storage, import),
``explain`` (explain anomalies and datasets, resumable), ``ray_engine``, ``train/`` (train an
NLA), ``probe`` (counterfactual probes). torch and transformers are imported inside the
functions that need them, so importing this package stays light.
"""

from forensics.nla.explain import DatasetRunStats, explain_anomaly, explain_dataset
from forensics.nla.explainer import ExplainedRow, Explainer
from forensics.nla.explanations import ImportStats, explanation_key, import_explanations
from forensics.nla.registry import NLARecord, check_nla, get_nla, list_nlas, register_nla, validate_nla

__all__ = ["NLARecord", "validate_nla", "register_nla", "get_nla", "list_nlas", "check_nla",
           "Explainer", "ExplainedRow", "explain_anomaly", "explain_dataset", "DatasetRunStats",
           "import_explanations", "ImportStats", "explanation_key"]
