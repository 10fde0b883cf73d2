"""Observable behaviour of a prompt/reply pair, as pure functions (no models, no I/O).

Why a module of its own: the ``mistranslation`` pipeline check and triage both need the same
answers to "which language does this prompt ASK for?", "which languages does this NLA
explanation NAME?" and "did the reply switch language without being asked?". Keeping them as
pure, table-tested functions means both consumers agree, and held-out phrasings can be added
in one place.

Design: a language is recognised through a table of aliases (English names, the language's
own names and adjectives, and its names in a dozen major languages, including inflected stems
such as ``английск*`` or ``Englisch*``). A *request* for a language needs three things in the
same clause: a mention of the language, a marker that makes it a target ("in", "into", "auf",
"en", "на", "用", "で", "로", ...), and a request cue (an imperative such as "answer",
"translate", "responde", "übersetze", "переведи", "回答", or "please"). Questions that merely
mention a language ("Who translated the Bible into German?", "Why do Swiss people speak in
French?") are rejected by a question guard: a wh-/yes-no question about someone other than
"you" is not an instruction. Decided borderline: "How do you say X in German?" and "What is
'dog' in German?" ARE requests (the expected reply contains German).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# ----------------------------------------------------------------------------- names
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "de": "German", "es": "Spanish", "zh": "Chinese", "vi": "Vietnamese",
    "tr": "Turkish", "el": "Greek", "ro": "Romanian", "ru": "Russian", "uk": "Ukrainian",
    "ar": "Arabic", "hi": "Hindi", "ja": "Japanese", "ko": "Korean", "fr": "French",
    "it": "Italian", "pt": "Portuguese", "nl": "Dutch", "pl": "Polish", "sv": "Swedish",
    "cs": "Czech", "da": "Danish", "fi": "Finnish", "no": "Norwegian", "nb": "Norwegian Bokmål",
    "nn": "Norwegian Nynorsk", "hu": "Hungarian", "he": "Hebrew", "fa": "Persian", "th": "Thai",
    "id": "Indonesian", "ms": "Malay", "bn": "Bengali", "ta": "Tamil", "ur": "Urdu",
    "sw": "Swahili", "bg": "Bulgarian", "sr": "Serbian", "hr": "Croatian", "bs": "Bosnian",
    "sk": "Slovak", "sl": "Slovene", "lt": "Lithuanian", "lv": "Latvian", "et": "Estonian",
    "ca": "Catalan", "eu": "Basque", "gl": "Galician", "ga": "Irish", "cy": "Welsh",
    "is": "Icelandic", "sq": "Albanian", "mk": "Macedonian", "hy": "Armenian", "ka": "Georgian",
    "az": "Azerbaijani", "kk": "Kazakh", "mn": "Mongolian", "af": "Afrikaans", "tl": "Tagalog",
    "la": "Latin", "eo": "Esperanto", "te": "Telugu", "mr": "Marathi", "gu": "Gujarati",
    "pa": "Punjabi", "yo": "Yoruba", "zu": "Zulu", "so": "Somali", "be": "Belarusian",
}

# Codes that name the same written language for our purposes (lingua says nb/nn).
_CANON = {"nb": "no", "nn": "no", "zh-tw": "zh", "zh-cn": "zh", "iw": "he", "in": "id",
          "fil": "tl"}


def canonical(code: str | None) -> str | None:
    """Normalise a language code so that e.g. ``nb`` and ``no`` compare equal."""
    if not code:
        return None
    c = code.lower().replace("_", "-")
    return _CANON.get(c, c.split("-")[0] if c not in _CANON else _CANON[c])


def same_language(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and canonical(a) == canonical(b)


# Aliases are regex fragments, matched case-insensitively. A trailing ``*`` means "stem":
# any letters may follow (inflections). Alphabetic-script aliases must stand as whole words;
# aliases in scripts written without spaces (CJK, Thai) or with fused prefixes (Arabic,
# Hebrew, Devanagari) match as substrings.
_A: dict[str, list[str]] = {
    "en": ["english", "anglais", "englisch*", "inglés", "ingles", "inglês", "inglese",
           "engels", "angielsk*", "английск*", "англійськ*", "αγγλικ*", "engleză", "engleza",
           "englez*", "tiếng anh", "i̇ngilizce*", "ingilizce*", "engelsk*", "englanti*",
           "angol*", "anglick*", "bahasa inggris", "inggris", "英语", "英文", "英語", "영어",
           "الإنجليزية", "الانجليزية", "الإنكليزية", "بالإنجليزية", "אנגלית", "انگلیسی",
           "अंग्रेज़ी", "अंग्रेजी", "ภาษาอังกฤษ"],
    "de": ["german", "deutsch", "deutsche", "deutschen", "deutscher", "deutsches", "alemán",
           "aleman", "alemão", "allemand", "tedesco", "duits", "niemieck*", "немецк*",
           "німецьк*", "γερμανικ*", "germană", "germana", "nemțește", "tiếng đức", "almanca*",
           "tysk*", "saksa*", "német*", "německ*", "bahasa jerman", "德语", "德文", "德語",
           "ドイツ語", "독일어", "الألمانية", "الالمانية", "גרמנית", "آلمانی", "जर्मन"],
    "es": ["spanish", "español", "espanol", "castellano", "espagnol", "spanisch*", "spagnolo",
           "espanhol", "spaans", "hiszpańsk*", "испанск*", "іспанськ*", "ισπανικ*", "spaniolă",
           "spaniola", "tiếng tây ban nha", "i̇spanyolca*", "ispanyolca*", "spansk*",
           "espanja*", "spanyol*", "španělsk*", "西班牙语", "西班牙文", "西班牙語",
           "スペイン語", "스페인어", "الإسبانية", "الاسبانية", "ספרדית", "اسپانیایی", "स्पेनिश"],
    "fr": ["french", "français", "francais", "französisch*", "franzosisch*", "francés",
           "frances", "francese", "francês", "frans", "francusk*", "французск*",
           "французьк*", "γαλλικ*", "franceză", "franceza", "tiếng pháp", "fransızca*",
           "fransk*", "ranska*", "francia", "francouzsk*", "法语", "法文", "法語", "フランス語",
           "프랑스어", "الفرنسية", "צרפתית", "فرانسوی", "फ़्रेंच", "फ्रेंच"],
    "it": ["italian", "italiano", "italien", "italienisch*", "italiana", "italiaans",
           "włosk*", "итальянск*", "італійськ*", "ιταλικ*", "italiană", "tiếng ý",
           "i̇talyanca*", "italyanca*", "italiensk*", "italia", "olasz*", "意大利语", "意大利文",
           "イタリア語", "이탈리아어", "الإيطالية", "איטלקית"],
    "pt": ["portuguese", "português", "portugues", "portugués", "portugais", "portugiesisch*",
           "portoghese", "portugees", "portugalsk*", "португальск*", "πορτογαλικ*",
           "portugheză", "tiếng bồ đào nha", "portekizce*", "葡萄牙语", "葡萄牙文", "ポルトガル語",
           "포르투갈어", "البرتغالية"],
    "ru": ["russian", "russe", "russisch*", "ruso", "russo", "russisch", "rosyjsk*",
           "русск*", "російськ*", "ρωσικ*", "rusă", "rusa", "rusește", "tiếng nga",
           "rusça*", "rusca*", "rysk*", "venäjä*", "orosz*", "rusk*", "俄语", "俄文", "俄語",
           "ロシア語", "러시아어", "الروسية", "רוסית", "روسی", "रूसी"],
    "zh": ["chinese", "mandarin", "cantonese", "chinois", "chinesisch*", "chino", "cinese",
           "chinês", "chines", "chinees", "chińsk*", "китайск*", "китайськ*", "κινεζικ*",
           "chineză", "chineza", "tiếng trung", "tiếng hoa", "çince*", "cince*", "kinesisk*",
           "kiina*", "kínai*", "čínsk*", "中文", "汉语", "漢語", "华语", "華語", "普通话", "國語",
           "中国語", "중국어", "الصينية", "סינית", "چینی", "चीनी"],
    "ja": ["japanese", "japonais", "japanisch*", "japonés", "japones", "giapponese", "japonês",
           "japans", "japońsk*", "японск*", "японськ*", "ιαπωνικ*", "japoneză", "tiếng nhật",
           "japonca*", "japansk*", "japani*", "日语", "日文", "日語", "日本語", "일본어",
           "اليابانية", "יפנית", "ژاپنی", "जापानी"],
    "ko": ["korean", "coréen", "coreen", "koreanisch*", "coreano", "koreaans", "koreańsk*",
           "корейск*", "корейськ*", "κορεατικ*", "coreeană", "tiếng hàn", "korece*",
           "koreansk*", "韩语", "韩文", "韓語", "朝鲜语", "韓国語", "한국어", "한글", "الكورية"],
    "ar": ["arabic", "arabe", "arabisch*", "árabe", "arabo", "arabisch", "arabsk*",
           "арабск*", "арабськ*", "αραβικ*", "arabă", "tiếng ả rập", "arapça*", "arabiska",
           "arabia", "阿拉伯语", "阿拉伯文", "アラビア語", "아랍어", "العربية", "بالعربية",
           "عربي", "ערבית", "عربی", "अरबी"],
    "hi": ["hindi", "hindí", "हिंदी", "हिन्दी", "印地语", "ヒンディー語", "힌디어", "الهندية"],
    "nl": ["dutch", "flemish", "nederlands", "néerlandais", "neerlandais", "niederländisch*",
           "holländisch*", "neerlandés", "holandés", "olandese", "holandês", "holendersk*",
           "niderlandzk*", "нидерландск*", "голландск*", "ολλανδικ*", "olandeză", "hollandaca*",
           "nederländska", "hollanti*", "荷兰语", "オランダ語", "네덜란드어", "الهولندية"],
    "pl": ["polish", "polski", "polsku", "polonais", "polnisch*", "polaco", "polacco",
           "polonês", "pools", "польск*", "польськ*", "πολωνικ*", "poloneză", "lehçe*",
           "波兰语", "ポーランド語", "폴란드어", "البولندية"],
    "sv": ["swedish", "svenska", "suédois", "schwedisch*", "sueco", "svedese", "zweeds",
           "szwedzk*", "шведск*", "σουηδικ*", "suedeză", "i̇sveççe*", "isveççe*", "ruotsi*",
           "svéd*", "瑞典语", "スウェーデン語", "스웨덴어"],
    "da": ["danish", "dansk*", "danois", "dänisch*", "danés", "danese", "deens", "duńsk*",
           "датск*", "δανικ*", "daneză", "danca*", "tanska*", "丹麦语", "デンマーク語", "덴마크어"],
    "no": ["norwegian", "norsk*", "bokmål", "bokmal", "nynorsk", "norvégien", "norwegisch*",
           "noruego", "norvegese", "noors", "norwesk*", "норвежск*", "νορβηγικ*", "norveççe*",
           "norja*", "挪威语", "ノルウェー語", "노르웨이어"],
    "fi": ["finnish", "suomi", "suomeksi", "suomen kiel*", "finnois", "finnisch*", "finlandés",
           "finlandese", "fins", "fińsk*", "финск*", "фінськ*", "φινλανδικ*", "fince*",
           "finsk*", "芬兰语", "フィンランド語", "핀란드어"],
    "cs": ["czech", "čeština", "češtině", "cestina", "česky", "tchèque", "tschechisch*",
           "checo", "ceco", "tsjechisch", "czesk*", "чешск*", "чеськ*", "τσεχικ*", "çekçe*",
           "捷克语", "チェコ語", "체코어"],
    "sk": ["slovak", "slovenčina", "slovensky", "slovaque", "slowakisch*", "eslovaco",
           "slovacco", "słowack*", "словацк*", "斯洛伐克语"],
    "sl": ["slovene", "slovenian", "slovenščina", "slovenski", "slovène", "slowenisch*",
           "esloveno", "sloveno", "словенск*"],
    "hu": ["hungarian", "magyar*", "hongrois", "ungarisch*", "húngaro", "hungaro", "ungherese",
           "węgiersk*", "венгерск*", "угорськ*", "ουγγρικ*", "macarca*", "unkari*", "匈牙利语",
           "ハンガリー語", "헝가리어"],
    "he": ["hebrew", "hébreu", "hebreu", "hebräisch*", "hebreo", "ebraico", "hebraico",
           "иврит*", "עברית", "בעברית", "希伯来语", "ヘブライ語", "히브리어", "العبرية"],
    "fa": ["persian", "farsi", "persan", "persisch*", "persa", "персидск*", "فارسی",
           "بفارسی", "波斯语", "ペルシア語", "페르시아어", "الفارسية"],
    "th": ["thai", "thaï", "thailändisch*", "tailandés", "tailandese", "tailandês",
           "тайск*", "ภาษาไทย", "泰语", "泰文", "タイ語", "태국어", "التايلاندية"],
    "id": ["indonesian", "bahasa indonesia", "indonésien", "indonesisch*", "indonesio",
           "indonesiano", "индонезийск*", "印尼语", "印度尼西亚语", "インドネシア語", "인도네시아어"],
    "ms": ["malay", "bahasa melayu", "bahasa malaysia", "malais", "malaiisch*", "malayo",
           "малайск*", "马来语", "マレー語", "말레이어"],
    "bn": ["bengali", "bangla", "বাংলা", "বাংলায়", "бенгальск*", "孟加拉语", "बंगाली"],
    "ta": ["tamil", "தமிழ்", "тамильск*", "泰米尔语", "तमिल"],
    "te": ["telugu", "తెలుగు"],
    "mr": ["marathi", "मराठी"],
    "gu": ["gujarati", "ગુજરાતી"],
    "pa": ["punjabi", "ਪੰਜਾਬੀ"],
    "ur": ["urdu", "اردو", "ourdou", "урду", "乌尔都语", "उर्दू"],
    "sw": ["swahili", "kiswahili", "souahili", "suaheli", "суахили"],
    "bg": ["bulgarian", "български", "българск*", "bulgare", "bulgarisch*", "búlgaro",
           "bulgaro", "болгарск*", "βουλγαρικ*", "bulgară", "保加利亚语"],
    "sr": ["serbian", "српски", "srpski", "serbe", "serbisch*", "serbio", "serbo",
           "сербск*", "σερβικ*", "sârbă", "塞尔维亚语"],
    "hr": ["croatian", "hrvatski", "croate", "kroatisch*", "croata", "хорватск*", "克罗地亚语"],
    "bs": ["bosnian", "bosanski"],
    "lt": ["lithuanian", "lietuvi*", "lituanien", "litauisch*", "lituano", "литовск*"],
    "lv": ["latvian", "latviešu", "letton", "lettisch*", "letón", "латышск*"],
    "et": ["estonian", "eesti", "estonien", "estnisch*", "estonio", "эстонск*"],
    "ca": ["catalan", "català", "catalán", "katalanisch*", "catalano", "каталанск*"],
    "eu": ["basque", "euskara", "euskera", "baskisch*", "vasco"],
    "gl": ["galician", "galego", "gallego"],
    "ga": ["irish gaelic", "gaeilge"],
    "cy": ["welsh", "cymraeg"],
    "is": ["icelandic", "íslenska", "isländisch*"],
    "sq": ["albanian", "shqip"],
    "mk": ["macedonian", "македонск*"],
    "hy": ["armenian", "հայերեն"],
    "ka": ["georgian", "ქართული"],
    "az": ["azerbaijani", "azeri", "azərbaycan*"],
    "kk": ["kazakh", "қазақ*"],
    "mn": ["mongolian", "монгол хэл*"],
    "af": ["afrikaans"],
    "tl": ["tagalog", "filipino"],
    "la": ["latin", "latein*", "latín", "latino", "латын*", "латинск*", "λατινικ*"],
    "eo": ["esperanto"],
    "uk": ["ukrainian", "українськ*", "украинск*", "ukrainien", "ukrainisch*", "ucraniano",
           "ucraino", "ukraińsk*", "ουκρανικ*", "乌克兰语", "ウクライナ語", "우크라이나어"],
    "el": ["greek", "ελληνικ*", "grec", "griechisch*", "griego", "greco", "grego", "grieks",
           "greck*", "греческ*", "грецьк*", "greacă", "greaca", "tiếng hy lạp", "yunanca*",
           "grekisk*", "希腊语", "希臘語", "ギリシャ語", "그리스어", "اليونانية"],
    "ro": ["romanian", "română", "romana", "românește", "roumain", "rumänisch*", "rumano",
           "rumeno", "romeno", "roemeens", "rumuńsk*", "румынск*", "румунськ*", "ρουμανικ*",
           "rumence*", "tiếng rumani", "tiếng romania", "罗马尼亚语", "ルーマニア語", "루마니아어"],
    "vi": ["vietnamese", "tiếng việt", "tieng viet", "vietnamien", "vietnamesisch*",
           "vietnamita", "vietnamees", "wietnamsk*", "вьетнамск*", "в'єтнамськ*",
           "βιετναμεζικ*", "vietnameză", "vietnamca*", "越南语", "越南文", "ベトナム語",
           "베트남어", "الفيتنامية"],
    "tr": ["turkish", "türkçe*", "turkce*", "turc", "türkisch*", "turco", "turks",
           "turecki*", "турецк*", "турецьк*", "τουρκικ*", "turcă", "turca", "tiếng thổ nhĩ kỳ",
           "土耳其语", "トルコ語", "터키어", "튀르키예어", "التركية"],
}

# English aliases that are also ordinary words or other things when lower-case.
_CASE_SENSITIVE = {"polish": "Polish", "turkish": "Turkish", "latin": "Latin",
                   "basque": "Basque", "thai": "Thai", "italia": "Italia", "francia": "Francia",
                   "arabia": "Arabia", "latino": "Latino", "filipino": "Filipino",
                   "turks": "Turks", "turca": "Turca", "rusa": "Rusa", "romana": "Romana",
                   "greco": "Greco", "eesti": "Eesti", "mandarin": "Mandarin"}


def _is_spaced_script(s: str) -> bool:
    """True when the alias is in a script that separates words by spaces and has no fused
    prefixes (Latin, Cyrillic, Greek, Armenian, Georgian): those need whole-word matching."""
    for ch in s:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if not any(k in name for k in ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "GEORGIAN")):
                return False
    return True


_L = r"[^\W\d_]"  # a letter


_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _norm_token(t: str) -> str:
    # "İ".lower() is "i" + U+0307; fold it so Turkish capitals match their aliases
    return t.lower().replace("i\u0307", "i")


class _PhraseMatcher:
    """Finds phrases in text fast (a dict lookup per word instead of a 700-way regex).

    Phrases in spaced scripts match whole words (a trailing ``*`` allows any ending on the
    last word); phrases in other scripts match as substrings. Overlaps resolve to the
    leftmost, then longest match.
    """

    def __init__(self, phrases: list[tuple[str, str]], case_sensitive: dict[str, str] | None = None):
        cs = case_sensitive or {}
        self._first: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {}
        self._first_cs: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {}
        self._stems: dict[int, dict[str, str]] = {}
        self._substr: list[tuple[str, str]] = []
        for phrase, value in phrases:
            stem = phrase.endswith("*")
            core = phrase[:-1] if stem else phrase
            if not _is_spaced_script(core):
                self._substr.append((core, value))
                continue
            toks = [_norm_token(t) for t in re.split(r"[\s-]+", core) if t]
            if core in cs:
                self._first_cs.setdefault(cs[core], []).append((tuple(toks[1:]), stem, value))
                continue
            if len(toks) == 1 and stem:
                self._stems.setdefault(len(toks[0]), {})[toks[0]] = value
                continue
            self._first.setdefault(toks[0], []).append((tuple(toks[1:]), stem, value))
        self._stem_lens = sorted(self._stems, reverse=True)
        self._has_substr_chars = re.compile(
            "[" + "".join(sorted({re.escape(p[0]) for p, _ in self._substr})) + "]"
        ) if self._substr else None

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        if not text:
            return []
        found: list[tuple[int, int, str]] = []
        toks = [(m.start(), m.end(), m.group(0)) for m in _TOKEN.finditer(text)]
        norm = [_norm_token(t[2]) for t in toks]
        for i, (st, en, raw) in enumerate(toks):
            w = norm[i]
            best: tuple[int, int, str] | None = None
            for table, key in ((self._first_cs, raw), (self._first, w)):
                for rest, stem, value in table.get(key, ()):
                    end = self._match_rest(text, toks, norm, i, rest, stem)
                    if end is not None and (best is None or end > best[1]):
                        best = (st, end, value)
            if best is None:
                for n in self._stem_lens:
                    if n <= len(w):
                        v = self._stems[n].get(w[:n])
                        if v is not None:
                            best = (st, en, v)
                            break
            if best is not None:
                found.append(best)
        if self._substr and self._has_substr_chars.search(text):
            for phrase, value in self._substr:
                start = text.find(phrase)
                while start >= 0:
                    found.append((start, start + len(phrase), value))
                    start = text.find(phrase, start + 1)
        if not found:
            return found
        found.sort(key=lambda x: (x[0], -(x[1] - x[0])))
        out = [found[0]]
        for sp in found[1:]:
            if sp[0] >= out[-1][1]:
                out.append(sp)
        return out

    @staticmethod
    def _match_rest(text, toks, norm, i, rest, stem) -> int | None:
        if not rest:
            return toks[i][1]
        j = i
        for k, r in enumerate(rest):
            j += 1
            if j >= len(toks):
                return None
            gap = text[toks[j - 1][1]:toks[j][0]]
            if gap.strip(" \t\n-") or len(gap) > 3:
                return None
            last = k == len(rest) - 1
            if not (norm[j] == r or (last and stem and norm[j].startswith(r))):
                return None
        return toks[j][1]


@lru_cache(maxsize=1)
def _mention_matcher() -> _PhraseMatcher:
    phrases = [(a, code) for code, aliases in _A.items() for a in aliases]
    cs = {k: v for k, v in _CASE_SENSITIVE.items()}
    return _PhraseMatcher(phrases, cs)


def _mentions_with_spans(text: str) -> list[tuple[int, int, str]]:
    return _mention_matcher().spans(text)


def language_mentions(text: str | None) -> list[str]:
    """ISO codes of the languages NAMED in ``text``, in order of first mention, deduplicated.

    Matches English names and adjectives ("Russian"), the languages' own names ("русский",
    "Deutsch", "中文") and their names in other major languages ("russe", "ruso", "Russisch").
    Demonyms coincide with language adjectives in English ("the user seems Russian" -> ru),
    which is what triage wants when reading NLA explanations.
    """
    if not text:
        return []
    seen: list[str] = []
    for _, _, code in _mentions_with_spans(text):
        if code not in seen:
            seen.append(code)
    return seen


# ----------------------------------------------------------------------------- requests
# Request cues: imperatives and politeness markers, pooled across languages. Alphabetic-script
# cues match whole words; the rest as substrings.
_CUES_WORDS = [
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
    "bitte", "formuliere", "fasse", "gib",
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
]
_CUES_SUBSTR = [
    "回答", "回复", "答复", "写", "解释", "翻译", "翻譯", "译成", "译为", "說", "说", "请", "請", "用",
    "答え", "答えて", "回答して", "書いて", "説明", "翻訳", "訳して", "話して", "言って", "ください",
    "답", "대답", "답변", "써", "작성", "설명", "번역", "말해", "주세요", "해줘", "하세요", "해라",
    "أجب", "اجب", "أجيبي", "اكتب", "اشرح", "ترجم", "ترجمة", "قل", "تحدث", "من فضلك", "الرجاء",
    "जवाब", "उत्तर", "लिखें", "लिखो", "समझाएं", "अनुवाद", "बताएं", "बताइए", "बोलें", "कृपया",
    "ענה", "תענה", "כתוב", "תרגם", "בבקשה", "پاسخ", "بنویس", "ترجمه", "لطفا",
    "ตอบ", "แปล", "เขียน", "กรุณา",
]
_TRANSLATE_WORDS = [
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
_TRANSLATE_SUBSTR = ["翻译", "翻譯", "译成", "译为", "翻訳", "訳して", "번역", "ترجم", "अनुवाद",
                     "תרגם", "ترجمه", "แปล"]

# Markers that make a following language mention a TARGET ("in German", "auf Deutsch").
_PRE_TARGET = [
    "in", "into", "to", "using", "use", "en", "al", "a", "ins", "auf", "im", "em", "para",
    "para o", "pro", "naar", "naar het", "in het", "на", "по", "po", "w języku", "na",
    "στα", "σε", "στην", "στη", "în", "în limba", "in limba", "bằng", "sang", "dalam",
    "ke", "ke dalam", "på", "til", "till", "nach", "à", "vers", "verso", "in lingua",
    "en langue", "in die", "ins", "into the", "to the", "in the", "in plain", "in simple",
    "in good", "in proper", "in fluent", "in formal", "in informal", "in modern",
    "in standard", "in british", "in american", "in brazilian", "in european",
    "in simplified", "in traditional", "in correct", "in natural", "in colloquial",
]
# Register/variety words allowed between the marker and the language ("using Brazilian
# Portuguese", "in plain English").
_MODIFIERS = ["plain", "simple", "formal", "informal", "proper", "fluent", "good", "british",
              "american", "brazilian", "european", "mandarin", "simplified", "traditional",
              "modern", "standard", "colloquial", "casual", "basic", "correct", "natural",
              "academic", "polite", "everyday", "canadian", "mexican", "castilian", "native",
              "clear", "easy", "conversational", "written", "spoken", "literary", "business"]
# "write a German poem", "tell me a Hebrew joke": the language of the requested artefact.
_ARTEFACT_BEFORE = re.compile(
    r"\b(write|compose|give me|tell me|make|create|generate|draft|sing|recite)\s+(?:me\s+)?"
    r"(?:a|an|some|the)\s+(?:short\s+|little\s+|simple\s+|funny\s+)?$", re.IGNORECASE)
_BARE_REQUEST = re.compile(r"^\W*(?:\w+\W+){0,1}?(?:please|only|pls|bitte|por favor|"
                           r"s'il (?:te|vous) pla[iî]t|per favore|пожалуйста)?\W*$", re.IGNORECASE)
# Markers fused before/after a mention in scripts without spaces.
_PRE_FUSED = ["用", "成", "为", "為", "以", "إلى", "الى", "ب", "ל", "به", "سے"]
_TURKISH_ADVERB = re.compile(r"(?:c|ç)[ea](?:'?y[ea]|'?d[ea]n)?$", re.IGNORECASE)
# Source markers: "from English into German".
_SOURCE = ["from", "de", "del", "aus", "vom", "dal", "dall", "do", "da", "van", "с", "со",
           "из", "з", "από", "din", "từ", "dari", "från", "fra", "z", "ze", "从", "從", "から",
           "에서", "من"]
# Words that may follow a target language mention (otherwise the mention is adjectival:
# "in German cities", "in Spanish history").
_FOLLOW_OK = {
    "please", "only", "language", "instead", "too", "as", "and", "or", "but", "for", "so",
    "with", "without", "because", "if", "then", "text", "translation", "version", "from",
    "this", "that", "these", "the", "a", "an", "me", "us", "to", "while", "not", "no",
    "rather", "here", "now", "again", "also", "words", "word", "sentence", "sentences",
    "bitte", "por", "favor", "s'il", "per", "пожалуйста", "lütfen", "παρακαλώ", "vă", "te",
    "và", "y", "e", "et", "und", "и", "ve", "και", "și", "o", "ou", "oder", "или", "of",
    "sprache", "idioma", "langue", "lingua", "língua", "γλώσσα", "limba", "taal", "dil",
    "ngôn", "bahasa", "el", "la", "le", "les", "los", "las", "der", "die", "das", "den", "dem",
    "il", "lo", "à", "al", "del", "des", "du", "ce", "cette", "questa", "esta", "este",
    "diese", "dieser", "folgende", "following", "below", "above", "it", "them", "what",
    "everything", "all", "your", "you", "i", "we", "my", "our", "is", "are", "be", "when",
    "mit", "con", "avec", "com", "met", "на", "это", "этот", "эту", "следующ", "ниже",
    "yes", "by", "so", "like", "just", "too", "until", "unless",
}
_CUE_FOLLOWERS = {w.lower() for w in _CUES_WORDS}
_WH_GUARD = re.compile(
    r"^\W*(who|whom|whose|when|where|why|which|did|does|was|were|is|are|has|have|had|"
    r"do (?!you\b|u\b)\w+|how (?:many|much|long|often|old|come)|what (?:language|languages|"
    r"year|country|countries))\b", re.IGNORECASE)
_YOU = re.compile(r"\b(you|u|me|your)\b", re.IGNORECASE)
_LEXICAL_REQUEST = re.compile(
    r"\b(how (?:do|would|can|could|should|might) (?:you|i|we|one) (?:say|write|translate|"
    r"spell|pronounce|express|call)|what(?:'s| is| are| does|'re) .{0,80}\b(?:in|into)\b|"
    r"what(?:'s| is) the .{0,30}\b(?:word|term|translation|equivalent)\b)",
    re.IGNORECASE)
_CLAUSE = re.compile(r"[^.!?。！？\n;:؟]+[.!?。！？\n;:؟]*")


def _word_alt(words: list[str]) -> str:
    ws = sorted({w.lower() for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ws)


@lru_cache(maxsize=1)
def _cue_matchers() -> tuple[_PhraseMatcher, _PhraseMatcher]:
    cue = _PhraseMatcher([(w.lower(), "cue") for w in _CUES_WORDS] + [(w, "cue") for w in _CUES_SUBSTR])
    tr = _PhraseMatcher([(w.lower(), "tr") for w in _TRANSLATE_WORDS]
                        + [(w, "tr") for w in _TRANSLATE_SUBSTR])
    return cue, tr


@lru_cache(maxsize=1)
def _marker_rx() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    pre = re.compile(rf"(?<!{_L})(?:{_word_alt(_PRE_TARGET)})(?:[\s-]+(?:the|a|an|el|la|le|"
                     rf"o|il|lo|l'|limba|tiếng|bahasa|język[a-z]*))?"
                     rf"(?:[\s-]+(?:{_word_alt(_MODIFIERS)}))?[\s-]*$", re.IGNORECASE)
    src = re.compile(rf"(?<!{_L})(?:{_word_alt(_SOURCE)})[\s-]+(?:the\s+|el\s+|le\s+|l'|o\s+)?$"
                     rf"|(?:从|從)\s*$", re.IGNORECASE)
    fused_pre = re.compile(rf"(?:{_word_alt(_PRE_FUSED)})\s*$")
    return pre, src, fused_pre


def _clauses(text: str):
    for m in _CLAUSE.finditer(text):
        yield m.start(), m.group(0)


def _follower_ok(after: str) -> bool:
    """Is what follows a language mention compatible with it being a target ("in German."),
    rather than an adjective ("in German cities")?"""
    s = after.lstrip(" \t\"'”“«»)")
    if not s or not s[0].isalpha():
        return True
    m = re.match(rf"{_L}[\w'’-]*", s)
    w = m.group(0).lower() if m else ""
    if w in _FOLLOW_OK or w in _CUE_FOLLOWERS:
        return True
    if any(w.startswith(p) for p in ("язык", "sprach", "következ", "następ", "urmă")):
        return True
    # inflected verbs after a target in verb-final languages (German "ins Englische
    # übersetzen", Turkish "Türkçe cevap ver")
    cue, _ = _cue_matchers()
    sp = cue.spans(s[:40])
    return bool(sp) and sp[0][0] == 0


def _target_mentions(clause: str, mentions: list[tuple[int, int, str]]) -> list[tuple[int, str, bool]]:
    """(position, code, is_source) for every mention in a clause that is marked as a target
    (or source) language, i.e. grammatically "in/into/to L" or fused equivalents."""
    pre, src, fused_pre = _marker_rx()
    out = []
    for s, e, code in mentions:
        before = clause[max(0, s - 40):s]
        after = clause[e:e + 40]
        alias = clause[s:e]
        if src.search(before):
            out.append((s, code, True))
            continue
        spaced = _is_spaced_script(alias)
        if _ARTEFACT_BEFORE.search(before):
            out.append((s, code, False))
            continue
        marked = bool(pre.search(before)) or bool(fused_pre.search(before))
        if not marked and not spaced:
            # scripts without spaces: 日本語で / 영어로 / हिंदी में / 中文回答 / بالعربية
            marked = True
        if not marked and spaced and _TURKISH_ADVERB.search(alias):
            # Turkish adverbial use: "Türkçe cevap ver", "İngilizceye çevir"
            marked = True
        if not marked:
            # "German translation of ...", "Spanish version", "in English only" handled above
            if re.match(r"\s+(translation|version|equivalent|word|term)\b", after, re.I):
                out.append((s, code, False))
            continue
        if spaced and not _follower_ok(after):
            continue
        if spaced and _PASSIVE_BEFORE.search(before):
            continue  # "known in English as", "written in French by": describes, not asks
        out.append((s, code, False))
    return out


_PASSIVE_BEFORE = re.compile(
    r"\b(known|called|written|spoken|published|translated|titled|entitled|named|released|"
    r"printed|dubbed|sung|performed|recorded|taught|available|fluent|proficient|common|"
    r"popular|famous|originally|also|word|words|term|means|meaning|pronounced|spelled)"
    r"\s+(?:\w+\s+)?(?:in|into|to)\s+(?:the\s+)?$", re.IGNORECASE)


def _is_question_about_others(clause: str) -> bool:
    c = clause.strip()
    if not c.endswith(("?", "？", "؟")):
        return False
    if _LEXICAL_REQUEST.search(c):
        return False
    return bool(_WH_GUARD.search(c)) and not _YOU.search(c)


def analyse(prompt: str | None) -> tuple[str | None, bool]:
    """(requested language, is translation request) for a prompt."""
    if not prompt:
        return None, False
    text = prompt[:4000] + ("\n" + prompt[-1500:] if len(prompt) > 5500 else "")
    cue, tr = _cue_matchers()
    mentions = _mentions_with_spans(text)
    tr_spans = tr.spans(text)
    if not mentions and not tr_spans:  # the common case: nothing to analyse
        return None, False
    requested: str | None = None
    translation = False
    for cstart, clause in _clauses(text):
        cend = cstart + len(clause)
        cm = [(s - cstart, e - cstart, c) for s, e, c in mentions if cstart <= s < cend]
        ctr = any(cstart <= s < cend for s, _, _ in tr_spans)
        if not cm and not ctr:
            continue
        guard = _is_question_about_others(clause)
        has_tr = ctr and not guard
        lexical = bool(_LEXICAL_REQUEST.search(clause))
        cue_pos = [] if guard else [(a, b) for a, b, _ in cue.spans(clause)]
        cue_pos += [] if guard else [(a - cstart, b - cstart) for a, b, _ in tr_spans
                                     if cstart <= a < cend]
        has_cue = bool(cue_pos)
        targets = _target_mentions(clause, cm)
        if has_tr or (lexical and targets):
            translation = True
        tgt = [c for _, c, is_src in targets if not is_src]
        # a cue must be NEAR the target ("reply in French", "ins Englische übersetzen"); a cue
        # elsewhere in a long clause ("...prompting Luther to write a hymn, known in English
        # as...") is content, not an instruction
        near = [c for pos, c, is_src in targets if not is_src and (
            len(clause) <= 80 or any(pos - 70 <= b and a <= pos + 40 for a, b in cue_pos))]
        if not tgt:
            stripped = clause.strip()
            # "English please." / "Spanish only!" as a standalone instruction
            if cm and not guard and len(stripped) <= 30 and _BARE_REQUEST.match(
                    stripped[:cm[0][0] - (len(clause) - len(clause.lstrip()))]
                    + stripped[cm[0][1] - (len(clause) - len(clause.lstrip())):]) and \
                    re.search(r"(?i)please|only|pls|bitte|favor|plaît|favore|пожалуйста", stripped):
                requested = requested or cm[0][2]
                continue
            # "In German:" / "Auf Deutsch:" / "English -> German:" as a standalone instruction
            if stripped.endswith(":") and not guard and cm and len(stripped) < 60:
                requested = requested or cm[-1][2]
                translation = translation or len(cm) > 1
            continue
        if any(is_src for _, _, is_src in targets) and tgt and not guard:
            translation = True  # "From German to English: ..."
        if (has_cue or has_tr or lexical) and (near or lexical):
            if requested is None:
                requested = (near or tgt)[0] if not lexical else tgt[-1]
            continue
        # a bare "In Spanish." / "Auf Deutsch bitte" clause next to the question
        stripped = clause.strip().rstrip(".!:;")
        if len(stripped) <= 40 and not guard and not stripped.endswith("?"):
            if re.fullmatch(rf"(?:{_L}+[\s-]*){{1,4}}", stripped + " ", re.IGNORECASE) or \
                    not _is_spaced_script(stripped):
                requested = requested or tgt[-1]
    return requested, translation


def requested_language(prompt: str | None) -> str | None:
    """ISO code of the language a prompt asks the reply to be in, else None.

    Fires on instructions ("Translate into German:", "Answer in Spanish", "Please reply in
    French", "¿Puedes responder en inglés?", "用中文回答", "Übersetze ins Englische",
    "How do you say 'thank you' in Japanese?"), not on questions that merely mention a
    language ("What language is spoken in Brazil?", "Who translated the Bible into German?",
    "Why is French hard?").
    """
    return analyse(prompt)[0]


def is_translation_request(prompt: str | None) -> bool:
    """True when the prompt asks for a translation (with or without a named target)."""
    return analyse(prompt)[1]


__all__ = ["LANGUAGE_NAMES", "language_mentions", "requested_language", "is_translation_request",
           "canonical", "same_language", "analyse"]
