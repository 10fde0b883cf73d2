"""Table tests of forensics.language.expected: the language a reply should be in, and why.

Phrasings are written for these tests (requests at the start, middle and end of a prompt, in
English, German, French, Spanish, Russian, Chinese, Arabic and a few more), with negatives that
only talk about a language and translation requests."""

from __future__ import annotations

import pytest

from forensics.language.expected import expected_language

# prompt, expected lang, reason
REQUESTS = [
    # ---- English: start, middle, end
    ("Reply in Spanish. What is the tallest mountain in Africa?", "es", "request"),
    ("What is the tallest mountain in Africa? Reply in Spanish.", "es", "request"),
    ("Write a 250 word essay about coral reefs. Use Turkish.", "tr", "request"),
    ("Write in Arabic. Describe a morning at a fish market.", "ar", "request"),
    ("Generate a persuasive essay in Russian about why cities need more parks.", "ru", "request"),
    ("Explain in simple terms in Indonesian how a heat pump moves warmth indoors.", "id",
     "request"),
    ("List three tips for better sleep, and please answer in German.", "de", "request"),
    ("I'm preparing slides for my team in Lyon.\nCould you draft the summary in French?\n"
     "Keep it under 100 words.", "fr", "request"),
    ("Compose a short poem about autumn rain in Japanese.", "ja", "request"),
    ("Describe the water cycle for a ten-year-old. Respond only in Portuguese.", "pt",
     "request"),
    ("Please give your answer in Korean: what are the benefits of cycling to work?", "ko",
     "request"),
    ("Summarise the plot of a heist movie you invent, in Italian.", "it", "request"),
    ("Your answer must be written in Dutch. Why do leaves change colour?", "nl", "request"),
    ("In Chinese, please: how does a vaccine train the immune system?", "zh", "request"),
    ("Answer the following question using Vietnamese. How do tides work?", "vi", "request"),
    ("Tell me a bedtime story about a brave turtle, in Greek.", "el", "request"),
    # ---- German
    ("Antworte auf Englisch: Warum ist der Himmel blau?", "en", "request"),
    ("Warum ist der Himmel blau? Bitte antworte auf Englisch.", "en", "request"),
    ("Schreib mir einen kurzen Text über Bienen auf Französisch.", "fr", "request"),
    ("Erkläre bitte auf Spanisch, wie eine Batterie funktioniert.", "es", "request"),
    ("Kannst du mir das auf Russisch beantworten? Was ist ein Schwarzes Loch?", "ru", "request"),
    # ---- French
    ("Réponds en anglais : pourquoi le ciel est-il bleu ?", "en", "request"),
    ("Pourquoi le ciel est-il bleu ? Réponds en anglais.", "en", "request"),
    ("Écris un petit poème sur la mer en espagnol.", "es", "request"),
    ("Explique-moi en allemand comment fonctionne une éolienne, s'il te plaît.", "de", "request"),
    ("Merci de répondre en italien. Quelle est la capitale du Canada ?", "it", "request"),
    # ---- Spanish
    ("Responde en inglés: ¿por qué el mar es salado?", "en", "request"),
    ("¿Por qué el mar es salado? Contesta en francés, por favor.", "fr", "request"),
    ("Escribe un ensayo corto en alemán sobre la energía solar.", "de", "request"),
    ("Explícame en ruso cómo se forma un arcoíris.", "ru", "request"),
    # ---- Russian
    ("Ответь на английском: почему небо голубое?", "en", "request"),
    ("Почему небо голубое? Ответь, пожалуйста, по-английски.", "en", "request"),
    ("Напиши короткое стихотворение о зиме на немецком языке.", "de", "request"),
    ("Объясни на французском, как работает фотосинтез.", "fr", "request"),
    # ---- Chinese
    ("用英语回答：为什么天空是蓝色的？", "en", "request"),
    ("为什么天空是蓝色的？请用英语回答。", "en", "request"),
    ("请用法语写一首关于春天的短诗。", "fr", "request"),
    ("用日语解释一下光合作用。", "ja", "request"),
    ("用英语写一篇关于气候变化对农业影响的三百字短文，要求结构清晰、论证充分。", "en", "request"),
    # ---- Arabic
    ("أجب باللغة الإنجليزية: لماذا السماء زرقاء؟", "en", "request"),
    ("لماذا السماء زرقاء؟ من فضلك أجب بالإنجليزية.", "en", "request"),
    ("اكتب بالفرنسية فقرة قصيرة عن البحر.", "fr", "request"),
    # ---- other languages
    ("Rispondi in inglese: perché il cielo è blu?", "en", "request"),
    ("Responda em inglês: por que o céu é azul?", "en", "request"),
    ("日本語で答えてください。空はなぜ青いのですか？", "ja", "request"),
    ("İngilizce cevap ver: gökyüzü neden mavi?", "en", "request"),
    # ---- translations: the target language
    ("Translate into German: The train leaves at nine.", "de", "translation"),
    ("Please translate this paragraph to French.\n\nThe museum opens early on Sundays.", "fr",
     "translation"),
    ("Übersetze ins Englische: Der Zug fährt um neun.", "en", "translation"),
    ("Traduis en espagnol : le musée ouvre tôt le dimanche.", "es", "translation"),
    ("Traduce al inglés: el museo abre temprano los domingos.", "en", "translation"),
    ("Переведи на английский: поезд уходит в девять.", "en", "translation"),
    ("请把这句话翻译成英文：火车九点出发。", "en", "translation"),
    ("ترجم إلى الإنجليزية: يغادر القطار في التاسعة.", "en", "translation"),
    ("How would you say this in Spanish? \"The museum opens early on Sundays and closes late "
     "on Fridays.\"", "es", "translation"),
    ("Translate the following text:\nLe musée ouvre tôt le dimanche.", None, "translation"),
    ("Please provide a careful and complete translation of the following business letter into "
     "Spanish, keeping the tone.", "es", "translation"),
]

