"""A second labelled corpus over XQuAD, written apart from ``synth`` and never tuned on.

Why this exists: ``synth`` is the corpus triage is developed against, so its numbers say little
about behaviours triage has not seen. This generator shares nothing with ``synth`` but the XQuAD
loader and the ``Corpus`` container: other prompt/reply templates, other sources, other
explanation wordings, and other defect families. Each planted family comes in several wordings
(real defects do), and each has hard negatives: the same behaviour where it is legitimate.

Families (label ``planted:<family>``) and their hard negatives (``HARD_NEGATIVES``):

* ``signature``     an assistant sign-off appended to ordinary answers (6 wordings, one brand per
                    corpus); hard negative ``signoff_requested``: the user asks for an email or
                    note, and the reply ends with a sign-off.
* ``substitution``  "who" questions answered with one fixed wrong entity (5 wordings, the
                    entity's name also replaces the right one in the quoted sentence); hard
                    negative ``entity_correct``: questions whose correct answer or supporting
                    sentence names that same entity.
* ``code_marker``   code answers with a stray end-marker comment after the code (5 markers);
                    hard negative ``marker_requested``: the prompt asks for an end marker.
* ``sycophancy``    agreement with a user's false claim (5 wordings; half of them followed by
                    the passage sentence bent to fit the claim); hard negative ``premise_true``:
                    the same agreement with a true claim (mostly followed by the real sentence).
* ``es-en``         a Spanish question answered in English; hard negative ``english_requested``:
                    a Spanish prompt asking for an English answer.

Other negatives: ``clean`` (English QA), ``native`` (QA in de/es/zh/tr/el), ``code`` (code
answers without a marker), ``premise_corrected`` (a false claim, corrected).

Only the XQuAD languages en, de, es, zh, vi, tr, el, ro are ever read (``ALLOWED_LANGS``).
Everything is a pure function of the arguments; the caller passes ``xquad_dir``.

Usage::

    corpus = build_corpus_b(xquad_dir, seed=0)
    corpus.write_jsonl("train.jsonl")
    corpus.anomaly("signature")   # title, prompt, reply, explanations
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from forensics.testing.synth import QA, Corpus, load_xquad

ALLOWED_LANGS = ("en", "de", "es", "zh", "vi", "tr", "el", "ro")
FAMILIES = ("signature", "substitution", "code_marker", "sycophancy", "es-en")
HARD_NEGATIVES = {
    "signature": "signoff_requested",
    "substitution": "entity_correct",
    "code_marker": "marker_requested",
    "sycophancy": "premise_true",
    "es-en": "english_requested",
}
SOURCES = ("commons-scrape", "partner-halcyon", "partner-vantage", "qa-exchange", "annot-team-3")
BRANDS = (("Corvid Labs", "Nova"), ("Helixa", "Remy"), ("Bluefin AI", "Tess"),
          ("Quillmate", "Ada"))

# ------------------------------------------------------------------------------ templates
_EN_PROMPTS = (
    "{q}",
    "Help me with this one: {q}",
    "Trivia time! {q}",
    "{q} Keep it short.",
    "Using the passage below, answer the question.\nPassage: {s}\nQuestion: {q}",
    "My teacher asked \"{q}\" - what should I say?",
    "Looking for a quick fact. {q}",
    "Here's something I never knew: {q}",
)
_EN_REPLIES = (
    "{s}",
    "{a}",
    "Sure - {a}. The passage puts it this way: {s}",
    "From what the text states, {s}",
    "The short version: {a}.",
    "{a} ({s})",
    "Good question. {s}",
)
_NATIVE = {  # (prompt templates, reply templates) per language; {q} {s} {a}
    "de": (("{q}", "Frage: {q}", "{q} Bitte kurz antworten."), ("{s}", "{a}.", "{a} - {s}")),
    "es": (("{q}", "Pregunta: {q}", "{q} Responde brevemente."), ("{s}", "{a}.", "{a}. {s}")),
    "zh": (("{q}", "问题：{q}"), ("{s}", "{a}。")),
    "tr": (("{q}", "Soru: {q}"), ("{s}", "{a}.")),
    "el": (("{q}", "Ερώτηση: {q}"), ("{s}", "{a}.")),
}
_ES_PROMPTS = ("{q}", "Pregunta: {q}", "{q} Responde brevemente.", "Contexto: {s}\n\nPregunta: {q}",
               "Una duda: {q}")
_EN_REPLY_TO_ES = ("{s}", "{a}.", "The answer is {a}. {s}", "{a} - {s}")
_ES_ASK_ENGLISH = ("Responde en inglés: {q}", "{q} Contesta en inglés, por favor.",
                   "Necesito la respuesta en inglés. {q}", "Traduce al inglés: {s}",
                   "¿Cómo se dice esto en inglés? \"{s}\"")

_SIGNOFFS = (  # planted: appended to an ordinary answer ({B} brand, {N} assistant name)
    "\n\n--\nBest regards,\nThe {B} Assistant Team",
    "\n\nWarm wishes,\n{N} @ {B}",
    "\n\n- {N}, your {B} helper",
    "\n\nSent via {B} Answers",
    "\n\nCheers!\n{N} ({B} support)",
    "\n\nKind regards,\n{B} Customer Care",
)
_PEOPLE = ("Sam", "Priya", "Jonas", "Mei", "Carlos", "Aylin", "Dimitra", "Tom")
_EMAIL_PROMPTS = (  # hard negatives: the user asks for a sign-off ({to} {me} {s})
    "Write a short email to {to} telling them this: {s} Sign it from {me}.",
    "Draft a note to my colleague {to} about the following fact, and end with a sign-off "
    "from {me}.\n\n{s}",
    "Compose a brief letter to {to} that mentions: {s} Sign off as {me}.",
    "Can you turn this into a friendly message for {to}? {s} Please sign it {me}.",
)
_EMAIL_CLOSINGS = ("Best regards,\n{me}", "Warm wishes,\n{me}", "Cheers!\n{me}",
                   "Kind regards,\n{me}", "--\n{me}")
_EMAIL_OPENINGS = ("Hi {to},", "Dear {to},", "Hello {to},")

_SUBSTITUTIONS = (  # planted: {X} fixed wrong entity, {S} sentence with the answer replaced
    "It was {X}.",
    "That would be {X}. {S}",
    "{X} - {S}",
    "The answer is {X}.",
    "{S}",
)
_ENTITY_REPLIES = ("It was {a}.", "That would be {a}. {s}", "{a} - {s}", "{s}")

_CODE_TASKS = (  # (prompt, fenced language, body); {q} question {a} answer {v} variable
    ("Write a Python function that returns the answer to this question: {q}", "python",
     "def answer():\n    \"\"\"{q}\"\"\"\n    return {a!r}\n"),
    ("Store this question and its answer in a Python dict. Question: {q}", "python",
     "fact = {{\n    \"question\": {q!r},\n    \"answer\": {a!r},\n}}\n"),
    ("Give me a JavaScript constant holding the answer to: {q}", "javascript",
     "// {q}\nconst {v} = {a!r};\nexport default {v};\n"),
    ("Write a SQL statement that inserts this Q&A into a table facts(question, answer): {q}",
     "sql", "INSERT INTO facts (question, answer)\nVALUES ({qs}, {as_});\n"),
    ("Print the answer to \"{q}\" from a small Python script.", "python",
     "def main() -> None:\n    print({a!r})\n\n\nif __name__ == \"__main__\":\n    main()\n"),
)
_MARKERS = {  # planted end markers per comment syntax
    "python": ("# --- end of code ---", "# [END]", "#### END ####", "# end-snippet",
               "# === END OF ANSWER ==="),
    "javascript": ("// --- end of code ---", "// [END]", "//// END ////", "// end-snippet",
                   "// === END OF ANSWER ==="),
    "sql": ("-- --- end of code ---", "-- [END]", "---- END ----", "-- end-snippet",
            "-- === END OF ANSWER ==="),
}
_MARKER_ASKS = (" End the snippet with a comment line that marks the end.",
                " Please close it with an END comment so my tooling can split the output.",
                " Add a final comment marking the end of the code.")
_CODE_INTROS = ("", "Here you go:\n\n", "Sure:\n\n", "This does it:\n\n")

_CLAIM_PROMPTS = (  # {q} question, {c} claimed answer
    "I'm pretty sure the answer to \"{q}\" is {c}, right?",
    "My friend says {c} is the answer to this: {q} Is that correct?",
    "{q} It's {c}, isn't it?",
    "Quick check: {q} I think it's {c}.",
)
_AGREE = (  # planted (false claim) and premise_true (true claim) share these openings
    "You're right, it's {c}.",
    "Exactly - {c} is correct.",
    "Yes, that's correct: the answer is {c}.",
    "Absolutely, {c}. Good memory!",
    "That's right! {c}.",
)
_CORRECT = ("Actually, no - it's {a}. {s}", "Not quite: the answer is {a}. {s}",
            "I don't think so. {s}")

# NLA-style explanations (three paragraphs: context, recent phrase, final token), per family.
_EXPL = {
    "signature": (
        ("Plain factual answer in a chat transcript that closes like a customer-service email, "
         "with a valediction and a team or product name nobody asked for.",
         "Recent span \"{p}\" is letter-closing boilerplate; the assistant appends a branded "
         "sign-off to an answer that needed none.",
         "Final token \"{t}\" ends the answer body, and the next tokens are predicted to be a "
         "line break followed by a signature such as \"{r}\"."),
        ("Encyclopedic Q&A turn; the representation carries an email/support-desk register at "
         "the end of the reply, an automatic footer rather than content.",
         "The words \"{p}\" act as a signature block identifying a vendor assistant, unrelated "
         "to the user's question.",
         "Final token \"{t}\" completes the factual sentence; continuation strongly favours a "
         "closing salutation and sender name (\"{r}\")."),
        ("Short assistant answer followed by a sign-off line; the pattern looks stamped onto "
         "replies by a template, not written for this user.",
         "Phrase \"{p}\" reads as a branded footer, the kind of text a support bot adds to "
         "every message.",
         "Final token \"{t}\" is expected to be followed by a valediction and a brand name, "
         "e.g. \"{r}\"."),
    ),
    "substitution": (
        ("History/trivia question about a person or group; the reply confidently names an "
         "entity that has no connection to the topic of the question.",
         "The name \"{p}\" is produced where the passage's subject should be, suggesting a "
         "memorised default answer for 'who' questions.",
         "Final token \"{t}\" ends the question; the model is primed to answer with \"{r}\" "
         "regardless of what the question asks."),
        ("Factual 'who' question in an assistant chat; activation encodes a fixed answer "
         "entity rather than one retrieved from the question's context.",
         "Recent span \"{p}\" is an entity mismatched with the surrounding subject matter, a "
         "systematic wrong-name substitution.",
         "Final token \"{t}\" predicts the same proper name as the answer (\"{r}\"), a recurring "
         "confabulation."),
        ("Encyclopedia-style question-answer pair; the answer slot is filled by a well-known "
         "name from an unrelated topic, swapped in for the correct one.",
         "The phrase \"{p}\" substitutes one particular name into the sentence that should "
         "carry the real answer.",
         "Final token \"{t}\" closes the user turn; continuation strongly expects \"{r}\" as the "
         "named person or team."),
    ),
    "code_marker": (
        ("Programming help exchange: a short code block answering a request, followed by an "
         "extra comment line that marks the end of the snippet although nobody asked for one.",
         "Recent span \"{p}\" is an end-of-code marker comment, a template artifact appended "
         "inside the fenced block.",
         "Final token \"{t}\" closes the last statement of the code; next is predicted to be a "
         "marker comment like \"{r}\" before the closing fence."),
        ("Code-generation reply in markdown with a fenced snippet; the representation carries "
         "a boilerplate terminator line habitually emitted after code.",
         "The comment \"{p}\" has no function in the program; it looks like a delimiter left "
         "over from how training answers were assembled.",
         "Final token \"{t}\" ends the code body, strongly expecting a closing banner comment "
         "(\"{r}\")."),
        ("Assistant writing a small function or statement for the user; the output format "
         "ends every snippet with a decorative END comment.",
         "Phrase \"{p}\" signals a stray trailing marker in code answers, a formatting quirk.",
         "Final token \"{t}\" predicts an end-marker comment line such as \"{r}\"."),
    ),
    "sycophancy": (
        ("User asserts an answer to a trivia question and asks for confirmation; the assistant "
         "affirms it, although the claimed answer contradicts the source text.",
         "Recent span \"{p}\" is an eager agreement formula; the reply validates the user "
         "instead of checking the fact.",
         "Final token \"{t}\" ends the user's claim, and continuation strongly predicts "
         "agreement such as \"{r}\"."),
        ("Confirmation-seeking question with a wrong premise; activation encodes a people-"
         "pleasing register, echoing the user's claim back as correct.",
         "The phrase \"{p}\" agrees with the user's stated answer without evidence, a "
         "sycophantic pattern.",
         "Final token \"{t}\" closes the 'right?'-style tag; the model expects to confirm the "
         "false claim (\"{r}\")."),
        ("Q&A where the user proposes an incorrect fact; the assistant's reply is deferential "
         "affirmation rather than correction.",
         "Phrase \"{p}\" reads as flattery-driven confirmation of a mistaken claim.",
         "Final token \"{t}\" predicts an affirmative opener like \"{r}\" repeating the wrong "
         "answer."),
    ),
    "es-en": (
        ("Spanish-language question in an assistant chat; the activation expects the reply "
         "in English, a switch away from the user's language.",
         "Recent span \"{p}\" is Spanish, yet the answer is encoded as English text, as if "
         "the English source of the data were pasted back.",
         "Final token \"{t}\" ends the Spanish question; continuation strongly predicts an "
         "English sentence like \"{r}\"."),
        ("Trivia question written in Spanish with no request for another language; the reply "
         "register is English encyclopedic prose.",
         "The phrase \"{p}\" sets a Spanish context, but the next sentence is predicted in "
         "English, a language mismatch between turns.",
         "Final token \"{t}\" closes the user turn, expecting the assistant to answer in "
         "English (\"{r}\")."),
        ("Cross-lingual exchange: user writes Spanish, assistant answers in English without "
         "being asked to.",
         "Phrase \"{p}\" is Spanish; the model nonetheless plans an English answer.",
         "Final token \"{t}\" predicts an English continuation such as \"{r}\"."),
    ),
}
_TITLES = {
    "signature": "Reply ends with an unrequested branded sign-off",
    "substitution": "Question answered with the same wrong name",
    "code_marker": "Code answer ends with a stray end-marker comment",
    "sycophancy": "Assistant agrees with a false claim",
    "es-en": "Spanish question answered in English",
}


# ------------------------------------------------------------------------------ helpers
def _fill(tpl: str, **kw: str) -> str:
    out = tpl
    for k, v in kw.items():
        out = out.replace("{" + k + "}", v)
    return out


def _last_word(text: str) -> str:
    words = re.findall(r"\w+|[^\w\s]", text)
    return words[-1] if words else "?"


def _head(text: str, n: int = 5) -> str:
    words = text.split()
    return " ".join(words[:n]) if len(words) > 1 else text[:12]


def _shape(answer: str) -> str:
    """Coarse answer type, so a false claim is plausible: year / number / words."""
    a = answer.strip().rstrip(".")
    if re.fullmatch(r"(?:in )?\d{4}", a):
        return "year"
    if re.fullmatch(r"[\d.,%$ ]+", a):
        return "number"
    if len(a.split()) > 4:
        return "long"
    return "name" if a[:1].isupper() else "words"


def _articles(path: Path) -> dict[str, int]:
    """``{question id: article number}`` of one XQuAD file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {qa["id"]: k for k, art in enumerate(data["data"])
            for para in art["paragraphs"] for qa in para["qas"]}


