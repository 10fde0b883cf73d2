"""Hand-written request phrasings of the language development set (:mod:`forensics.testing.langdev`).

The only text of the dev set that is not copied from a real source: how a person asks for an
output language, says "translate", or merely talks about a language. Each pool is a list of
templates; ``{L}`` is the target language's name in the template's language (CLDR names via
``langcodes``; Russian takes the prepositional ``-ом`` form, see :func:`lang_form`), ``{q}`` the
question. Every pool is split in two disjoint halves by position (even index: ``dev``, odd:
``check``); the check half is never looked at while the request reader is tuned.

Kinds of template:

- ``REQUEST``: a standalone sentence asking for the reply language; the builder puts it
  before the question (start), after it (end) or between a context sentence and the question
  (middle).
- ``INLINE``: the request woven into the sentence that carries the question.
- ``PASSAGE``: an instruction about a passage that follows ("Explain this passage in X:");
  used for languages without question text here (fr, ru, ar, ja).
- ``TRANSLATE``: a translation request (the reply in the target language by design).
- ``TALK``: a sentence that mentions a language without asking for it.
"""

from __future__ import annotations

REQUEST: dict[str, list[str]] = {
    "en": [
        "Answer in {L}.", "Please reply in {L}.", "Respond only in {L}.", "Use {L}.",
        "Write your answer in {L}.", "Your reply must be in {L}.",
        "I need the answer in {L}, please.", "Make sure the whole response is written in {L}.",
        "{L} please.", "Reply in {L} only.", "Could you answer this in {L}?",
        "Keep your answer short and write it in {L}.", "Please respond in {L} so my colleague can read it.",
        "The answer should be in {L}.", "Write in {L}.", "Answer me in {L}, thanks.",
    ],
    "de": [
        "Antworte auf {L}.", "Bitte antworte auf {L}.", "Schreib die Antwort auf {L}.",
        "Die Antwort bitte auf {L}.", "Antworten Sie bitte ausschließlich auf {L}.",
        "Verwende für deine Antwort {L}.", "Bitte formuliere deine Antwort auf {L}.",
        "Auf {L}, bitte.", "Gib mir die Antwort auf {L}.", "Antwort bitte nur auf {L}.",
    ],
    "fr": [
        "Réponds en {L}.", "Répondez en {L}, s'il vous plaît.", "Merci de répondre en {L}.",
        "Écris ta réponse en {L}.", "Réponse en {L} uniquement.", "Je voudrais la réponse en {L}.",
    ],
    "es": [
        "Responde en {L}.", "Por favor, contesta en {L}.", "Escribe la respuesta en {L}.",
        "Quiero la respuesta en {L}.", "Respóndeme solo en {L}, por favor.",
        "La respuesta debe estar en {L}.", "Contéstame en {L}.", "Dame la respuesta en {L}.",
    ],
    "zh": [
        "请用{L}回答。", "用{L}回答。", "请用{L}写出答案。", "回答请使用{L}。", "请只用{L}回复。",
        "答案需要用{L}。", "麻烦用{L}回复我。", "请你用{L}作答。",
    ],
    "ru": ["Ответь на {L}.", "Пожалуйста, отвечай на {L} языке.", "Напиши ответ на {L}.",
           "Ответ дай на {L} языке."],
    "ar": ["أجب باللغة {L}.", "من فضلك اكتب الإجابة باللغة {L}.", "الرجاء الرد باللغة {L}.",
           "اكتب ردك باللغة {L} فقط."],
    "ja": ["{L}で答えてください。", "{L}で回答してください。", "答えは{L}でお願いします。",
           "{L}で返事を書いてください。"],
}

INLINE: dict[str, list[str]] = {
    "en": [
        "Explain in simple terms in {L}: {q}", "In {L}, briefly answer the following question: {q}",
        "Write a short paragraph in {L} that answers this question: {q}",
        "Answer the following question in {L}. {q}", "Using {L}, tell me: {q}",
        "{q} (answer in {L})", "Generate a two-sentence answer in {L} to: {q}",
        "Can you explain in {L} how this works? {q}",
    ],
    "de": ["Beantworte folgende Frage auf {L}: {q}", "Erkläre mir auf {L}: {q}",
           "{q} Bitte auf {L} antworten.", "Kannst du mir auf {L} sagen: {q}"],
    "es": ["Explica en {L}: {q}", "Responde en {L} a esta pregunta: {q}",
           "{q} Contesta en {L}, por favor.", "Dime en {L}: {q}"],
    "zh": ["请用{L}回答下面的问题：{q}", "{q}（请用{L}回答）", "用{L}解释一下：{q}",
           "请你用{L}告诉我：{q}"],
}