# prompts that only talk about a language: the reply belongs in the prompt's language
ABOUT = [
    ("What does 'Schadenfreude' mean in English?", "en"),
    ("How do I say hello in French?", "en"),
    ("Is Portuguese hard to learn?", "en"),
    ("Who translated the Bible into German?", "en"),
    ("What language is spoken in Brazil?", "en"),
    ("Why do people in Quebec speak French?", "en"),
    ("Which is easier for an English speaker, Spanish or Italian?", "en"),
    ("My grandmother only speaks Russian. How can I help her learn to use a smartphone?", "en"),
    ("Tell me about the history of the Arabic alphabet.", "en"),
    ("Was bedeutet das englische Wort 'awkward'?", "de"),
    ("Wie viele Menschen sprechen weltweit Spanisch?", "de"),
    ("Est-ce que le chinois est difficile à apprendre ?", "fr"),
    ("¿Cuántas personas hablan árabe en el mundo?", "es"),
    ("Сколько людей говорит на китайском языке?", "ru"),
    ("学习德语难吗？", "zh"),
    ("هل تعلم اللغة الروسية صعب؟", "ar"),
    ("What's the German word for 'glove'?", "en"),
    ("¿Cómo se dice 'mariposa' en inglés?", "es"),
    ("¿Qué nombre se usa para la selva amazónica en inglés?", "es"),
    ("Comment dit-on « merci » en allemand ?", "fr"),
    ("Wie sagt man 'Schmetterling' auf Englisch?", "de"),
    ("Как сказать «спасибо» по-немецки?", "ru"),
    ("萨克森花园用波兰语怎么说？", "zh"),
    ("كيف تقول شكرا بالفرنسية؟", "ar"),
    # language names inside content, not instructions
    ("The river (Portuguese: Rio Grande; Spanish: Río Grande) is long. How long is it?", "en"),
    ("The Amazon rainforest (Portuguese:\nFloresta Amazônica) covers nine nations. Which ones?",
     "en"),
    ("In 1611 a committee of scholars finished their English translation of the whole Bible, "
     "which was printed in London. Who paid for the printing?", "en"),
    ("El poema, que hoy se conoce en inglés por la traducción de su primer verso, fue escrito "
     "en 1523. ¿Quién lo escribió?", "es"),
]


@pytest.mark.parametrize("prompt,lang,reason", REQUESTS)
def test_requests_and_translations(prompt, lang, reason):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, reason), (prompt, e)
    if lang is not None:
        # the evidence is the part of the prompt that carries the request
        assert e.span is not None and e.evidence == prompt[e.span[0]:e.span[1]]
        assert 0 < len(e.evidence) <= 200


@pytest.mark.parametrize("prompt,lang", ABOUT)
def test_talking_about_a_language_is_not_a_request(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "prompt_language"), (prompt, e)
    assert e.span is None


