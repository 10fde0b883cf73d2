"""Triage signals: one module per signal, each a small class following the protocol in
:mod:`forensics.triage.signals.base`. Importing this package registers the built-ins, in the
order below (the fusion and reporting order)."""

from forensics.triage.signals import language, phrase, explanation, dense, quality, segment, stance, substitution, influence  # noqa: F401,E501
from forensics.triage.signals import explanation_own  # noqa: F401
from forensics.triage.signals import opening  # noqa: F401
from forensics.triage.signals.base import (Signal, SignalContext, SignalScores, Unavailable,
                                           register, registered, unregister)

__all__ = ["Signal", "SignalContext", "SignalScores", "Unavailable", "register", "registered",
           "unregister"]
