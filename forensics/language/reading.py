"""The request reader's input knobs and its result, apart from the reader
(:mod:`forensics.language.requests`, which re-exports both) so each can grow on its own.

Every knob of :func:`forensics.language.requests.read_prompt` is a field of
:class:`ReaderKnobs` (documented in docs/pipelines.md); :class:`Reading` is what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reading:
    """What :func:`~forensics.language.requests.read_prompt` found: the requested language (or
    None), whether the prompt asks for a translation, the evidence span (offsets into the
    prompt) of the clause that decided the language, and ``lexical`` when the language was
    read from a question about a word ("How do you say X in German?", "What does X mean in
    English?")."""

    lang: str | None
    translation: bool
    span: tuple[int, int] | None = None
    lexical: bool = False


@dataclass(frozen=True)
class ReaderKnobs:
    """Knobs of :func:`~forensics.language.requests.read_prompt` and of
    :func:`forensics.language.expected.expected_language` (documented in docs/pipelines.md)."""

    instruction_line_chars: int = 200  # lines longer than this are passage text, not instructions
    lexical_max_words: int = 6      # a question about a phrase this long asks for its translation, not about a word
    label_window_chars: int = 40    # a language label ("Output language:") this close before a mention makes it a request
    header_max_chars: int = 100     # a header before (or after) a passage is at most this long ...
    passage_min_chars: int = 20     # ... and the passage it points at holds at least this many characters
    bare_clause_chars: int = 40     # a bare "In Spanish." clause next to the question is at most this long


__all__ = ["Reading", "ReaderKnobs"]
