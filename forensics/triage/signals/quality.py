"""The ``quality`` signal: stored data-quality findings (``quality_findings``, the latest
pipeline run per check) whose check bears on the anomaly.

A check is relevant when its name shares a word stem with the anomaly's title and
explanations (stems that name the parts of any sample -- "reply", "prompt" -- do not count),
or, for a language-switch anomaly, when its name matches ``language_checks`` (for an
ignored-request anomaly only such a check's findings with ``group_id = 'ignored_request'``
count: the ``mistranslation`` check names its finding kind there). A flagged row
scores its severity's weight, or the finding's own score when that is higher than
``own_score_factor`` x the severity weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register


@dataclass
class QualityParams:
    """Knobs of the quality signal (documented in docs/triage.md)."""

    severity_weights: dict[str, float] = field(default_factory=lambda: {
        "error": 1.0, "warning": 0.7, "info": 0.3})
    unknown_severity: float = 0.7      # weight of a severity not listed above
    own_score_factor: float = 0.5      # a finding's own score in [0,1] wins over this x severity
    min_word_chars: int = 5            # anomaly words shorter than this are not matched
    stem_chars: int = 5                # words match on their first this-many characters
    language_checks: str = r"lang|translat|script|mismatch"  # checks relevant to a language switch
    generic_stems: list[str] = field(default_factory=lambda: [
        "reply", "repli", "promp", "answe", "quest", "sampl", "check", "respo", "assis", "model",
        "outpu", "input", "token", "dataset", "recor", "field", "conte", "messa", "langu"])


def relevant_checks(checks: list[str], anomaly_text: str, language_active: bool,
                    p: QualityParams) -> list[str]:
    """The checks (of ``checks``) that bear on an anomaly described by ``anomaly_text``."""
    k = p.stem_chars
    words = set(re.findall(r"\w{%d,}" % p.min_word_chars, anomaly_text.lower()))
    stems = {w[:k] for w in words} - set(p.generic_stems)
    lang_rx = re.compile(p.language_checks, re.IGNORECASE)
    out = []
    for c in checks:
        cw = {w[:k] for w in re.findall(r"[a-z]{%d,}" % p.min_word_chars, c.lower())}
        if (language_active and lang_rx.search(c)) or (cw & stems):
            out.append(c)
    return out


@register
class QualitySignal:
    """Rows flagged by relevant stored quality findings; ``summary["quality_checks"]`` lists the
    checks used."""

    name = "quality"
    default_weight = 0.10
    Params = QualityParams

    def score(self, context: SignalContext, params: QualityParams) -> SignalScores | Unavailable:
        ds = context.dataset
        with context.ws.locked():
            rows = context.ws.rows(
                "SELECT q.\"check\", q.sample_id, q.severity, q.score, q.group_id FROM quality_findings q "
                "JOIN samples s USING (sample_id) WHERE s.dataset = ? AND q.pipeline_run_id = ("
                " SELECT max(q2.pipeline_run_id) FROM quality_findings q2 WHERE q2.\"check\" = q.\"check\""
                " AND q2.sample_id IN (SELECT sample_id FROM samples WHERE dataset = ?))",
                [ds, ds])
        a = context.anomaly
        relevant = relevant_checks(sorted({r[0] for r in rows}), " ".join([a.title, *a.explanations]),
                                   context.language_target.active, params) if rows else []
        if not relevant:
            return Unavailable("no stored quality findings relevant to this anomaly")
        pos = context.position
        keep = set(relevant)
        # an ignored-request anomaly: of a language check's findings, only those of that kind
        # (the mistranslation check names its kind in group_id)
        only_ignored = context.language_target.mode == "ignored_request"
        lang_rx = re.compile(params.language_checks, re.IGNORECASE)
        v = np.zeros(context.n, np.float32)
        for check, sid, severity, score, group in rows:
            if check not in keep or int(sid) not in pos:
                continue
            if only_ignored and lang_rx.search(check) and group != "ignored_request":
                continue
            s = params.severity_weights.get((severity or "").lower(), params.unknown_severity)
            if score is not None and 0 <= float(score) <= 1:
                s = max(s * params.own_score_factor, float(score))
            j = pos[int(sid)]
            v[j] = max(v[j], s)
        return SignalScores(v, summary={"quality_checks": relevant})


__all__ = ["QualityParams", "QualitySignal", "relevant_checks"]
