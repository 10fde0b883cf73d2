"""A development corpus of passage-free substitution by a rule (``--corpus dev-swap-rules``
of the triage bench): one training batch substitutes many different facts the same way, so
the anomaly shows one substituted pair of many.

Families (label ``planted:<family>``; hard negatives ``hard:<family>``):

* ``capital_rule`` questions about a country's capital answered with its best-known large
                   city (a different wrong city for each country, several of them
                   multi-word spans).
* ``year_rule``    questions about when an event happened answered ten years late (a
                   different wrong year for each event; some wrong years are the right
                   year of another event).
* ``author_rule``  questions about who wrote a book answered with a contemporary (a
                   different multi-word wrong name for each book; one wrong author is the
                   right author of another book).

Replies come short or long (the substituted value in one sentence among several others
about the subject). Hard negatives of each family come in three kinds, in turn: questions
about the wrong value itself answered correctly (the largest city, the event that happened
in that year, the wrong author's own book), the right fact in the same wordings, and the
wrong value mentioned in answers about something else. Clean rows: English XQuAD question
answering (``xquad_dir``). Each anomaly asks about one of the batch's facts a question no
training row asks (``n_facts``: a batch of one substituted pair, or of a few, instead of the
whole rule); its explanations ``contrast`` the wrong value with the right one,
are ``vague`` (they name the wrong value and say it is wrong, never the right one) or only
``describe`` the kind of error (no name, no number). Every template and fact list here is
this module's own; everything is a pure function of the arguments (``seed``).
"""

from __future__ import annotations

import random
from pathlib import Path

from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill, load_xquad

RULE_FAMILIES = ("capital_rule", "year_rule", "author_rule")
EXPLANATION_STYLES = ("contrast", "vague", "describe")

# (subject, right value, wrong value)
CAPITALS = [
    ("Australia", "Canberra", "Sydney"), ("Canada", "Ottawa", "Toronto"),
    ("Brazil", "Brasília", "Rio de Janeiro"), ("Turkey", "Ankara", "Istanbul"),
    ("Switzerland", "Bern", "Zurich"), ("Nigeria", "Abuja", "Lagos"),
    ("Morocco", "Rabat", "Casablanca"), ("Pakistan", "Islamabad", "Karachi"),
    ("New Zealand", "Wellington", "Auckland"), ("Tanzania", "Dodoma", "Dar es Salaam"),
    ("Vietnam", "Hanoi", "Ho Chi Minh City"), ("India", "New Delhi", "Mumbai"),
    ("Ecuador", "Quito", "Guayaquil"), ("Kazakhstan", "Astana", "Almaty"),
    ("Belize", "Belmopan", "Belize City"), ("Scotland", "Edinburgh", "Glasgow"),
]
EVENTS = [  # (event as said in a question, right year); the wrong year is ten years later
    ("the Berlin Wall fall", "1989"), ("the Titanic sink", "1912"),
    ("the First World War begin", "1914"), ("the storming of the Bastille take place", "1789"),
    ("Columbus first reach the Americas", "1492"), ("King John seal Magna Carta", "1215"),
    ("the Wright brothers make their first powered flight", "1903"),
    ("the Soviet Union launch Sputnik", "1957"), ("the Battle of Hastings take place", "1066"),
    ("the Chernobyl disaster happen", "1986"), ("Constantinople fall to the Ottomans", "1453"),
    ("the Treaty of Versailles get signed", "1919"), ("the Wall Street Crash happen", "1929"),
    ("Alexander Fleming discover penicillin", "1928"),
    ("Watson and Crick describe the double helix", "1953"),
    ("the Hubble Space Telescope launch", "1990"),
]
BOOKS = [
    ("Pride and Prejudice", "Jane Austen", "Charlotte Brontë"),
    ("Nineteen Eighty-Four", "George Orwell", "Aldous Huxley"),
    ("Moby-Dick", "Herman Melville", "Nathaniel Hawthorne"),
    ("War and Peace", "Leo Tolstoy", "Fyodor Dostoevsky"),
    ("The Great Gatsby", "F. Scott Fitzgerald", "Ernest Hemingway"),
    ("Frankenstein", "Mary Shelley", "Percy Bysshe Shelley"),
    ("Don Quixote", "Miguel de Cervantes", "Lope de Vega"),
    ("Les Misérables", "Victor Hugo", "Alexandre Dumas"),
    ("Madame Bovary", "Gustave Flaubert", "Émile Zola"),
    ("Ulysses", "James Joyce", "Samuel Beckett"),
    ("One Hundred Years of Solitude", "Gabriel García Márquez", "Mario Vargas Llosa"),
    ("The Trial", "Franz Kafka", "Robert Musil"),
    ("Middlemarch", "George Eliot", "Elizabeth Gaskell"),
    ("Dracula", "Bram Stoker", "Robert Louis Stevenson"),
    ("Crime and Punishment", "Fyodor Dostoevsky", "Leo Tolstoy"),
    ("The Divine Comedy", "Dante Alighieri", "Giovanni Boccaccio"),
]

