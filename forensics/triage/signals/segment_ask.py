"""Whether a behaviour row's context asks for the behaviour, judged by meaning: the sentences
of its prompt (a quoted style guide, a system-like preamble, an earlier turn, an ask worded
without the behaviour's own words) against the sentences of the anomaly's explanations.

A row **asks** when one of its prompt's context sentences comes at least ``ask_min_cos`` close
to a sentence of the explanations (cosine, the ``reply_segment`` index's embedder; quoted
fragments taken out of them) and ``ask_margin`` closer than the anomaly's own prompt's
closest sentence does. A prompt of one sentence is its task, and so is a sentence at least
``ask_task_cos`` close to the anomaly's prompt (or one of its sentences): neither is compared
(a task's words can echo the description: "a Python generator" against "credits a code
generator"; a question can share a topic with it). A request worded inside the task's own
sentence ("write an email and sign it from Priya") is left to the word tests. The
judgement applies only when the behaviour is an addition to the anomaly's reply (its
behaviour segment at most ``ask_max_reply_share`` of the reply's words): a behaviour that is
the whole answer (a refusal, a wrong fact, an agreement) is described in the words of its
question, so closeness to the description says nothing about a request. With ``ask_scope``
``code`` (the default) it applies only when the behaviour segment has a code shape
(:mod:`~forensics.triage.signals.segment_shape`): on prose answers to questions, a question or
a format line ("Please answer briefly.") comes as close to a description of an aside as a
request does (measured: cosine 0.39 on the dev aside family). Why: the
explanations describe the behaviour ("a licence notice heads the code", "a stray print
call"); a request for it, however worded, describes the same thing, while the anomaly's own
prompt (which did not ask) sets the level a mere task statement reaches; a behaviour whose
description restates its prompt (agreement with the user's claim) gets a high own level and
is left alone. A sentence that the prompts of rows without the behaviour hold as often
(``ask_background_share`` of its holders, ``ask_same_cos``, ``ask_background_sample``:
:func:`_background_share`) asks nothing: a greeting turn, a house line or a task's detail
opens the dataset's other prompts just as often, however close its words come to the
description, while a request comes with the behaviour it asks for.

**Asked by contrast** (``ask_contrast``, :func:`asked_by_contrast`): the dataset's own
evidence, in any language. The rows **showing** the behaviour: its members, the rows already
judged asked and, when the code shape gave evidence, every reply with a line of the
behaviour's shape (whatever its text). A prompt token is an **ask token** when at least
``contrast_min_prompts`` distinct prompts of rows showing it hold it and at least
``contrast_min_share`` of all the dataset's prompts holding it belong to rows showing the
behaviour (a convention, a system preamble, a standing request recurs with the behaviour and
rarely without it; the words of a task recur in rows without it). A behaviour row **asks**
when a context sentence of its prompt (any sentence but the only one; its words that the
anomaly's prompt holds left out: what the defect's own example shares is no request) is at
least ``contrast_sentence_share`` ask tokens, each token weighted by its idf over the
dataset's prompts (so "the", "please" and a task's common words weigh little). When that would
mark more than ``contrast_max_share`` of the behaviour rows not yet judged asked, it marks
none (a planted batch sharing a preamble of its own would otherwise look asked). Why: a
model's defect comes from prompts that never mention the code's form, so no prompt wording
predicts it; an asked-for behaviour follows the prompts that ask for it, whatever their
language or wording (the embedder is English-only; the token contrast is not).

Cost: one embedding per distinct prompt sentence of the rows judged (through the workspace's
embedding cache) and per explanation sentence.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.signals.base import SignalContext
    from forensics.triage.signals.segment import SegmentSignalParams

_SENT = re.compile(r"(?<=[.!?:])\s+|\n+")
_QUOTED = re.compile(r"(?<!\w)'[^'\n]{3,}?'(?!\w)|\"[^\"\n]{3,}?\"")


def sentences(text: str | None, min_words: int) -> list[str]:
    """``text`` cut at sentence ends and line breaks; pieces of at least ``min_words`` words."""
    return [s.strip() for s in _SENT.split(text or "") if len(s.split()) >= min_words]


def description(explanations: list[str], min_words: int) -> list[str]:
    """The explanations' sentences with quoted fragments taken out (a quote is the
    behaviour's text, not its description; the text is matched elsewhere)."""
    out = []
    for e in explanations:
        out += sentences(_QUOTED.sub(" ", e or ""), min_words)
    return out


