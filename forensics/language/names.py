"""Language codes and names: ``canonical``/``same_language`` for ISO 639-1 codes, ``display_name``
(a language's name in another language), and a fast phrase matcher that finds language names in
text (``language_mentions``, ``mention_spans``).

Names come from CLDR through ``langcodes`` / ``language-data``: for every supported language
(``SUPPORTED``), its names in every supported language, regional variants and the alternative
names language-data records (about 5,600 names for 70 languages; docs/architecture.md gives the
counts). CLDR has only the dictionary form of a name, so ``_FORMS`` adds what it lacks:
inflected stems (``английск*`` for "на английском", ``englisch*`` for "ins Englische",
``ingilizce*`` for "İngilizce'ye"), forms written without accents ("espanol") and colloquial
names ("Mandarin", "汉语", "Farsi"). A name that is also a territory's name in some language
("italien"/"Italien", "indonesia") matches only in lower case (unspaced scripts: not at all);
names that name two languages, a few place names and common words (``_NOT_NAMES``), or that are
shorter than ``MIN_NAME_CHARS`` are left out; ``_CASE_SENSITIVE`` names are ordinary words in
lower case ("polish").
"""


from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# The languages whose names the matcher knows (and in whose languages it knows them).
SUPPORTED: tuple[str, ...] = (
    "en", "de", "es", "zh", "vi", "tr", "el", "ro", "ru", "uk", "ar", "hi", "ja", "ko", "fr",
    "it", "pt", "nl", "pl", "sv", "cs", "da", "fi", "no", "nb", "nn", "hu", "he", "fa", "th",
    "id", "ms", "bn", "ta", "ur", "sw", "bg", "sr", "hr", "bs", "sk", "sl", "lt", "lv", "et",
    "ca", "eu", "gl", "ga", "cy", "is", "sq", "mk", "hy", "ka", "az", "kk", "mn", "af", "tl",
    "la", "eo", "te", "mr", "gu", "pa", "yo", "zu", "so", "be",
)
MIN_NAME_CHARS = 4   # single-word names in spaced scripts shorter than this are left out
# CLDR names that are, in running text, far more often a place or a common word of another
# language (Indonesian "Wales"/"Korea"/"Persia"; Turkish "araba" = car, "dana" = calf;
# Romanian "cina" = dinner).
_NOT_NAMES = frozenset({"wales", "korea", "persia", "araba", "dana", "cina"})


@lru_cache(maxsize=4096)
def display_name(code: str, in_lang: str = "en") -> str:
    """The CLDR name of language ``code`` in language ``in_lang`` ("de", "en" -> "German";
    "en", "ru" -> "английский"); the code itself when CLDR has no name."""
    import langcodes

    try:
        name = langcodes.Language.get(code).display_name(in_lang)
    except (ValueError, LookupError):
        return code
    return name if name and not name.lower().startswith("unknown language") else code


@lru_cache(maxsize=1)
def english_names() -> dict[str, str]:
    """{code: English CLDR name} of the supported languages (also ``names.LANGUAGE_NAMES``)."""
    return {c: display_name(c) for c in SUPPORTED}


def __getattr__(name: str):
    # LANGUAGE_NAMES is built on first use: langcodes costs about a second to import
    if name == "LANGUAGE_NAMES":
        return english_names()
    raise AttributeError(name)

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


