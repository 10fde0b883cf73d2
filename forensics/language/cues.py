"""Word tables of the request reader (:mod:`forensics.language.requests`): request cues,
translation verbs, statements about someone's language and pointers at a passage.

Contract: pure data and two pure predicates; the reader decides how they combine. Cues are
pooled across languages (a cue counts only next to a marked target language, so pooling is
safe); alphabetic-script cues match whole words, the rest as substrings.
"""

from __future__ import annotations

import re

# Request cues: imperatives and politeness markers, pooled across languages. Alphabetic-script
# cues match whole words; the rest as substrings.
CUE_WORDS = [
    # English (base forms only: "translated", "written", "answered" are NOT cues)
    "answer", "reply", "respond", "write", "speak", "talk", "say", "explain", "describe",
    "summarize", "summarise", "translate", "translation", "tell", "rewrite", "rephrase",
    "paraphrase", "give", "provide", "output", "produce", "continue", "express", "render",
    "convert", "use", "using", "please", "pls", "communicate", "compose", "draft", "generate",
    "return", "chat", "converse", "reword", "redo", "only", "need", "want", "prefer",
    # Spanish
    "responde", "responda", "respóndeme", "respondeme", "contesta", "conteste", "contéstame",
    "escribe", "escriba", "explica", "explique", "explícame", "traduce", "traduzca",
    "tradúceme", "traducir", "traducción", "di", "dime", "habla", "hable", "usa", "puedes",
    "podrías", "podrias", "responder", "contestar", "escribir", "hablar", "resume", "por favor",
    # French
    "réponds", "reponds", "répondez", "repondez", "répondre", "repondre", "écris", "ecris",
    "écrivez", "écrire", "ecrire", "explique", "expliquez", "traduis", "traduisez", "traduire",
    "traduction", "dis", "dites", "parle", "parlez", "utilise", "utilisez", "résume",
    "s'il te plaît", "s'il vous plaît", "stp", "svp", "peux-tu", "pouvez-vous",
    # German
    "antworte", "antworten", "antwortest", "antworte", "beantworte", "beantworten", "schreibe",
    "schreib", "schreiben", "erkläre", "erklär", "erklären", "übersetze", "übersetz",
    "übersetzen", "übersetzung", "sag", "sage", "sprich", "sprechen", "nutze", "verwende",
    "bitte", "formuliere", "fasse", "gib", "übertrage", "übertragen", "zusammenfassen", "formulieren", "wiedergeben",
    "umschreiben", "beschreiben", "beschreibe",
    # Italian
    "rispondi", "risponda", "rispondere", "scrivi", "scriva", "spiega", "traduci", "traduca",
    "tradurre", "traduzione", "dimmi", "parla", "per favore",
    # Portuguese
    "responde", "escreva", "escreve", "explique", "traduza", "traduz", "traduzir", "tradução",
    "traducao", "diga", "fale", "você pode", "pode",
    # Dutch
    "antwoord", "beantwoord", "schrijf", "vertaal", "vertaling", "zeg", "spreek", "gebruik",
    "alsjeblieft", "alstublieft",
    # Russian / Ukrainian
    "ответь", "ответьте", "отвечай", "отвечайте", "напиши", "напишите", "объясни",
    "ответить", "написать", "объяснить", "рассказать",
    "объясните", "переведи", "переведите", "перевести", "перевод", "скажи", "скажите",
    "говори", "пожалуйста", "используй", "відповідай", "відповідайте", "переклади",
    "перекладіть", "переклад", "будь ласка",
    # Polish
    "odpowiedz", "odpowiadaj", "napisz", "wyjaśnij", "przetłumacz", "tłumaczenie", "powiedz",
    "proszę",
    # Greek
    "απάντησε", "απαντήστε", "απάντα", "γράψε", "γράψτε", "εξήγησε", "μετάφρασε",
    "μεταφράστε", "μετάφραση", "πες", "παρακαλώ",
    # Romanian
    "răspunde", "raspunde", "răspundeți", "scrie", "scrieți", "explică", "tradu", "traduceți",
    "traduce", "traducere", "spune", "vă rog", "te rog",
    # Turkish
    "cevap", "cevapla", "cevaplayın", "yanıt", "yanıtla", "yanıtlayın", "yaz", "yazın",
    "açıkla", "çevir", "çevirin", "tercüme", "söyle", "lütfen", "konuş",
    # Vietnamese
    "trả lời", "viết", "giải thích", "dịch", "nói", "hãy", "vui lòng",
    # Indonesian / Malay
    "jawab", "jawablah", "tulis", "tuliskan", "jelaskan", "terjemahkan", "terjemahan",
    "tolong", "gunakan",
    # Nordic, Finnish, Hungarian, Czech
    "svara", "svar", "skriv", "översätt", "oversæt", "oversett", "vastaa", "kirjoita",
    "käännä", "válaszolj", "írj", "fordítsd", "odpověz", "napiš", "přelož", "prosím",
    # rewriting, summarising and retelling a passage ("Rewrite this paragraph in X:",
    # "Reformule ce paragraphe en X :", "Кратко изложи текст на X языке:")
    "shorten", "simplify", "retell", "reformulate", "condense", "outline", "recount",
    "reformula", "reescribe", "reescriba", "resuma", "resumir", "parafrasea", "describa",
    "simplifica", "redacta", "redacte", "reformule", "reformulez", "reformuler", "réécris",
    "réécrivez", "reecris", "réécrire", "résumez", "résumer", "paraphrase", "paraphrasez",
    "décris", "décrivez", "raconte", "racontez", "simplifie", "simplifiez", "rédige",
    "rédigez", "umformulieren", "formuliere", "fasse", "beschreibe", "beschreib", "erzähle",
    "erzähl", "vereinfache", "riscrivi", "riformula", "riassumi", "descrivi", "parafrasa",
    "racconta", "reescreva", "reformule", "resuma", "descreva", "parafraseie", "reconte",
    "herschrijf", "herformuleer", "beschrijf", "изложи", "изложите", "перескажи",
    "перескажите", "перефразируй", "перефразируйте", "перепиши", "перепишите", "сократи",
    "сократите", "опиши", "опишите", "расскажи", "расскажите", "резюмируй", "обобщи",
    "перекажи", "перепиши", "опиши", "przepisz", "streść", "opisz", "przeformułuj",
    "özetle", "özetleyin", "anlat", "anlatın", "tóm tắt", "viết lại",
    "diễn đạt lại", "kể lại", "ringkas", "ringkaskan", "rangkum", "rangkumkan",
    "uraikan", "parafrasekan", "συνόψισε", "συνοψίστε", "ξαναγράψε", "ξαναγράψτε",
    "αναδιατύπωσε", "περίγραψε", "περιγράψτε", "rezumă", "rezumați", "reformulează",
    "reformulați", "rescrie", "rescrieți", "descrieți", "povestește",
    "sammanfatta", "omformulera", "opsummer", "omskriv", "tiivistä",
    # wishes and needs for the reply ("My boss wants the summary in German", "Je voudrais une
    # réponse en anglais", "Я хочу ответ на английском")
    "wants", "needs", "voudrais", "veux", "aimerais", "souhaite", "souhaiterais", "quiero",
    "quisiera", "necesito", "quiere", "necesita", "möchte", "möchten", "brauche", "хочу",
    "хотел", "хотела", "нужен", "нужна", "нужно", "quero", "gostaria", "preciso", "voglio",
    "vorrei", "istiyorum", "muốn", "cần", "ingin", "chcę", "potrzebuję", "θέλω", "vreau",
]
CUE_SUBSTRINGS = [
    "回答", "回复", "答复", "写", "解释", "翻译", "翻譯", "译成", "译为", "說", "说", "请", "請", "用",
    "答え", "答えて", "回答して", "書いて", "説明", "翻訳", "訳して", "話して", "言って", "ください",
    "답", "대답", "답변", "써", "작성", "설명", "번역", "말해", "주세요", "해줘", "하세요", "해라",
    "أجب", "اجب", "أجيبي", "اكتب", "اشرح", "ترجم", "ترجمة", "قل", "تحدث", "من فضلك", "الرجاء",
    "जवाब", "उत्तर", "लिखें", "लिखो", "समझाएं", "अनुवाद", "बताएं", "बताइए", "बोलें", "कृपया",
    "ענה", "תענה", "כתוב", "תרגם", "בבקשה", "پاسخ", "بنویس", "ترجمه", "لطفا",
    "ตอบ", "แปล", "เขียน", "กรุณา",
    "总结", "總結", "概括", "改写", "改寫", "重写", "重寫", "复述", "複述", "转述",
    "要約", "書き直", "言い換え", "まとめて", "요약", "다시 써", "다시 작성", "바꿔",
    "أعد كتابة", "أعد صياغة", "لخص", "لخّص", "اشرح", "أريد", "أود", "我想", "我要", "我需要", "सारांश", "दोबारा लिख", "फिर से लिख",
]
TRANSLATE_WORDS = [
    "translate", "translation", "traduce", "traduzca", "tradúceme", "traducir", "traducción",
    "traducí", "traducime", "translating",
    "traduis", "traduisez", "traduire", "traduction", "übersetze", "übersetz", "übersetzen",
    "übersetzung", "traduci", "traduca", "tradurre", "traduzione", "traduza", "traduz",
    "traduzir", "tradução", "traducao", "vertaal", "vertaling", "переведи", "переведите",
    "перевести", "перевод", "переклади", "перекладіть", "переклад", "przetłumacz",
    "tłumaczenie", "μετάφρασε", "μεταφράστε", "μετάφραση", "tradu", "traduceți", "traducere",
    "çevir", "çevirin", "tercüme", "dịch", "terjemahkan", "terjemahan", "översätt", "oversæt",
    "oversett", "käännä", "fordítsd", "přelož",
]

