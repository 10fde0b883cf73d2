"""Table-driven tests of forensics.language.requests and forensics.quality.behaviour (pure functions shared by pipelines and triage)."""

from __future__ import annotations

import pytest

from forensics.language.names import LANGUAGE_NAMES, canonical, language_mentions, same_language
from forensics.language.requests import is_translation_request, requested_language
from forensics.quality.behaviour import behaviour, is_refusal, reply_format


def test_language_names_cover_required_set():
    need = "en de es zh vi tr el ro ru uk ar hi ja ko fr it pt nl pl sv cs da fi no hu he fa th " \
           "id ms bn ta ur sw bg sr hr sk sl lt lv et ca".split()
    missing = [c for c in need if c not in LANGUAGE_NAMES]
    assert not missing
    assert len(LANGUAGE_NAMES) >= 45


MENTIONS = [
    ("the user seems Russian; the question reads like a translation", ["ru"]),
    ("La réponse est en russe", ["ru"]),
    ("Пользователь пишет на русском языке", ["ru"]),
    ("Antwort auf Deutsch, nicht Englisch", ["de", "en"]),
    ("respuesta en español", ["es"]),
    ("用中文回答", ["zh"]),
    ("日本語で答えてください", ["ja"]),
    ("한국어로 대답해 주세요", ["ko"]),
    ("στα ελληνικά", ["el"]),
    ("răspunde în română", ["ro"]),
    ("trả lời bằng tiếng Việt", ["vi"]),
    ("Türkçe cevap ver", ["tr"]),
    ("أجب باللغة العربية", ["ar"]),
    ("हिंदी में जवाब दें", ["hi"]),
    ("Mandarin and Cantonese differ", ["zh"]),
    ("an NLA says the register is Portuguese (Brazilian) and then Dutch", ["pt", "nl"]),
    ("", []),
    ("Deutschland is a country", []),         # country, not the language
    ("please polish this text", []),           # verb, not the language
    ("Polish grammar is hard", ["pl"]),
    ("The German-speaking user", ["de"]),
]


@pytest.mark.parametrize("text,expected", MENTIONS)
def test_language_mentions(text, expected):
    assert language_mentions(text) == expected


REQUESTS = [
    # English instructions
    ("Translate into German: The cat sleeps.", "de", True),
    ("Please translate the following sentence into Spanish.\n\nThe cat sleeps.", "es", True),
    ("Translate this from English to French: good morning", "fr", True),
    ("How would you say this in Greek? \"Good morning\"", "el", True),
    ("How do you say 'thank you' in Japanese?", "ja", True),
    ("Answer in Spanish: Where is the station?", "es", False),
    ("Where is the station? Please reply in French.", "fr", False),
    ("Respond only in Romanian. What is the capital of France?", "ro", False),
    ("Explain photosynthesis in simple Vietnamese.", "vi", False),
    ("Can you answer in Turkish?", "tr", False),
    ("Write a short poem. Use Italian.", "it", False),
    ("In German, please: what time is it?", "de", False),
    ("What is the capital of Spain? In Portuguese:", "pt", False),
    ("Give me the Russian translation of 'apple'.", "ru", True),
    ("Translate the following text:\nBonjour tout le monde", None, True),
    ("Explain it to me in plain English.", "en", False),
    # other languages
    ("¿Puedes responder en inglés?", "en", False),
    ("Responde en español, por favor: ¿qué hora es?", "es", False),
    ("Traduce al inglés: el gato duerme", "en", True),
    ("Réponds en anglais à cette question : quelle heure est-il ?", "en", False),
    ("Traduis en allemand : le chat dort", "de", True),
    ("Übersetze ins Englische: Die Katze schläft.", "en", True),
    ("Bitte antworte auf Deutsch.", "de", False),
    ("Antworte auf Englisch: Wie spät ist es?", "en", False),
    ("Rispondi in italiano, per favore.", "it", False),
    ("Traduza para o inglês: o gato dorme", "en", True),
    ("Ответь на английском: который час?", "en", False),
    ("Переведи на немецкий: кошка спит", "de", True),
    ("Отвечай по-русски.", "ru", False),
    ("用中文回答：现在几点？", "zh", False),
    ("请把这句话翻译成英文：猫在睡觉", "en", True),
    ("日本語で答えてください。", "ja", False),
    ("英語に翻訳してください：猫が寝ています", "en", True),
    ("한국어로 대답해 주세요.", "ko", False),
    ("영어로 번역해 주세요: 고양이가 잔다", "en", True),
    ("Μετάφρασε στα αγγλικά: η γάτα κοιμάται", "en", True),
    ("Απάντησε στα ελληνικά.", "el", False),
    ("Răspunde în engleză, te rog.", "en", False),
    ("Tradu în franceză: pisica doarme", "fr", True),
    ("Trả lời bằng tiếng Anh.", "en", False),
    ("Dịch sang tiếng Đức: con mèo ngủ", "de", True),
    ("Türkçe cevap ver.", "tr", False),
    ("İngilizceye çevir: kedi uyuyor", "en", True),
    ("ترجم إلى الإنجليزية: القطة نائمة", "en", True),
    ("هिंदी में जवाब दें".replace("ه", "ह"), "hi", False),
    ("Vertaal naar het Engels: de kat slaapt", "en", True),
    ("Odpowiedz po polsku.", "pl", False),
    # held-out style phrasings
    ("Reply using Brazilian Portuguese only.", "pt", False),
    ("I need this in Arabic: where is the bank?", "ar", False),
    ("English please", "en", False),
    ("Write a German poem", "de", False),
    ("Could you write your answer in Korean?", "ko", False),
    ("Rewrite the paragraph in formal French.", "fr", False),
    ("From German to English: Guten Tag", "en", True),
    ("Antworten Sie bitte auf Englisch.", "en", False),
    ("Traducí esto al alemán: hola", "de", True),
    ("Write a short essay about German history.", None, False),
    # a target followed by the topic or the rest of the task
    ("Generate an argumentative essay in Spanish about the importance of sleep.", "es", False),
    ("Explain in simple terms in Dutch how a compiler works.", "nl", False),
    ("Can you write me a poem in Italian about the sea?", "it", False),
    ("Summarize this article in German in three sentences.", "de", False),
    ("Describe in Portuguese why the sky is blue.", "pt", False),
    ("I want to learn English.", None, False),
    ("Did Tolstoy write in French?", None, False),
    # instruction first, content later mentioning another language
    ("Please translate the following sentence into Spanish.\n\nThis behavior prompted Luther to "
     "write the hymn \"Ein neues Lied\", which is generally known in English by John C.", "es", True),
    ("Translate into German: The book, later written in French by the same author, sold well.",
     "de", True),
    # merely mentions a language: must NOT fire
    ("Read this: The hymn, prompting Luther to write a reply to critics at length and in public, "
     "is generally known in English by its first line. Who wrote it?", None, False),
    ("What language is spoken in Brazil?", None, False),
    ("Who translated the Bible into German?", None, False),
    ("Why do Swiss people speak in French and German?", None, False),
    ("Is this sentence written in Spanish?", None, False),
    ("What is the population of Spanish-speaking countries?", None, False),
    ("Which is harder to learn, German or French?", None, False),
    ("Tell me about German history.", None, False),
    ("Who wrote Don Quixote in Spanish literature?", None, False),
    ("How many people speak Russian?", None, False),
    ("In French cuisine, what is a roux?", None, False),
    ("Do you speak French?", None, False),
    ("When was the Quran first translated into English?", None, False),
    ("¿Qué idiomas se hablan en España?", None, False),
    ("Wie viele Menschen sprechen Deutsch?", None, False),
    ("What did the Normans do?", None, False),
    ("", None, False),
]


