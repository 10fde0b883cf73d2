"""Language identification for prompts and replies (ISO 639-1 codes).

Interface used across the package (ingest, pipelines, triage, probes):
``detect(texts, languages=None) -> list[LangResult]``. Empty or undecidable texts get
``lang=None``. Callers must not depend on which library is inside.

Why lingua with a broad but bounded candidate set (numbers in docs/ingest.md, measured by
bench/langid_eval.py): with all 75 languages loaded lingua calls "How do I cook borscht?"
German and is slower to build; restricting to the few languages of one corpus would make
held-out data in other languages invisible. ``DEFAULT_LANGUAGES`` (40 languages covering the
major scripts and the languages our evaluations use) keeps short-text accuracy high while
still naming e.g. Ukrainian vs Russian. ``--languages`` overrides it; ``all`` loads every one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

# Broad default candidate set: the XQuAD eight, the languages held-out evaluations use, and
# other widely used languages with distinct scripts or confusable neighbours.
DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en", "de", "es", "zh", "vi", "tr", "el", "ro",
    "ru", "uk", "ar", "hi", "ja", "ko", "fr", "it", "pt", "nl", "pl", "sv", "cs", "th", "id",
    "he", "fa",
    "bg", "da", "fi", "hu", "nb", "sk", "hr", "sr", "ca", "bn", "ur", "ta", "ka", "hy", "ms",
)



@dataclass(frozen=True)
class LangResult:
    lang: str | None      # ISO 639-1, e.g. "en"; None when undetermined
    confidence: float     # 0..1


def validate_languages(languages: Sequence[str]) -> list[str]:
    """Check ISO 639-1 codes against what the identifier supports; raise UsageError naming
    the unknown ones (a typo must not silently shrink the candidate set)."""
    from lingua import IsoCode639_1

    from .errors import UsageError

    codes = [c.strip().lower() for c in languages if c and c.strip()]
    if codes == ["all"]:
        return codes
    bad = [c for c in codes if not hasattr(IsoCode639_1, c.upper())]
    if bad:
        raise UsageError(f"unknown language code(s): {', '.join(bad)}",
                         hint="use ISO 639-1 codes such as en,de,ru,zh (or 'all')")
    if len(codes) < 2:
        raise UsageError("--languages needs at least two candidate languages")
    return codes


class LanguageIdentifier:
    """lingua detector over a candidate set; ``detect`` is one batched, multi-threaded call.

    ``min_confidence``: below it the result is ``lang=None`` (the confidence is still
    reported). ``low_accuracy``: lingua's trigram-only mode (faster, worse on short text).
    """

    def __init__(self, languages: Sequence[str] | None = None, min_confidence: float = 0.0,
                 low_accuracy: bool = False):
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        codes = [c.lower() for c in (languages or DEFAULT_LANGUAGES)]
        if codes == ["all"]:
            builder = LanguageDetectorBuilder.from_all_languages()
            self.languages: tuple[str, ...] = tuple(
                sorted(l.iso_code_639_1.name.lower() for l in Language.all()))
        else:
            codes = validate_languages(codes)
            langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in codes]
            builder = LanguageDetectorBuilder.from_languages(*langs)
            self.languages = tuple(codes)
        if low_accuracy:
            builder = builder.with_low_accuracy_mode()
        # models load lazily per language actually seen (all 75 preloaded costs ~30 s)
        self._detector = builder.build()
        self.min_confidence = min_confidence
        self.low_accuracy = low_accuracy

    def detect(self, texts: Sequence[str | None]) -> list[LangResult]:
        idx = [i for i, t in enumerate(texts) if t and t.strip()]
        out = [LangResult(None, 0.0)] * len(texts)
        if not idx:
            return out
        batch = [texts[i] for i in idx]
        conf = self._detector.compute_language_confidence_values_in_parallel(batch)
        for i, values in zip(idx, conf):
            if not values:
                continue
            top = values[0]
            if top.value <= 0.0 or top.value < self.min_confidence:
                out[i] = LangResult(None, float(top.value))
            else:
                out[i] = LangResult(top.language.iso_code_639_1.name.lower(), float(top.value))
        return out


_CACHE: dict[tuple, LanguageIdentifier] = {}
_LOCK = threading.Lock()


def get_identifier(languages: Sequence[str] | None = None, min_confidence: float = 0.0,
                   low_accuracy: bool = False) -> LanguageIdentifier:
    """Identifier per configuration, built once per process (lingua detectors are immutable
    and thread-safe, so sharing them is safe; building one costs up to seconds)."""
    key = (tuple(c.lower() for c in languages) if languages else None, min_confidence, low_accuracy)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = LanguageIdentifier(languages, min_confidence, low_accuracy)
        return _CACHE[key]


def detect(texts: Sequence[str | None], languages: Sequence[str] | None = None) -> list[LangResult]:
    """Languages of ``texts`` (batched). ``languages``: candidate ISO codes, default the broad
    ``DEFAULT_LANGUAGES``; ``["all"]`` for every language the identifier knows."""
    return get_identifier(languages).detect(texts)