def test_given_prompt_language_and_unknown():
    e = expected_language("Quelle est la capitale du Canada ?", prompt_lang="fr")
    assert (e.lang, e.reason) == ("fr", "prompt_language")
    # a request wins over the prompt's language
    e = expected_language("Quelle est la capitale du Canada ? Réponds en anglais.", prompt_lang="fr")
    assert (e.lang, e.reason) == ("en", "request")
    assert e.evidence.startswith("Réponds en anglais")
    assert expected_language("", prompt_lang=None).reason == "unknown"
    assert expected_language("12345 !!!").reason == "unknown"


def test_request_late_in_a_long_prompt_has_its_span():
    body = "The quarterly report covers revenue, costs and hiring plans. " * 120
    p = body + "\nSummarise the report above in Spanish."
    e = expected_language(p)
    assert (e.lang, e.reason) == ("es", "request")
    assert p[e.span[0]:e.span[1]] == e.evidence and "Spanish" in e.evidence


def test_word_question_after_a_passage_is_not_a_translation():
    ctx = ("The rainforest covers most of the basin, and the river carries more water than "
           "any other in the world. Explorers reached its mouth early in the sixteenth century. ")
    e = expected_language(ctx * 3 + "\n\nWhat is the Dutch word for the rainforest?")
    assert (e.lang, e.reason) == ("en", "prompt_language"), e
    # pointing at the text that follows makes it a translation
    e = expected_language("How would you say this in Dutch?\n\n" + ctx)
    assert (e.lang, e.reason) == ("nl", "translation"), e


GLOSSES = [
    "这份声明是用拉丁语写的，只有最后一句是用德语写的。作者是谁？",
    "这首赞美诗后来在英语中由一位牧师以另一个标题翻译出版，并在很多教堂里传唱了几百年之久，影响深远。它最早出现在哪一年？",
    # language names in glosses and narration inside a passage: not requests
    "La selva (en portugués: Floresta; en francés: Forêt) cubre nueve países. ¿Cuáles?",
    "Yağmur ormanı (Portekizce: Floresta; İspanyolca: Selva) dokuz ülkeyi kapsar. Hangileri?",
    "雨林 （葡萄牙语： Floresta；西班牙语： Selva） 覆盖九个国家。是哪些国家？",
    "Der Psalm, der auf Englisch bekannt ist als ein altes Lied, wurde 1524 gedruckt. Von wem?",
    "Esta canción, que se conoce en inglés por el título de su traducción, fue muy popular "
    "entre los estudiantes de la época. ¿Quién la escribió?",
]


@pytest.mark.parametrize("prompt", GLOSSES)
def test_language_names_in_glosses_are_not_requests(prompt):
    e = expected_language(prompt)
    assert e.reason == "prompt_language" and e.span is None, e


# ---- a header before a passage names the reply language, whatever its verb
_PASSAGE = ("\n\nThe old harbour was rebuilt after the storm, and the fishing fleet returned "
            "within two years to its former size.")
PASSAGE_HEADERS = [
    ("Shorten this paragraph in German:", "de"),
    ("Paraphrase the text below in Spanish:", "es"),
    ("Condense this passage in Italian:", "it"),
    ("Boil down this paragraph in German:", "de"),          # verb unknown: the pointer rule
    ("Résume ce texte en anglais :", "en"),
    ("Simplifie ce passage en espagnol :", "es"),
    ("Reformula este párrafo en francés:", "fr"),
    ("Fasse diesen Absatz auf Englisch zusammen:", "en"),
    ("Перескажи этот отрывок на английском языке:", "en"),
    ("Перепиши абзац на немецком:", "de"),
    ("Riassumi questo testo in inglese:", "en"),
    ("Reescreva este parágrafo em inglês:", "en"),
    ("Bu paragrafı İngilizce özetle:", "en"),
    ("Hãy tóm tắt đoạn văn này bằng tiếng Anh:", "en"),
    ("Rezumă acest text în engleză:", "en"),
    ("Συνόψισε αυτό το κείμενο στα αγγλικά:", "en"),
    ("لخص هذا النص باللغة الإنجليزية:", "en"),
    ("أعد صياغة هذه الفقرة بالفرنسية:", "fr"),
    ("用英语概括这段话：", "en"),
    ("请把下面这段文字改写成法语：", "fr"),
    ("この文章を英語で要約してください：", "en"),
    ("이 글을 영어로 요약해 주세요:", "en"),
]


