"""The language development set: real prompts and replies from XQuAD with labels by construction.

Every question, answer sentence and paragraph is professionally translated XQuAD text (parallel
by question id and paragraph across en, de, es, zh, vi, tr, el, ro; CC-BY-SA 4.0); only the
request phrasings (:mod:`forensics.testing.langdev_phrasings`) are written by hand. Nothing
here uses the synthetic corpus generator. Kinds of row (``kind``):

=====================  ==============================================================  =========
kind                   prompt -> reply                                                 positive
=====================  ==============================================================  =========
native                 question in L -> answer sentences in L                          -
native_url             the same, the reply ending in a source line with a URL          -
switch                 question in L1 -> the parallel answer in L2 (nothing asked)     unrequested_switch
request_honoured       question + a request for X -> answer in X                        -
request_ignored        question + a request for X -> answer in Y != X                   ignored_request
passage_honoured       instruction "explain/summarise this in X" + paragraph -> X       -
passage_ignored        the same -> the paragraph in another language                   ignored_request
translation            "translate into X" + paragraph -> the paragraph in X            -
talk                   a sentence that mentions a language + question -> native answer  -
talk_real              a real XQuAD question naming a language -> native answer        -
mixed_start/_middle/   answer in L1 with one real L2 sentence (the question as a       mixed_language
_end                   heading / the parallel sentence inside / the next sentence)
=====================  ==============================================================  =========

``setting`` is ``cross-lingual`` when the expected reply language differs from the prompt's
language (a request for another language, a translation) and ``monolingual`` otherwise.
``split`` is ``dev`` or ``check``: XQuAD articles alternate between them and each split takes
only its own half of every phrasing pool, so the check half can stay unseen while tuning.
A pure function of (xquad_dir, seed).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from forensics.testing import langdev_phrasings as ph

LANGS = ("en", "de", "es", "zh", "vi", "tr", "el", "ro")
QUESTION_LANGS = ("en", "de", "es", "zh")        # languages with request phrasings and questions
FINDINGS = ("unrequested_switch", "ignored_request", "mixed_language")
_SENT = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])")


@dataclass(frozen=True)
class Item:
    """One XQuAD question in one language: its answer window and its paragraph."""

    qid: str
    title: str
    article: int
    paragraph: int
    question: str
    sentences: tuple[str, ...]     # the paragraph's sentences
    answer_idx: int                # the sentence holding the answer
    context: str


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text) if s.strip()]


def load(xquad_dir: str | Path) -> dict[str, dict[str, Item]]:
    """``{lang: {qid: Item}}`` for the eight XQuAD languages kept here."""
    out: dict[str, dict[str, Item]] = {}
    for lang in LANGS:
        data = json.loads((Path(xquad_dir) / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        items: dict[str, Item] = {}
        for ai, art in enumerate(data["data"]):
            for pi, para in enumerate(art["paragraphs"]):
                ctx = para["context"]
                sents = sentences(ctx)
                for qa in para["qas"]:
                    start = int(qa["answers"][0]["answer_start"])
                    pos, idx = 0, len(sents) - 1
                    for k, s in enumerate(sents):
                        at = ctx.find(s, pos)
                        if at >= 0 and at + len(s) > start:
                            idx = k
                            break
                        pos = max(pos, at + len(s)) if at >= 0 else pos
                    items[qa["id"]] = Item(qa["id"], art.get("title", ""), ai, pi, qa["question"].strip(),
                                           tuple(sents), idx, ctx)
        out[lang] = items
    return out


def answer(it: Item, n: int = 2) -> list[str]:
    """The answer sentence and the one after it (or before it, at the paragraph's end)."""
    i = it.answer_idx
    if i + n <= len(it.sentences):
        return list(it.sentences[i:i + n])
    return list(it.sentences[max(0, len(it.sentences) - n):])


def _join(lang: str, parts: list[str]) -> str:
    return ("" if lang == "zh" else " ").join(parts)


def _ask(lang: str, phrase: str, q: str, ctx: str, pos: str) -> str:
    sep = "" if lang == "zh" else " "
    if pos == "start":
        return f"{phrase}{sep}{q}"
    if pos == "end":
        return f"{q}{sep}{phrase}" if len(q) % 2 else f"{q}\n\n{phrase}"
    return f"{ctx}\n\n{phrase}\n{q}"


def _fill(t: str, plang: str, target: str, q: str = "") -> str:
    return t.replace("{L}", ph.lang_form(plang, target, t)).replace("{q}", q)


def build(xquad_dir: str | Path, seed: int = 0, per_kind: int = 80) -> list[dict]:
    """The rows (dicts: id, split, setting, kind, prompt, reply, prompt_lang, expected_lang,
    reply_lang, labels {finding: bool}, template, position, source) of both splits;
    ``per_kind`` rows of each kind per split (fewer where the source runs out)."""
    xq = load(xquad_dir)
    qids = sorted(set.intersection(*(set(d) for d in xq.values())),
                  key=lambda q: (xq["en"][q].article, xq["en"][q].paragraph, q))
    rows: list[dict] = []
    for split in ("dev", "check"):
        rng = random.Random(f"{seed}-{split}")
        mine = [q for q in qids if xq["en"][q].article % 2 == (0 if split == "dev" else 1)]
        paras = sorted({(xq["en"][q].article, xq["en"][q].paragraph): q for q in mine}.values())
        rows += _split_rows(xq, mine, paras, split, rng, per_kind)
    for i, r in enumerate(rows):
        r["id"] = f"ld{i:05d}"
    return rows


def _row(split, kind, prompt, reply, plang, expected, rlang, source, template=None,
         position=None, **labels) -> dict:
    return {"id": "", "split": split, "kind": kind,
            "setting": "monolingual" if expected == plang else "cross-lingual",
            "prompt": prompt, "reply": reply, "prompt_lang": plang, "expected_lang": expected,
            "reply_lang": rlang, "labels": {f: bool(labels.get(f, False)) for f in FINDINGS},
            "template": template, "position": position, "source": source}


def _split_rows(xq, qids, paras, split, rng: random.Random, n: int) -> list[dict]:
    out: list[dict] = []
    pick = lambda: rng.choice(qids)  # noqa: E731
    src = lambda q, *ls: {"xquad_id": q, "langs": list(ls)}  # noqa: E731
    others = lambda *ex: [l for l in LANGS if l not in ex]  # noqa: E731
    # native pairs, with and without a URL source line
    for k in range(n):
        q, L = pick(), LANGS[k % len(LANGS)]
        it = xq[L][q]
        out.append(_row(split, "native", it.question, _join(L, answer(it)), L, L, L, src(q, L)))
    for k in range(n // 2):
        q, L = pick(), LANGS[k % len(LANGS)]
        it = xq[L][q]
        url = f"https://en.wikipedia.org/wiki/{it.title}"
        out.append(_row(split, "native_url", it.question,
                        _join(L, answer(it)) + f"\n\nSource: {url}", L, L, L, src(q, L)))
    # unrequested switches: half into English (the "asked in L, answered in English" case)
    for k in range(n):
        q = pick()
        L1 = LANGS[1 + k % (len(LANGS) - 1)] if k % 2 else "en"
        L2 = "en" if k % 2 else rng.choice(others("en"))
        out.append(_row(split, "switch", xq[L1][q].question, _join(L2, answer(xq[L2][q])), L1,
                        L1, L2, src(q, L1, L2), unrequested_switch=True))
    # requests for an output language, honoured and ignored
    for honoured in (True, False):
        for k in range(n):
            q = pick()
            P = "en" if k % 2 else QUESTION_LANGS[(k // 2) % len(QUESTION_LANGS)]
            X = P if k % 5 == 0 else rng.choice(others(P))
            inline = k % 4 == 3
            pool = ph.split_pool((ph.INLINE if inline else ph.REQUEST)[P], split)
            t = pool[(k // 4) % len(pool)]
            it = xq[P][q]
            ctx = xq[P][q].sentences[0]
            if inline:
                prompt, pos = _fill(t, P, X, it.question), "inline"
            else:
                pos = ("start", "middle", "end")[k % 4]
                prompt = _ask(P, _fill(t, P, X), it.question, ctx, pos)
            Y = X if honoured else (P if P != X and k % 5 else rng.choice(others(X)))
            out.append(_row(split, "request_honoured" if honoured else "request_ignored", prompt,
                            _join(Y, answer(xq[Y][q])), P, X, Y, src(q, P, Y), t, pos,
                            ignored_request=not honoured))
    # passage instructions in eight phrasing languages (fr, ru, ar, ja have no question text)
    plangs = sorted(ph.PASSAGE)
    for honoured in (True, False):
        for k in range(n // 2):
            q = rng.choice(paras)
            I = plangs[k % len(plangs)]
            S = rng.choice(LANGS)
            X = rng.choice([l for l in LANGS if l != S])
            pool = ph.split_pool(ph.PASSAGE[I], split)
            t = pool[(k // len(plangs)) % len(pool)]
            instr = _fill(t, I, X)
            pos = "start" if k % 2 == 0 else "end"
            prompt = f"{instr}\n\n{xq[S][q].context}" if pos == "start" else \
                f"{xq[S][q].context}\n\n{instr.rstrip(' :：')}"
            # an ignored request is answered in a third language (mostly English), never by
            # copying the prompt's own passage back
            Y = X if honoured else ("en" if "en" not in (X, S) and k % 3 else
                                    rng.choice(others(X, S)))
            out.append(_row(split, "passage_honoured" if honoured else "passage_ignored", prompt,
                            xq[Y][q].context, S, X, Y, src(q, S, Y) | {"instruction_lang": I},
                            t, pos, ignored_request=not honoured))
    # translation requests answered in the target language
    for k in range(n):
        q = rng.choice(paras)
        I = plangs[k % len(plangs)]
        S = "en" if k % 2 else rng.choice(LANGS)
        X = rng.choice([l for l in LANGS if l != S])
        pool = ph.split_pool(ph.TRANSLATE[I], split)
        t = pool[(k // len(plangs)) % len(pool)]
        out.append(_row(split, "translation", f"{_fill(t, I, X)}\n\n{xq[S][q].context}",
                        xq[X][q].context, S, X, X, src(q, S, X) | {"instruction_lang": I},
                        t, "start"))
    # prompts that talk about a language without asking for it
    for k in range(n):
        q = pick()
        P = QUESTION_LANGS[k % len(QUESTION_LANGS)]
        pool = ph.split_pool(ph.TALK[P], split)
        t = pool[(k // len(QUESTION_LANGS)) % len(pool)]
        L = rng.choice(others(P))
        it = xq[P][q]
        sep = "" if P == "zh" else " "
        out.append(_row(split, "talk", f"{_fill(t, P, L)}{sep}{it.question}",
                        _join(P, answer(it)), P, P, P, src(q, P), t, "start"))
    out += _talk_real(xq, qids, split, n)
    # mixed replies: one real sentence of another language at the start, middle or end
    for k in range(n):
        q = pick()
        L1 = LANGS[k % len(LANGS)]
        L2 = "en" if L1 != "en" and (k // 3) % 3 else rng.choice(others(L1))
        main = answer(xq[L1][q], 3 if k % 3 == 1 else 2)
        other = xq[L2][q]
        where = ("start", "middle", "end")[k % 3]
        if where == "start":       # the question as a heading in another language
            reply = f"{other.question}\n\n{_join(L1, main)}"
        elif where == "middle":    # a sentence left untranslated inside the answer
            reply = _join(L1, main[:1] + [answer(other, 1)[0]] + main[1:])
        else:                      # the reply drifts into another language at the end
            nxt = other.sentences[min(other.answer_idx + 2, len(other.sentences) - 1)]
            reply = f"{_join(L1, main)}\n{nxt}"
        out.append(_row(split, f"mixed_{where}", xq[L1][q].question, reply, L1, L1, L1,
                        src(q, L1, L2) | {"inserted_lang": L2}, position=where,
                        mixed_language=True))
    return out


# languages whose names mark a question as "naming a language" (CLDR names via langcodes, so the
# set does not depend on the name matcher it helps to evaluate)
_NAMED = ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "pl", "zh", "ja", "ko", "ar", "he",
          "hi", "tr", "el", "ro", "vi", "la", "sv", "da", "fi", "hu", "cs", "uk")


def _names_rx(lang: str) -> re.Pattern:
    import langcodes

    names = {langcodes.Language.get(x).display_name(lang).lower() for x in _NAMED}
    names = sorted((n for n in names if len(n) >= 2), key=len, reverse=True)
    if lang == "zh":
        return re.compile("|".join(re.escape(n) for n in names))
    # a name and its inflections / adjectives ("French", "französischsprachige", "latín")
    stems = (n if len(n) <= 6 else n[:len(n) - 2] for n in names)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in stems) + r")", re.IGNORECASE)


def _talk_real(xq, qids, split: str, n: int) -> list[dict]:
    """Real XQuAD questions that name a language, paired with their native answer."""
    out = []
    for L in LANGS:
        rx = _names_rx(L)
        for q in qids:
            it = xq[L][q]
            if rx.search(it.question) and len(out) < n:
                out.append(_row(split, "talk_real", it.question, _join(L, answer(it)), L, L, L,
                                {"xquad_id": q, "langs": [L]}))
    return out


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return p


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]



def main(argv: list[str] | None = None) -> None:
    """``python -m forensics.testing.langdev XQUAD_DIR OUT.jsonl [--seed N] [--per-kind N]``"""
    import argparse

    ap = argparse.ArgumentParser(description="build the language development set")
    ap.add_argument("xquad_dir")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=80)
    a = ap.parse_args(argv)
    rows = build(a.xquad_dir, a.seed, a.per_kind)
    print(f"{len(rows)} rows -> {write_jsonl(rows, a.out)}")


__all__ = ["FINDINGS", "LANGS", "build", "load", "answer", "sentences", "write_jsonl",
           "read_jsonl", "main"]

if __name__ == "__main__":
    main()
