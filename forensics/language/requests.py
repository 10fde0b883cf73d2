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
"you" is not an instruction. A statement about someone's language ("My grandmother only
speaks in Russian", "Je parle en anglais avec mes collègues", "我奶奶只会说英语") is not one
either: the part of the clause before the mention opens with a first/third-person subject and
holds no wish, need, obligation or "you" ("My boss wants the summary in German" is a request).
Two weaker readings are used only when no clause with a cue names a language: a header that
points at the passage after it and ends in a colon ("Boil down this paragraph in German:"),
and a bare "In Spanish." clause. The word tables are in :mod:`forensics.language.cues`.
Decided borderline: "How do you say X in German?" and "What is 'dog' in German?" ARE requests
(the expected reply contains German).
"""

from __future__ import annotations

import re
from functools import lru_cache

from forensics.language.cues import CUE_SUBSTRINGS as _CUES_SUBSTR
from forensics.language.cues import CUE_WORDS as _CUES_WORDS
from forensics.language.cues import LANGUAGE_LABEL as _LANGUAGE_LABEL
from forensics.language.cues import MODAL_PASSIVE as _MODAL_PASSIVE
from forensics.language.cues import NOT_STATEMENT as _NOT_STATEMENT
from forensics.language.cues import PASSIVE_BEFORE as _PASSIVE_BEFORE
from forensics.language.cues import PASSAGE_POINTER as _PASSAGE_POINTER
from forensics.language.cues import WH_IN_PLACE as _WH_IN_PLACE
from forensics.language.cues import WH_OPENING as _WH_OPENING
from forensics.language.cues import SPEAK_IMPERATIVE as _SPEAK_IMPERATIVE
from forensics.language.cues import UNSPACED_STUDY_BEFORE as _UNSPACED_STUDY_BEFORE
from forensics.language.cues import UNSPACED_TOPIC_AFTER as _UNSPACED_TOPIC_AFTER
from forensics.language.cues import TRANSLATE_WORDS as _TRANSLATE_WORDS
from forensics.language.cues import arabic_present as _arabic_present
from forensics.language.cues import is_statement as _is_statement
from forensics.language.cues import negated as _negated
from forensics.language.names import PhraseMatcher, is_spaced_script, mention_spans
from forensics.language.reading import ReaderKnobs, Reading

_L = r"[^\W\d_]"  # a letter

# ----------------------------------------------------------------------------- requests
# (the cue tables are in forensics.language.cues)
_CJK_IMPERATIVE = re.compile(r"请|請|帮我|幫我|给我|給我|麻烦|麻煩|你|您|ください|下さい|주세요|해줘|"
                             r"하세요|해 주|해라|하십시오")
_CJK_DESCRIBED = re.compile(r"是(?:用|以)\s*\S{1,10}?\s*(?:写|寫|说|說|撰写|撰寫|书写|書寫|写成|寫成)的?")
_TR_NOUNS = {"translation", "translations", "traducción", "traduction", "übersetzung", "traduzione",
             "tradução", "traducao", "vertaling", "перевод", "переклад", "tłumaczenie",
             "μετάφραση", "traducere", "terjemahan", "tercüme", "translating"}
_TRANSLATE_SUBSTR = ["翻译", "翻譯", "译成", "译为", "翻成", "譯成", "翻訳", "訳して", "번역", "ترجم", "अनुवाद",
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
              "clear", "easy", "conversational", "written", "spoken", "literary", "business",
              "only"]
# "write a German poem", "tell me a Hebrew joke": the language of the requested artefact.
_ARTEFACT_BEFORE = re.compile(
    r"\b(write|compose|give me|tell me|make|create|generate|draft|sing|recite)\s+(?:me\s+)?"
    r"(?:a|an|some|the)\s+(?:short\s+|little\s+|simple\s+|funny\s+)?$", re.IGNORECASE)
_BARE_REQUEST = re.compile(r"^\W*(?:\w+\W+){0,1}?(?:please|only|pls|bitte|por favor|"
                           r"s'il (?:te|vous) pla[iî]t|per favore|пожалуйста)?\W*$", re.IGNORECASE)
# "give me the Russian translation", "what is the German word": an artefact asked for (and not
# "published his French translation of ..." in a passage)
_ASK_BEFORE = re.compile(
    r"\b(?:give|provide|write|send|show|make|need|want|produce|create|generate|output|add|"
    r"include|prefer|tell|what(?:'s| is| are| would be)|also|and|or|with)\b(?:\s+(?:me|us))?"
    r"(?:\s+(?:a|an|the|your|its|their|some))?\s*$", re.IGNORECASE)
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
    # a target followed by the topic or the rest of the task ("an essay in Russian about ...",
    # "explain in Indonesian how ...", "in Spanish in 200 words")
    "about", "on", "regarding", "concerning", "how", "why", "where", "which", "who", "whether",
    "in", "at", "within", "explaining", "describing", "discussing", "covering", "using",
    "summarizing", "summarising", "answering", "comparing", "listing",
    # the same in other languages ("explique-moi en allemand comment ...", "escribe un ensayo
    # en alemán sobre ...", "erkläre auf Englisch, wie ...", "объясни на английском, как ...")
    "comment", "pourquoi", "sur", "quand", "où", "sobre", "cómo", "como", "qué", "que", "por",
    "acerca", "para", "über", "wie", "warum", "was", "wo", "zu", "как", "почему", "про", "о",
    "об", "что", "зачем", "come", "perché", "su", "porque", "sobre",
    # separable-verb particles after a target ("fasse ... auf Englisch zusammen", "schreibe
    # den Text auf Deutsch um")
    "zusammen", "um", "neu", "wieder",
}
_CUE_FOLLOWERS = {w.lower() for w in _CUES_WORDS}
_WH_GUARD = re.compile(
    r"^\W*(who|whom|whose|when|where|why|which|did|does|was|were|is|are|has|have|had|"
    r"do (?!you\b|u\b)\w+|how (?:many|much|long|often|old|come)|what (?:language|languages|"
    r"year|country|countries))\b", re.IGNORECASE)
_YOU = re.compile(r"\b(you|u|me|your)\b", re.IGNORECASE)
_LEXICAL_REQUEST = re.compile(
    r"\b(how (?:do|would|can|could|should|might) (?:you|i|we|one) (?:say|write|translate|"
    r"spell|pronounce|express|call)|how (?:would|does|do|will) (?:this|that|it) (?:read|sound|"
    r"look|go)|what(?:'s| is| are| does|'re) .{0,80}\b(?:in|into)\b|"
    r"what(?:'s| is) the .{0,30}\b(?:word|term|translation|equivalent)\b)"
    # the same questions about a word in other languages: "¿Cómo se dice ... en inglés?",
    # "¿Qué significa/nombre ... en ...?", "Comment dit-on ...", "Que veut dire ...", "Wie sagt
    # man ...", "Was heißt/bedeutet ...", "Как сказать/будет ...", "Что значит ...",
    # "...用波兰语怎么说", "...是什么意思", "كيف تقول", "ما معنى", "...で何と言いますか"
    r"|¿?\s*(?:c[óo]mo se (?:dice|escribe|llama|traduce)|qu[ée] (?:significa|quiere decir|"
    r"nombre)|como se diz|o que significa|comment (?:dit-on|dire|s'appelle|traduire)|"
    r"que (?:veut dire|signifie)|wie (?:sagt man|hei(?:ß|ss)t|schreibt man)|"
    r"was (?:hei(?:ß|ss)t|bedeutet)|как (?:сказать|будет|называется|перевести)|"
    r"что (?:значит|означает)|come si dice|cosa significa)\b"
    r"|怎么说|怎麼說|如何说|怎么讲|叫什么|是什么意思|何と言|كيف (?:تقول|نقول|يقال)|ما معنى",
    re.IGNORECASE)
_CLAUSE = re.compile(r"[^.!?。！？\n;:：；؟]+[.!?。！？\n;:：；؟]*")


def _word_alt(words: list[str]) -> str:
    ws = sorted({w.lower() for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ws)


@lru_cache(maxsize=1)
def _cue_matchers() -> tuple[PhraseMatcher, PhraseMatcher]:
    cue = PhraseMatcher([(w.lower(), "cue") for w in _CUES_WORDS] + [(w, "cue") for w in _CUES_SUBSTR])
    tr = PhraseMatcher([(w.lower(), "tr") for w in _TRANSLATE_WORDS]
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
        spaced = is_spaced_script(alias)
        if _ARTEFACT_BEFORE.search(before):
            out.append((s, code, False))
            continue
        marked = bool(pre.search(before)) or bool(fused_pre.search(before))
        if not marked and not spaced:
            # scripts without spaces: 日本語で / 영어로 / हिंदी में / 中文回答 / بالعربية, unless
            # the language is the topic or object ("法语很好听", "学日语", "日本語を勉強")
            if _UNSPACED_TOPIC_AFTER.search(after) or _UNSPACED_STUDY_BEFORE.search(before):
                continue
            marked = True
        if not marked and spaced and _TURKISH_ADVERB.search(alias):
            # Turkish adverbial use: "Türkçe cevap ver", "İngilizceye çevir"
            marked = True
        if not marked:
            # "German translation of ...", "Spanish version", "in English only" handled above
            if re.match(r"\s+(translation|version|equivalent|word|term)\b", after, re.I) and \
                    _ASK_BEFORE.search(before):
                out.append((s, code, False))
            continue
        if spaced and not _follower_ok(after):
            continue
        if spaced and _PASSIVE_BEFORE.search(before) and not _MODAL_PASSIVE.search(before):
            continue  # "known in English as", "written in French by": describes, not asks
        if _is_statement(clause, s):
            continue  # "my grandmother only speaks Russian": about someone's language
        if _negated(clause, s):
            continue  # "don't answer in English": the language not wanted
        out.append((s, code, False))
    return out


_MARKER_WORDS = {w.lower() for w in _PRE_TARGET + _SOURCE + _MODIFIERS} | {
    "translate", "translation", "the", "please", "only", "and", "und", "et", "y", "и"}


def _starts_line(text: str, pos: int) -> bool:
    """The clause at ``pos`` begins the text, a line or a sentence (not a "; Spanish: ..."
    gloss)."""
    before = text[:pos].rstrip(" \t")
    return not before or before[-1] in "\n.!?。！？"


def _only_markers(clause: str, mentions: list[tuple[int, int, str]]) -> bool:
    """The clause is nothing but language names and markers ("In German:", "English -> German:",
    "Auf Deutsch:"), not a sentence that happens to end in a colon."""
    rest = clause
    for a, b, _ in sorted(mentions, reverse=True):
        rest = rest[:a] + " " + rest[b:]
    return all(w.lower() in _MARKER_WORDS for w in re.findall(rf"{_L}+", rest))


def _is_question_about_others(clause: str) -> bool:
    c = clause.strip()
    if not c.endswith(("?", "？", "؟")):
        return False
    if _LEXICAL_REQUEST.search(c):
        return False
    if _WH_GUARD.search(c):
        return not _YOU.search(c)
    # other languages: a wh-question that neither addresses the reader nor asks politely
    return bool(_WH_OPENING.search(c) or _WH_IN_PLACE.search(c)) and \
        not _NOT_STATEMENT.search(c) and not _CJK_IMPERATIVE.search(c)


_HEAD, _TAIL = 4000, 1500


def _to_prompt(pos: int, prompt: str) -> int:
    """Offset in the analysed text (head + "\n" + tail of a long prompt) -> offset in the prompt."""
    if len(prompt) <= _HEAD + _TAIL or pos <= _HEAD:
        return min(pos, len(prompt))
    return len(prompt) - _TAIL + (pos - _HEAD - 1)


def _evidence(clause: str, cstart: int, mpos: int) -> tuple[int, int]:
    """The clause, trimmed to at most ~80 characters either side of the deciding mention."""
    lead = len(clause) - len(clause.lstrip())
    a, b = cstart + lead, cstart + len(clause.rstrip())
    m = cstart + mpos
    return max(a, m - 80), min(b, m + 80)


def read_prompt(prompt: str | None, knobs: ReaderKnobs = ReaderKnobs()) -> Reading:
    """The language a prompt asks for, whether it asks for a translation, and the evidence."""
    if not prompt:
        return Reading(None, False)
    text = prompt[:_HEAD] + ("\n" + prompt[-_TAIL:] if len(prompt) > _HEAD + _TAIL else "")
    cue, tr = _cue_matchers()
    mentions = mention_spans(text)
    tr_spans = [sp for sp in tr.spans(text) if not _arabic_present(text, sp[0])]
    if not mentions and not tr_spans:  # the common case: nothing to analyse
        return Reading(None, False)
    requested: str | None = None
    span: tuple[int, int] | None = None
    lex_found = False
    translation = False
    tr_short = False  # a translation cue on an instruction-length line
    in_long = False  # the request taken so far sits inside a long (passage) line
    header = None

    def take(code, clause, cstart, mpos, lexical=False):
        # the first request wins, except that one on an instruction-length line replaces one
        # read inside a long passage line ("...asked his students to reply in Latin..." in the
        # passage, "Summarise in German:" on a line of its own after it)
        nonlocal requested, span, lex_found, in_long
        if requested is None or (in_long and not long_line):
            requested = code
            a, b = _evidence(clause, cstart, mpos)
            span = (_to_prompt(a, prompt), _to_prompt(b, prompt))
            lex_found = lexical
            in_long = long_line

    for cstart, clause in _clauses(text):
        cend = cstart + len(clause)
        ls = text.rfind("\n", 0, cstart) + 1
        le = text.find("\n", cstart)
        long_line = (le if le >= 0 else len(text)) - ls > knobs.instruction_line_chars
        cm = [(s - cstart, e - cstart, c) for s, e, c in mentions if cstart <= s < cend]
        ctr = any(cstart <= s < cend for s, _, _ in tr_spans)
        if not cm and not ctr:
            continue
        guard = _is_question_about_others(clause)
        labelled = [(s, c) for s, _, c in cm  # the label may end the clause before
                    if _LANGUAGE_LABEL.search(text[max(0, cstart + s - knobs.label_window_chars):cstart + s])
                    or _SPEAK_IMPERATIVE.search(clause[:s])]
        if labelled:  # "Output language: French", "From now on, speak French."
            take(labelled[0][1], clause, cstart, labelled[0][0])
            continue
        has_tr = ctr and not guard
        lexical = bool(_LEXICAL_REQUEST.search(clause))
        cue_pos = [] if guard else [(a, b) for a, b, _ in cue.spans(clause)
                                    if not _arabic_present(clause, a)]
        cue_pos += [] if guard else [(a - cstart, b - cstart) for a, b, _ in tr_spans
                                     if cstart <= a < cend]
        if len(clause.strip()) > 30 and not is_spaced_script(clause) and \
                not _CJK_IMPERATIVE.search(clause):
            # a long sentence in Chinese/Japanese/Korean without a politeness or imperative
            # marker is narration ("...是用拉丁语写的", "...在英语中以...翻译"); its 用/写/翻译
            # are not cues unless the clause starts with them
            lead = len(clause) - len(clause.lstrip())
            cue_pos = [(a, b) for a, b in cue_pos if a - lead <= 6]
            has_tr = has_tr and bool(cue_pos)
        if _CJK_DESCRIBED.search(clause):
            cm = []  # "是用拉丁语写的": says what something was written in
        verbs = [(a, b) for a, b in cue_pos if clause[a:b].lower() not in _TR_NOUNS]
        if len(clause) > 80:
            # a translation noun asked for by a verb just before it ("provide a careful
            # translation") stays a cue
            cue_pos = verbs + [(a, b) for a, b in cue_pos if clause[a:b].lower() in _TR_NOUNS
                               and any(0 <= a - vb <= 40 for _, vb in verbs)]
        if len(clause) > 80 and not verbs:
            # in a long clause with no imperative a translation NOUN is content ("published
            # his French translation of ...", "se conoce en inglés por la traducción ..."),
            # not a cue
            cue_pos = verbs
            has_tr = has_tr and any(text[a:b].lower() not in _TR_NOUNS for a, b, _ in tr_spans
                                    if cstart <= a < cend)
        if lexical and has_tr and clause.rstrip().endswith(("?", "？", "؟")) and all(
                text[a:b].lower() in _TR_NOUNS for a, b, _ in tr_spans if cstart <= a < cend):
            # "What is the German translation of the title?": a question about a word (the
            # length of a quoted phrase decides, see ReaderKnobs.lexical_max_words)
            has_tr = False
            cue_pos = [(a, b) for a, b in cue_pos if clause[a:b].lower() not in _TR_NOUNS]
        has_cue = bool(cue_pos)
        targets = _target_mentions(clause, cm)
        if has_tr or (lexical and targets):
            translation = True
            tr_short = tr_short or not long_line
        tgt = [(pos, c) for pos, c, is_src in targets if not is_src]
        # a cue must be NEAR the target ("reply in French", "ins Englische übersetzen"); a cue
        # elsewhere in a long clause ("...prompting Luther to write a hymn, known in English
        # as...") is content, not an instruction
        near = [(pos, c) for pos, c in tgt if (
            len(clause) <= 80 or any(pos - 70 <= b and a <= pos + 40 for a, b in cue_pos))]
        if not tgt:
            stripped = clause.strip()
            # "English please." / "Spanish only!" as a standalone instruction
            if cm and not guard and len(stripped) <= 30 and _BARE_REQUEST.match(
                    stripped[:cm[0][0] - (len(clause) - len(clause.lstrip()))]
                    + stripped[cm[0][1] - (len(clause) - len(clause.lstrip())):]) and \
                    re.search(r"(?i)please|only|pls|bitte|favor|plaît|favore|пожалуйста", stripped):
                take(cm[0][2], clause, cstart, cm[0][0])
                continue
            # "In German:" / "Auf Deutsch:" / "English -> German:" as a standalone instruction
            if stripped.endswith(":") and not guard and cm and len(stripped) < 60 \
                    and _only_markers(clause, cm) and _starts_line(text, cstart):
                take(cm[-1][2], clause, cstart, cm[-1][0])
                translation = translation or len(cm) > 1
                tr_short = tr_short or (len(cm) > 1 and not long_line)
            continue
        if any(is_src for _, _, is_src in targets) and tgt and not guard:
            translation = True  # "From German to English: ..."
            tr_short = tr_short or not long_line
        if (has_cue or has_tr or lexical) and (near or lexical):
            if lexical:
                take(tgt[-1][1], clause, cstart, tgt[-1][0], lexical=not has_tr)
            else:
                pos, code = (near or tgt)[0]
                take(code, clause, cstart, pos)
            continue
        # a header before a passage: "Boil down this paragraph in Greek:" + text; like a bare
        # "In Spanish." below, used only when no clause with a request cue names a language
        head = clause.rstrip()
        if header is None and head.endswith((":", "：")) and not guard and \
                len(head.strip()) <= knobs.header_max_chars and _starts_line(text, cstart) and \
                _PASSAGE_POINTER.search(head) and \
                max(len(text[cstart + len(clause):].strip()), len(text[:cstart].strip())) >= knobs.passage_min_chars:
            # the passage after the header, or before it (a header written after the text)
            header = (tgt[0][1], clause, cstart, tgt[0][0])
            continue
        # a bare "In Spanish." / "Auf Deutsch bitte" clause next to the question
        stripped = clause.strip().rstrip(".!:;")
        if len(stripped) <= knobs.bare_clause_chars and not guard and not stripped.endswith(("?", "？", "؟")) \
                and _starts_line(text, cstart):
            rest = clause
            for a, b, _ in sorted(cm, reverse=True):
                rest = rest[:a] + rest[b:]
            if (is_spaced_script(stripped) and re.fullmatch(rf"(?:{_L}+[\s-]*){{1,4}}",
                                                          stripped + " ", re.IGNORECASE)) or \
                    (not is_spaced_script(stripped) and len(re.sub(r"\W", "", rest)) <= 1):
                # yields to a request with a cue elsewhere ("Text in French: ... Translate it
                # into English.")
                header = header or (tgt[-1][1], clause, cstart, tgt[-1][0])
    if (requested is None or in_long) and header is not None:
        long_line = False  # a header is a line of its own
        take(*header)
    if requested is not None and not in_long and not tr_short:
        translation = False  # translation cues only inside the passage, the request outside it
    return Reading(requested, translation, span, lex_found)


def analyse(prompt: str | None) -> tuple[str | None, bool]:
    """(requested language, is translation request) for a prompt (see :func:`read_prompt`)."""
    r = read_prompt(prompt)
    return r.lang, r.translation


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


__all__ = ["requested_language", "is_translation_request", "analyse", "read_prompt", "Reading",
           "ReaderKnobs"]