@pytest.mark.parametrize("header,lang", PASSAGE_HEADERS)
def test_header_before_a_passage_is_a_request(header, lang):
    e = expected_language(header + _PASSAGE)
    assert (e.lang, e.reason) == (lang, "request"), (header, e)
    assert e.evidence and e.evidence.strip() == header.strip()


def test_label_before_a_passage_needs_a_pointer_or_a_verb():
    # "French:" alone is a gloss label inside a sentence, not a header before a passage
    e = expected_language("The harbour (French: port) was rebuilt. When?" + _PASSAGE)
    assert e.reason == "prompt_language", e
    # a pointer without a passage after it is not a header either
    e = expected_language("Boil down this paragraph in German:")
    assert e.reason == "prompt_language", e


# ---- statements about someone's language are not requests (the reply stays in the prompt's
# language); the same sentences with a wish, a need or a "you" are requests
STATEMENTS = [
    ("My grandmother only speaks in Russian. How can she use a smartphone?", "en"),
    ("I usually write to my pen pal in French. What are good topics for a letter?", "en"),
    ("We talk in Spanish at home. Is that good for my children?", "en"),
    ("Je parle en anglais avec mes collègues. Comment améliorer mon accent ?", "fr"),
    ("Ma grand-mère écrit en italien. Quels livres lui offrir ?", "fr"),
    ("Mi abuela solo habla en inglés. ¿Cómo puedo ayudarla?", "es"),
    ("Meine Oma spricht nur auf Englisch. Wie kann ich ihr helfen?", "de"),
    ("Моя бабушка говорит только на английском. Как ей помочь?", "ru"),
    ("Мы пишем на немецком на работе. Какие есть хорошие словари?", "ru"),
    ("我奶奶只会说英语。她怎么学用智能手机？", "zh"),
    ("我们在家说法语。这对孩子好吗？", "zh"),
    ("他用德语写日记。这是个好习惯吗？", "zh"),
    ("我儿子在学英语，请用简单的话解释光合作用。", "zh"),
    ("Bà tôi chỉ nói bằng tiếng Anh. Làm sao để giúp bà?", "vi"),
    ("جدتي تتحدث بالإنجليزية فقط. كيف أساعدها؟", "ar"),
    ("تتحدث جدتي بالإنجليزية فقط. كيف أساعدها؟", "ar"),
    ("يترجم أخي الكتب إلى الفرنسية. هل هذا عمل جيد؟", "ar"),
    # a noun phrase as subject, and habitual adverbs in Chinese
    ("The nurse replied in Portuguese. Was that polite?", "en"),
    ("Many shop owners in Brussels answer in Dutch. Why is that?", "en"),
    ("El camarero contesta siempre en francés. ¿Es normal?", "es"),
    ("Le chauffeur répond en allemand. Est-ce courant ?", "fr"),
    ("Der Kellner antwortet auf Italienisch. Ist das üblich?", "de"),
    ("小王总是用日语回答。这正常吗？", "zh"),
    # a question about a translated name is about a word, not a translation request
    ("What is the Swedish translation of the film's title?", "en"),
    ("我的邻居经常用法语写信。这有什么好处？", "zh"),
]

WISHES = [
    ("I need the answer in French.", "fr"),
    ("My boss wants the summary in German. What does a heat pump do?", "de"),
    ("I would like you to reply in Spanish. Why is the sky blue?", "es"),
    ("I am learning Spanish, so please answer in Spanish.", "es"),
    ("Je voudrais une réponse en anglais. Pourquoi le ciel est bleu ?", "en"),
    ("Mi jefe quiere el resumen en inglés. ¿Qué es una bomba de calor?", "en"),
    ("Ich möchte die Antwort auf Englisch. Warum ist der Himmel blau?", "en"),
    ("Я хочу ответ на английском. Почему небо голубое?", "en"),
    ("我想要用英语回答。为什么天空是蓝色的？", "en"),
    ("我奶奶只会说英语，请用英语回答。", "en"),
    ("أريد الإجابة بالإنجليزية. لماذا السماء زرقاء؟", "en"),
    ("تحدث بالإنجليزية من فضلك.", "en"),
    ("The reply must be in Italian. What is a heat pump?", "it"),
    ("Always answer in German. What is a heat pump?", "de"),
    ("总是用英语回答。为什么天空是蓝色的？", "en"),
]