# What CLDR lacks (see the module docstring): inflected stems, accent-less and colloquial forms.
# Entries are regex-free strings, matched case-insensitively. A trailing ``*`` means "stem":
# any letters may follow (inflections). Alphabetic-script names must stand as whole words;
# names in scripts written without spaces (CJK, Thai) or with fused prefixes (Arabic,
# Hebrew, Devanagari) match as substrings.
_FORMS: dict[str, list[str]] = {
    "en": ["englisch*", "angielsk*", "английск*", "англійськ*", "αγγλικ*", "engleza", "englez*",
           "i̇ngilizce*", "ingilizce*", "engelsk*", "englanti*", "angol*", "anglick*",
           "bahasa inggris", "الانجليزية", "الإنكليزية", "بالإنجليزية", "अंग्रेजी", "ภาษาอังกฤษ"],
    "de": ["deutsche", "deutschen", "deutscher", "deutsches", "aleman", "niemieck*", "немецк*",
           "німецьк*", "γερμανικ*", "nemțește", "almanca*", "tysk*", "saksa*", "német*", "německ*",
           "bahasa jerman", "德語", "الالمانية"],
    "es": ["espanol", "castellano", "spanisch*", "hiszpańsk*", "испанск*", "іспанськ*", "ισπανικ*",
           "spaniola", "i̇spanyolca*", "ispanyolca*", "spansk*", "espanja*", "spanyol*",
           "španělsk*", "西班牙語", "الاسبانية"],
    "fr": ["francais", "französisch*", "franzosisch*", "frances", "francusk*", "французск*",
           "французьк*", "γαλλικ*", "franceza", "fransızca*", "fransk*", "ranska*", "francouzsk*",
           "法語"],
    "it": ["italienisch*", "italiana", "włosk*", "итальянск*", "італійськ*", "ιταλικ*", "tiếng ý",
           "i̇talyanca*", "italyanca*", "italiensk*", "olasz*", "意大利文"],
    "pt": ["portugues", "portugiesisch*", "portugalsk*", "португальск*", "πορτογαλικ*",
           "portekizce*"],
    "ru": ["russisch*", "rosyjsk*", "русск*", "російськ*", "ρωσικ*", "rusește", "rusça*", "rusca*",
           "rysk*", "venäjä*", "orosz*", "rusk*", "俄語"],
    "zh": ["mandarin", "cantonese", "chinesisch*", "chines", "chińsk*", "китайск*", "китайськ*",
           "κινεζικ*", "chineza", "tiếng hoa", "çince*", "cince*", "kinesisk*", "kiina*", "kínai*",
           "čínsk*", "汉语", "漢語", "华语", "華語", "國語"],
    "ja": ["japanisch*", "japones", "japońsk*", "японск*", "японськ*", "ιαπωνικ*", "japonca*",
           "japansk*", "japani*", "日語"],
    "ko": ["coreen", "koreanisch*", "koreańsk*", "корейск*", "корейськ*", "κορεατικ*", "korece*",
           "koreansk*", "韩文", "韓語", "朝鲜语", "한글"],
    "ar": ["arabisch*", "arabsk*", "арабск*", "арабськ*", "αραβικ*", "arapça*", "بالعربية",
           "عربي"],
    "nl": ["neerlandais", "niederländisch*", "holländisch*", "holandés", "holendersk*",
           "niderlandzk*", "нидерландск*", "голландск*", "ολλανδικ*", "olandeză", "hollandaca*",
           "hollanti*"],
    "pl": ["polsku", "polnisch*", "польск*", "польськ*", "πολωνικ*", "lehçe*"],
    "sv": ["schwedisch*", "szwedzk*", "шведск*", "σουηδικ*", "i̇sveççe*", "isveççe*", "ruotsi*",
           "svéd*"],
    "da": ["dansk*", "dänisch*", "duńsk*", "датск*", "δανικ*", "danca*", "tanska*"],
    "no": ["norsk*", "bokmål", "bokmal", "nynorsk", "norwegisch*", "norwesk*", "норвежск*",
           "νορβηγικ*", "norveççe*", "norja*"],
    "fi": ["suomeksi", "suomen kiel*", "finnisch*", "finlandés", "fińsk*", "финск*", "фінськ*",
           "φινλανδικ*", "fince*", "finsk*"],
    "cs": ["češtině", "cestina", "česky", "tschechisch*", "czesk*", "чешск*", "чеськ*", "τσεχικ*",
           "çekçe*"],
    "sk": ["slovensky", "slowakisch*", "słowack*", "словацк*"],
    "sl": ["slowenisch*", "словенск*"],
    "hu": ["magyar*", "ungarisch*", "hungaro", "węgiersk*", "венгерск*", "угорськ*", "ουγγρικ*",
           "macarca*", "unkari*"],
    "he": ["hebräisch*", "иврит*", "בעברית"],
    "fa": ["persisch*", "персидск*", "بفارسی"],
    "th": ["thailändisch*", "tailandese", "тайск*", "ภาษาไทย"],
    "id": ["indonesisch*", "индонезийск*", "印尼语"],
    "ms": ["bahasa melayu", "malaiisch*", "малайск*"],
    "bn": ["বাংলায়", "бенгальск*"],
    "ta": ["тамильск*"],
    "sw": ["souahili"],
    "bg": ["българск*", "bulgarisch*", "болгарск*", "βουλγαρικ*"],
    "sr": ["serbisch*", "сербск*", "σερβικ*"],
    "hr": ["kroatisch*", "хорватск*"],
    "lt": ["lietuvi*", "litauisch*", "литовск*"],
    "lv": ["lettisch*", "латышск*"],
    "et": ["estnisch*", "эстонск*"],
    "ca": ["katalanisch*", "каталанск*"],
    "eu": ["baskisch*", "vasco"],
    "is": ["isländisch*"],
    "mk": ["македонск*"],
    "az": ["azərbaycan*"],
    "kk": ["қазақ*"],
    "mn": ["монгол хэл*"],
    "tl": ["filipino"],
    "la": ["latein*", "латын*", "латинск*", "λατινικ*"],
    "uk": ["українськ*", "украинск*", "ukrainisch*", "ukraińsk*", "ουκρανικ*"],
    "el": ["ελληνικ*", "griechisch*", "greck*", "греческ*", "грецьк*", "greaca", "yunanca*",
           "grekisk*", "希臘語"],
    "ro": ["romana", "românește", "rumänisch*", "rumuńsk*", "румынск*", "румунськ*", "ρουμανικ*",
           "rumence*", "tiếng rumani"],
    "vi": ["tieng viet", "vietnamesisch*", "wietnamsk*", "вьетнамск*", "в'єтнамськ*",
           "βιετναμεζικ*", "vietnamca*"],
    "tr": ["türkçe*", "turkce*", "türkisch*", "turecki*", "турецк*", "турецьк*", "τουρκικ*",
           "turca", "터키어"],
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
        # substring phrases indexed by their first character: one C-level scan finds the
        # positions where any may start, then only the phrases with that first character
        self._by_first: dict[str, list[tuple[str, str]]] = {}
        for phrase, value in sorted(self._substr, key=lambda x: -len(x[0])):
            self._by_first.setdefault(phrase[0], []).append((phrase, value))
        self._has_substr_chars = re.compile(
            "[" + "".join(sorted(re.escape(ch) for ch in self._by_first)) + "]"
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
        if self._has_substr_chars is not None:
            by_first = self._by_first
            for m in self._has_substr_chars.finditer(text):
                st = m.start()
                for phrase, value in by_first[m.group(0)]:
                    if text.startswith(phrase, st):
                        found.append((st, st + len(phrase), value))
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


def _load_trie(lang: str, category: str):
    from language_data.names import load_trie
    from language_data.util import data_filename

    try:
        return load_trie(data_filename(f"trie/{lang}/name_to_{category}.marisa"))
    except (OSError, FileNotFoundError, RuntimeError):
        return None


@lru_cache(maxsize=1)
def place_names() -> frozenset[str]:
    """Territory names (casefolded) in the supported languages, from CLDR."""
    out: set[str] = set()
    for dl in sorted(set(SUPPORTED)):
        t = _load_trie(dl, "territory")
        if t is not None:
            out.update(t.keys())
    return frozenset(out)


@lru_cache(maxsize=1)
def cldr_names() -> dict[str, list[str]]:
    """{code: [names]} of the supported languages in the supported languages, from CLDR (via
    language-data's name tries: CLDR names, regional variants, recorded alternatives), without
    names in unspaced scripts that are also a territory's name, names that name two supported
    languages, or that are too short to be safe (see the module
    docstring). Names are casefolded."""
    supported = {canonical(c) for c in SUPPORTED}
    places = place_names()
    by_name: dict[str, set[str]] = {}
    for dl in sorted(set(SUPPORTED)):
        t = _load_trie(dl, "language")
        if t is None:
            continue
        for name, raw in t.items():
            code = canonical(raw.decode("utf-8"))
            if code in supported and not (name in places and not is_spaced_script(name)):
                by_name.setdefault(name, set()).add(code)
    out: dict[str, list[str]] = {}
    for name, codes in by_name.items():
        if len(codes) != 1 or name in _NOT_NAMES or not name.strip():
            continue
        if any(ch.isdigit() for ch in name):
            continue
        spaced = is_spaced_script(name)
        if (spaced and " " not in name and len(name) < MIN_NAME_CHARS) or len(name) < 2:
            continue
        out.setdefault(next(iter(codes)), []).append(name)
    return {c: sorted(v) for c, v in sorted(out.items())}


@lru_cache(maxsize=1)
def _mention_matcher() -> PhraseMatcher:
    phrases = [(a, code) for code, names in cldr_names().items() for a in names]
    phrases += [(a, canonical(code)) for code, forms in _FORMS.items() for a in forms]
    # a name that is also a place ("italien" = French for Italian, "Italien" = German for
    # Italy; "irlanda", "island") matches only in lower case, as languages of those
    # names write language names
    places = place_names()
    cs = {a: a for a, _ in phrases if a in places and is_spaced_script(a) and " " not in a}
    cs.update(_CASE_SENSITIVE)
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


__all__ = ["LANGUAGE_NAMES", "SUPPORTED", "display_name", "cldr_names", "canonical",
           "same_language", "language_mentions", "mention_spans",
           "PhraseMatcher", "is_spaced_script", "norm_token"]