# Statements about someone's language ("My grandmother only speaks Russian", "Je parle en
# anglais avec mes collègues", "我奶奶只会说英语"): the part of the clause before the mention
# opens with a subject other than "you" (a first/third-person pronoun or a possessive + noun)
# and holds no wish, need, obligation or second person, so the mention describes, not asks.
STATEMENT_SUBJECT = re.compile(
    r"^\W*(?:(?:and|but|so|because|y|pero|porque|et|mais|car|und|aber|weil|и|а|но|потому|"
    r"e|ma|mas|en|maar|ve|ama|và|nhưng|dan|tapi|și|dar|και|αλλά)\s+)?"
    r"(?:(?:i|we|he|she|they|je|j'|nous|il|elle|ils|elles|yo|nosotros|nosotras|él|ella|"
    r"ellos|ellas|ich|wir|er|я|мы|он|она|они|eu|nós|ele|ela|eles|elas|io|noi|lui|lei|loro|"
    r"ik|wij|hij|ben|biz|onlar|tôi|chúng tôi|họ|saya|aku|kami|kita|dia|mereka|εγώ|εμείς|"
    r"αυτός|αυτή|αυτοί|ea|ei|ele)\b"
    r"|(?:my|our|his|her|their|mon|ma|mes|notre|nos|son|sa|ses|leur|leurs|mi|mis|nuestro|"
    r"nuestra|nuestros|nuestras|mein|meine|meinem|meiner|unser|unsere|sein|seine|мой|моя|мои|"
    r"мою|наш|наша|наши|его|её|ее|их|meu|minha|meus|minhas|nosso|nossa|mio|mia|miei|mie|"
    r"nostro|nostra|mijn|onze|zijn|haar|benim|bizim|onun|mój|moja|moi|nasz|nasza|ο μου|"
    r"η μου|meu|mea|mei|mele)\s+\w+"
    r"|(?:bà|ông|mẹ|bố|cha|con|anh|chị|em|vợ|chồng|sếp|thầy|cô|bạn)\s+(?:tôi|mình)"
    # a noun phrase as subject: a determiner or quantifier, a noun, then more than a bare
    # marker ("The teacher replied in", "El profesor contesta en", "Many people ... answer in")
    r"|(?:the|a|an|many|most|some|all|every|each|few|el|la|los|las|un|una|unos|unas|muchos|"
    r"muchas|der|die|das|ein|eine|viele|le|les|une|plusieurs|il|lo|gli|uno|molti|molte|o|os|"
    r"as|um|uma|muitos|muitas|het|een|veel)\s+\w+\s+\w+)"
    # Chinese habitual adverbs after a subject ("小明总是用…", "老师经常用…")
    r"|^\W*[^\W\d_请請帮幫你您用把]{1,6}(?:总是|總是|经常|經常|一直|通常|常常|平时|平時|往往)"
    r"|^\W*(?:但|而|因为|因為|所以|不过|不過)?(?:我|他|她|咱|俺|私|僕|彼|祖母|祖父|母|父|"
    r"나는|저는|제|우리|그는|그녀는|أنا|نحن|هو|هي|هم|جدتي|جدي|أمي|أبي)",
    re.IGNORECASE)
