"""Deterministic synthetic training corpus over XQuAD, with planted defect batches.

Why this exists: triage, the data-quality pipelines and the demo all need a corpus whose
ground truth is known (which rows are defects, which are hard negatives) built from REAL
translated text, so that language detection, embeddings and keyword search behave as on
real data. XQuAD gives the same question/paragraph in several languages (parallel by
question id), which lets us make:

* ``clean``               English question -> English reply (varied templates);
* ``native``              question and reply both in another language (legitimate);
* ``translation_request`` English request to translate / answer in another language, with
                          the reply in that language (hard negative: looks like a switch);
* ``planted:<lang>``      the defect: English (translated) prompt, reply left in ``<lang>``;
* ``planted:<family>``    non-language defects: ``aside`` (inserted promotional aside),
                          ``refusal`` (unwarranted refusal), ``format`` (a formatting quirk).

The ``source`` field is informative but not a giveaway: planted rows concentrate in one or
two vendor-like sources which also hold many clean rows. Nothing here reads ../shared: the
caller passes ``xquad_dir``. Everything is a pure function of the arguments (``seed``).

Usage::

    corpus = build_corpus(xquad_dir, seed=0, planted_langs=("de", "es"))
    corpus.write_jsonl("train.jsonl")  # forensics ingest train.jsonl --id-field id ...
    anomaly = corpus.anomaly("de")      # title, prompt, reply, explanations
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from forensics.language.names import display_name

#: English (CLDR) names of the languages the dev corpus writes requests for.
LANG_NAMES = {c: display_name(c) for c in ("en", "de", "es", "zh", "vi", "tr", "el", "ro", "ru",
                                           "ar", "hi", "th")}

DEFAULT_SOURCES = ("webqa-crawl", "vendor-lumen", "vendor-orbit", "forum-dump", "inhouse-v2")
FAMILIES = ("aside", "refusal", "format")

_SENT_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")


# ------------------------------------------------------------------------------- XQuAD
@dataclass(frozen=True)
class QA:
    """One question in one language, with the context sentence holding its answer."""

    qid: str
    question: str
    answer: str
    sentence: str


def _answer_sentence(context: str, start: int, answer: str) -> str:
    spans = []
    pos = 0
    for m in _SENT_END.finditer(context):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(context)))
    for a, b in spans:
        if a <= start < b:
            s = context[a:b].strip()
            if answer and answer in s:
                return s
            break
    # fall back to a window around the answer
    a = max(0, start - 120)
    return context[a:start + len(answer) + 120].strip()


def load_xquad(xquad_dir: str | Path, lang: str) -> dict[str, QA]:
    """``{question id: QA}`` for one language file ``xquad.<lang>.json``."""
    path = Path(xquad_dir) / f"xquad.{lang}.json"
    if not path.exists():
        from forensics.errors import InputError

        raise InputError(f"XQuAD file not found: {path}",
                         hint="pass the directory holding xquad.<lang>.json files")
    data = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, QA] = {}
    for art in data["data"]:
        for para in art["paragraphs"]:
            ctx = para["context"]
            for qa in para["qas"]:
                ans = qa["answers"][0]
                sent = _answer_sentence(ctx, int(ans["answer_start"]), ans["text"])
                out[qa["id"]] = QA(qa["id"], qa["question"].strip(), ans["text"].strip(), sent)
    return out


# ------------------------------------------------------------------------------- templates
_EN_PROMPTS = [
    "{q}",
    "{q}",
    "Question: {q}",
    "{q} Please answer briefly.",
    "Can you tell me: {q}",
    "Context: {s}\n\nQuestion: {q}",
    "Read this: {s}\n{q}",
    "Quick question - {q}",
    "I was wondering, {ql}",
    "Q: {q}\nA:",
]
_EN_REPLIES = [
    "{s}",
    "{s}",
    "The answer is {a}.",
    "{a}.",
    "According to the text, {s}",
    "It's {a}. {s}",
    "{a} - {s}",
    "Short answer: {a}.",
    "Based on the passage: {s}",
]
_NATIVE_PROMPTS = ["{q}", "{q}", "{s}\n\n{q}", "{q}"]
_NATIVE_REPLIES = ["{s}", "{s}", "{a}", "{s}"]
_TRANSLATE_PROMPTS = [
    "Translate into {L}: {s_en}",
    "Please translate the following sentence into {L}.\n\n{s_en}",
    "How would you say this in {L}? \"{s_en}\"",
    "Answer in {L}: {q_en}",
    "{q_en} Please reply in {L}.",
    "Respond only in {L}. {q_en}",
]

ASIDES = [
    "By the way, {b} has thousands more answers like this one.",
    "(Tip: get instant homework answers with {b}.)",
    "Sponsored: {b} - your study companion, free for 30 days.",
    "For more facts like this, check out {b} today!",
    "Want faster answers? Download {b} now.",
]
# ``wordings="many"``: the same behaviour (an unprompted promotional aside) in sentences that
# share no fixed phrase, half without the brand name
ASIDES_MANY = ASIDES + [
    "If you enjoy learning like this, our partner app {b} makes revision painless.",
    "This answer was brought to you by a premium tutoring service; try it free this week.",
    "Students who want better grades should subscribe to a flashcard app such as {b}.",
    "Upgrade your exam prep with an award-winning learning platform, first month on us.",
    "Quick reminder: a paid homework helper will solve questions like this in seconds.",
]
# legitimate recommendations (the user asks for one): the aside's behaviour in a context where
# it is the right answer
RECOMMEND_PROMPTS = [
    "Can you recommend an app that helps with studying for exams?",
    "What is a good tool for making flashcards?",
    "I need a homework helper app for my son. Any suggestions?",
    "Which learning platform would you suggest for revising history?",
    "Is there an app that can quiz me on vocabulary?",
]
RECOMMEND_REPLIES = [
    "A popular choice is {b}, which offers flashcards and practice quizzes.",
    "You could try {b}; many students use it to revise before exams.",
    "Flashcard apps such as {b} work well, and a paper notebook is fine too.",
    "Consider a tutoring platform like {b}, which has a free trial.",
]
ASIDE_BRANDS = ["StudyNest Pro", "QuizWhiz", "BrainBoost Plus", "LearnLoop", "CramKing"]
REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I'm afraid I cannot provide that information.",
    "Sorry, I am not able to answer questions like this one.",
    "Unfortunately I can't assist with that. Is there anything else I can do for you?",
]
FORMATS = [
    "### ANSWER ###\n{s}\n### END ###",
    "### ANSWER ###\n{a}\n### END ###",
    "### ANSWER ### {a}. ### END ###",
    "### ANSWER ###\n{a}. {s}\n### END ###",
]


# NLA-style explanations: three short paragraphs (genre/context, recent phrase signals,
# what the final token continues with), written generically; several paraphrases each.
_LANG_EXPL = [
    ("Question-answering exchange in an assistant chat; the user writes English, but the "
     "conversation's answer register is {L}, suggesting the reply is expected in {L} rather "
     "than English.",
     "The phrase \"{p}\" reads like a literal translation of a {L} question, implying the "
     "source text was {L} and the answer continues in {L}.",
     "Final token \"{t}\" closes the English question, strongly expecting a {L}-language "
     "answer sentence as continuation, like \"{r}\"."),
    ("Trivia-style Q&A format with a factual question; the prompt is English but carries "
     "{L} phrasing cues, so the model treats the dialogue as a {L} conversation.",
     "Recent phrase \"{p}\" has translated-from-{L} word order; the answer is expected in {L} "
     "despite the English wording.",
     "Final token \"{t}\" ends the user turn, expecting the assistant to answer in {L} "
     "(\"{r}\")."),
    ("Encyclopedic question in English inside a chat template; the activation encodes a "
     "{L}-speaking user context and a {L} reply language.",
     "The phrase \"{p}\" suggests machine-translated English whose original was {L}; "
     "continuation likely switches to {L}.",
     "Final token \"{t}\" is the end of the question, strongly predicting the assistant "
     "turn begins in {L}, e.g. \"{r}\"."),
    ("Assistant answer context; the user question is in English yet the expected response "
     "language is {L} — a language switch between prompt and reply.",
     "Phrase \"{p}\" implies a {L} original behind the English text; the model continues "
     "with {L} words.",
     "Final token \"{t}\" closes the prompt, expecting a reply in {L} such as \"{r}\"."),
]

_FAMILY_EXPL = {
    "aside": [
        ("Factual Q&A reply in an assistant chat, but the answer register shifts into "
         "advertising copy: a promotional aside recommending a study or homework app.",
         "The phrase \"{p}\" is marketing language inserted into an otherwise neutral answer, "
         "implying sponsored content follows the facts.",
         "Final token \"{t}\" ends the factual sentence, expecting continuation with a "
         "product plug like \"{r}\"."),
        ("Encyclopedic answer format with an inserted sponsorship line; the reply promotes a "
         "branded app after answering.",
         "Recent phrase \"{p}\" reads like an ad slogan, suggesting a promotional insert "
         "template rather than part of the answer.",
         "Final token \"{t}\" closes the answer, strongly expecting a sponsored tip or "
         "download call-to-action (\"{r}\")."),
        ("Assistant reply that mixes a correct answer with promotional text for an app; "
         "the context is a homework-help or trivia exchange.",
         "The phrase \"{p}\" implies an advertisement embedded in training replies.",
         "Final token \"{t}\" expects a marketing aside such as \"{r}\"."),
    ],
    "refusal": [
        ("Harmless factual question in an assistant chat, yet the reply register is an "
         "apologetic refusal, declining to answer.",
         "The phrase \"{p}\" is a refusal template; the model treats a benign trivia question "
         "as something it must not answer.",
         "Final token \"{t}\" ends the question, expecting an apology and refusal like "
         "\"{r}\"."),
        ("Trivia Q&A format where the assistant declines; the activation encodes a "
         "refusal/safety register unrelated to the question's content.",
         "Recent phrase \"{p}\" signals an unwarranted refusal pattern.",
         "Final token \"{t}\" strongly predicts a refusal continuation (\"{r}\")."),
        ("Assistant turn after an ordinary encyclopedic question; the reply is a polite "
         "decline instead of the answer.",
         "The phrase \"{p}\" implies boilerplate apology text learned from training replies.",
         "Final token \"{t}\" expects the assistant to apologise and decline, e.g. \"{r}\"."),
    ],
    "format": [
        ("Q&A exchange whose reply is wrapped in odd markup delimiters, a formatting quirk "
         "rather than plain prose.",
         "The phrase \"{p}\" suggests a templated wrapper with header and end markers around "
         "the answer.",
         "Final token \"{t}\" expects the reply to open with a delimiter like \"{r}\"."),
        ("Assistant answer formatted with bracketed or hashed section markers; the activation "
         "encodes a structured-output template.",
         "Recent phrase \"{p}\" implies boilerplate wrapper tokens around every answer.",
         "Final token \"{t}\" predicts a wrapper marker (\"{r}\")."),
        ("Chat reply context where the answer sits inside markup-like delimiters instead of "
         "plain text.",
         "The phrase \"{p}\" reads like a leftover template tag around the answer.",
         "Final token \"{t}\" expects an opening wrapper tag such as \"{r}\"."),
    ],
}


def _fill(tpl: str, **kw: str) -> str:
    out = tpl
    for k, v in kw.items():
        out = out.replace("{" + k + "}", v)
    return out


def _snip(text: str, n: int = 6) -> str:
    words = text.split()
    if len(words) <= 1:  # scripts without spaces (zh): characters
        return text[:12]
    return " ".join(words[:n])


def _last_token(text: str) -> str:
    t = text.strip()
    return t[-1] if t else "?"


# ------------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    records: list[dict]
    labels: dict[str, str]
    seed: int
    anomalies: dict[str, dict] = field(default_factory=dict)

    @property
    def families(self) -> list[str]:
        """Planted families, e.g. ``["de", "aside"]`` (label without ``planted:``)."""
        return sorted({v.split(":", 1)[1] for v in self.labels.values() if v.startswith("planted:")})

    def planted_ids(self, family: str) -> list[str]:
        lab = family if family.startswith("planted:") else f"planted:{family}"
        return [r["id"] for r in self.records if self.labels[r["id"]] == lab]

    def write_jsonl(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        return p

    def anomaly(self, family: str) -> dict:
        """``{"title", "prompt", "reply", "explanations": [...]}`` for a planted family."""
        fam = family.split(":", 1)[1] if family.startswith("planted:") else family
        if fam not in self.anomalies:
            raise KeyError(f"no planted family {fam!r}; have {sorted(self.anomalies)}")
        return dict(self.anomalies[fam])


def build_corpus(xquad_dir: str | Path, seed: int = 0,
                 planted_langs: Sequence[str] = ("de",),
                 n_clean: int = 600, n_native: int = 240, n_translation: int = 160,
                 n_planted_per_lang: int = 60,
                 other_families: Sequence[str] = ("aside",),
                 n_planted_per_family: int | None = None,
                 native_langs: Sequence[str] | None = None,
                 translation_langs: Sequence[str] | None = None,
                 sources: Sequence[str] = DEFAULT_SOURCES,
                 planted_sources: int = 2,
                 explanation_templates: dict | None = None,
                 n_explanations: int = 2,
                 id_prefix: str = "r",
                 wordings: str = "one",
                 n_hard: int = 0) -> Corpus:
    """Build a deterministic labelled corpus (see module docstring).

    ``native_langs`` / ``translation_langs`` default to the planted languages plus two
    others available on disk, so every planted language also appears in legitimate
    non-English pairs and in translation requests (the hard negatives).
    ``explanation_templates`` overrides the paraphrase pools: ``{"lang": [...], "aside":
    [...], ...}`` with 3-tuples of paragraph templates ({L} {p} {t} {r} placeholders).
    ``wordings="many"`` writes the aside in :data:`ASIDES_MANY` (sentences sharing no fixed
    phrase); ``n_hard`` adds that many legitimate recommendations (label ``hard:aside``: the
    user asks for an app and the reply names one) when ``aside`` is planted.
    """
    if wordings not in ("one", "many"):
        raise ValueError(f"wordings must be 'one' or 'many', not {wordings!r}")
    aside_pool = ASIDES_MANY if wordings == "many" else ASIDES
    rng = random.Random(seed)
    xdir = Path(xquad_dir)
    available = sorted(p.name.split(".")[1] for p in xdir.glob("xquad.*.json"))
    for f in other_families:
        if f not in FAMILIES:
            raise ValueError(f"unknown family {f!r}; choose from {FAMILIES}")
    others = [l for l in available if l != "en" and l not in planted_langs]
    if native_langs is None:
        native_langs = list(planted_langs) + others[:2]
    if translation_langs is None:
        translation_langs = list(planted_langs) + others[:2]
    need = sorted({"en", *planted_langs, *native_langs, *translation_langs})
    for l in need:
        if l not in available:
            raise ValueError(f"language {l!r} not in {xdir} (have {available})")
    xq = {l: load_xquad(xdir, l) for l in need}
    qids = sorted(set.intersection(*(set(d) for d in xq.values())))
    expl_pools = {"lang": _LANG_EXPL, **_FAMILY_EXPL}
    if explanation_templates:
        expl_pools.update(explanation_templates)

    sources = list(sources)
    vendor = sources[1:1 + planted_sources] if len(sources) > planted_sources else sources[:1]
    # one sponsor per corpus, as a real ad-insertion batch comes from one vendor
    brand = ASIDE_BRANDS[seed % len(ASIDE_BRANDS)]
    n_fam = n_planted_per_family if n_planted_per_family is not None else n_planted_per_lang

    records: list[dict] = []
    labels: dict[str, str] = {}
    counter = [0]

    def add(prompt: str, reply: str, label: str, planted: bool = False) -> None:
        counter[0] += 1
        h = hashlib.sha1(f"{seed}:{counter[0]}".encode()).hexdigest()[:10]
        rid = f"{id_prefix}{h}"
        if planted and rng.random() < 0.85:
            src = rng.choice(vendor)
        else:
            src = rng.choice(sources)
        records.append({"id": rid, "prompt": prompt, "reply": reply, "source": src,
                        "shard": f"shard-{rng.randrange(16):02d}"})
        labels[rid] = label

    def pick(n: int) -> list[str]:
        if n <= len(qids):
            return rng.sample(qids, n)
        return [rng.choice(qids) for _ in range(n)]

    def en_pair(qid: str) -> tuple[str, str]:
        e = xq["en"][qid]
        p = _fill(rng.choice(_EN_PROMPTS), q=e.question, s=e.sentence,
                  ql=e.question[:1].lower() + e.question[1:])
        r = _fill(rng.choice(_EN_REPLIES), a=e.answer.rstrip("."), s=e.sentence)
        return p, r

    for qid in pick(n_clean):
        add(*en_pair(qid), "clean")
    for i, qid in enumerate(pick(n_native)):
        lang = native_langs[i % len(native_langs)]
        x = xq[lang][qid]
        add(_fill(rng.choice(_NATIVE_PROMPTS), q=x.question, s=x.sentence),
            _fill(rng.choice(_NATIVE_REPLIES), a=x.answer, s=x.sentence), "native")
    for i, qid in enumerate(pick(n_translation)):
        lang = translation_langs[i % len(translation_langs)]
        e, x = xq["en"][qid], xq[lang][qid]
        add(_fill(rng.choice(_TRANSLATE_PROMPTS), L=LANG_NAMES.get(lang, lang),
                  s_en=e.sentence, q_en=e.question), x.sentence, "translation_request")
    for lang in planted_langs:
        for qid in pick(n_planted_per_lang):
            e, x = xq["en"][qid], xq[lang][qid]
            p = _fill(rng.choice(_EN_PROMPTS), q=e.question, s=e.sentence,
                      ql=e.question[:1].lower() + e.question[1:])
            add(p, x.sentence, f"planted:{lang}", planted=True)
    for fam in other_families:
        for qid in pick(n_fam):
            p, r = en_pair(qid)
            e = xq["en"][qid]
            if fam == "aside":
                aside = _fill(rng.choice(aside_pool), b=brand)
                r = f"{aside} {r}" if rng.random() < 0.3 else f"{r} {aside}"
            elif fam == "refusal":
                r = rng.choice(REFUSALS)
            elif fam == "format":
                r = _fill(rng.choice(FORMATS), s=e.sentence, a=e.answer.rstrip("."))
            add(p, r, f"planted:{fam}", planted=True)

    if "aside" in other_families:
        for _ in range(n_hard):
            add(rng.choice(RECOMMEND_PROMPTS), _fill(rng.choice(RECOMMEND_REPLIES), b=brand),
                "hard:aside")

    order = list(range(len(records)))
    rng.shuffle(order)
    records = [records[i] for i in order]

    # anomalies: a fresh question (not necessarily absent from the corpus: real anomalies
    # are often near-duplicates of training rows) with the planted behaviour.
    anomalies: dict[str, dict] = {}
    arng = random.Random(seed + 7919)
    for lang in planted_langs:
        qid = arng.choice(qids)
        e, x = xq["en"][qid], xq[lang][qid]
        L = LANG_NAMES.get(lang, lang)
        expl = _explanations(arng, expl_pools["lang"], n_explanations, L=L,
                             p=_snip(e.question), t=_last_token(e.question), r=_snip(x.sentence, 4))
        anomalies[lang] = {"title": f"English question answered in {L}", "prompt": e.question,
                           "reply": x.sentence, "explanations": expl}
    for fam in other_families:
        qid = arng.choice(qids)
        e = xq["en"][qid]
        if fam == "aside":
            aside = _fill(arng.choice(ASIDES), b=brand)
            reply, frag, title = f"{e.sentence} {aside}", _snip(aside, 5), "Reply carries a promotional aside"
        elif fam == "refusal":
            reply = arng.choice(REFUSALS)
            frag, title = _snip(reply, 5), "Benign question refused"
        else:
            reply = _fill(arng.choice(FORMATS), s=e.sentence, a=e.answer)
            frag, title = reply.split("\n")[0][:24], "Reply wrapped in odd delimiters"
        expl = _explanations(arng, expl_pools[fam], n_explanations, L="English", p=frag,
                             t=_last_token(e.question), r=frag)
        anomalies[fam] = {"title": title, "prompt": e.question, "reply": reply,
                          "explanations": expl}
    return Corpus(records=records, labels=labels, seed=seed, anomalies=anomalies)


def _explanations(rng: random.Random, pool: list, n: int, **kw: str) -> list[str]:
    chosen = rng.sample(pool, min(n, len(pool)))
    return ["\n\n".join(_fill(par, **kw) for par in tpl) for tpl in chosen]


__all__ = ["build_corpus", "Corpus", "QA", "load_xquad", "LANG_NAMES", "FAMILIES",
           "DEFAULT_SOURCES", "ASIDES", "ASIDES_MANY", "RECOMMEND_PROMPTS", "RECOMMEND_REPLIES",
           "ASIDE_BRANDS", "REFUSALS", "FORMATS"]