@pytest.mark.parametrize("prompt,lang,translation", REQUESTS)
def test_requested_language(prompt, lang, translation):
    assert requested_language(prompt) == lang, prompt
    assert is_translation_request(prompt) == translation, prompt


def test_canonical_and_same_language():
    assert canonical("nb") == "no" and same_language("nn", "no")
    assert canonical("zh-TW") == "zh"
    assert not same_language(None, "en") and not same_language("de", "en")


BEHAVIOUR = [
    # prompt, reply, plang, rlang -> unrequested_switch
    ("What is the capital of France?", "Paris ist die Hauptstadt.", "en", "de", True),
    ("Answer in German: what is the capital of France?", "Paris ist die Hauptstadt.", "en", "de",
     False),
    ("Answer in Spanish: what is the capital of France?", "Paris ist die Hauptstadt.", "en", "de",
     True),
    ("Translate the following: Bonjour", "Good morning", "fr", "en", False),
    ("Wie spät ist es?", "Es ist drei Uhr.", "de", "de", False),
    ("What time is it?", "It is three.", "en", "en", False),
    ("What time is it?", "Es ist drei Uhr.", "en", None, False),   # unknown reply language
]


@pytest.mark.parametrize("prompt,reply,pl,rl,expected", BEHAVIOUR)
def test_behaviour_unrequested_switch(prompt, reply, pl, rl, expected):
    b = behaviour(prompt, reply, pl, rl)
    assert b["unrequested_switch"] is expected
    assert b["reply_chars"] == len(reply)
    assert b["language_switch"] == bool(pl and rl and pl != rl)


def test_behaviour_refusal_format_echo():
    b = behaviour("List fruits", "I'm sorry, but I can't help with that request.", "en", "en")
    assert b["refusal"] and not b["echo"]
    assert is_refusal("Lo siento, no puedo ayudarte con eso.")
    assert not is_refusal("The answer is 42.")
    f = reply_format("- apples\n- pears\n```python\nprint(1)\n```")
    assert f["markdown_list"] and f["code_block"] and not f["all_caps"]
    assert reply_format("THIS IS ALL CAPS TEXT")["all_caps"]
    assert reply_format("<script>alert(1)</script>")["html"]
    e = behaviour("Hello there", "hello   there", "en", "en")
    assert e["echo"] and not behaviour("a", "", "en", None)["echo"]
    assert behaviour("a", "  ", None, None)["empty_reply"]