LABELS_AND_IMPERATIVES = [
    # a label whose value is the reply language, in several languages
    ("Output language: Swedish. Why do cats purr?", "sv"),
    ("Why do cats purr?\nResponse language: Swedish", "sv"),
    ("Sprache der Antwort: Schwedisch. Warum schnurren Katzen?", "sv"),
    ("Langue de réponse : suédois. Pourquoi les chats ronronnent-ils ?", "sv"),
    ("Idioma de respuesta: sueco. ¿Por qué ronronean los gatos?", "sv"),
    ("Язык ответа: шведский. Почему кошки мурлычут?", "sv"),
    ("输出语言：瑞典语。猫为什么会发出呼噜声？", "sv"),
    # an imperative of speaking that opens its clause; "only" between marker and language
    ("From now on, speak Swedish. Why do cats purr?", "sv"),
    ("Sprich bitte Schwedisch. Warum schnurren Katzen?", "sv"),
    ("Why do cats purr? Respond using only Swedish.", "sv"),
    # a Russian infinitive after "can you"
    ("Можешь ответить на шведском? Почему кошки мурлычут?", "sv"),
]


@pytest.mark.parametrize("prompt,lang", LABELS_AND_IMPERATIVES)
def test_labels_and_speak_imperatives_are_requests(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "request"), (prompt, e)


@pytest.mark.parametrize("prompt,lang", [
    ("Do you speak Swedish? Why do cats purr?", "en"),
    ("I speak Swedish with my cat. Why do cats purr?", "en"),
    ("The official language: Swedish. Why do cats purr?", "en"),
    # scripts without spaces: the language as topic or object, not as the reply's language
    ("大家都觉得瑞典语很好听。猫为什么会发出呼噜声？", "zh"),
    ("我打算明年学瑞典语。猫为什么会发出呼噜声？", "zh"),
    ("スウェーデン語を勉強しています。猫はなぜ喉を鳴らすのですか？", "ja"),
    ("스웨덴어를 배우고 있어요. 고양이는 왜 그르렁거리나요?", "ko"),
])
def test_speaking_about_speaking_is_not_a_request(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "prompt_language"), (prompt, e)


TRANSLATION_QUESTIONS = [
    # ... unless it quotes a phrase to translate, or asks for it
    ("What is the Swedish translation of 'the library closes early on rainy Sundays'?", "sv"),
    ("Can you provide the Swedish translation? The library closes early on rainy Sundays.", "sv"),
]


@pytest.mark.parametrize("prompt,lang", TRANSLATION_QUESTIONS)
def test_quoted_or_asked_translations_are_translations(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "translation"), (prompt, e)


@pytest.mark.parametrize("prompt,lang", STATEMENTS)
def test_statements_about_a_language_are_not_requests(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "prompt_language"), (prompt, e)


@pytest.mark.parametrize("prompt,lang", WISHES)
def test_wishes_and_needs_are_requests(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "request"), (prompt, e)


def test_a_label_before_a_passage_is_not_a_header():
    # a label names the passage's own language; the request that follows decides
    p = "Original text in French:" + _PASSAGE + "\nTranslate it into English."
    e = expected_language(p)
    assert (e.lang, e.reason) == ("en", "translation"), e
    # a pointer header yields to a request elsewhere in the prompt
    p = "Boil down this paragraph in German:" + _PASSAGE + "\nAnswer in French."
    assert expected_language(p).lang == "fr"


# a passage that narrates requests for languages (longer than ReaderKnobs.instruction_line_chars)
_NARRATING = ("The old abbot's hymns were sung in the villages around the town for a century. He "
              "also used to answer letters in Latin, and asked his students to reply in Latin as "
              "well, even when they wrote from home about ordinary matters.")


@pytest.mark.parametrize("instruction,lang", [
    ("Summarise in Swedish:", "sv"),
    ("Auf Schwedisch zusammenfassen:", "sv"),
    ("请用瑞典语解释：", "sv"),
    ("Объясни на шведском:", "sv"),
    ("Answer in Swedish.", "sv"),
])
def test_an_instruction_line_outranks_requests_narrated_in_a_passage(instruction, lang):
    for p in (instruction + "\n\n" + _NARRATING, _NARRATING + "\n\n" + instruction):
        e = expected_language(p)
        assert (e.lang, e.reason) == (lang, "request"), (p, e)
        assert instruction.rstrip(":：.") in p[e.span[0]:e.span[1]] or \
            p[e.span[0]:e.span[1]] in instruction, e


