"""The ``language`` signal: the anomaly's language behaviour, matched against each row's
detected languages and expected reply language over the whole dataset (polars).

Two behaviours, told apart by the anomaly's own prompt
(:func:`forensics.language.expected.expected_language`):

- **ignored request** (``mode="ignored_request"``): the anomaly's prompt asks for a reply
  language X (or a translation into X) and its reply is in Y != X ("asked for Japanese,
  answered in English"). Rows whose prompt asks for a language their reply is not in match;
  fully when their reply is in Y, by ``other_target_factor`` otherwise, and by
  ``other_request_factor`` when they asked for another language than X. Rows without a
  request (native pairs, unrequested switches) and rows that honour theirs (translations
  answered in the target language) score 0.
- **switch** (``mode="switch"``): the reply is in another language than the prompt and
  nothing asked for it; the switch comes from the observed prompt/reply languages plus the
  languages the explanations name (weighted by how often). Rows whose prompt asks for the
  reply's language (translation requests, "answer in X") are hard negatives and are
  down-weighted; same-language pairs never match a switch.

In both, a reply language detected with low confidence counts in proportion.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register

@dataclass
class LanguageParams:
    """Knobs of the language signal (documented in docs/triage.md)."""

    legit_penalty: float = 0.1        # factor on rows whose prompt asks for the reply language
    other_source_factor: float = 0.5  # factor on a switch from a language not the anomaly's source
    named_min_weight: float = 0.5     # weight of the least-named explanation language (most: 1)
    other_target_factor: float = 0.5  # ignored request answered in another language than the anomaly's
    other_request_factor: float = 0.8  # ignored request for another language than the anomaly's


def language_mentions(texts: Iterable[str]) -> Counter:
    """How often each language is named in ``texts`` (codes), through the one name matcher of
    :mod:`forensics.language.names`."""
    from forensics.language.names import mention_spans

    return Counter(code for t in texts for _, _, code in mention_spans(t or ""))


@dataclass
class LanguageTarget:
    """What language behaviour the anomaly shows: ``mode="switch"``, prompt languages S ->
    reply languages T; or ``mode="ignored_request"``, a request for ``requested`` answered in
    the ``targets`` language."""

    sources: list[str]
    targets: dict[str, float]          # reply language -> weight (1 = strongest)
    evidence: str
    mode: str = "switch"               # switch | ignored_request
    requested: str | None = None       # ignored_request: the language the anomaly asked for

    @property
    def active(self) -> bool:
        return bool(self.targets)

    def to_json(self) -> dict:
        return {"sources": self.sources, "targets": self.targets, "evidence": self.evidence,
                "mode": self.mode, "requested": self.requested}


def language_target(prompt_lang: str | None, reply_lang: str | None,
                    explanations: Sequence[str], prompt: str | None = None,
                    named_min_weight: float = LanguageParams.named_min_weight) -> LanguageTarget:
    """Derive the language behaviour from the anomaly.

    A prompt that asks for a language its reply is not in is an ignored request (the
    explanations are not needed). Otherwise observed prompt/reply languages win; languages
    named in the explanations add targets
    (weighted from ``named_min_weight`` to 1 by how often they are named) unless they are the
    prompt's own language or the language the prompt asks for. A same-language anomaly whose
    explanations name no other language has no target.
    """
    from forensics.language import requests
    from forensics.language.expected import expected_language
    from forensics.language.names import same_language

    if prompt and reply_lang:
        exp = expected_language(prompt, prompt_lang or "xx")
        if exp.reason in ("request", "translation") and exp.lang and \
                not same_language(exp.lang, reply_lang):
            return LanguageTarget(
                sources=[], targets={reply_lang: 1.0}, mode="ignored_request",
                requested=exp.lang,
                evidence=f"asked for {exp.lang} ({(exp.evidence or '').strip()!r}), "
                         f"answered in {reply_lang}")
    mentions = language_mentions(explanations)
    targets: dict[str, float] = {}
    evidence = []
    if prompt_lang and reply_lang and prompt_lang != reply_lang:
        targets[reply_lang] = 1.0
        evidence.append(f"observed {prompt_lang}->{reply_lang}")
    requested = requests.requested_language(prompt) if prompt else None
    named = {l: c for l, c in mentions.items() if l != prompt_lang}
    if named:
        top = max(named.values())
        for l, c in sorted(named.items()):
            if l == requested:
                continue
            w = named_min_weight + (1.0 - named_min_weight) * c / top
            targets[l] = max(targets.get(l, 0.0), w)
        evidence.append("named in explanations: " + ", ".join(f"{l}x{c}" for l, c in sorted(named.items())))
    if prompt_lang:
        sources = [prompt_lang]
    else:
        # no observed prompt: any named language other than the target may be the source
        sources = sorted(set(mentions) - {max(targets, key=lambda k: (targets[k], k))}) if targets else []
    if requested and requested in targets and not (reply_lang == requested and prompt_lang != reply_lang):
        targets.pop(requested, None)
    return LanguageTarget(sources=sources, targets=targets, evidence="; ".join(evidence))


def language_scores(df: pl.DataFrame, tgt: LanguageTarget,
                    params: LanguageParams | None = None) -> np.ndarray:
    """Per-row language-switch match in [0, 1] (needs prompt_lang, reply_lang,
    requested_lang, translation_request columns; reply_lang_conf when present scales it)."""
    p = params or LanguageParams()
    if not tgt.active or df.height == 0:
        return np.zeros(df.height, np.float32)
    if tgt.mode == "ignored_request":
        return ignored_request_scores(df, tgt, p)
    tmap = pl.DataFrame({"reply_lang": list(tgt.targets), "_tw": list(tgt.targets.values())},
                        schema={"reply_lang": pl.Utf8, "_tw": pl.Float64})
    cols = ["prompt_lang", "reply_lang", "requested_lang", "translation_request"]
    if "reply_lang_conf" in df.columns:
        cols.append("reply_lang_conf")
    d = df.select(cols).with_row_index("_i")
    d = d.join(tmap, on="reply_lang", how="left").sort("_i")
    switch = (pl.col("prompt_lang").is_not_null() & pl.col("reply_lang").is_not_null()
              & (pl.col("prompt_lang") != pl.col("reply_lang")))
    src_ok = pl.col("prompt_lang").is_in(tgt.sources) if tgt.sources else pl.lit(True)
    # a request excuses only the language it asks for (a question about a word in one language
    # answered in another is still a switch); a translation request whose target language
    # could not be read gets the benefit of the doubt
    legit = ((pl.col("requested_lang") == pl.col("reply_lang")).fill_null(False)
             | (pl.col("translation_request") & pl.col("requested_lang").is_null()))
    s = (pl.when(switch & pl.col("_tw").is_not_null())
         .then(pl.col("_tw") * pl.when(src_ok).then(1.0).otherwise(p.other_source_factor))
         .otherwise(0.0))
    s = s * pl.when(legit).then(p.legit_penalty).otherwise(1.0)
    if "reply_lang_conf" in df.columns:
        # a language detected with low confidence (short replies, names, numbers, markup) is
        # no evidence of a switch: scale by the detector's confidence
        s = s * pl.col("reply_lang_conf").fill_null(1.0).clip(0.0, 1.0)
    return d.select(s.alias("s"))["s"].to_numpy().astype(np.float32)


def ignored_rows() -> pl.Expr:
    """Rows whose prompt asks for a language (a request or a translation target) that their
    reply is not in (needs expected_lang, expected_reason, reply_lang)."""
    return (pl.col("expected_reason").is_in(["request", "translation"])
            & pl.col("expected_lang").is_not_null() & pl.col("reply_lang").is_not_null()
            & (pl.col("expected_lang") != pl.col("reply_lang"))).fill_null(False)


def ignored_request_scores(df: pl.DataFrame, tgt: LanguageTarget,
                           p: LanguageParams) -> np.ndarray:
    """Per-row match of an ignored-request anomaly (see the module docstring)."""
    in_target = pl.col("reply_lang").is_in(list(tgt.targets)).fill_null(False)
    same_req = (pl.col("expected_lang") == pl.lit(tgt.requested)).fill_null(False)
    s = (pl.when(ignored_rows()).then(1.0).otherwise(0.0)
         * pl.when(in_target).then(1.0).otherwise(p.other_target_factor)
         * pl.when(same_req).then(1.0).otherwise(p.other_request_factor))
    if "reply_lang_conf" in df.columns:
        s = s * pl.col("reply_lang_conf").fill_null(1.0).clip(0.0, 1.0)
    return df.select(s.alias("s"))["s"].to_numpy().astype(np.float32)


@register
class LanguageSignal:
    """Rows showing the anomaly's language switch (see the module docstring)."""

    name = "language"
    default_weight = 0.45
    Params = LanguageParams

    def score(self, context: SignalContext, params: LanguageParams) -> SignalScores | Unavailable:
        tgt = context.language_target
        if not tgt.active:
            return Unavailable("the anomaly shows no language switch and no ignored request")
        return SignalScores(language_scores(context.frame, tgt, params))


__all__ = ["LanguageParams", "LanguageSignal", "LanguageTarget", "language_mentions", "language_target",
           "language_scores", "ignored_rows", "ignored_request_scores"]