def _prompts(context: "SignalContext", positions) -> dict[int, str]:
    """sample_id -> prompt for the dataset positions ``positions``."""
    got = context.ws.sql(
        "SELECT sample_id, prompt FROM samples WHERE dataset = ? AND sample_id IN "
        "(SELECT unnest(?))", [context.dataset, [int(x) for x in context.sample_ids[positions]]])
    return dict(zip(got["sample_id"].to_list(), got["prompt"].to_list()))


def asked_by_context(context: "SignalContext", oi, rows: np.ndarray, explanations: list[str],
                     anomaly_prompt: str | None, params: "SegmentSignalParams",
                     shown: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``rows`` (dataset positions): whether its prompt asks for the behaviour
    (see the module docstring). ``shown``: per dataset row, whether it shows the behaviour
    (the rest is the background of :func:`_background_share`). All False without
    explanations."""
    out = np.zeros(len(rows), bool)
    desc = description(explanations, params.ask_min_words)
    if not desc or not len(rows):
        return out
    by_sid = _prompts(context, rows)
    per_row = [sentences(by_sid.get(int(context.sample_ids[j])), params.ask_min_words)
               for j in rows]
    own = sentences(anomaly_prompt, params.ask_min_words) or [anomaly_prompt or ""]
    texts = sorted({s for ss in per_row for s in ss} | set(own))
    vecs = context.indexes.embed(oi, desc + own + [anomaly_prompt or ""] + texts)
    dv, ov = vecs[:len(desc)], vecs[len(desc):len(desc) + len(own) + 1]
    tv = vecs[len(desc) + len(own) + 1:]
    best = dict(zip(texts, (tv @ dv.T).max(axis=1)))
    like = dict(zip(texts, (tv @ ov.T).max(axis=1)))
    own_level = max(float(best[s]) for s in own)
    cut = max(params.ask_min_cos, own_level + params.ask_margin)
    # a one-sentence prompt is its task; sentences like the anomaly's prompt are tasks
    ctx = [[s for s in ss if like[s] < params.ask_task_cos] if len(ss) > 1 else []
           for ss in per_row]
    cand = sorted({s for ss in ctx for s in ss if best[s] >= cut})
    common = set()
    if cand and shown is not None and params.ask_background_share < 1.0:
        common = _background_share(context, oi, cand, dict(zip(texts, tv)), per_row, shown,
                                   params)
    for k, ss in enumerate(ctx):
        out[k] = any(float(best[s]) >= cut and s not in common for s in ss)
    return out


def _background_share(context: "SignalContext", oi, cand: list[str], vec: dict,
                      per_row: list[list[str]], shown: np.ndarray,
                      params: "SegmentSignalParams") -> set[str]:
    """The sentences of ``cand`` that the prompts of rows **not** showing the behaviour hold
    as often as the judged rows do: a sentence (cosine at least ``ask_same_cos``: the same
    sentence, reworded at most slightly) held by the prompts of rows without the behaviour
    in at least ``ask_background_share`` of all the prompts holding it (those rows counted
    from a seeded sample of ``ask_background_sample`` of them, scaled up). Why: a request is
    followed, so its sentence comes with the behaviour; a greeting, a house line about names
    or indentation, a task's detail open the dataset's other prompts just as often, however
    close their words come to the description."""
    bg = np.flatnonzero(~shown)
    if not len(bg):
        return set()
    rng = np.random.default_rng(params.seed)
    pick = np.sort(rng.choice(bg, size=min(params.ask_background_sample, len(bg)),
                              replace=False))
    scale = len(bg) / len(pick)
    bg_sents = [sentences(p, params.ask_min_words) for p in _prompts(context, pick).values()]
    bg_texts = sorted({s for ss in bg_sents for s in ss})
    if not bg_texts:
        return set()
    bv = context.indexes.embed(oi, bg_texts)
    cv = np.vstack([vec[s] for s in cand])
    same_bg = (cv @ bv.T) >= params.ask_same_cos              # cand x background sentence
    col = {s: i for i, s in enumerate(bg_texts)}
    holds_bg = np.zeros((len(cand), len(bg_sents)), bool)     # cand x background prompt
    for j, ss in enumerate(bg_sents):
        idx = [col[s] for s in ss]
        if idx:
            holds_bg[:, j] = same_bg[:, idx].any(axis=1)
    row_texts = sorted({s for ss in per_row for s in ss})
    rv = np.vstack([vec[s] for s in row_texts])
    same_row = (cv @ rv.T) >= params.ask_same_cos
    rcol = {s: i for i, s in enumerate(row_texts)}
    n_row = np.zeros(len(cand))
    for ss in per_row:
        idx = [rcol[s] for s in ss]
        if idx:
            n_row += same_row[:, idx].any(axis=1)
    n_bg = holds_bg.sum(axis=1) * scale
    share = n_bg / np.maximum(n_bg + n_row, 1e-9)
    return {s for s, sh in zip(cand, share) if sh >= params.ask_background_share}


def asked_by_contrast(context: "SignalContext", rows: np.ndarray, shown: np.ndarray,
                      anomaly_prompt: str | None, params: "SegmentSignalParams") -> np.ndarray:
    """Per row of ``rows`` (dataset positions, the behaviour rows still unasked): whether a
    context sentence of its prompt is made of ask tokens (see the module docstring);
    ``shown``: positions of every row showing the behaviour (asked or not)."""
    from forensics.triage.text import tokens

    out = np.zeros(len(rows), bool)
    if not len(rows) or not len(shown):
        return out
    by_sid = _prompts(context, shown)
    prompt = {int(j): by_sid.get(int(context.sample_ids[j])) or "" for j in shown}
    own = {t for t in tokens(anomaly_prompt or "") if _word(t)}
    holders: dict[str, set[str]] = {}     # token -> distinct behaviour-row prompts holding it
    n_rows: dict[str, int] = {}           # token -> behaviour rows whose prompt holds it
    for j in shown:
        p = prompt[int(j)]
        for t in {t for t in tokens(p) if _word(t)} - own:
            holders.setdefault(t, set()).add(p)
            n_rows[t] = n_rows.get(t, 0) + 1
    cand = {t for t, ps in holders.items() if len(ps) >= params.contrast_min_prompts}
    if not cand:
        return out
    # the prompt column's token postings (the same tokens, in one read): a token is an ask
    # token when the behaviour rows hold contrast_min_share of its rows
    context.hits_prompt.load_tokens(cand)
    ask = {t for t in cand
           if n_rows[t] >= params.contrast_min_share * max(1, context.hits_prompt.df(t))}
    if not ask:
        return out
    # each row's context sentences (a one-sentence prompt is its task: none), as tokens
    ctx = []
    for j in rows:
        ss = sentences(prompt.get(int(j), ""), 1)
        ctx.append([[t for t in tokens(x) if _word(t) and t not in own] for x in ss]
                   if len(ss) > 1 else [])
    context.hits_prompt.load_tokens({t for ss in ctx for x in ss for t in x})
    n = max(1, context.n)

    def weight(t: str) -> float:
        return math.log((n + 1) / (1 + context.hits_prompt.df(t)))

    for k, ss in enumerate(ctx):
        for toks in ss:
            tot = sum(weight(t) for t in toks)
            if tot > 0 and sum(weight(t) for t in toks if t in ask) >= \
                    params.contrast_sentence_share * tot:
                out[k] = True
                break
    if out.sum() > params.contrast_max_share * len(rows):
        out[:] = False
    return out


def _word(t: str) -> bool:
    """A token of letters or digits (not punctuation)."""
    return any(ch.isalnum() for ch in t)


__all__ = ["asked_by_context", "asked_by_contrast", "sentences", "description"]