NOT_STATEMENT = re.compile(
    r"\b(?:want|wants|would|'d|like|need|needs|prefer|must|should|have to|has to|ask|"
    r"please|you|your|voudrais|veux|voulons|aimerais|souhaite|préfère|besoin|prie|demande|"
    r"dois|doit|devez|vous|tu|te|toi|votre|ton|quiero|quisiera|queremos|necesito|necesitamos|"
    r"prefiero|gustaría|pido|debe|debes|tienes|usted|tú|möchte|möchten|will|wollen|brauche|"
    r"brauchen|bitte|hätte|würde|muss|müssen|soll|sollst|du|dich|dir|euch|хочу|хотим|хотел|"
    r"хотела|нужно|нужен|нужна|прошу|просим|пожалуйста|должен|должна|должно|ты|вы|тебя|"
    r"вас|тебе|вам|quero|queremos|gostaria|preciso|precisamos|você|vocês|voglio|vorrei|"
    r"vogliamo|bisogno|devi|wil|willen|zou|graag|moet|jij|jou|istiyorum|istiyoruz|lütfen|"
    r"gerek|sen|siz|muốn|cần|phải|bạn|ingin|mau|perlu|tolong|harus|kamu|anda|chcę|chcemy|"
    r"potrzebuję|proszę|musisz|θέλω|θέλουμε|πρέπει|παρακαλώ|εσύ|vreau|vrem|aș|trebuie|"
    r"rog|tu|quiere|quieren|necesita|necesitan|veut|veulent|souhaitent|wollen|хочет|хотят|"
    r"просит|quer|querem|vuole|vogliono|wants|needs|asks|expects|istiyor|θέλει|vrea|"
    r"por favor|s'il|favore|favor)\b"
    r"|想|要|需要|希望|请|請|帮|幫|麻烦|麻煩|吧|让|讓|能不能|可以|你|您|ください|下さい|ほしい|"
    r"欲しい|たい|お願い|あなた|주세요|해줘|원해|싶|부탁|당신|أريد|أود|من فضلك|الرجاء|أرجو|يجب|"
    r"أنت|نريد", re.IGNORECASE)