PASSAGE: dict[str, list[str]] = {
    "en": ["Explain this passage in {L}:", "Summarize the following text in {L}.",
           "Rewrite this paragraph in {L}:", "Describe what this text says, in {L}:"],
    "de": ["Erkläre diesen Text auf {L}:", "Fasse den folgenden Absatz auf {L} zusammen:"],
    "fr": ["Explique ce passage en {L} :", "Résume le texte suivant en {L} :",
           "Reformule ce paragraphe en {L} :", "Décris ce que dit ce texte, en {L} :"],
    "es": ["Explica este texto en {L}:", "Resume el siguiente párrafo en {L}:"],
    "zh": ["请用{L}解释这段话：", "请用{L}概括下面这段文字："],
    "ru": ["Объясни этот текст на {L} языке:", "Перескажи этот абзац на {L}:",
           "Кратко изложи текст на {L} языке:", "Опиши, о чём этот текст, на {L}:"],
    "ar": ["اشرح هذا النص باللغة {L}:", "لخص الفقرة التالية باللغة {L}:",
           "أعد كتابة هذه الفقرة باللغة {L}:", "صف ما يقوله هذا النص باللغة {L}:"],
    "ja": ["この文章を{L}で説明してください：", "次の段落を{L}で要約してください：",
           "この段落を{L}で書き直してください：", "この文章の内容を{L}で説明して："],
}

TRANSLATE: dict[str, list[str]] = {
    "en": ["Translate into {L}:", "Translate the following text to {L}.",
           "Please translate this paragraph into {L}:", "{L} translation of this, please:"],
    "de": ["Übersetze den folgenden Text auf {L}:", "Bitte übersetze diesen Absatz auf {L}:"],
    "fr": ["Traduis en {L} :", "Traduisez ce paragraphe en {L}, s'il vous plaît :"],
    "es": ["Traduce al {L}:", "Por favor, traduce este párrafo al {L}:"],
    "zh": ["翻译成{L}：", "请把这段话翻译成{L}："],
    "ru": ["Переведи на {L}:", "Переведите этот абзац на {L} язык:"],
    "ar": ["ترجم إلى {L}:", "من فضلك ترجم هذه الفقرة إلى {L}:"],
    "ja": ["{L}に翻訳してください：", "この段落を{L}に訳して："],
}

TALK: dict[str, list[str]] = {
    "en": ["I'm learning {L} at the moment.", "My grandmother only speaks {L}.",
           "Is {L} hard to learn? Anyway,", "Someone told me this was first written in {L}.",
           "My teacher says {L} grammar is easy.", "I read an article about {L} dialects yesterday."],
    "de": ["Ich lerne gerade {L}.", "Meine Kollegin spricht {L}, ich leider nicht.",
           "Ist {L} schwer zu lernen? Egal.", "Ich habe gestern einen Artikel über {L} gelesen."],
    "es": ["Estoy aprendiendo {L}.", "Mi abuela solo habla {L}.",
           "¿Es difícil aprender {L}? Bueno, da igual.", "Ayer leí un artículo sobre el {L}."],
    "zh": ["我正在学{L}。", "听说{L}很难学。", "我奶奶只会说{L}。", "昨天我读了一篇关于{L}的文章。"],
}


def lang_form(phrasing_lang: str, target: str, template: str) -> str:
    """The target language's name as a template in ``phrasing_lang`` needs it: CLDR display
    names (``langcodes``); Russian after "на" takes the prepositional (``-ий`` -> ``-ом``)
    unless the template asks for the accusative ("Переведи на ...", "на ... язык")."""
    import langcodes

    name = langcodes.Language.get(target).display_name(phrasing_lang)
    if phrasing_lang == "ru" and "{L} язык:" not in template and not template.startswith("Переведи"):
        if name.endswith("ий"):
            name = name[:-2] + "ом"
    return name


def split_pool(pool: list[str], split: str) -> list[str]:
    """The ``dev`` (even positions) or ``check`` (odd positions) half of a pool."""
    return pool[0::2] if split == "dev" else pool[1::2]


__all__ = ["REQUEST", "INLINE", "PASSAGE", "TRANSLATE", "TALK", "lang_form", "split_pool"]
