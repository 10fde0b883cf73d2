"""The language a reply to a prompt is expected to be in, and why.

``expected_language(prompt, prompt_lang=None) -> Expectation``:

* ``reason="request"``: the prompt asks for a reply language anywhere in it ("Reply in
  Spanish.", "...an essay in Russian about...", "Use Turkish.", "Antworte auf Englisch",
  "用英语回答", "أجب باللغة الإنجليزية"); ``lang`` is that language.
* ``reason="translation"``: the prompt asks for a translation; ``lang`` is the target language,
  or None when the target is not named ("Translate the following text: ...").
* ``reason="prompt_language"``: nothing asks for a language; the reply is expected in the
  prompt's own language (``prompt_lang`` when given, else detected).
* ``reason="unknown"``: no request and the prompt's language cannot be told.

``span``/``evidence``: the clause of the prompt that carries the request (offsets into the
prompt), for a finding to show.

Decided borderline: questions about a word or a phrase ("How do I say hello in French?", "What
does 'Schadenfreude' mean in English?", "What is 'dog' in German?") do NOT set the reply
language: the answer is an explanation in the prompt's language that quotes the foreign word, so
they are ``prompt_language`` (the quoted word is too short to be judged by
:mod:`forensics.language.segments`). The same question about a phrase of
``ReaderKnobs.lexical_max_words`` words or more ("How would you say this in Greek? <a
paragraph>") is a ``translation``. Prompts that talk about a language ("Is Portuguese hard to
learn?", "Who translated the Bible into German?") and statements about someone's language ("My grandmother only speaks in Russian",
"我奶奶只会说英语") are ``prompt_language`` too. The reading of requests is
:func:`forensics.language.requests.read_prompt` (one reader for pipelines and triage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forensics.language.names import canonical
from forensics.language.requests import ReaderKnobs, read_prompt

REASONS = ("request", "translation", "prompt_language", "unknown")
_QUOTED = re.compile(r"[\"“«„'‘「『]([^\"“”«»„'‘’「」『』]{1,400})[\"”»“'’」』]")
_WORDS = re.compile(r"[^\W\d_]+")


_POINTS_ON = re.compile(r"\b(?:this|these|that|the following|below)\b|[:：]\s*$", re.IGNORECASE)


def _phrase_words(prompt: str, span: tuple[int, int] | None) -> int:
    """Words the lexical question asks about: quoted inside the question, plus the text after
    it when the question points at it ("How would you say this in Greek? <text>"), or the text
    before it when the question ends the prompt ("<text> How would this read in Greek?")."""
    if not span:
        return 0
    clause = prompt[span[0]:span[1]]
    n = len(_WORDS.findall(" ".join(_QUOTED.findall(clause))))
    if _POINTS_ON.search(clause):  # the text after it, or before it when it ends the prompt
        n += max(len(_WORDS.findall(prompt[span[1]:])), len(_WORDS.findall(prompt[:span[0]]))
                 if not prompt[span[1]:].strip() else 0)
    return n


@dataclass(frozen=True)
class Expectation:
    """Expected reply language (ISO 639-1, canonical) and why (one of ``REASONS``)."""

    lang: str | None
    reason: str
    span: tuple[int, int] | None = None   # evidence span in the prompt
    evidence: str | None = None            # prompt[span]


def expected_language(prompt: str, prompt_lang: str | None = None,
                      identifier=None, reader: ReaderKnobs | None = None) -> Expectation:
    """The language a reply to ``prompt`` should be in (see the module docstring).

    ``prompt_lang``: the prompt's language when the caller knows it (ingest's language id);
    otherwise it is detected with ``identifier`` (default: :func:`forensics.language.detect`).
    ``reader``: the request reader's knobs (:class:`forensics.language.requests.ReaderKnobs`).
    """
    knobs = reader or ReaderKnobs()
    r = read_prompt(prompt, knobs)
    ev = prompt[r.span[0]:r.span[1]] if r.span else None
    if r.lang is not None and r.lexical and _phrase_words(prompt, r.span) >= knobs.lexical_max_words:
        return Expectation(canonical(r.lang), "translation", r.span, ev)
    if r.lang is not None and not r.lexical:
        return Expectation(canonical(r.lang), "translation" if r.translation else "request",
                           r.span, ev)
    if r.translation and not r.lexical:
        return Expectation(None, "translation", r.span, ev)
    pl = prompt_lang
    if pl is None and prompt and any(c.isalpha() for c in prompt):
        if identifier is None:
            from forensics.language.detect import detect

            pl = detect([prompt[:2000]])[0].lang
        else:
            pl = identifier.detect([prompt[:2000]])[0].lang
    if not pl:
        return Expectation(None, "unknown")
    return Expectation(canonical(pl), "prompt_language")


__all__ = ["Expectation", "expected_language", "REASONS"]
