"""Test and benchmark material built offline: labelled synthetic corpora (``synth``) and the
case study's word-level toy model (``toy``). Not used by the product's own code paths."""
