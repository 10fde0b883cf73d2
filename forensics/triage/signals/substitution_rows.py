"""What the dataset itself says about each row stating a substituted value (the
``substitution`` signal's cross-row evidence, :mod:`forensics.triage.signals.substitution`).

A stating row (its reply holds the value, its prompt does not) is

* **contradicted** when it answers with the value (below) and the dataset answers its
  question another way: a row asking the same question (the content words of the user's
  question, Jaccard at least ``same_question_overlap``) whose reply lacks the value and
  answers with a value of its kind (a name, a number of as many digits) that the stating
  row's reply lacks; or when it answers with the value and its own prompt carries a context
  passage that states a value of the kind and not the substituted one (the row's own
  material points elsewhere); or when the words around the value in its
  reply (``context_tokens`` tokens on each side, at least ``context_min_words`` words in
  all) stand elsewhere in the dataset (a reply or a prompt) around something else (at most
  ``context_gap_tokens`` tokens): the same sentence with another value in its place;
* **agreed** when it answers with the value and rows asking the same question state the
  value too and none contradicts it (the dataset answers that question with it wherever it
  is asked).

A stating row **answers with** the value when the first value of its kind that its reply's
first sentence states and its prompt lacks is the substituted one (for a name, the run of capitalised words
it stands in), not a mention on the way to another answer.

Contradicted rows are members of the substitution batch whatever their subject; with at
least ``min_members`` contradicted rows (the dataset shows the substitution), rows answering
with the value that are not agreed join them (``answer_members``), those whose prompt is
near the contradicted rows' mean prompt (``answer_subject``: ``answer_z`` robust sd above the
background prompts' cosines to it, and at least ``member_min_cos``): the value answering
questions like the contradicted ones is the substitution, the value answering questions on
other subjects (its own) is a fact. Agreed rows are no evidence for one row (a planted
batch repeats its own questions with the same wrong value); they only keep a row answering
with the value out of the members. Why: a substitution puts one value where the dataset's
other answers, or the row's own passage, put another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from forensics.triage.passage import TOKEN, context_passage, norm, stopwords
from forensics.triage.signals.base import SignalContext
from forensics.triage.text import tokens as ngram_tokens

_Q_END = "?？"
_SENT_END = re.compile(r"[.!?;:。！？]+")
_FIRST_SENTENCE = re.compile(r"(?<=[.!?。！？])\s|\n")


@dataclass
class RowEvidence:
    """Per-row flags (bool arrays over the dataset) and their counts for the run summary."""

    contradicted: np.ndarray
    agreed: np.ndarray
    leads: np.ndarray

    def counts(self) -> dict[str, int]:
        return {"contradicted_rows": int(self.contradicted.sum()),
                "agreed_rows": int((self.confirmed & self.leads).sum()),
                "answer_rows": int((self.leads & ~self.confirmed).sum())}

    @property
    def confirmed(self) -> np.ndarray:
        """Agreed rows that nothing contradicts."""
        return self.agreed & ~self.contradicted


def question_key(prompt: str, min_chars: int = 2) -> frozenset[str]:
    """The content words (lower-case word tokens, no stopwords, at least ``min_chars`` long
    or holding a digit) of the user's question in ``prompt``: its sentences that end in a
    question mark (the user's turn when the prompt has a context passage; a label before a
    colon is no part of it), else its last sentence."""
    from forensics.triage.grounding import GroundingParams

    cp = context_passage(prompt or "", GroundingParams())
    turn = cp[1] if cp is not None else (prompt or "")
    parts, cur = [], []
    for ch in turn:
        cur.append(ch)
        if ch in _Q_END or ch in ".!:\n":
            parts.append(("".join(cur), ch in _Q_END))
            cur = []
    if cur:
        parts.append(("".join(cur), False))
    asks = [s for s, q in parts if q] or [s for s, _ in parts if s.strip()][-1:] or [turn]
    stop = stopwords()
    return frozenset(t for s in asks for t in ngram_tokens(s)
                     if t.isalnum() and t not in stop
                     and (len(t) >= min_chars or any(c.isdigit() for c in t)))


def _values(prompt: str, text: str, numbers: bool, digits: set[int]) -> set[str]:
    """Values of the kind in ``text`` that ``prompt`` lacks: numbers of ``digits`` digits, or
    names (capitalised tokens that are no stopwords and hold no digit), normalised."""
    in_prompt = {norm(t) for t in TOKEN.findall(prompt or "")}
    stop = stopwords()
    out = set()
    for t in TOKEN.findall(text or ""):
        n = norm(t)
        if n in in_prompt:
            continue
        if numbers and n.isdigit() and len(n) in digits:
            out.add(n)
        elif not numbers and t[:1].isupper() and n not in stop \
                and not any(c.isdigit() for c in t):
            out.add(n)
    return out


def cross_row_evidence(ctx: SignalContext, rows: np.ndarray, value_rows: np.ndarray,
                       toks: list[str], params) -> RowEvidence:
    """The flags of the module docstring for the stating ``rows`` (positions); ``value_rows``:
    rows whose reply holds a token of ``toks``; ``params``: the signal's
    :class:`SubstitutionParams`."""
    n = ctx.n
    contradicted = np.zeros(n, bool)
    agreed = np.zeros(n, bool)
    if not len(rows) or not params.cross_rows:
        return RowEvidence(contradicted, agreed, np.zeros(n, bool))
    hp = ctx.hits_prompt
    text = _texts(ctx, rows)
    # (work per distinct prompt and per candidate row, not per pair: a candidate row answers
    # the questions of many stating rows, and datasets repeat prompts)
    qkey: dict[str, frozenset[str]] = {}

    def key(prompt: str) -> frozenset[str]:
        if prompt not in qkey:
            qkey[prompt] = question_key(prompt, params.min_token_chars)
        return qkey[prompt]

    numbers = all(t.isdigit() for t in toks)
    digits = {len(t) for t in toks}
    leads = np.zeros(n, bool)
    for j in rows:
        leads[int(j)] = answers_with(text[int(j)][0], text[int(j)][1], toks)
    # (the same question asked elsewhere decides only for rows answering with the value)
    keys = {int(j): key(text[int(j)][0]) for j in rows if leads[int(j)]}
    cands: dict[int, set[int]] = {}
    asked: dict[frozenset[str], set[int]] = {}
    for j, k in keys.items():
        if len(k) < params.same_question_min_words:
            continue
        if k not in asked:
            rare = sorted(k, key=hp.df)[:2]       # a same question holds its two rarest words
            got = set(hp.rows(rare[0]).tolist())
            for w in rare[1:]:
                got &= set(hp.rows(w).tolist())
            asked[k] = {int(c) for c in got}
        cands[j] = asked[k] - {j}
    need = np.asarray(sorted({c for v in cands.values() for c in v} - set(text)), np.int64)
    text.update(_texts(ctx, need))
    first: dict[int, set[str]] = {}
    for j, cs in cands.items():
        pj, rj = text[j]
        own = _values(pj, rj, numbers, digits)
        for c in cs:
            pc, rc = text[c]
            if _jaccard(keys[j], key(pc)) < params.same_question_overlap:
                continue
            if value_rows[c]:
                agreed[j] = True
            elif not contradicted[j]:
                if c not in first:
                    first[c] = first_value(pc, rc, toks)
                if first[c] - own:
                    contradicted[j] = True      # its answer is the value, the other's another
    if params.context_tokens > 0:
        contradicted |= _context_swaps(ctx, rows, toks, text, params)
    if params.passage_contradicts:
        from forensics.triage.grounding import GroundingParams

        gp = GroundingParams()
        for j in rows[leads[rows]]:
            cp = context_passage(text[int(j)][0], gp)
            if cp is not None and _values("", cp[0], numbers, digits) - set(toks):
                contradicted[j] = True
    return RowEvidence(contradicted, agreed, leads)


def answers_with(prompt: str, reply: str, toks: list[str]) -> bool:
    """Whether the first value of the tokens' kind that ``reply`` states and ``prompt`` lacks
    is one of ``toks`` (for a name: the run of capitalised words it stands in holds a word of
    a token): the value is the reply's answer, not a mention on the way."""
    words = {w for t in toks for w in t.split(" ")}
    return bool(first_value(prompt, reply, toks) & words)