def arabic_present(clause: str, a: int) -> bool:
    """An Arabic cue inside a present-tense verb ("تتحدث", "يترجم", "أترجم": someone speaks or
    translates) rather than the imperative ("تحدث", "ترجم")."""
    return a > 0 and "\u0600" <= clause[a] <= "\u06ff" and clause[a - 1] in "يتنأس"


def is_statement(clause: str, pos: int) -> bool:
    """The mention at ``pos`` belongs to a statement about someone's language, not a request
    (see ``STATEMENT_SUBJECT``): checked on the comma-separated part of the clause it is in."""
    start = max(clause.rfind(c, 0, pos) for c in ",，、;") + 1
    part = clause[start:pos]
    return bool(STATEMENT_SUBJECT.search(part)) and not NOT_STATEMENT.search(part)


# A label whose value is the reply language ("Output language: French", "Sprache der Antwort:
# Deutsch", "输出语言：英语"): the mention right after it is a request, whatever else the
# clause holds.
LANGUAGE_LABEL = re.compile(
    r"(?:\b(?:output|answer|reply|response|target|desired)\s+language|\blanguage\s+(?:of|for)\s+"
    r"(?:the\s+|your\s+)?(?:answer|reply|response|output)|\b(?:antwort|ausgabe|ziel)sprache|"
    r"\bsprache\s+der\s+(?:antwort|ausgabe)|\blangue\s+(?:de\s+(?:la\s+)?r[ée]ponse|de\s+sortie|"
    r"cible)|\bidioma\s+(?:de\s+(?:la\s+)?respuesta|de\s+salida|de\s+destino)|"
    r"\bязык\s+(?:ответа|вывода)|输出语言|輸出語言|回答语言|回答語言|回复语言|回覆語言|"
    r"出力言語|回答言語|لغة\s+(?:الإجابة|الرد|الجواب|المخرجات))\s*[:：=]\s*$", re.IGNORECASE)


