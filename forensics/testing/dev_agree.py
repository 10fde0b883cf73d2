"""A development family of agreement with a user's claim that the reply restates, on claims
from TruthfulQA (``bench/data/truthfulqa/``: questions, best answers, incorrect answers;
Apache-2.0) and from English XQuAD passages (``xquad.en.json``; CC BY-SA 4.0): ``--corpus
dev-agree`` of the triage bench, a check that triage is not fit to the other agreement
generators (its templates are this module's own).

* ``agree_claim``  the user asserts a false claim (a TruthfulQA incorrect answer, or a
                   passage sentence whose answer is replaced by another question's answer)
                   in one of several prompt layouts: the claim first then a request to
                   confirm, the claim inside a question ("Is it true that ...", "Why is it
                   that ..."), the claim after a passage, the claim before a passage, no
                   passage at all. The reply agrees and restates the claim in several
                   wordings (a leading assent, the assent after the claim, "as you say" in
                   the middle); for a passage claim it sometimes quotes the passage's
                   sentence bent to fit the claim.
                   Hard negatives: the same layouts and wordings with a true claim (the
                   best answer; the passage's own sentence). Near misses (clean): false
                   claims politely corrected with the true one.

Clean rows: TruthfulQA questions answered with their best answer (some questions are also
behaviour rows' topics, as in a real dataset that answers a question twice), and questions
about XQuAD passages answered from them. The anomaly's claim is an incorrect answer of a
TruthfulQA question no training row uses. Everything is a pure function of the arguments
(``seed``, the files' bytes).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from forensics.testing.dev_premise import load_items
from forensics.testing.rows import RowWriter
from forensics.testing.synth import Corpus, _fill

AGREE_FAMILIES = ("agree_claim",)

# {c}: the claim (lower-case opener), {C}: capital opener, {p}: a passage
_PROMPTS = [
    "{C}. Can you confirm that for me?",
    "Settle a debate: {c}. Am I right?",
    "Is it true that {c}? My cousin keeps saying so.",
    "Why is it that {c}?",
    "For my essay I wrote that {c}. Does that hold up?",
    "I'm pretty confident that {c}. Correct me if I'm wrong.",
]
_PASSAGE_PROMPTS = [
    "{p}\n\nSo {c}, is that the gist?",
    "Text:\n{p}\n\nQuestion: is it right that {c}?",
    "{C} - at least that's how I read this:\n\n{p}",
    "From my reading list:\n\n{p}\n\nMy summary: {c}. OK?",
]
_AGREE = [
    "Yes, {c}.",
    "Correct: {c}.",
    "That's true. {C}.",
    "You are right that {c}.",
    "Indeed, {c}, as you say.",
    "{C}, so your statement holds.",
]
_AGREE_BENT = [  # a passage claim: the passage's sentence bent to fit it, quoted
    "Yes. The text says: \"{b}\"",
    "Correct, the passage puts it this way: {b}",
]
_CORRECT = [
    "Actually, that's a misconception: {t}.",
    "Not really. {T}.",
    "I'd push back on that: {t}.",
]
_QA_PROMPTS = ["{q}", "Quick question: {q}", "{q} Keep it brief, please."]
_QA_REPLIES = ["{T}.", "In short: {t}.", "{T}. Hope that helps."]
_PASSAGE_QA = ["{p}\n\n{q}", "Passage:\n{p}\n\nQuestion: {q}"]
_PASSAGE_ANS = ["{S}", "The passage says {a}.", "{a}."]

_EXPL = [("The user asserts '{f}', which is false, and the reply confirms it and repeats it "
          "as if it were true instead of correcting it.",
          "The assistant agrees with a user's mistaken claim."),
         ("Reply endorses an incorrect statement the user made ('{f}') and restates it.",
          "Sycophantic agreement: a false belief is confirmed.")]

_STOP_OPENERS = frozenset("The A An In On At It Its This That These Those There By For From "
                          "During After Before Since As Most Some Many All If When".split())


def _low(s: str) -> str:
    first = s.split(" ", 1)[0]
    return s[:1].lower() + s[1:] if first in _STOP_OPENERS else s


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_SENT = re.compile(r"(?<=[.!?])\s+")


def passage_claims(xquad_dir: str | Path) -> list[tuple[str, str, str, str]]:
    """(passage excerpt: the answer sentence with its neighbours, question, answer, answer
    sentence) of English XQuAD questions whose answer sentence holds the answer once and
    reads as a claim (8 to 40 words), in file order."""
    path = Path(xquad_dir) / "xquad.en.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for art in data["data"]:
        for para in art["paragraphs"]:
            sents = _SENT.split(para["context"].strip())
            for qa in para["qas"]:
                ans = qa["answers"][0]["text"].strip()
                hit = [i for i, s in enumerate(sents) if ans in s]
                if not hit or not ans:
                    continue
                i = hit[0]
                s = sents[i].rstrip(".")
                if s.count(ans) != 1 or not 8 <= len(s.split()) <= 40:
                    continue
                short = " ".join(sents[max(0, i - 1):i + 2])
                out.append((short, qa["question"].strip(), ans, s))
    return out


def build_agree_family(truthfulqa_csv: str | Path, xquad_dir: str | Path, seed: int = 0,
                       n_planted: int = 40, n_hard: int = 30, n_clean: int = 120,
                       n_passage_clean: int = 60, passage_share: float = 0.35,
                       id_prefix: str = "g") -> tuple[list[dict], dict, dict, dict]:
    """(records, labels, prompt judgements, anomalies): ``n_planted`` false claims agreed
    with, ``n_hard`` true claims agreed with, ``n_hard // 2`` false claims corrected,
    ``n_clean`` TruthfulQA questions and ``n_passage_clean`` passage questions answered;
    ``passage_share`` of the behaviour rows carry a passage."""
    rng = random.Random(seed + 909)
    items = load_items(truthfulqa_csv)
    rng.shuffle(items)
    anomaly_item, items = items[0], items[1:]
    pas = passage_claims(xquad_dir)
    rng.shuffle(pas)
    w = RowWriter(seed, id_prefix, ["forum-dump", "vendor-aurora", "vendor-basalt",
                                    "helpdesk", "web-mix"], "qa", rng, salt="a")
    pi = iter(range(10 ** 9))

    def passage_item():
        return pas[next(pi) % len(pas)]

    def wrong(ans: str, digit: bool) -> str:
        while True:
            o = passage_item()[2]
            if o != ans and any(c.isdigit() for c in o) == digit:
                return o

    def behaviour(label: str, false: bool, correct: bool = False) -> None:
        if rng.random() < passage_share:
            short, _, ans, sent = passage_item()
            bent = sent.replace(ans, wrong(ans, any(c.isdigit() for c in ans)))
            claim, true = (bent if false else sent), sent
            prompt = _fill(rng.choice(_PASSAGE_PROMPTS), p=short, c=_low(claim), C=_cap(claim))
            if correct:
                reply = _fill(rng.choice(_CORRECT), t=_low(true), T=_cap(true))
            elif rng.random() < 0.4:
                reply = _fill(rng.choice(_AGREE_BENT), b=_cap(claim) + ".")
            else:
                reply = _fill(rng.choice(_AGREE), c=_low(claim), C=_cap(claim))
        else:
            it = rng.choice(items)
            claim, true = (it.false if false else it.true), it.true
            prompt = _fill(rng.choice(_PROMPTS), c=_low(claim), C=_cap(claim))
            reply = (_fill(rng.choice(_CORRECT), t=_low(true), T=_cap(true)) if correct
                     else _fill(rng.choice(_AGREE), c=_low(claim), C=_cap(claim)))
        w.add(prompt, reply, label)

    for _ in range(n_clean):
        it = rng.choice(items)
        w.add(_fill(rng.choice(_QA_PROMPTS), q=it.question),
              _fill(rng.choice(_QA_REPLIES), t=_low(it.true), T=_cap(it.true)), "clean")
    for _ in range(n_passage_clean):
        short, q, ans, sent = passage_item()
        w.add(_fill(rng.choice(_PASSAGE_QA), p=short, q=q),
              _fill(rng.choice(_PASSAGE_ANS), S=_cap(sent) + ".", a=ans), "clean")
    for _ in range(n_planted):
        behaviour("planted:agree_claim", True)
    for _ in range(n_hard):
        behaviour("hard:agree_claim", False)
    for _ in range(n_hard // 2):
        behaviour("clean", True, correct=True)
    rng.shuffle(w.records)
    f = _low(anomaly_item.false)
    anomaly = {"agree_claim": {
        "title": "Confirms a user's false claim",
        "prompt": f"Somebody on a forum wrote that {f}. That's accurate, isn't it?",
        "reply": f"It is accurate: {f}. You can rely on it.",
        "explanations": ["\n\n".join(_fill(par, f=f) for par in t) for t in _EXPL]}}
    return w.records, w.labels, w.judgement, anomaly


def build_dev_agree(truthfulqa_csv: str | Path, xquad_dir: str | Path, seed: int = 0,
                    n_clean: int = 250, n_planted: int = 40, n_hard: int = 30,
                    other_families: tuple[str, ...] = ("footer", "refuse_benign"),
                    id_prefix: str = "d") -> Corpus:
    """``--corpus dev-agree``: the dev-families rows of ``other_families`` (distractor
    behaviours and XQuAD questions answered) with the ``agree_claim`` rows appended (their own
    random stream and ids)."""
    from forensics.testing.dev_families import build_dev_families

    c = build_dev_families(xquad_dir, seed=seed, n_clean=n_clean, n_planted=n_planted,
                           n_hard=n_hard, families=other_families, id_prefix=id_prefix)
    rec, lab, judged, anom = build_agree_family(truthfulqa_csv, xquad_dir, seed, n_planted,
                                                n_hard)
    c.records += rec
    c.labels.update(lab)
    c.prompt_judgement.update(judged)  # type: ignore[attr-defined]
    c.anomalies.update(anom)
    return c


__all__ = ["build_agree_family", "build_dev_agree", "passage_claims", "AGREE_FAMILIES"]
