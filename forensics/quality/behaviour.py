"""Observable behaviour of a prompt/reply pair: refusal, surface format, echo, and whether the
reply switched language without being asked (languages come from the caller)."""

from __future__ import annotations

import re

from forensics.language.names import canonical, same_language
from forensics.language.requests import analyse

_REFUSAL = re.compile(
    r"(I'?m sorry,? but I (?:can(?:no|')t|won'?t|am unable)|I (?:can(?:no|')t|won'?t|am not "
    r"able to|am unable to) (?:help|assist|provide|answer|comply|do that|share|fulfil)|"
    r"I'?m (?:not able|unable) to (?:help|assist|provide|answer|comply)|"
    r"I'?m afraid I (?:can(?:no|')t|won'?t)|As an AI(?: language model)?,? I|"
    r"(?:Unfortunately|Sorry),? I (?:can(?:no|')t|am not able)|I must decline|"
    r"Lo siento,? (?:pero )?no puedo|No puedo ayudar|Je suis désolé,? (?:mais )?je ne peux pas|"
    r"Je ne peux pas (?:vous )?(?:aider|répondre)|Es tut mir leid,? (?:aber )?ich kann|"
    r"Ich kann (?:dabei )?nicht helfen|Mi dispiace,? (?:ma )?non posso|Desculpe,? (?:mas )?não posso|"
    r"Извините,? (?:но )?я не могу|Я не могу (?:помочь|ответить)|抱歉|对不起，我(?:不能|无法)|"
    r"我(?:不能|无法)(?:回答|帮助|提供)|申し訳(?:ありません|ございません)|죄송(?:합니다|하지만)|"
    r"Üzgünüm|Xin lỗi,? tôi không thể|Λυπάμαι|Îmi pare rău)",
    re.IGNORECASE)
_MD_LIST = re.compile(r"(?m)^\s*[-*•]\s+\S")
_NUM_LIST = re.compile(r"(?m)^\s*\d+[.)]\s+\S")
_HEADING = re.compile(r"(?m)^\s{0,3}#{1,6}\s+\S")
_TABLE = re.compile(r"(?m)^\s*\|.*\|\s*$")
_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?>")
_URL = re.compile(r"https?://\S+|www\.\S+")


def reply_format(reply: str | None) -> dict:
    """Cheap surface-format flags of a reply (markdown list, code block, all caps, ...)."""
    r = reply or ""
    letters = [c for c in r if c.isalpha()]
    cased = [c for c in letters if c.isupper() or c.islower()]
    return {
        "markdown_list": len(_MD_LIST.findall(r)) >= 2,
        "numbered_list": len(_NUM_LIST.findall(r)) >= 2,
        "code_block": "```" in r,
        "heading": bool(_HEADING.search(r)),
        "table": len(_TABLE.findall(r)) >= 2,
        "html": bool(_HTML.search(r)),
        "url": bool(_URL.search(r)),
        "all_caps": len(cased) >= 8 and all(c.isupper() for c in cased),
        "lines": r.count("\n") + 1 if r else 0,
    }


def is_refusal(reply: str | None) -> bool:
    """A reply that declines to answer (English and a few other languages, start of reply)."""
    if not reply:
        return False
    return bool(_REFUSAL.search(reply[:400]))


def behaviour(prompt: str | None, reply: str | None, prompt_lang: str | None,
              reply_lang: str | None) -> dict:
    """Observable behaviour of a pair; languages come from the caller (e.g. ``langid``).

    ``unrequested_switch`` is the mistranslation signal: the reply's language differs from the
    prompt's and the prompt neither asks for that language nor asks for a translation with an
    unnamed target.
    """
    req, translation = analyse(prompt)
    switch = bool(prompt_lang and reply_lang and not same_language(prompt_lang, reply_lang))
    requested_ok = same_language(req, reply_lang) or (translation and req is None)
    return {
        "prompt_lang": canonical(prompt_lang),
        "reply_lang": canonical(reply_lang),
        "language_switch": switch,
        "requested_lang": req,
        "translation_request": translation,
        "unrequested_switch": switch and not requested_ok,
        "refusal": is_refusal(reply),
        "reply_chars": len(reply or ""),
        "prompt_chars": len(prompt or ""),
        "empty_reply": not (reply or "").strip(),
        "echo": bool(prompt and reply and " ".join(prompt.split()).lower()
                     == " ".join(reply.split()).lower()),
        "format": reply_format(reply),
    }



__all__ = ["behaviour", "reply_format", "is_refusal"]
