"""Warm-start targets: a summary of the text up to a position. :class:`BuiltinSummarizer` is
deterministic (language and script of the prefix, its role, salient terms, what follows);
:class:`HTTPSummarizer` asks any OpenAI-compatible ``/v1/chat/completions`` endpoint."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from forensics._chat import chat_completion
from forensics.language.names import display_name

#: Languages the built-in summarizer names, with their (lower-case, English CLDR) names.
LANG_NAMES = {c: display_name(c).lower() for c in (
    "en", "de", "es", "fr", "ru", "zh", "el", "tr", "vi", "ro", "it", "pt", "nl", "pl", "ja", "ko",
    "ar", "uk", "sv", "hi")}
#: Every fixed word the built-in summarizer writes (a word-level tokenizer must contain them).
SUMMARY_WORDS = sorted(set(
    "question answer prompt reply translation request from to in the is about terms next end "
    "unknown language script latin cyrillic greek cjk arabic mixed so far before word none ends starts "
    "expects"
    .split()
    + list(LANG_NAMES.values()) + [".", ",", ":"]))
_WORD = re.compile(r"\w+", re.UNICODE)
_TRANSLATE = re.compile(r"^\s*translate\s+(?:this\s+)?(?:in)?to\s+(\w+)", re.IGNORECASE)


# ---------------------------------------------------------------------------- summarizers


@dataclass
class PositionContext:
    """What a summarizer may know about one position: the text so far and what follows."""

    prompt: str
    reply: str
    in_reply: bool
    prefix: str          # text of the current part (prompt or reply) up to and including the token
    following: str       # text of the current part after the token
    prompt_lang: str | None
    reply_lang: str | None
    expected: tuple[str, ...] = ()   # the target's own most likely next tokens at this position


def _script(text: str) -> str:
    counts = {"latin": 0, "cyrillic": 0, "greek": 0, "cjk": 0, "arabic": 0}
    for ch in text:
        o = ord(ch)
        if ch.isalpha():
            if o < 0x250:
                counts["latin"] += 1
            elif 0x370 <= o < 0x400:
                counts["greek"] += 1
            elif 0x400 <= o < 0x530:
                counts["cyrillic"] += 1
            elif 0x600 <= o < 0x700:
                counts["arabic"] += 1
            elif 0x3040 <= o < 0xA000 or 0xAC00 <= o < 0xD7B0:
                counts["cjk"] += 1
    best = max(counts, key=counts.get)
    return best if counts[best] else "unknown"


class BuiltinSummarizer:
    """Deterministic warm-start targets, one short line per position.

    Examples (an English question whose reply is German; a position inside the question, and
    the last prompt token)::

        english question latin script . reply in german . terms : warsaw saxon . next : garden in polish . expects : garden palace city . before : where is . word : the
        english question latin script . reply in german . terms : warsaw saxon garden . expects : der die the . prompt ends : saxon garden ? . reply starts : der sächsische garten

    ``expects :`` lists the target's own top-k next tokens at the position
    (:attr:`PositionContext.expected`, filled by the trainer from the target's logits; empty =
    left out), what the paper's explanations call "strongly expecting ...".

    WHY this shape (measured, docs/case_study.md): a residual-stream vector of a small model
    mostly encodes the CURRENT token, the few before it, and the prediction of the next one. The
    first version described only the prefix's language, role and salient terms and never named
    the current word; an AR trained on those summaries could not beat a constant prediction on
    positions inside the text (held-out FVE -0.27 there). Naming the current word last (right
    before the AR's readout), the two words before it and the next words lifts the AR ceiling
    on gold summaries from 0.03 to 0.17 (toy target, layer 1). Salient terms are the prefix's
    words with the highest inverse document frequency in the training texts (topic words win
    over function words). The chat template's role words never count as text. Naming what the
    target itself expects next lifts the AR ceiling far more (docs/nla.md, "What limits the toy
    NLA's FVE"): at the last block the residual stream is mostly the next-token prediction.
    """

    name = "builtin"

    def __init__(self, texts: Sequence[str], n_terms: int = 3, n_next: int = 3, n_before: int = 2):
        df: dict[str, int] = {}
        for t in texts:
            for w in set(x.lower() for x in _WORD.findall(t)):
                df[w] = df.get(w, 0) + 1
        self.df = df
        self.n = max(1, len(texts))
        self.n_terms = n_terms
        self.n_next = n_next
        self.n_before = n_before

    def _terms(self, text: str) -> list[str]:
        words = [w.lower() for w in _WORD.findall(text) if len(w) >= 4 and not w.isdigit()]
        uniq = list(dict.fromkeys(words))
        uniq.sort(key=lambda w: -math.log((self.n + 1) / (self.df.get(w, 0) + 1)))
        return uniq[:self.n_terms]

    def summarize(self, c: PositionContext) -> str:
        pl = LANG_NAMES.get(c.prompt_lang or "", "unknown")
        rl = LANG_NAMES.get(c.reply_lang or "", "unknown")
        follow = [w.lower() for w in _WORD.findall(c.following)]
        end_of_prompt = not c.in_reply and not follow
        if end_of_prompt:  # what follows the last prompt token is the reply
            follow = [w.lower() for w in _WORD.findall(c.reply)]
        nxt = " ".join(follow[:self.n_next]) or "end"
        words = c.prefix.lower().split()
        terms = " ".join(self._terms(c.prefix)) or "none"
        if not c.in_reply:
            m = _TRANSLATE.match(c.prompt)
            role = f"translation request to {m.group(1).lower()}" if m else (
                "question" if "?" in c.prompt else "prompt")
            head = f"{pl} {role} {_script(c.prefix)} script . reply in {rl} ."
        else:
            head = f"{rl} answer to {pl} prompt {_script(c.prefix)} script ."
        exp = f"expects : {' '.join(c.expected)} . " if c.expected else ""
        if end_of_prompt:
            return (f"{head} terms : {terms} . {exp}prompt ends : "
                    f"{' '.join(words[-(self.n_before + 1):]) or 'none'} . reply starts : {nxt}")
        before = " ".join(words[-(self.n_before + 1):-1]) if self.n_before > 0 else ""
        return (f"{head} terms : {terms} . next : {nxt} . {exp}before : {before or 'none'} . "
                f"word : {words[-1] if words else 'none'}")

    def summarize_many(self, ctxs: Sequence[PositionContext]) -> list[str]:
        return [self.summarize(c) for c in ctxs]


class HTTPSummarizer:
    """Warm-start targets from any OpenAI-compatible chat endpoint (``POST {url}/v1/chat/completions``).

    The model is asked for two or three short sentences: genre and context, the recent phrase
    signals, and what the text is expected to continue with. Temperature 0; failures raise
    :class:`BackendError` naming the URL (a partial training set would silently bias the AV).
    """

    name = "http"
    SYSTEM = ("You write the target summary for an activation explainer. Given the text a language "
              "model has read so far and what comes next, describe in 2-3 short sentences: the genre, "
              "language and role of the text (question, answer, request), the recent salient terms, "
              "and what the text is expected to continue with (its language and opening words).")

    def __init__(self, url: str, model: str = "default", timeout: float = 60.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1/chat/completions"):
            self.url += "/v1/chat/completions"
        self.model = model
        self.timeout = timeout
        self.api_key = api_key

    def summarize(self, c: PositionContext) -> str:
        where = "reply" if c.in_reply else "prompt"
        user = (f"Prompt: {c.prompt}\nReply: {c.reply}\nThe model is inside the {where}; text so far in "
                f"that part: {c.prefix}\nWhat follows: {c.following}")
        if c.expected:
            user += f"\nThe model's own most likely next tokens here: {', '.join(c.expected)}"
        return chat_completion(self.url, self.model, self.SYSTEM, user, max_tokens=120,
                               api_key=self.api_key, timeout=self.timeout, what="summarizer",
                               hint="check --summarizer-url (an OpenAI-compatible server) or use "
                                    "--summarizer builtin")

    def summarize_many(self, ctxs: Sequence[PositionContext]) -> list[str]:
        return [self.summarize(c) for c in ctxs]