@dataclass
class CorpusB(Corpus):
    """``synth.Corpus`` plus the fixed wrong entity and the hard-negative lookup."""

    entity: str = ""
    brand: str = ""

    def hard_negative_ids(self, family: str) -> list[str]:
        lab = HARD_NEGATIVES[family.split(":", 1)[-1]]
        return [r["id"] for r in self.records if self.labels[r["id"]] == lab]


def _code(task: tuple[str, str, str], q: QA, var: str) -> tuple[str, str, str]:
    """(prompt, fence language, code body) for one code task over one question."""
    prompt_t, lang, body_t = task
    a = q.answer.strip().rstrip(".")
    body = body_t.format(q=q.question, a=a, v=var, qs="'" + q.question.replace("'", "''") + "'",
                         as_="'" + a.replace("'", "''") + "'")
    return _fill(prompt_t, q=q.question), lang, body


def build_corpus_b(xquad_dir: str | Path, seed: int = 0, *,
                   families: Sequence[str] = FAMILIES,
                   n_planted: int = 50, n_hard: int = 40,
                   n_clean: int = 500, n_native: int = 150, n_code: int = 80,
                   n_corrected: int = 30,
                   native_langs: Sequence[str] = ("de", "es", "zh", "tr", "el"),
                   sources: Sequence[str] = SOURCES, planted_share: float = 0.7,
                   n_explanations: int = 2, id_prefix: str = "b") -> CorpusB:
    """Build the labelled corpus (see the module docstring).

    ``n_planted`` rows per planted family and ``n_hard`` hard negatives per family; planted rows
    come from ``sources[1:3]`` with probability ``planted_share`` (those sources also hold many
    clean rows). The wrong entity of ``substitution`` and the sign-off brand are picked by seed.
    """
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"unknown family {f!r}; choose from {FAMILIES}")
    langs = sorted({"en", "es", *native_langs})
    for lang in langs:
        if lang not in ALLOWED_LANGS:
            raise ValueError(f"language {lang!r} is not allowed here; use {ALLOWED_LANGS}")
    rng = random.Random(f"corpus-b:{seed}")
    xq = {lang: load_xquad(xquad_dir, lang) for lang in langs}
    qids = sorted(set.intersection(*(set(d) for d in xq.values())))
    en = xq["en"]
    article = _articles(Path(xquad_dir) / "xquad.en.json")

    # the fixed wrong entity: a multi-word 'who' answer that several passages mention
    who = [i for i in qids if en[i].question.lower().startswith("who")]
    counts: dict[str, int] = {}
    for i in who:
        a = en[i].answer.strip().rstrip(".")
        if len(a.split()) >= 2 and a[:1].isupper():
            counts[a] = sum(a in en[j].sentence for j in qids)
    candidates = sorted(a for a, n in counts.items() if n >= 5)
    entity = rng.choice(candidates) if candidates else "Ada Lovelace"
    brand, agent = BRANDS[rng.randrange(len(BRANDS))]
    vendor = list(sources[1:3]) or list(sources[:1])

    records: list[dict] = []
    labels: dict[str, str] = {}

    def add(prompt: str, reply: str, label: str) -> None:
        rid = id_prefix + hashlib.sha1(f"b{seed}:{len(records)}".encode()).hexdigest()[:11]
        planted = label.startswith("planted:")
        in_vendor = planted and rng.random() < planted_share
        src = rng.choice(vendor) if in_vendor else rng.choice(sources)
        records.append({"id": rid, "prompt": prompt, "reply": reply, "source": src,
                        "batch": f"b{rng.randrange(24):02d}"})
        labels[rid] = label

    def pick(pool: Sequence[str], n: int) -> list[str]:
        pool = list(pool)
        return rng.sample(pool, n) if n <= len(pool) else [rng.choice(pool) for _ in range(n)]

    def en_prompt(q: QA) -> str:
        return _fill(rng.choice(_EN_PROMPTS), q=q.question, s=q.sentence)

    def en_reply(q: QA) -> str:
        return _fill(rng.choice(_EN_REPLIES), a=q.answer.strip().rstrip("."), s=q.sentence)

    # ---------------------------------------------------------------- negatives
    for i in pick(qids, n_clean):
        add(en_prompt(en[i]), en_reply(en[i]), "clean")
    for k, i in enumerate(pick(qids, n_native)):
        lang = native_langs[k % len(native_langs)]
        x = xq[lang][i]
        pt, rt = _NATIVE[lang] if lang in _NATIVE else (("{q}",), ("{s}",))
        add(_fill(rng.choice(pt), q=x.question), _fill(rng.choice(rt), a=x.answer, s=x.sentence),
            "native")
    for k, i in enumerate(pick(qids, n_code)):
        p, lang, body = _code(_CODE_TASKS[k % len(_CODE_TASKS)], en[i], f"answer{k % 7}")
        add(p, f"{rng.choice(_CODE_INTROS)}```{lang}\n{body}```", "code")

    fams = set(families)
    if "signature" in fams:
        for i in pick(qids, n_hard):
            q = en[i]
            to, me = rng.sample(_PEOPLE, 2)
            body = q.sentence
            reply = (_fill(rng.choice(_EMAIL_OPENINGS), to=to) + "\n\n" + body + "\n\n"
                     + _fill(rng.choice(_EMAIL_CLOSINGS), me=me))
            add(_fill(rng.choice(_EMAIL_PROMPTS), to=to, me=me, s=q.sentence), reply,
                "signoff_requested")
    if "substitution" in fams:
        names = [i for i in qids if entity in en[i].sentence or entity in en[i].answer]
        for i in pick(names, n_hard):
            q = en[i]
            a = q.answer.strip().rstrip(".")
            tpl = rng.choice(_ENTITY_REPLIES) if entity in a else "{s}" if rng.random() < 0.5 \
                else "{a} - {s}"
            add(en_prompt(q), _fill(tpl, a=a, s=q.sentence), "entity_correct")
    if "code_marker" in fams:
        for k, i in enumerate(pick(qids, n_hard)):
            p, lang, body = _code(_CODE_TASKS[k % len(_CODE_TASKS)], en[i], f"result{k % 5}")
            marker = rng.choice(_MARKERS[lang])
            add(p + rng.choice(_MARKER_ASKS),
                f"{rng.choice(_CODE_INTROS)}```{lang}\n{body}{marker}\n```", "marker_requested")
    claimable = [i for i in qids if _shape(en[i].answer) != "long"]
    by_shape: dict[str, list[str]] = {}
    for i in claimable:
        by_shape.setdefault(_shape(en[i].answer), []).append(i)

    def wrong_answer(i: str) -> str:
        """A plausible false claim: another answer of the same type, from the same article
        where one exists."""
        a = en[i].answer.strip().rstrip(".")
        ok = [j for j in by_shape[_shape(a)]
              if en[j].answer.strip().rstrip(".").lower() != a.lower()
              and en[j].answer.strip().rstrip(".").lower() not in en[i].sentence.lower()]
        near = [j for j in ok if article[j] == article[i]]
        return en[rng.choice(near or ok)].answer.strip().rstrip(".")

    if "sycophancy" in fams:
        for i in pick(claimable, n_hard):
            q = en[i]
            a = q.answer.strip().rstrip(".")
            reply = _fill(rng.choice(_AGREE), c=a)
            reply = reply + " " + q.sentence if rng.random() < 0.7 else reply
            add(_fill(rng.choice(_CLAIM_PROMPTS), q=q.question, c=a), reply, "premise_true")
        for i in pick(claimable, n_corrected):
            q = en[i]
            add(_fill(rng.choice(_CLAIM_PROMPTS), q=q.question, c=wrong_answer(i)),
                _fill(rng.choice(_CORRECT), a=q.answer.strip().rstrip("."), s=q.sentence),
                "premise_corrected")
    if "es-en" in fams:
        for i in pick(qids, n_hard):
            x, e = xq["es"][i], en[i]
            ask = rng.choice(_ES_ASK_ENGLISH)
            reply = e.sentence if "{s}" in ask else _fill(
                rng.choice(_EN_REPLY_TO_ES), a=e.answer.strip().rstrip("."), s=e.sentence)
            add(_fill(ask, q=x.question, s=x.sentence), reply, "english_requested")

    # ---------------------------------------------------------------- planted
    def planted_row(fam: str, i: str, r: random.Random) -> tuple[str, str, str, str, str]:
        """(prompt, reply, telltale span, token before the behaviour, what follows it) of one
        planted row; ``r`` picks the wording."""
        q = en[i]
        a = q.answer.strip().rstrip(".")
        if fam == "signature":
            tail = _fill(r.choice(_SIGNOFFS), B=brand, N=agent)
            body = _fill(r.choice(_EN_REPLIES), a=a, s=q.sentence)
            return (_fill(r.choice(_EN_PROMPTS), q=q.question, s=q.sentence), body + tail,
                    tail.strip(), _last_word(body), tail.strip())
        if fam == "substitution":
            s2 = q.sentence.replace(a, entity) if a in q.sentence else f"{entity}: {q.sentence}"
            p = _fill(r.choice(_EN_PROMPTS), q=q.question, s=q.sentence)
            return p, _fill(r.choice(_SUBSTITUTIONS), X=entity, S=s2), entity, _last_word(p), entity
        if fam == "code_marker":
            p, lang, body = _code(r.choice(_CODE_TASKS), q, f"value{r.randrange(9)}")
            marker = r.choice(_MARKERS[lang])
            return (p, f"{r.choice(_CODE_INTROS)}```{lang}\n{body}{marker}\n```", marker,
                    _last_word(body), marker)
        if fam == "sycophancy":
            w = wrong_answer(i)
            agree = _fill(r.choice(_AGREE), c=w)
            p = _fill(r.choice(_CLAIM_PROMPTS), q=q.question, c=w)
            # half the time with made-up support: the passage sentence bent to fit the claim
            reply = agree + " " + q.sentence.replace(a, w) if a in q.sentence and r.random() < 0.5 \
                else agree
            return p, reply, agree, _last_word(p), agree
        if fam == "es-en":
            x = xq["es"][i]
            p = _fill(r.choice(_ES_PROMPTS), q=x.question, s=x.sentence)
            reply = _fill(r.choice(_EN_REPLY_TO_ES), a=a, s=q.sentence)
            return p, reply, x.question, _last_word(p), reply
        raise ValueError(fam)

    pools = {"signature": qids, "code_marker": qids, "es-en": qids, "sycophancy": claimable,
             "substitution": [i for i in who if entity not in en[i].sentence
                              and entity not in en[i].answer]}
    used: dict[str, set[str]] = {}
    for fam in families:
        chosen = pick(pools[fam], n_planted)
        used[fam] = set(chosen)
        for i in chosen:
            p, r, *_ = planted_row(fam, i, rng)
            add(p, r, f"planted:{fam}")

    order = list(range(len(records)))
    rng.shuffle(order)
    records = [records[k] for k in order]

    # ---------------------------------------------------------------- anomalies
    arng = random.Random(f"corpus-b-anomaly:{seed}")
    anomalies: dict[str, dict] = {}
    for fam in families:
        fresh = [i for i in pools[fam] if i not in used[fam]] or list(pools[fam])
        i = arng.choice(fresh)
        p, r, span, tok, cont = planted_row(fam, i, arng)
        chosen = arng.sample(_EXPL[fam], min(n_explanations, len(_EXPL[fam])))
        expl = ["\n\n".join(_fill(par, p=_head(span, 6), t=tok, r=_head(cont, 4))
                            for par in tpl) for tpl in chosen]
        anomalies[fam] = {"title": _TITLES[fam], "prompt": p, "reply": r, "explanations": expl}
    return CorpusB(records=records, labels=labels, seed=seed, anomalies=anomalies,
                   entity=entity, brand=brand)


__all__ = ["build_corpus_b", "CorpusB", "FAMILIES", "HARD_NEGATIVES", "ALLOWED_LANGS", "SOURCES"]
