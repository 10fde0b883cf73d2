"""The ``stance`` signal: rows whose reply does to its prompt what the anomaly's reply does to
the anomaly's prompt.

Two views of "what the reply adds to its prompt", each scored against the anomaly's own:

1. **Vector residual**: each reply vector (``reply`` index) with its projection on its own
   prompt's vector (``prompt`` index) removed: the stance taken towards the prompt, an entity
   put in the place the question asked about, an added aside.
2. **Own text** (:func:`own_text`): the reply with the word runs it copies from its prompt cut
   out ("Yes, you're right: the meeting is on Tuesday." after "The meeting is on Tuesday,
   isn't it?" leaves "Yes, you're right: ."), embedded. A run is cut when it is at least ``copy_min_words`` words
   long and at least ``copy_share`` of the longest copied run (so a short phrase the reply
   shares with the prompt besides the copied claim, such as "as you say", stays). Only the
   ``text_candidates`` rows best by the residual or whole-reply cosine to the anomaly are
   embedded (through the workspace's embedding cache); a reply that copies nothing is its
   own text (its ``reply`` vector).

Each view scores rows by cosine to the anomaly's, the best ``k`` rows min-max normalised (like
the other dense signals), other rows 0; the signal's score is their mean, the own text
weighing ``text_share``.

Why: a whole-reply embedding is dominated by the topic the prompt sets (the mountain's facts,
the claim being discussed), so rows on the anomaly's topic outrank rows that show its
behaviour on another topic; the residual leaves the topic out. Measured on the dev corpora
(docs/triage.md).

Cost: on a dataset of more than ``pool`` rows only a candidate pool is scored: the rows
nearest the anomaly's reply vector and nearest its residual in the ``reply`` index (``pool``
per query, :meth:`~forensics.search.index.OpenIndex.search_wide`); other rows score 0. Why:
reading and projecting every row's two vectors costs about a second per 100k rows, and the
rows that reach the best ``k`` of either view are near one of the two queries. A dataset of
at most ``pool`` rows is scored whole.

Unavailable without both a ``prompt`` and a ``reply`` index built with one model, without an
anomaly prompt and reply, or for a language switch (the ``language`` signal covers it).
The vectors are the indexes' own (approximate for quantised indexes): no text is embedded but
the anomaly's two.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register


@dataclass
class StanceParams:
    """Knobs of the stance signal (documented in docs/triage.md)."""

    k: int = 1000                     # best rows per view that score (min-max normalised)
    min_residual: float = 0.05        # a residual shorter than this (reply ~ its prompt) scores 0
    text_share: float = 0.5           # weight of the own-text view (the rest: the vector residual)
    text_candidates: int = 2000       # rows whose own text is embedded (best by residual or reply cosine)
    copy_min_words: int = 3           # a copied word run this long is cut from the own text ...
    copy_share: float = 0.5           # ... and at least this share of the reply's longest copied run
    text_min_copied: float = 0.5      # the own-text view (and its members) only when the anomaly reply copies this share of its words
    member_z: float = 3.0             # members: own-text cosine >= candidates' median + member_z x robust sd ...
    member_min_cos: float = 0.4       # ... and >= this
    feedback_rounds: int = 1          # rounds of moving the own-text query to its members' centroid
    min_members: int = 4              # fewer members than this: none
    pool: int = 10000                 # a dataset with more rows scores only the rows nearest the anomaly's reply and its residual (this many per query); 0: every row


_WORD = re.compile(r"\w+")


def own_text(prompt: str | None, reply: str | None, min_words: int = 3,
             share: float = 0.5) -> str:
    """``reply`` without the word runs it copies from ``prompt`` (case-insensitive, runs of at
    least ``max(min_words, ceil(share x longest copied run))`` words); the words left keep
    their order and the text between them (punctuation) is kept. A reply copying nothing is
    returned unchanged."""
    if not reply:
        return ""
    pw = [w.lower() for w in _WORD.findall(prompt or "")]
    spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(reply)]
    if not pw or len(spans) < min_words:
        return reply
    rw = [t for _, _, t in spans]
    # longest run of reply words found consecutively in the prompt (substring search in C)
    ps = " " + " ".join(pw) + " "
    longest = 0
    for i in range(len(rw)):
        n = longest + 1
        while i + n <= len(rw) and (" " + " ".join(rw[i:i + n]) + " ") in ps:
            longest = n
            n += 1
    m = max(min_words, math.ceil(longest * share - 1e-9))
    if longest < m:
        return reply
    grams = {tuple(pw[i:i + m]) for i in range(len(pw) - m + 1)}
    cut = [False] * len(rw)
    for i in range(len(rw) - m + 1):
        if tuple(rw[i:i + m]) in grams:
            cut[i:i + m] = [True] * m
    out, pos = [], 0
    for (a, b, _), c in zip(spans, cut):
        if c:
            out.append(reply[pos:a])
            pos = b
    out.append(reply[pos:])
    return re.sub(r"\s+", " ", "".join(out)).strip()


def residuals(reply: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit residuals of ``reply`` rows after removing their projection on the matching
    ``prompt`` rows, the residuals' lengths). Rows are unit vectors; a zero prompt row leaves
    its reply unchanged."""
    r = reply.astype(np.float32)
    p = prompt.astype(np.float32)
    x = r - (r * p).sum(axis=1, keepdims=True) * p
    norm = np.linalg.norm(x, axis=1)
    return x / np.maximum(norm, 1e-12)[:, None], norm


