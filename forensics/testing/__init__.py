"""Test and benchmark material built offline: labelled synthetic corpora (``synth``, the corpus
triage is developed on; ``corpus_b``, a second generator with other templates, sources and
behaviour families, kept apart and never tuned on) and the case study's word-level toy model
(``toy``). Not used by the product's own code paths."""