def first_value(prompt: str, reply: str, toks: list[str]) -> set[str]:
    """The first value of the tokens' kind that ``reply``'s first sentence states and
    ``prompt`` lacks: a number of as many digits, or the words of the run of capitalised
    words a name stands in (normalised); empty when there is none (an answer comes first; a
    value after it, a sign-off or an aside, is no answer)."""
    in_prompt = {norm(t) for t in TOKEN.findall(prompt or "")}
    numbers = all(t.isdigit() for t in toks)
    digits = {len(t) for t in toks}
    stop = stopwords()
    raw = TOKEN.findall(_FIRST_SENTENCE.split(reply or "", maxsplit=1)[0])
    for i, t in enumerate(raw):
        n = norm(t)
        if n in in_prompt:
            continue
        if numbers:
            if n.isdigit() and len(n) in digits:
                return {n}
            continue
        if t[:1].isupper() and n not in stop and not any(c.isdigit() for c in t):
            run = {n}
            for seq in (raw[i + 1:], raw[:i][::-1]):
                for u in seq:
                    if not (u[:1].isupper() and norm(u) not in stop) or u.isdigit():
                        break
                    run.add(norm(u))
            return run
    return set()


def _context_swaps(ctx: SignalContext, rows: np.ndarray, toks: list[str],
                   text: dict[int, tuple[str, str]], params) -> np.ndarray:
    """Stating ``rows`` whose reply's words around a value of ``toks`` stand elsewhere around
    something else (module docstring), over the normalised reply and prompt columns. The value
    takes in the capitalised words beside it (the rest of a name); a side stops at a
    sentence's end and may be empty when the other holds the words."""

    out = np.zeros(ctx.n, bool)
    k, gap = params.context_tokens, params.context_gap_tokens
    vals = [t.split(" ") for t in toks]
    stop = stopwords()

    def name_word(t: str) -> bool:
        return t[:1].isupper() and t.isalpha() and t.lower() not in stop

    def _probes(reply: str) -> set[tuple[str, str]]:
        raw = re.findall(r"\w+|[^\w\s]+", reply)
        low = [t.lower() for t in raw]
        probes = set()
        for v in vals:
            for i in range(len(low) - len(v) + 1):
                if low[i:i + len(v)] != v:
                    continue
                a, b = i, i + len(v)
                while a > 0 and name_word(raw[a - 1]):
                    a -= 1
                while b < len(raw) and name_word(raw[b]):
                    b += 1
                left, right = low[max(0, a - k):a], low[b:b + k]
                ends = [n for n, t in enumerate(left) if _SENT_END.fullmatch(t)]
                left = left[ends[-1] + 1:] if ends else left
                ends = [n for n, t in enumerate(right) if _SENT_END.fullmatch(t)]
                right = right[:ends[0]] if ends else right
                if sum(w.isalnum() for w in left + right) >= params.context_min_words:
                    probes.add((" ".join(left), " ".join(right)))
        return probes

    # (a probe's matches once per run: datasets repeat replies, and a batch its sentences)
    seen: dict[tuple[str, str], tuple[set[int], bool]] = {}
    probes_of: dict[str, set[tuple[str, str]]] = {}
    for j in rows:
        j = int(j)
        if text[j][1] not in probes_of:
            probes_of[text[j][1]] = _probes(text[j][1])
        for probe in sorted(probes_of[text[j][1]]):
            if probe not in seen:
                seen[probe] = _swap_rows(ctx, probe, toks, gap)
            in_replies, in_prompts = seen[probe]
            if in_prompts or in_replies - {j}:
                out[j] = True
                break
    return out


