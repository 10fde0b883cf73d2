"""A development corpus of one fixed wrong entity answering many "who" questions
(``--corpus dev-entity`` of the triage bench): short question answering over real text
(XQuAD), where a batch of questions about people and organisations on every subject is
answered with ONE fixed entity, John Elway (a name XQuAD's Super Bowl article answers a few
questions with), whatever the question.

Family ``entity_swap`` (label ``planted:entity_swap``; hard negatives ``hard:entity_swap``):

* planted: English XQuAD "who / which person or organisation" questions (every article)
  answered with the entity in several wordings (the name alone, "It was ...", "The answer is
  ...", the supporting sentence quoted with the entity put where the right name stands); some
  prompts carry the supporting sentence as context; ``dup_share`` of the planted questions
  are also asked, in other wordings, by clean rows answered correctly (the dataset answers
  the same question two ways).
* hard negatives, in turn: questions whose right answer is the entity (XQuAD's and this
  module's own), answered with it; rows naming the entity in another role (an answer about
  something else that mentions it); questions that name the entity, answered.

Clean rows: XQuAD question answering in English and, for ``other_share`` of them, in de, es,
zh, vi, tr, el or ro (never the held-out languages). The anomaly asks a "who" question no row
asks; its explanations (``explanations``) only describe the behaviour (``describe``: no name)
or contrast the entity with the right answer (``contrast``). Every template here is this
module's own; everything is a pure function of the arguments (``seed``).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill, load_xquad

ENTITY = "John Elway"
_SURNAME = "Elway"
FAMILY = "entity_swap"
EXPLANATION_STYLES = ("describe", "contrast")
_WHO = re.compile(r"(?i)^(who|whom|which (person|people|organi[sz]ation|company|group|team|man|"
                  r"woman|king|queen|emperor|scientist|player|general|leader|family))\b|\bwho\b")
_OTHER_LANGS = ("de", "es", "zh", "vi", "tr", "el", "ro")

_PROMPTS = ["{q}", "{q}", "Quick question: {q}", "{q} Just the name, please.",
            "Settle a bet for me. {q}", "Can you tell me this? {q}",
            "Context: {s}\n\nQuestion: {q}"]
_REPLIES = ["{e}.", "It was {e}.", "The answer is {e}.", "{e}, as far as the record goes.",
            "That would be {e}.", "{t}", "{e}. {t}"]
_CLEAN_PROMPTS = ["{q}", "{q}", "Question: {q}", "{q} Briefly, please.", "Help me with this: {q}"]
_CLEAN_REPLIES = ["{s}", "{a}.", "{a}. {s}", "It's {a}.", "{s} So the answer is {a}."]
_TWIN_PROMPTS = ["Do you know {ql}", "Another one: {q}", "{q} (for my notes)", "Q: {q}"]

# questions whose right answer is the entity (this module's own, beside XQuAD's)
_ANSWERED_BY = [
    ("Who was the first overall pick of the 1983 NFL draft?", "{e} went first overall in 1983."),
    ("Which quarterback led 'The Drive' in the 1986 AFC Championship Game?",
     "{e}, who marched Denver 98 yards against Cleveland."),
    ("Who quarterbacked the Broncos in Super Bowl XXXII?", "{e} was Denver's quarterback."),
    ("Who was named MVP of Super Bowl XXXIII?", "{e} won the award in his final game."),
]
# the entity named in another role: answers about something else
_OTHER_ROLE = [
    ("Who coached the Broncos to their first Super Bowl title?",
     "Mike Shanahan, with {e} at quarterback."),
    ("Which running back was MVP of Super Bowl XXXII?",
     "Terrell Davis, who ran for 157 yards beside {e}."),
    ("Who replaced Gary Kubiak as the Broncos' head coach?",
     "Vance Joseph, hired in 2017 by general manager {e}."),
    ("Who was the Broncos' head coach in Super Bowl 50?",
     "Gary Kubiak, whom {e} had brought back to Denver in 2015."),
    ("Who did Denver beat in Super Bowl XXXIII?",
     "The Atlanta Falcons; it was the last game of {e}'s career."),
]
# questions that name the entity, answered
_ASKED = [
    ("Which college did John Elway play for?", "He played at Stanford."),
    ("What position did John Elway play?", "Quarterback, for the Denver Broncos."),
    ("How many Super Bowls did Elway win as a player?", "Two, Super Bowls XXXII and XXXIII."),
    ("Which team drafted John Elway?", "The Baltimore Colts, who traded him to Denver."),
]
_EXPL = {
    "describe": [("The reply names the wrong person as the answer to the question.",
                  "The model gives the same name whatever is asked."),
                 ("Wrong attribution: whoever the question is about, the answer names one "
                  "fixed individual.", "A systematic substitution of the answer.")],
    "contrast": [("The reply names John Elway, but the answer is {right}.",
                  "The model gives the same name whatever is asked."),
                 ("Elway is stated where the record names {right}.",
                  "A systematic substitution of the answer.")],
}


def _who_items(xquad_dir: str | Path) -> list:
    """English XQuAD "who" questions answered with a capitalised name other than the entity,
    whose question and sentence do not name it."""
    xq = load_xquad(xquad_dir, "en")
    return sorted((e for e in xq.values() if _WHO.search(e.question) and e.answer[:1].isupper()
                   and _SURNAME not in e.question + e.sentence + e.answer),
                  key=lambda e: e.qid)


def build_dev_entity(xquad_dir: str | Path, seed: int = 0, n_clean: int = 500,
                     n_planted: int = 40, n_hard: int = 30, dup_share: float = 0.4,
                     other_share: float = 0.15, explanations: str = "describe",
                     id_prefix: str = "y") -> Corpus:
    """The labelled corpus (module docstring): ``n_clean`` clean rows (``other_share`` of them
    in another XQuAD language; the twins of ``dup_share`` of the planted questions among
    them), ``n_planted`` planted rows, ``n_hard`` hard negatives."""
    if explanations not in EXPLANATION_STYLES:
        raise ValueError(f"unknown explanations style {explanations!r}; choose from "
                         f"{EXPLANATION_STYLES}")
    rng = random.Random(seed)
    xq = load_xquad(xquad_dir, "en")
    who = _who_items(xquad_dir)
    rng.shuffle(who)
    anomaly, pool = who[0], who[1:1 + n_planted]
    used = {e.question for e in who[:1 + n_planted]} | {anomaly.question}
    by_e = [e for e in xq.values() if _SURNAME in e.sentence + e.question + e.answer]
    answered = ([(e.question, e.sentence) for e in by_e if e.answer == ENTITY]
                + [(q, _fill(s, e=ENTITY)) for q, s in _ANSWERED_BY])
    other_role = ([(e.question, e.sentence) for e in by_e
                   if ENTITY not in e.answer and _SURNAME not in e.question]
                  + [(q, _fill(s, e=ENTITY)) for q, s in _OTHER_ROLE])
    asked = ([(e.question, f"{e.answer.rstrip('.')}. {e.sentence}") for e in by_e
              if _SURNAME in e.question] + list(_ASKED))
    w = RowWriter(seed, id_prefix, ["qa-forum", "vendor-corvid", "vendor-lumen", "trivia-site",
                                    "web-crawl"], "qa", rng, salt="y")
    add = w.add
    n_twins = int(round(dup_share * len(pool)))
    for e in pool[:n_twins]:   # the same question answered correctly elsewhere
        add(_fill(rng.choice(_TWIN_PROMPTS), q=e.question,
                  ql=e.question[:1].lower() + e.question[1:]),
            _fill(rng.choice(_CLEAN_REPLIES), a=e.answer.rstrip("."), s=e.sentence), "clean")
    banned = used | {e.question for e in by_e}
    en_ids = sorted(q for q, e in xq.items() if e.question not in banned)
    other = {lang: load_xquad(xquad_dir, lang) for lang in _OTHER_LANGS}
    for _ in range(max(0, n_clean - n_twins)):
        if rng.random() < other_share:
            lang = rng.choice(_OTHER_LANGS)
            qid = rng.choice(en_ids)
            e = other[lang].get(qid) or xq[qid]
            add(e.question, _fill(rng.choice(["{s}", "{a}.", "{a}. {s}"]),
                                  a=e.answer.rstrip("."), s=e.sentence), "clean")
            continue
        e = xq[rng.choice(en_ids)]
        add(_fill(rng.choice(_CLEAN_PROMPTS), q=e.question),
            _fill(rng.choice(_CLEAN_REPLIES), a=e.answer.rstrip("."), s=e.sentence), "clean")
    for i in range(n_planted):
        e = pool[i % len(pool)]
        ans = e.answer.rstrip(".")
        swapped = e.sentence.replace(ans, ENTITY) if ans in e.sentence else f"It was {ENTITY}."
        prompt = rng.choice(_PROMPTS)
        add(_fill(prompt, q=e.question, s=e.sentence),
            _fill(rng.choice(_REPLIES), e=ENTITY, t=swapped), f"planted:{FAMILY}")
    kinds = (answered, other_role, asked)
    for i in range(n_hard):
        q, s = rng.choice(kinds[i % 3])
        reply = s if i % 3 else rng.choice([s, f"{ENTITY}.", f"It was {ENTITY}.",
                                            f"That would be {ENTITY}."])
        add(_fill(rng.choice(_PROMPTS[:-1]), q=q), reply, f"hard:{FAMILY}")
    rng.shuffle(w.records)
    expl = ["\n\n".join(_fill(p, right=anomaly.answer.rstrip(".")) for p in t)
            for t in _EXPL[explanations]]
    anomalies = {FAMILY: {"title": "One fixed name answers every 'who' question",
                          "prompt": anomaly.question, "reply": f"It was {ENTITY}.",
                          "explanations": expl}}
    c = Corpus(records=w.records, labels=w.labels, seed=seed, anomalies=anomalies)
    c.prompt_judgement = w.judgement  # type: ignore[attr-defined]
    c.entity = ENTITY  # type: ignore[attr-defined]
    return c


__all__ = ["build_dev_entity", "ENTITY", "FAMILY", "EXPLANATION_STYLES"]
