"""Language codes and names: ``canonical``/``same_language`` for ISO 639-1 codes, the names of
each supported language (English names and adjectives, endonyms, and names in a dozen major
languages, inflected stems such as ``английск*`` included), and a fast phrase matcher that finds
those names in text (``language_mentions``, ``mention_spans``)."""


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


def is_spaced_script(s: str) -> bool:
    """True when the alias is in a script that separates words by spaces and has no fused
    prefixes (Latin, Cyrillic, Greek, Armenian, Georgian): those need whole-word matching."""
    for ch in s:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if not any(k in name for k in ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "GEORGIAN")):
                return False
    return True




_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def norm_token(t: str) -> str:
    # "İ".lower() is "i" + U+0307; fold it so Turkish capitals match their aliases
    return t.lower().replace("i\u0307", "i")


class PhraseMatcher:
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
            if not is_spaced_script(core):
                self._substr.append((core, value))
                continue
            toks = [norm_token(t) for t in re.split(r"[\s-]+", core) if t]
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
        norm = [norm_token(t[2]) for t in toks]
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
def _mention_matcher() -> PhraseMatcher:
    phrases = [(a, code) for code, aliases in _A.items() for a in aliases]
    cs = {k: v for k, v in _CASE_SENSITIVE.items()}
    return PhraseMatcher(phrases, cs)


def mention_spans(text: str) -> list[tuple[int, int, str]]:
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
    for _, _, code in mention_spans(text):
        if code not in seen:
            seen.append(code)
    return seen


__all__ = ["LANGUAGE_NAMES", "canonical", "same_language", "language_mentions", "mention_spans",
           "PhraseMatcher", "is_spaced_script", "norm_token"]