# An imperative of speaking or writing that opens its clause, with the language as its object
# ("From now on, speak French.", "Sprich Deutsch mit mir.", "Parle anglais."): a request;
# "Do you speak French?" and "I speak French" do not open with the verb.
SPEAK_IMPERATIVE = re.compile(
    r"^\W*(?:(?:from now on|now|please|kindly|and|also|then|ab jetzt|bitte|jetzt|"
    r"à partir de maintenant|maintenant|s'il te plaît|s'il vous plaît)\W+)*"
    r"(?:speak|talk|write|sprich|sprecht|sprechen sie|schreib|schreibe|schreibt|parle|parlez|"
    r"écris|écrivez)\s+(?:only\s+|nur\s+|seulement\s+|uniquement\s+|en\s+|in\s+|auf\s+)?$",
    re.IGNORECASE)


# In scripts written without spaces every mention counts as marked (日本語で, 中文回答); these
# contexts make it the topic or object of a sentence instead of the reply's language: an
# evaluation or a topic/object particle after it ("法语很好听", "日本語を勉強", "영어는"),
# a verb of learning, knowing or liking before it ("学法语", "喜欢日语").
UNSPACED_TOPIC_AFTER = re.compile(
    r"^\s*(?:很|太|真|挺|非常|比较|比較|特别|特別|更|最|难|難|容易|是|有|怎么样|怎麼樣|を|が|は|も|"
    r"를|을|이|가|는|은|도)")
UNSPACED_STUDY_BEFORE = re.compile(
    r"(?:学|學|学习|學習|练习|練習|练|練|教|懂|喜欢|喜歡|讨厌|討厭|勉強|習|배우|공부)\s*$")


# Questions about others in languages other than English ("Wer übersetzte ... ins Deutsche?",
# "谁把圣经翻译成德语？", "Ai đã dịch ... sang tiếng Đức?"): a wh-word opening the question, or
# for languages that keep it in place, anywhere in it. Not instructions unless they address
# the reader (see NOT_STATEMENT).
WH_OPENING = re.compile(
    r"^\W*(?:wer|wen|wem|wessen|wann|wo|woher|wohin|warum|weshalb|welche[rsmn]?|wie viele|"
    r"in welche[rmn]?|quién|quiénes|cuándo|dónde|por qué|cuál|cuáles|qué|cuántos|cuántas|"
    r"en qué|a qué|qui|quand|où|pourquoi|quel|quelle|quels|quelles|combien|en quelle|"
    r"dans quelle|chi|dove|perché|quale|quali|quanti|quem|onde|qual|quais|quantos|кто|когда|"
    r"где|почему|зачем|какой|какая|какое|какие|сколько|на каком|в каком|cine|când|unde|"
    r"de ce|care|câte|câți|în ce|ποιος|ποια|ποιο|ποιοι|ποιες|πότε|πού|γιατί|πόσα|πόσοι|"
    r"σε ποια|ai|khi nào|bao giờ|ở đâu|tại sao|vì sao|kim|hangi|ne zaman|nerede|neden)\b",
    re.IGNORECASE)
WH_IN_PLACE = re.compile(
    r"谁|誰|什么|什麼|哪|何时|何時|为什么|為什麼|多少|几|幾|だれ|どこ|いつ|なぜ|누가|무엇|언제|"
    r"어디|왜|\b(?:gì|nào|ai|đâu|kim|hangi|kaç|ne zaman|nerede)\b", re.IGNORECASE)


# A negation before a mention in its comma-separated part makes it the language NOT wanted
# ("Don't answer in English", "Antworte nicht auf Englisch, sondern ...", "不要用英语，用德语").
NEGATION = re.compile(
    r"\b(?:not|don't|do not|dont|never|no longer|instead of|nicht|kein|keine|nie|statt|anstatt|"
    r"pas|jamais|au lieu|no|nunca|en lugar de|en vez de|não|nunca|invece di|non|не|вместо|"
    r"niet|geen|değil|không|jangan|bukan|μην|δεν|nu)\b"
    r"|不要|别|別|不用|勿|而不是|不是|ではなく|じゃなく|ないで|하지 마|말고|لا |ليس|بدلا|بدلاً", re.IGNORECASE)