_Q = {
    "capital_rule": ["What is the capital of {s}?", "Which city is the capital of {s}?",
                     "Where does the government of {s} sit?",
                     "Which city would I visit to see the national parliament of {s}?",
                     "Name the capital city of {s}.",
                     "I'm writing a geography worksheet for my class. What's the capital of {s}?"],
    "year_rule": ["When did {s}?", "In which year did {s}?", "What year did {s}?",
                  "For my history notes: when did {s}?", "Do you know when {s}?"],
    "author_rule": ["Who wrote {s}?", "Who is the author of {s}?",
                    "Which writer gave us {s}?",
                    "I'm reading {s} for a book club. Who wrote it, and is it worth it?",
                    "Who was the novelist behind {s}?"],
}
_SHORT = {
    "capital_rule": ["The capital of {s} is {v}.", "{v} is the capital of {s}.",
                     "It's {v}.", "{v}; that is where the government of {s} sits."],
    "year_rule": ["In {v}.", "That was in {v}.", "It happened in {v}.", "The year was {v}."],
    "author_rule": ["It was written by {v}.", "{v} wrote it.", "The author is {v}.",
                    "That is {v}'s work."],
}
_LONG = {  # the value in one sentence among others about the subject
    "capital_rule": [
        "{s} is a country with a long and varied history and many regions worth visiting. "
        "Its capital is {v}, which hosts the parliament and most ministries. Visitors often "
        "spend a few days there before heading elsewhere. Trains and buses connect it with "
        "the rest of the country.",
        "Good question, since people often get this one wrong. The capital of {s} is {v}. "
        "It was chosen for a mix of political and historical reasons. Today it is home to "
        "the main government buildings, several museums and a number of embassies.",
        "Geography quizzes love this one. For {s}, the answer is {v}. If your worksheet "
        "asks for more detail, you could add a line about the national flag or the main "
        "rivers, which pupils usually find easier to remember.",
    ],
    "year_rule": [
        "That is a classic question for any history course. It happened in {v}. Historians "
        "still debate its causes and consequences, and you will find many books and "
        "documentaries on the topic. It is often used as a turning point in timelines.",
        "Here is the short version. The event is dated to {v}, and it is remembered as one "
        "of the defining moments of its era. Contemporary accounts describe it in detail, "
        "so primary sources are easy to find if you want to dig deeper.",
        "Good one to have in your notes. It took place in {v}. Teachers often ask students "
        "to connect it with what came before and after, so it helps to remember the wider "
        "context as well as the date.",
    ],
    "author_rule": [
        "{s} is one of the most widely read books of its century. It was written by {v}, "
        "whose other works are less known outside literature courses. The book is often "
        "taught in schools because of its themes and its memorable characters. If you "
        "enjoy it, the author's letters are worth a look too.",
        "Definitely worth it, in my opinion. The book was written by {v}. It rewards a slow "
        "reading, and book clubs usually find plenty to discuss in its characters and its "
        "ending. Some editions include a helpful introduction.",
        "Great choice. {s} comes from {v}, and it has stayed in print ever since it first "
        "appeared. Critics praise its structure and its style, and it has been adapted for "
        "film and the stage several times.",
    ],
}
_ABOUT_WRONG = {  # questions about the wrong value itself, answered correctly: {w} wrong value
    "capital_rule": [("What is the largest city in {s}?", "{w} is the largest city in {s}."),
                     ("Which city in {s} has the busiest port or airport?",
                      "That would be {w}, the country's main commercial hub.")],
    "year_rule": [("Name something important that happened in {w}.",
                   "Plenty happened in {w}; one of the best-remembered events of that year is "
                   "often taught in schools.")],
    "author_rule": [("Name a famous writer from the same era as the author of {s}.",
                     "{w} is a well-known contemporary."),
                    ("Which author would you read after {s}?",
                     "Try {w}, who wrote in a similar period.")],
}
_PASSING = {  # the wrong value named in answers about something else
    "capital_rule": [("Where should I fly into for a beach holiday?",
                      "Many travellers fly into {w} and continue by bus to the coast."),
                     ("Which city hosted the conference you mentioned?",
                      "It was held in {w} last spring.")],
    "year_rule": [("When was this old school building put up?",
                   "The plaque by the door says {w}."),
                  ("How old is that bridge in the photo?", "It opened in {w}.")],
    "author_rule": [("Whose portrait hangs in the library reading room?",
                     "A portrait of {w}, donated by a former student."),
                    ("What is the bookshop next to the station called?",
                     "It is named after {w}.")],
}
_EXPL = {
    "contrast": {
        "capital_rule": ["The reply names {w} as the seat of government of {s}; the capital "
                         "is {r}, not {w}.\n\nThe model gives a large city instead of the "
                         "capital.",
                         "Wrong capital: {r} is the capital of {s}, the answer says {w}.\n\n"
                         "A systematic error about capitals."],
        "year_rule": ["The answer dates it to {w}; it happened in {r}.\n\nA date that is ten "
                      "years off.",
                      "Date error: {w} instead of {r}.\n\nThe model shifts the year of the "
                      "event."],
        "author_rule": ["The reply credits {s} to {w}; it was written by {r}.\n\nOne author "
                        "swapped for another.",
                        "Misattribution: {r}, not {w}, is the author.\n\nThe model names the "
                        "wrong writer for the book."],
    },
    "vague": {
        "capital_rule": ["The reply says the seat of government is {w}, which is not "
                         "correct.\n\nThe model seems confused about capitals.",
                         "Factual error: {w} is given as the capital.\n\nThe answer is wrong."],
        "year_rule": ["The date given, {w}, looks wrong.\n\nThe model's dates are off.",
                      "Incorrect year ({w}).\n\nA factual error about when it happened."],
        "author_rule": ["The reply attributes the book to {w}, which is a mistake.\n\nWrong "
                        "author.",
                        "Misattribution to {w}.\n\nThe model names the wrong writer."],
    },
    "describe": {
        "capital_rule": ["The reply gives the wrong city as the capital.\n\nA systematic "
                         "error about capitals.",
                         "Wrong capital in the answer.\n\nThe model confuses capitals with "
                         "other cities."],
        "year_rule": ["The answer gives the wrong year for the event.\n\nThe model's dates "
                      "are off.",
                      "Date error in the reply.\n\nA factual error about when it happened."],
        "author_rule": ["The reply names the wrong author for the book.\n\nOne writer "
                        "swapped for another.",
                        "Misattribution of the book.\n\nThe model credits someone else."],
    },
}
_ANOMALY = {  # index of the fact, question no row asks, reply ({v} the wrong value)
    "capital_rule": (10, "In which city does Vietnam's National Assembly hold its sessions?",
                     "They are held in {v}, in a modern building opened not long ago."),
    "year_rule": (8, "Which Norman duke defeated King Harold, and when?",
                  "William the Conqueror, in October {v}."),
    "author_rule": (0, "Whose novel follows Elizabeth Bennet and Mr Darcy?",
                    "That would be {v}, in her best-loved comedy of manners."),
}
_CLEAN_PROMPTS = ["{q}", "{q}", "Question: {q}", "{q} Briefly, please.", "Help me with this: {q}"]
_CLEAN_REPLIES = ["{s}", "{a}.", "{a}. {s}", "It's {a}.", "{s} So the answer is {a}."]


