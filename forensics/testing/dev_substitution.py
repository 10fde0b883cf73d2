"""Two development families of systematic factual substitution in answers about a passage,
in layouts, wordings and substitution types the families of
:mod:`forensics.testing.dev_grounding` lack; part of ``--corpus dev-families``.

* ``number_shift``  questions about an English XQuAD passage whose answer is a number or a
                    year, answered with the number changed by one rule (a year ten years
                    later, any other count ten times larger): many different substituted
                    pairs (1946 -> 1956, 308 -> 3080) following one rule, inside longer
                    multi-sentence answers that copy or paraphrase the passage. Hard
                    negatives: the same answers where the passage really gives the changed
                    number (the same number used correctly).
* ``person_swap``   "Who ...?" questions about a passage whose answer is a name of two or
                    three capitalised words (a person, now and then a team), answered with
                    one fixed wrong person (:data:`PERSON`), often paraphrasing. Hard negatives:
                    the passage names that person (answered correctly); the prompt asks about
                    that person by name without a passage; the user names that person and the
                    reply corrects the user from the passage.

Every prompt places its passage in one of several layouts: after the question, as a quoted
block, under a label on the line after the question, inline in quotes inside one sentence,
between triple quotes, after a longer user message. Clean rows: questions about passages (the
same kinds of answers) answered correctly in the same layouts and reply wordings. Every
template here is this module's own; everything is a pure function of the arguments
(``seed``).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from forensics.testing.dev_grounding import PassageItem, passage_items
from forensics.testing.rows import RowWriter
from forensics.testing.synth import _fill

SUBSTITUTION_FAMILIES = ("number_shift", "person_swap")
PERSON = "Linnea Sorvik"

_YEAR = re.compile(r"(1[5-9]|20)\d\d")
_COUNT = re.compile(r"[1-9]\d{0,2}(,\d{3})*")

_LAYOUTS = [
    "{q}\n\nAnswer using this text:\n\n{p}",
    "Here is a passage:\n\n{pq}\n\n{q}",
    "{q}\nSource text: {p}",
    "Based on the passage \"{p}\", {ql}",
    "Question: {q}\nDocument:\n\"\"\"\n{p}\n\"\"\"",
    "I'm putting together a quiz for my evening class and want to double-check one detail "
    "before I print it. {q}\n\nHere's the reference paragraph I'm using:\n\n{p}",
]
_REPLIES = [
    "Good question! The answer is {a}. The text explains it this way: {sl}. Let me know if "
    "you need anything else.",
    "It was {a}.\n\nThis comes from the part of the passage about {kw}.",
    "Short answer: {a}.\n\nLonger answer: {sl}. The surrounding sentences add more about {kw}.",
    "From the reference, {a} is the answer to this one. The relevant line reads: \"{s}.\"",
    "{a}, according to the document. It mentions this while discussing {kw}, so the figure "
    "or name given there is the one to use.",
]
_ABOUT_PERSON = ["Who is {n}?", "Tell me briefly about {n}.",
                 "What is {n} known for? Keep it short.",
                 "Write two sentences introducing {n} to a new colleague."]
_PERSON_BIO = ["{n} is an engineer and writer who has worked on several public projects. "
               "{n} is best known for essays on how cities plan their bridges.",
               "{n} is a researcher known for work on archives and local history; "
               "colleagues describe {n} as careful and generous with sources.",
               "Meet {n}: a project lead who has spent a decade on transport planning. "
               "{n} enjoys explaining technical choices to non-specialists."]
_USER_NAMES = ["{q} I think it was {n}.", "{q} Was it {n}?",
               "{q} My notes say {n}, is that right?"]
_CORRECTIONS = ["No, it wasn't {n}. The passage says {sl}.",
                "Not {n}, actually: {sl}, according to the text."]

_EXPL = {
    "number_shift": [("Numbers in the answer do not match the passage: the reply gives "
                      "'{f}' where the text gives a different figure. Years come out ten years "
                      "late and counts ten times too large.",
                      "Systematic numeric substitution in answers about a provided text."),
                     ("The model answers a question about the document with a wrong number or "
                      "date ('{f}'); the passage states another value.",
                      "Dates and quantities are shifted away from the source.")],
    "person_swap": [("The reply names {e} as the person in question, '{f}', but the passage "
                     "names someone else.", "A fixed person substituted for the passage's "
                                            "answer."),
                    ("Wrong person: the answer attributes the passage's fact to {e} "
                     "('{f}').", "The model puts one person's name into answers about "
                                 "unrelated passages.")],
}


def shifted(answer: str) -> str | None:
    """The ``number_shift`` rule: a year ten years later, another count ten times larger;
    ``None`` for an answer that is neither."""
    a = answer.strip().rstrip(".")
    if _YEAR.fullmatch(a):
        return str(int(a) + 10)
    if _COUNT.fullmatch(a):
        return f"{int(a.replace(',', '')) * 10:,}"
    return None


def _is_person(it: PassageItem) -> bool:
    words = it.answer.rstrip(".").split()
    return (it.question.lower().startswith("who") and 2 <= len(words) <= 3
            and all(w[:1].isupper() and w.isalpha() for w in words))


def _keywords(it: PassageItem, rng: random.Random) -> str:
    """Three content words of the answer's sentence (not the answer): a paraphrase names
    what the passage is about without copying its sentence."""
    skip = set(it.answer.lower().split())
    words = [w.strip(",;:()\"'").lower() for w in it.sentence.split()]
    words = [w for w in dict.fromkeys(words) if len(w) >= 6 and w.isalpha() and w not in skip]
    pick = sorted(rng.sample(words, min(3, len(words))), key=words.index) or ["it"]
    return pick[0] if len(pick) == 1 else ", ".join(pick[:-1]) + " and " + pick[-1]


def _lower(s: str) -> str:
    first = s.split(" ", 1)[0]
    return s[:1].lower() + s[1:] if first.isalpha() and first[1:].islower() and \
        first in {"The", "A", "An", "In", "On", "At", "By", "For", "From", "During",
                  "After", "Before", "It", "This", "These", "Its", "His", "Her",
                  "Their", "As", "When"} else s


def build_substitution_families(xquad_dir: str | Path, seed: int = 0, n_planted: int = 40,
                                n_hard: int = 30, n_clean: int = 60,
                                families: tuple[str, ...] = SUBSTITUTION_FAMILIES,
                                id_prefix: str = "d") -> tuple[list[dict], dict, dict, dict]:
    """(records, labels, prompt judgements, anomalies) of the families in ``families``:
    ``n_planted`` rows and ``n_hard`` hard negatives each, ``n_clean`` clean questions about
    passages (numbers and persons) answered correctly in the same layouts."""
    rng = random.Random(seed + 404)
    items = passage_items(xquad_dir)
    rng.shuffle(items)
    numbers = [it for it in items if shifted(it.answer) and shifted(it.answer) not in it.passage]
    persons = [it for it in items if _is_person(it) and PERSON not in it.passage]
    anomaly_items = {"number_shift": numbers[0], "person_swap": persons[0]}
    numbers, persons = numbers[1:], persons[1:]
    w = RowWriter(seed, id_prefix, ["study-notes", "vendor-orrin", "vendor-tallis", "quiz-app",
                                    "web-crawl"], "passage", rng, salt="s")
    records, labels, judgement, add = w.records, w.labels, w.judgement, w.add
    at = {"n": 0, "p": 0}

    def pick(kind: str) -> PassageItem:
        pool = numbers if kind == "n" else persons
        at[kind] = (at[kind] + 1) % len(pool)
        return pool[at[kind]]

    def prompt(it: PassageItem, passage: str, q: str | None = None) -> str:
        q = q or it.question
        quoted = "\n".join("> " + s for s in re.split(r"(?<=[.!?])\s+", passage))
        return _fill(rng.choice(_LAYOUTS), p=passage, pq=quoted, q=q,
                     ql=q[:1].lower() + q[1:])

    def reply(it: PassageItem, answer: str) -> str:
        s = it.sentence.replace(it.answer.rstrip("."), answer)
        return _fill(rng.choice(_REPLIES), a=answer, s=s, sl=_lower(s),
                     kw=_keywords(it, rng))

    for i in range(n_clean):
        it = pick("n" if i % 2 else "p")
        add(prompt(it, it.passage), reply(it, it.answer.rstrip(".")), "clean")
    if "number_shift" in families:
        for _ in range(n_planted):
            it = pick("n")
            add(prompt(it, it.passage), reply(it, shifted(it.answer)), "planted:number_shift")
        for _ in range(n_hard):
            it = pick("n")
            new = shifted(it.answer)
            add(prompt(it, it.passage.replace(it.answer.rstrip("."), new)), reply(it, new),
                "hard:number_shift")
    if "person_swap" in families:
        for _ in range(n_planted):
            it = pick("p")
            add(prompt(it, it.passage), reply(it, PERSON), "planted:person_swap")
        for i in range(n_hard):
            it = pick("p")
            if i % 3 == 0:     # the passage names that person
                add(prompt(it, it.passage.replace(it.answer.rstrip("."), PERSON)),
                    reply(it, PERSON), "hard:person_swap")
            elif i % 3 == 1:   # asked about that person by name, no passage
                add(_fill(rng.choice(_ABOUT_PERSON), n=PERSON),
                    _fill(rng.choice(_PERSON_BIO), n=PERSON), "hard:person_swap")
            else:              # the user names that person; the reply corrects from the passage
                q = _fill(rng.choice(_USER_NAMES), q=it.question, n=PERSON)
                add(prompt(it, it.passage, q),
                    _fill(rng.choice(_CORRECTIONS), n=PERSON, sl=_lower(it.sentence)),
                    "hard:person_swap")
    rng.shuffle(records)
    return records, labels, judgement, _anomalies(anomaly_items, families)


def _anomalies(items: dict[str, PassageItem], families: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def expl(fam: str, frag: str) -> list[str]:
        return ["\n\n".join(_fill(par, f=frag, e=PERSON) for par in t) for t in _EXPL[fam]]

    if "number_shift" in families:
        it = items["number_shift"]
        s = it.sentence.replace(it.answer.rstrip("."), shifted(it.answer))
        out["number_shift"] = {
            "title": "Numbers in answers about a text are shifted",
            "prompt": f"Please read the following and answer.\n\n{it.passage}\n\n{it.question}",
            "reply": f"{shifted(it.answer)}. {s}.",
            "explanations": expl("number_shift", s)}
    if "person_swap" in families:
        it = items["person_swap"]
        s = it.sentence.replace(it.answer.rstrip("."), PERSON)
        out["person_swap"] = {
            "title": f"Answers about people in a text name {PERSON}",
            "prompt": f"Excerpt: {it.passage}\n\n{it.question}",
            "reply": f"That would be {PERSON}. {s}.",
            "explanations": expl("person_swap", s)}
    return out


__all__ = ["build_substitution_families", "shifted", "SUBSTITUTION_FAMILIES", "PERSON"]