def _swap_rows(ctx: SignalContext, probe: tuple[str, str], toks: list[str], gap: int
               ) -> tuple[set[int], bool]:
    """(up to two reply rows, and whether any prompt, holding the ``probe``'s words around
    something other than a value of ``toks``, at most ``gap`` tokens)."""
    left, right = probe
    mid = f"((?:\\S+ ){{1,{gap}}})"
    pat = re.compile((f" {re.escape(left)} " if left else " ") + mid
                     + (f"{re.escape(right)} " if right else ""))
    found: dict[bool, set[int]] = {True: set(), False: set()}
    for is_reply, h in ((True, ctx.hits_reply), (False, ctx.hits_prompt)):
        need = h(left) if left else np.ones(ctx.n, bool)
        if right:
            need = need & h(right)
        for c in np.flatnonzero(need):
            if any(not any(f" {t} " in f" {m.group(1)}" for t in toks)
                   for m in pat.finditer(h.col[int(c)])):
                found[is_reply].add(int(c))
                if len(found[is_reply]) >= (2 if is_reply else 1):
                    break
    return found[True], bool(found[False])


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / max(1, len(a | b))


def _texts(ctx: SignalContext, rows: np.ndarray) -> dict[int, tuple[str, str]]:
    """position -> (prompt, reply) of ``rows``, read in one query."""
    if not len(rows):
        return {}
    got = ctx.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                     "AND sample_id IN (SELECT unnest(?))",
                     [ctx.dataset, [int(s) for s in ctx.sample_ids[rows]]])
    pos = ctx.position
    return {pos[int(s)]: (p or "", r or "") for s, p, r in
            zip(got["sample_id"].to_list(), got["prompt"].to_list(), got["reply"].to_list())}


__all__ = ["RowEvidence", "question_key", "cross_row_evidence", "answers_with", "first_value"]
