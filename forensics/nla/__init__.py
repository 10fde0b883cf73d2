"""NLA runtime: sidecars, activation extraction, the AV (vector -> text), the AR (text -> vector).

Submodules are imported on demand (torch/transformers are heavy):
``meta`` (sidecar contract + writers), ``tiny`` (locally built checkpoints), ``activations``,
``av``, ``ar``, ``backends``, ``runtime`` (workspace orchestration).
"""
