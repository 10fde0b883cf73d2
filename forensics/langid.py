"""Language identification for prompts and replies (ISO 639-1 codes).

Interface used across the package (ingest, pipelines, triage, probes):
``detect(texts) -> list[LangResult]``. Short or undecidable texts get ``lang=None``.
The implementation choice (library, candidate set, thresholds) is documented and
measured in bench/ingest.py; callers must not depend on which library is inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class LangResult:
    lang: str | None      # ISO 639-1, e.g. "en"; None when undetermined
    confidence: float     # 0..1


class LanguageIdentifier:
    """Wraps lingua with a restricted, configurable candidate set (faster and more accurate)."""

    def __init__(self, languages: Sequence[str] | None = None, min_confidence: float = 0.0):
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        if languages:
            langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in languages]
            builder = LanguageDetectorBuilder.from_languages(*langs)
        else:
            builder = LanguageDetectorBuilder.from_all_languages()
        self._detector = builder.with_preloaded_language_models().build()
        self.min_confidence = min_confidence

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
            if top.value < self.min_confidence:
                out[i] = LangResult(None, float(top.value))
            else:
                out[i] = LangResult(top.language.iso_code_639_1.name.lower(), float(top.value))
        return out


_DEFAULT: dict[tuple, LanguageIdentifier] = {}


def get_identifier(languages: Sequence[str] | None = None) -> LanguageIdentifier:
    """Cached identifier per candidate set (building lingua models costs ~1 s)."""
    key = tuple(languages or ())
    if key not in _DEFAULT:
        _DEFAULT[key] = LanguageIdentifier(languages)
    return _DEFAULT[key]


def detect(texts: Sequence[str | None], languages: Sequence[str] | None = None) -> list[LangResult]:
    return get_identifier(languages).detect(texts)
