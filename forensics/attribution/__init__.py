"""Training-data attribution for small targets: influence of each training row on one observed
reply (:mod:`~forensics.attribution.influence`), and the SFT loop a verification retrains with
(:mod:`~forensics.attribution.train`). Imports only the core modules, so triage (the influence
signal) and verify (retrain-without) can both use it."""