def test_instruction_line_knob():
    from forensics.language.requests import ReaderKnobs, read_prompt

    p = _NARRATING + "\n\nSummarise in Swedish:"
    assert read_prompt(p).lang == "sv"
    # when passage lines count as instructions, the first request (in the passage) wins
    assert read_prompt(p, ReaderKnobs(instruction_line_chars=10_000)).lang == "la"


@pytest.mark.parametrize("prompt,lang", [
    # questions about others in languages other than English name a language without asking
    ("Wer hat das Epos ins Schwedische übersetzt?", "de"),
    ("¿Quién tradujo el poema al sueco?", "es"),
    ("Qui a traduit le poème en suédois ?", "fr"),
    ("Кто перевёл поэму на шведский?", "ru"),
    ("谁把这首长诗翻译成瑞典语？", "zh"),
    ("这首长诗被翻译成了什么语言？", "zh"),
    ("Ai đã dịch bài thơ sang tiếng Thụy Điển?", "vi"),
    ("Destan hangi dile çevrildi?", "tr"),
    ("Cine a tradus poemul în suedeză?", "ro"),
    ("Ποιος μετέφρασε το ποίημα στα σουηδικά;", "el"),
    # a Vietnamese passive describes what something was written in
    ("Bài thơ được viết bằng tiếng Thụy Điển. Tác giả là ai?", "vi"),
])
def test_wh_questions_about_others_are_not_requests(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "prompt_language"), (prompt, e)


@pytest.mark.parametrize("prompt,lang", [
    # ... but a question that addresses the reader, or asks politely, is one
    ("¿Puedes responder en sueco? ¿Quién escribió el poema?", "sv"),
    ("你能用瑞典语回答吗？这首诗是谁写的？", "sv"),
    ("Kannst du auf Schwedisch antworten? Wer schrieb das Gedicht?", "sv"),
])
def test_questions_to_the_reader_stay_requests(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "request"), (prompt, e)


_HARBOUR = ("The old harbour was rebuilt after the storm, and the fishing fleet returned within "
            "two years to its former size. Today the town lives mostly from tourism.")


@pytest.mark.parametrize("instruction", [
    "Put the following into Swedish:",          # a pointer header, also after the text
    "Übertrage den Text ins Schwedische:",
    "把下面这段话翻成瑞典语：",
    "How would this read in Swedish?",          # a question pointing at the text
])
def test_translation_instructions_before_or_after_the_text(instruction):
    for p in (instruction + "\n\n" + _HARBOUR, _HARBOUR + "\n\n" + instruction):
        e = expected_language(p)
        assert e.lang == "sv" and e.reason in ("translation", "request"), (p, e)


@pytest.mark.parametrize("prompt,lang", [
    # the negated language is the one not wanted; a negated "forget" is still a request
    ("Don't answer in English; use Swedish. Why do cats purr?", "sv"),
    ("Please do not reply in English. Use Swedish instead. Why do cats purr?", "sv"),
    ("Antworte nicht auf Englisch, sondern auf Schwedisch.", "sv"),
    ("No respondas en inglés, responde en sueco.", "sv"),
    ("不要用英语，用瑞典语回答。", "sv"),
    ("Don't forget to answer in Swedish. Why do cats purr?", "sv"),
    ("Ne réponds qu'en suédois. Pourquoi les chats ronronnent-ils ?", "sv"),
])
def test_negated_languages_are_not_the_request(prompt, lang):
    e = expected_language(prompt)
    assert (e.lang, e.reason) == (lang, "request"), (prompt, e)


def test_lexical_max_words_knob():
    from forensics.language.requests import ReaderKnobs

    p = "How would you say this in Greek? The harbour was rebuilt after the storm."
    assert expected_language(p, "en").reason == "translation"      # 9 words >= 6 (default)
    e = expected_language(p, "en", reader=ReaderKnobs(lexical_max_words=50))
    assert (e.lang, e.reason) == ("en", "prompt_language"), e


def test_reader_types_live_in_reading_and_are_re_exported():
    """The reader's knobs and result live in language.reading; requests re-exports the same
    classes, so either import path configures the one reader."""
    from forensics.language import reading, requests

    assert requests.ReaderKnobs is reading.ReaderKnobs and requests.Reading is reading.Reading
    assert {"ReaderKnobs", "Reading"} <= set(requests.__all__)
    r = requests.read_prompt("Please answer in German: how tall is the tower?",
                             reading.ReaderKnobs())
    assert isinstance(r, reading.Reading) and r.lang == "de"