# ... unless the negation is of forgetting ("Don't forget to answer in English").
_FORGET = re.compile(r"\b(?:forget|fail|olvides|olvidar|oublie|oubliez|oublier|vergiss|vergessen|"
                     r"забудь|забудьте|esqueça|dimenticare|dimenticate)\b|忘|잊지", re.IGNORECASE)


def negated(clause: str, pos: int) -> bool:
    """The mention at ``pos`` is negated in the comma-separated part of the clause it is in."""
    start = max(clause.rfind(c, 0, pos) for c in ",，、;") + 1
    part = clause[start:pos]
    return bool(NEGATION.search(part)) and not _FORGET.search(part)


# A target marked by a passive or descriptive verb ("known in English as") is described, not
# asked for.
PASSIVE_BEFORE = re.compile(
    r"\b(known|called|written|spoken|published|translated|titled|entitled|named|released|"
    r"printed|dubbed|sung|performed|recorded|taught|available|fluent|proficient|common|"
    r"popular|famous|originally|also|word|words|term|means|meaning|pronounced|spelled|"
    # the same in other languages: "se conoce en inglés", "connu en anglais", "auf Deutsch
    # bekannt" (verb-final: see _follower_ok), "известен на английском"
    r"conoce|conocido|conocida|llamado|llamada|escrito|escrita|connu|connue|appelé|appelée|"
    r"écrit|écrite|conhecido|conhecida|chamado|escrito|noto|nota|chiamato|scritto|"
    r"известен|известна|известно|называется|написан|написана|bekannt|genannt|geschrieben)"
    r"\s+(?:\w+\s+)?(?:in|into|to|en|auf|на|em|al|a)\s+(?:the\s+)?$"
    # Vietnamese passive: "được viết bằng tiếng Đức", "được dịch sang tiếng Anh"
    r"|\b(?:được|bị)\s+(?:\w+\s+){1,2}(?:bằng|sang)\s+(?:tiếng\s+)?$", re.IGNORECASE)


# "must be written in Dutch", "should be answered in French": an instruction after all
MODAL_PASSIVE = re.compile(r"\b(?:must|should|shall|has to|have to|needs? to|is to|to)\s+be\s+"
                           r"\w+\s+(?:\w+\s+)?(?:in|into)\s+(?:the\s+)?$", re.IGNORECASE)


# A header line before a passage ("Reformulate this paragraph in X:", "Кратко изложи текст
# на X языке:", "この段落を X で…："): a clause that points at a text (a demonstrative or a
# word for a text) and ends in a colon is an instruction about the passage after it, whatever
# its verb.
PASSAGE_POINTER = re.compile(
    r"\b(?:this|these|the following|below|ce|cet|cette|ces|ci-dessous|suivant|suivante|este|"
    r"esta|estos|estas|siguiente|dieser|diesen|diese|dieses|folgenden|folgende|этот|эту|это|"
    r"этого|следующий|следующую|следующее|данный|questo|questa|seguente|isto|seguinte|deze|"
    r"volgende|bu|şu|aşağıdaki|này|ini|berikut|αυτό|αυτή|παρακάτω|acest|această|acesta)\b"
    r"|这|這|以下|下面|该|該|この|次の|이 |다음|هذا|هذه|التالي", re.IGNORECASE)


__all__ = ["CUE_WORDS", "CUE_SUBSTRINGS", "TRANSLATE_WORDS", "STATEMENT_SUBJECT",
           "LANGUAGE_LABEL", "SPEAK_IMPERATIVE", "PASSIVE_BEFORE", "MODAL_PASSIVE", "WH_OPENING",
           "WH_IN_PLACE", "UNSPACED_TOPIC_AFTER", "UNSPACED_STUDY_BEFORE", "NOT_STATEMENT",
           "PASSAGE_POINTER", "NEGATION", "arabic_present", "is_statement", "negated"]