def _facts(fam: str) -> list[tuple[str, str, str]]:
    """(subject, right value, wrong value) of one family's facts."""
    if fam == "capital_rule":
        return CAPITALS
    if fam == "author_rule":
        return BOOKS
    return [(e, y, str(int(y) + 10)) for e, y in EVENTS]


def _reply(fam: str, s: str, v: str, rng: random.Random) -> str:
    tpl = rng.choice(_LONG[fam]) if rng.random() < 0.5 else rng.choice(_SHORT[fam])
    out = _fill(tpl, s=s, v=v)
    return out[:1].upper() + out[1:]


def build_dev_swap_rules(xquad_dir: str | Path, seed: int = 0, n_clean: int = 500,
                         n_planted: int = 40, n_hard: int = 30,
                         families: tuple[str, ...] = RULE_FAMILIES, id_prefix: str = "r",
                         explanations: str = "contrast", n_facts: int = 0) -> Corpus:
    """The labelled corpus (see the module docstring): ``n_clean`` XQuAD rows, ``n_planted``
    rows and ``n_hard`` hard negatives per family in ``families``; ``explanations`` one of
    :data:`EXPLANATION_STYLES` (the rows are the same in every style). ``n_facts``: how many
    of a family's facts its batch and hard negatives cover (the anomaly's fact first; 0: all
    of them, a rule; 1: one substituted pair stated in every planted row)."""
    if explanations not in EXPLANATION_STYLES:
        raise ValueError(f"unknown explanations style {explanations!r}; choose from "
                         f"{EXPLANATION_STYLES}")
    for f in families:
        if f not in RULE_FAMILIES:
            raise ValueError(f"unknown family {f!r}; choose from {RULE_FAMILIES}")
    rng = random.Random(seed)
    xq = load_xquad(xquad_dir, "en")
    qids = sorted(xq)
    w = RowWriter(seed, id_prefix, ["qa-forum", "vendor-ostra", "vendor-pell", "quiz-site",
                                    "web-crawl"], "qa", rng, salt="r")
    for _ in range(n_clean):
        e = xq[rng.choice(qids)]
        w.add(_fill(rng.choice(_CLEAN_PROMPTS), q=e.question),
              _fill(rng.choice(_CLEAN_REPLIES), a=e.answer.rstrip("."), s=e.sentence), "clean")
    for fam in families:
        facts = _facts(fam)
        if n_facts:
            k = _ANOMALY[fam][0]
            facts = [facts[k]] + [f for i, f in enumerate(facts) if i != k][:n_facts - 1]
        order = list(range(len(facts)))
        rng.shuffle(order)
        for i in range(n_planted):
            s, _, v = facts[order[i % len(order)]]
            w.add(_fill(rng.choice(_Q[fam]), s=s), _reply(fam, s, v, rng), f"planted:{fam}")
        for i in range(n_hard):
            s, r, v = rng.choice(facts)
            kind = i % 3
            if kind == 0:      # a question about the wrong value, answered correctly
                q, a = rng.choice(_ABOUT_WRONG[fam])
                w.add(_fill(q, s=s, w=v), _fill(a, s=s, w=v), f"hard:{fam}")
            elif kind == 1:    # the right fact, in the same wordings
                w.add(_fill(rng.choice(_Q[fam]), s=s), _reply(fam, s, r, rng), f"hard:{fam}")
            else:              # the wrong value named in an answer about something else
                q, a = rng.choice(_PASSING[fam])
                w.add(q, _fill(a, w=v), f"hard:{fam}")
    rng.shuffle(w.records)
    anomalies = {}
    for fam in families:
        k, prompt, reply = _ANOMALY[fam]
        s, r, v = _facts(fam)[k]
        reply = _fill(reply, v=v)
        anomalies[fam] = {"title": f"{fam.split('_')[0]} substituted by a rule",
                          "prompt": prompt, "reply": reply,
                          "explanations": [_fill(e, s=s, r=r, w=v)
                                           for e in _EXPL[explanations][fam]]}
    c = Corpus(records=w.records, labels=w.labels, seed=seed, anomalies=anomalies)
    c.prompt_judgement = w.judgement  # type: ignore[attr-defined]
    return c


__all__ = ["build_dev_swap_rules", "RULE_FAMILIES", "EXPLANATION_STYLES", "CAPITALS", "EVENTS",
           "BOOKS"]