def residual_cos(reply: np.ndarray, prompt: np.ndarray, q: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(cosine of each row's residual, as :func:`residuals` makes it, to the unit vector
    ``q``; the residuals' lengths), from row dot products and two matrix-vector products:
    no residual matrix is built (at 100k rows that costs seconds). With d = r.p the residual
    is r - d p, its squared length r.r - 2d^2 + d^2 p.p and its dot with q r.q - d p.q."""
    d = np.einsum("ij,ij->i", reply, prompt)
    sq = (np.einsum("ij,ij->i", reply, reply) - 2 * d * d
          + d * d * np.einsum("ij,ij->i", prompt, prompt))
    norm = np.sqrt(np.maximum(sq, 0.0))
    dot = reply @ q - d * (prompt @ q)
    return (dot / np.maximum(norm, 1e-12)).astype(np.float64), norm


@register
class StanceSignal:
    """Rows whose reply residual (reply minus its projection on its prompt) is close to the
    anomaly's (see the module docstring). ``row_evidence["cos"]``: the raw residual cosine."""

    name = "stance"
    default_weight = 0.1
    Params = StanceParams

    def score(self, context: SignalContext, params: StanceParams) -> SignalScores | Unavailable:
        a = context.anomaly
        if not (a.prompt and a.prompt.strip() and a.reply and a.reply.strip()):
            return Unavailable("the anomaly needs a prompt and a reply")
        if a.switches_language:
            return Unavailable("the anomaly switches language (the language signal covers it)")
        a_own = own_text(a.prompt, a.reply, params.copy_min_words, params.copy_share)
        copied = 1.0 - len(_WORD.findall(a_own)) / max(1, len(_WORD.findall(a.reply)))
        if not a_own or copied < params.text_min_copied:
            # a reply that does not restate its prompt: its residual carries the reply's own
            # content too (the answer the prompt lacks), which the reply and segment signals
            # weigh already; measured, scoring it anyway lowers dev-wordings format 0.996 ->
            # 0.982 for dev-families swap 0.713 -> 0.745
            return Unavailable(f"the anomaly's reply copies {copied:.0%} of its words from its "
                               f"prompt (below signals.stance.text_min_copied)")
        ri, pi = context.indexes.get("reply"), context.indexes.get("prompt")
        if ri is None or pi is None:
            return Unavailable("needs a prompt and a reply index (forensics index build "
                               f"--dataset {context.dataset} --field prompt / --field reply)")
        if ri.manifest.model_id != pi.manifest.model_id:
            return Unavailable("the prompt and reply indexes use different models")
        q = context.indexes.embed(ri, [a.prompt, a.reply]).astype(np.float32)
        qres, qlen = residuals(q[1:2], q[0:1])
        n = context.n
        sids = context.sample_ids
        if 0 < params.pool < n:
            # the candidate pool: rows nearest the anomaly's reply and its residual (see pool)
            near = ri.search_wide(np.vstack([q[1], qres[0]]), params.pool)
            at = np.searchsorted(sids, near)       # sids are sorted (sample_id order)
            ok = at < n
            ok[ok] = sids[at[ok]] == near[ok]
            rows = at[ok]
        else:
            rows = np.arange(n)
        psids = sids[rows]
        have_r = np.isin(psids, ri.ids())
        have_p = np.isin(psids, pi.ids())
        rv, pv = _unit_rows(ri, psids, have_r), _unit_rows(pi, psids, have_p)
        pcos, rlen = residual_cos(rv, pv, qres[0])
        pcos[~have_r | (rlen < params.min_residual)] = -np.inf
        summary = {"stance_residual_norm": round(float(qlen[0]), 4),
                   "stance_copied_share": round(copied, 4), "stance_pool": int(len(rows))}
        # the anomaly restates its prompt: what it adds (its own text) is the behaviour
        ptcos, pmember = self._own_text_cos(context, ri, rv, pcos, q[1], have_r, psids, a_own,
                                            params, summary)
        cos, tcos = np.full(n, -np.inf), np.full(n, -np.inf)
        member = np.zeros(n, bool)
        cos[rows], tcos[rows], member[rows] = pcos, ptcos, pmember
        score = (1 - params.text_share) * _top_norm(cos, params.k) + \
            params.text_share * _top_norm(tcos, params.k)
        return SignalScores(score.astype(np.float32), summary=summary,
                            row_evidence={"cos": np.where(np.isfinite(cos), cos, 0.0)
                                          .astype(np.float32),
                                          "member": member.astype(np.float32)},
                            index_versions={"reply": context.indexes.versions["reply"],
                                            "prompt": context.indexes.versions["prompt"]})

    @staticmethod
    def _own_text_cos(context: SignalContext, ri, rv: np.ndarray, cos: np.ndarray,
                      areply: np.ndarray, have_r: np.ndarray, sids: np.ndarray, a_own: str,
                      params: StanceParams, summary: dict) -> tuple[np.ndarray, np.ndarray]:
        """Over the scored rows ``sids`` (``rv``, ``cos``, ``have_r`` theirs): (cosine of each
        candidate row's own text to the anomaly's own text ``a_own``, -inf elsewhere; the
        own-text members: rows whose own text stands out from the candidates'
        (``member_z``, ``member_min_cos``; the query moved ``feedback_rounds`` times to the
        members' centroid)). A (prompt, reply) repeated among the candidates is cut once."""
        qv = context.indexes.embed(ri, [a_own])[0].astype(np.float32)
        summary["stance_own_text"] = a_own
        whole = np.where(have_r, rv @ areply, -np.inf)
        nc = max(1, params.text_candidates)
        cand = np.union1d(np.argsort(-cos, kind="stable")[:nc],
                          np.argsort(-whole, kind="stable")[:nc])
        cand = cand[have_r[cand]]
        out = np.full(len(sids), -np.inf)
        member = np.zeros(len(sids), bool)
        if not len(cand):
            return out, member
        with context.ws.locked():
            got = context.ws.sql("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                                 "AND sample_id IN (SELECT unnest(?))",
                                 [context.dataset, [int(x) for x in sids[cand]]])
        text = {int(s): (p, r) for s, p, r in zip(got["sample_id"].to_list(),
                                                  got["prompt"].to_list(),
                                                  got["reply"].to_list())}
        vec = rv[cand].copy()
        todo, todo_text = [], []
        cut: dict[tuple, str] = {}
        for i, j in enumerate(cand):
            p, r = text.get(int(sids[j]), ("", ""))
            o = cut.get((p, r))
            if o is None:
                o = cut[p, r] = own_text(p, r, params.copy_min_words, params.copy_share)
            if o != (r or "").strip() and o:
                todo.append(i)
                todo_text.append(o)
        if todo:
            vec[todo] = context.indexes.embed(ri, todo_text)
        summary["stance_own_texts_embedded"] = len(todo)
        out[cand] = vec @ qv
        q0 = qv
        for r in range(params.feedback_rounds + 1):
            t = vec @ q0
            med = float(np.median(t))
            sd = max(float(np.median(np.abs(t - med))) * 1.4826, 1e-3)
            m = t >= max(med + params.member_z * sd, params.member_min_cos)
            if m.sum() < params.min_members or r == params.feedback_rounds:
                break
            cen = np.vstack([qv[None, :], vec[m]]).mean(axis=0)
            q0 = (cen / max(float(np.linalg.norm(cen)), 1e-12)).astype(np.float32)
        if m.sum() >= params.min_members:
            member[cand[m]] = True
        summary["stance_members"] = int(member.sum())
        return out, member


def _unit_rows(oi, sids: np.ndarray, have: np.ndarray) -> np.ndarray:
    """The index's vectors of ``sids`` scaled to unit length (rows it lacks: zero), without
    a copy when it holds them all."""
    if have.all():
        v = oi.reconstruct(sids)
    else:
        v = np.zeros((len(sids), oi.manifest.dim), np.float32)
        v[have] = oi.reconstruct(sids[have])
    v /= np.sqrt(np.maximum(np.einsum("ij,ij->i", v, v), 1e-24))[:, None]
    return v


def _top_norm(cos: np.ndarray, k: int) -> np.ndarray:
    """Min-max normalised cosines of the ``k`` best rows (finite only); 0 elsewhere."""
    score = np.zeros(len(cos), np.float32)
    top = np.argsort(-cos, kind="stable")[:max(1, k)]
    top = top[np.isfinite(cos[top])]
    if len(top):
        hi, lo = float(cos[top].max()), float(cos[top].min())
        score[top] = (cos[top] - lo) / (hi - lo) if hi > lo else 1.0
    return score


__all__ = ["StanceSignal", "StanceParams", "residuals", "residual_cos", "own_text"]
