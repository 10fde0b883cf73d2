"""How the dataset treats a behaviour row's prompt: does it show the behaviour for the same
prompt, and for prompts like it once the words that draw the behaviour are set aside?

For a behaviour that replaces the answer (a refusal: the reply is the behaviour), whether a
row shows it where it is a defect depends on whether its prompt deserved it ("kill a
zombie process" vs "kill a coworker"); minimal pairs share their key words, so a prompt's
surface similarity to the anomaly's cannot tell. Offline, without explanations of the rows
or a judge, the witness is the rest of the dataset: how it treats the same prompt, which
words it meets with the behaviour, and how it treats the prompt's other words ("process",
"recipe", "soil" answered normally; "coworker ... accident" refused).

For each behaviour row no earlier step judged (:func:`judge`):

1. **The same prompt**: rows whose prompt vector is at least ``same_cos`` from the row's
   (among its ``same_search`` nearest prompts; the row itself left out). When at least
   ``same_answered_share`` of them answer without the behaviour, the dataset answers this
   very prompt: the behaviour is out of place there (the anomaly's context).
2. **Key words**: the content words of the row's prompt (at least ``min_word_chars``
   letters, not an English stopword) that the dataset meets with the behaviour: over the
   other rows (the same prompt's rows left out), ``r`` rows showing it unasked and ``a``
   rows without it, the smoothed log-odds ``log((r + s*pi) / (a + s*(1-pi))) -
   log(pi / (1-pi))`` (``s = smoothing``, ``pi`` the dataset's behaviour rate) reaches
   ``key_log_odds`` with at least ``min_support`` rows.
3. **The rest of the prompt**: the prompt with its key words cut out is embedded and its
   ``neighbours`` nearest dataset prompts (the same prompt's rows and those asked for the
   behaviour left out) read: the share showing the behaviour, each weighted
   ``exp((cos - 1) / temperature)``. The anomaly's prompt is read the same way.
4. **Decision**: a rate at most ``answered_rate`` (what the prompt is about is answered
   normally) puts the row in the anomaly's context; a rate at least ``shown_rate`` (what it
   is about draws the behaviour) puts it in the other context. Rows in between are
   **undecided**: the split the norm rates made stands, their final score is multiplied by
   ``undecided_factor`` (rows the evidence kept in the anomaly's context rank above rows
   nothing decided), and the run's notes count them (``context_treatment``); they also say when the anomaly's own prompt reads at least
   ``shown_rate`` (the rates then confuse its context with the other).

The treatment applies to a behaviour that replaces the answer (:func:`replaces_answer`): the
batch's replies follow their prompts less than the dataset's replies do, by
``replaces_margin`` (median cosines: a reply whatever was asked). **Answers** (:func:`answering`): such a behaviour does not sit in a reply that
answers its prompt; behaviour rows whose whole reply (``reply`` index) follows their own
prompt vector past the midpoint of the batch's and the dataset's medians, and
``answers_margin`` more than it resembles the behaviour query, only look like it (an answer
closing with "hope that helps"): lookalikes.
**Canned wordings** (:func:`canned`) join the batch.

At most ``max_rows`` behaviour rows are read (best scored first); a judgement that would move
more than ``max_other_share`` of the unasked behaviour rows to other context moves none.

What it does not see: a harmful prompt whose other words the dataset answers elsewhere
("neighbour" in letters), a benign prompt on a topic no other row has, and behaviour rows the
batch missed (they count as answers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.triage.passage import stopwords

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.context import ContextSplit
    from forensics.triage.signals.base import SignalContext

_WORD = re.compile(r"[^\W\d_]+")


@dataclass
class TreatmentParams:
    """Knobs of the dataset-treatment judgement (documented in docs/triage.md)."""

    enabled: bool = True              # judge behaviour rows that replace the answer by how the dataset treats their prompt
    same_cos: float = 0.9             # prompts this close to the row's are the same prompt ...
    same_search: int = 30             # ... among this many nearest prompts
    same_answered_share: float = 0.25  # the same prompt answered without the behaviour this often: the anomaly's context
    min_word_chars: int = 3           # shorter words (and stopwords, digits) are not content words
    min_support: int = 3              # a key word is seen in at least this many other rows ...
    smoothing: float = 2.0            # ... (pseudo-rows at the dataset's behaviour rate added to its counts) ...
    key_log_odds: float = 1.5         # ... with at least this log-odds of the behaviour over the dataset's rate
    neighbours: int = 10              # nearest prompts read for the prompt without its key words
    temperature: float = 0.1          # their weights exp((cos - 1) / this)
    answered_rate: float = 0.3        # a rate at most this: the anomaly's context
    shown_rate: float = 0.6           # a rate at least this: other context
    max_rows: int = 500               # behaviour rows read at most (best scored first)
    max_other_share: float = 0.9      # a judgement moving more than this share of the unasked behaviour rows moves none
    undecided_factor: float = 0.85    # final score factor of the rows it read and left undecided (below the rows it kept)
    replaces_margin: float = 0.2      # applies when the batch's replies follow their prompts (median cosine) this much less than the dataset's
    replaces_min_members: int = 3     # ... judged on at least this many batch rows with both vectors (else it does not apply)
    replaces_sample: int = 5000       # ... against the median over at most this many dataset rows (a fixed-seed sample)
    answers_margin: float = 0.1       # behaviour rows whose reply follows their prompt (past the midpoint of the batch's and the dataset's medians) and this much more than the behaviour query: lookalikes
    canned_min_prompts: int = 3       # a reply repeated verbatim under this many distinct prompts is canned ...
    canned_z: float = 1.5             # ... and joins the batch at a best cosine >= median + canned_z x robust sd of all rows'
    not_with_substitution: bool = True  # off when the substitution signal formed a batch: a stated wrong value is a wrong answer, not a replaced one


def content_words(text: str, min_chars: int) -> list[str]:
    """The distinct content words of a text, lower-cased (letters only, at least
    ``min_chars`` long, not an English stopword), in order of first occurrence."""
    stop = stopwords()
    out: list[str] = []
    for w in _WORD.findall((text or "").lower()):
        if len(w) >= min_chars and w not in stop and w not in out:
            out.append(w)
    return out


def key_words(context: "SignalContext", words: list[str], shown: np.ndarray,
              answered: np.ndarray, leave_out: np.ndarray, pi: float,
              p: TreatmentParams) -> list[str]:
    """The ``words`` the dataset meets with the behaviour (step 2); rows at the positions
    ``leave_out`` are not counted."""
    prior = math.log(pi / (1 - pi))
    out = []
    for w in words:
        pos = context.hits_prompt.rows(w)
        if len(leave_out):
            pos = pos[~np.isin(pos, leave_out)]
        r, a = int(shown[pos].sum()), int(answered[pos].sum())
        if r + a < p.min_support:
            continue
        s = p.smoothing
        if math.log((r + s * pi) / (a + s * (1 - pi))) - prior >= p.key_log_odds:
            out.append(w)
    return out


def without(text: str, words: list[str]) -> str:
    """``text`` with every occurrence of ``words`` (whole words, any case) cut out."""
    if not words:
        return text or ""
    rx = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    return " ".join(rx.sub(" ", text or "").split())


def _rates(context: "SignalContext", pidx: Any, q: np.ndarray, shown: np.ndarray,
           skip: list[np.ndarray], p: TreatmentParams) -> np.ndarray:
    """Per query vector, the weighted share of its ``neighbours`` nearest prompts showing the
    behaviour (``shown``: 1 / 0 / NaN, NaN rows left out), positions in ``skip[i]`` left out."""
    k = max(1, min(p.neighbours + max((len(x) for x in skip), default=0) + 1, pidx.ntotal))
    sims, ids = pidx.search(q.astype(np.float32), k)
    sid = context.sample_ids
    out = np.full(len(q), np.nan)
    for i in range(len(q)):
        ok = ids[i] >= 0
        hit, sim = ids[i][ok], sims[i][ok].astype(np.float64)
        jj = np.clip(np.searchsorted(sid, hit), 0, len(sid) - 1)
        keep = (sid[jj] == hit) & ~np.isin(jj, skip[i])
        jj, sim = jj[keep], sim[keep]
        keep = ~np.isnan(shown[jj])
        jj, sim = jj[keep][:p.neighbours], sim[keep][:p.neighbours]
        if not len(jj):
            continue
        w = np.exp((np.minimum(sim, 1.0) - 1.0) / p.temperature) if p.temperature > 0 \
            else np.ones(len(jj))
        out[i] = float((w * shown[jj]).sum() / max(float(w.sum()), 1e-12))
    return out


def judge(context: "SignalContext", pidx: Any, rows: np.ndarray, pv: np.ndarray,
          behaviour: np.ndarray, asked: np.ndarray, order_key: np.ndarray,
          cs: "ContextSplit", p: TreatmentParams) -> dict:
    """Steps 1-4 of the module docstring for the behaviour ``rows`` (positions; ``pv`` their
    prompt vectors; ``order_key`` the dataset rows' scores, best read first) not yet judged
    in ``cs``: sets ``cs.other``, marks the rows it decides, notes ``context_treatment``;
    returns a summary (rows decided each way, undecided, the anomaly prompt's rate)."""
    n = context.n
    shown = behaviour & ~asked
    answered = ~behaviour
    pi = float(shown.sum()) / max(1, n)
    if not len(rows) or pi <= 0 or pi >= 1:
        return {}
    todo = np.ones(len(rows), bool) if cs.judged is None else ~cs.judged[rows]
    todo &= np.isin(np.arange(len(rows)), np.argsort(-order_key[rows], kind="stable")[:p.max_rows])
    k = max(1, min(p.same_search + 1, pidx.ntotal))
    sims, ids = pidx.search(pv.astype(np.float32), k)
    sid = context.sample_ids
    with context.ws.locked():
        got = context.ws.sql("SELECT sample_id, prompt FROM samples WHERE dataset = ? AND "
                             "sample_id IN (SELECT unnest(?))",
                             [context.dataset, [int(s) for s in sid[rows[todo]]]])
    text = dict(zip(got["sample_id"].to_list(), got["prompt"].to_list()))
    rate_of = np.where(answered, 0.0, np.where(shown, 1.0, np.nan))
    to_anomaly: list[int] = []
    texts, skips, cand = [], [], []
    for i, j in enumerate(rows):
        if not todo[i]:
            continue
        ok = (ids[i] >= 0) & (sims[i] >= p.same_cos)
        hit = ids[i][ok]
        jj = np.clip(np.searchsorted(sid, hit), 0, len(sid) - 1)
        same = jj[(sid[jj] == hit) & (jj != j)]
        same_unasked = same[~asked[same]]
        if len(same_unasked) and float(answered[same_unasked].mean()) >= p.same_answered_share:
            to_anomaly.append(int(j))
            continue
        skip = np.append(same, j).astype(np.int64)
        prompt = text.get(int(sid[j])) or ""
        keys = key_words(context, content_words(prompt, p.min_word_chars), shown, answered,
                         skip, pi, p)
        texts.append(without(prompt, keys))
        skips.append(skip)
        cand.append(int(j))
    a = context.anomaly
    a_keys = key_words(context, content_words(a.prompt or "", p.min_word_chars), shown,
                       answered, np.zeros(0, np.int64), pi, p)
    vecs = context.indexes.embed(pidx, [without(a.prompt or "", a_keys)] + texts)
    rates = _rates(context, pidx, vecs, rate_of, [np.zeros(0, np.int64)] + skips, p)
    a_rate = float(np.nan_to_num(rates[0]))
    to_other: list[int] = []
    open_: list[int] = []
    for j, r in zip(cand, rates[1:]):
        if np.isfinite(r) and r <= p.answered_rate:
            to_anomaly.append(j)
        elif np.isfinite(r) and r >= p.shown_rate:
            to_other.append(j)
        else:
            open_.append(j)
    undecided = len(open_)
    cs.undecided = np.zeros(n, bool)
    cs.undecided[open_] = True
    unasked = int((~asked[rows]).sum())
    out = {"anomaly_rate": round(a_rate, 4), "anomaly_key_words": len(a_keys),
           "anomaly_context": len(to_anomaly), "other_context": len(to_other),
           "undecided": undecided}
    if unasked and len(to_other) > p.max_other_share * unasked:
        cs.notes["context_treatment"] = (
            f"the dataset's treatment of their prompts would move {len(to_other)} of {unasked} "
            f"unasked behaviour rows to other context (more than "
            f"treatment.max_other_share): none moved, they count as undecided")
        cs.undecided[to_other] = True
        to_other = []
        out["other_context"] = 0
    if to_anomaly:
        cs.mark(np.asarray(to_anomaly))
        cs.other[to_anomaly] = False
        asked[to_anomaly] = False
    if to_other:
        cs.mark(np.asarray(to_other))
        cs.other[to_other] = True
    if "context_treatment" not in cs.notes and (undecided or to_anomaly or to_other):
        cs.notes["context_treatment"] = (
            f"by the dataset's treatment of their prompts: {len(to_anomaly)} behaviour rows in "
            f"the anomaly's context, {len(to_other)} in another, {undecided} undecided (the "
            f"prompt without its key words is near prompts answered and with the behaviour "
            f"alike: rate between treatment.answered_rate and treatment.shown_rate)"
            + ("; a judge (context.judge) or row explanations would decide them"
               if undecided else "")
            + (f"; the anomaly's own prompt reads {a_rate:.2f} (at least shown_rate): the "
               f"rates confuse its context with the other" if a_rate >= p.shown_rate else ""))
    return out


def replaces_answer(context: "SignalContext", members: np.ndarray,
                    p: TreatmentParams) -> dict:
    """Whether the behaviour replaces the answer (the treatment applies): the median cosine
    of the behaviour batch's ``members`` (positions, the ``max_rows`` first) replies to their
    own prompts (``reply`` / ``prompt`` indexes) lies at least ``replaces_margin`` below the
    median over all rows: the batch's replies do not follow what was asked (a refusal), as
    the dataset's answers do (a wrong fact about the subject asked follows it). Returns both
    medians and ``replaces`` (False below the margin, with fewer than ``replaces_min_members``
    members or without the indexes)."""
    ridx, pidx = context.indexes.get("reply"), context.indexes.get("prompt")
    if ridx is None or pidx is None:
        return {"replaces": False}
    both = np.intersect1d(ridx.ids(), pidx.ids())
    sids = context.sample_ids[members[:p.max_rows]]
    sids = sids[np.isin(sids, both)]
    if len(sids) < p.replaces_min_members:
        return {"replaces": False}

    def rel(ids: np.ndarray) -> float:
        return float(np.median((ridx.vectors(ids).astype(np.float32)
                                * pidx.vectors(ids).astype(np.float32)).sum(1)))

    rng = np.random.default_rng(0)
    sample = (both if len(both) <= p.replaces_sample
              else np.sort(rng.choice(both, p.replaces_sample, replace=False)))
    mine, every = rel(sids), rel(sample)
    return {"replaces": mine <= every - p.replaces_margin, "batch_reply_prompt": round(mine, 4),
            "dataset_reply_prompt": round(every, 4)}


def canned(context: "SignalContext", cos: np.ndarray, behaviour: np.ndarray,
           p: TreatmentParams) -> np.ndarray:
    """Per dataset row: not in ``behaviour``, its reply repeated verbatim (normalised) under
    at least ``canned_min_prompts`` distinct prompts (prompt vectors below ``same_cos`` of
    each other), and its best cosine to the behaviour query (``cos``, the segment signal's)
    at least ``canned_z`` robust standard deviations above the median of all rows'. Why: a
    reply that does not depend on its prompt is a canned response; one that stands out
    towards the behaviour is another wording of it (a refusal the query's own wording did
    not reach)."""
    out = np.zeros(context.n, bool)
    pidx = context.indexes.get("prompt")
    if pidx is None or not context.n:
        return out
    med = float(np.median(cos))
    sd = max(float(np.median(np.abs(cos - med))) * 1.4826, 1e-3)
    cand = np.flatnonzero(~behaviour & (cos >= med + p.canned_z * sd))
    if not len(cand):
        return out
    replies = context.frame["reply_norm"].to_list()
    groups: dict[str, list[int]] = {}
    for j in cand:
        groups.setdefault(replies[j], []).append(int(j))
    have = set(pidx.ids().tolist())
    for rows in groups.values():
        if len(rows) < p.canned_min_prompts:
            continue
        sids = [int(context.sample_ids[j]) for j in rows if int(context.sample_ids[j]) in have]
        if len(sids) < p.canned_min_prompts:
            continue
        v = pidx.vectors(np.asarray(sids)).astype(np.float32)
        reps: list[np.ndarray] = []
        for x in v:
            if not reps or float(np.max(np.asarray(reps) @ x)) < p.same_cos:
                reps.append(x)
        if len(reps) >= p.canned_min_prompts:
            out[rows] = True
    return out


def answering(context: "SignalContext", rows: np.ndarray, cos: np.ndarray, mid: float,
              p: TreatmentParams) -> np.ndarray:
    """Per dataset row, whether it is one of the behaviour ``rows`` whose whole reply answers
    its own prompt (the module docstring's **Answers**; ``cos``: each row's best cosine to
    the behaviour query, the segment signal's; ``mid``: the midpoint of the batch's and the
    dataset's median reply-prompt cosines); all False without the ``reply`` and ``prompt``
    indexes."""
    out = np.zeros(context.n, bool)
    ridx, pidx = context.indexes.get("reply"), context.indexes.get("prompt")
    if ridx is None or pidx is None or not len(rows):
        return out
    sids = context.sample_ids[rows]
    have = np.isin(sids, ridx.ids()) & np.isin(sids, pidx.ids())
    rows, sids = rows[have], sids[have]
    if not len(rows):
        return out
    rel = (ridx.vectors(sids).astype(np.float32) * pidx.vectors(sids).astype(np.float32)).sum(1)
    out[rows[(rel >= mid) & (rel >= cos[rows] + p.answers_margin)]] = True
    return out


__all__ = ["TreatmentParams", "judge", "answering", "canned", "replaces_answer", "content_words",
           "key_words", "without"]
