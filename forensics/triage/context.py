"""Context split: among rows that show the anomaly's behaviour, which show it where it is a
defect (the anomaly's context) and which where it is legitimate ("same behaviour, other
context").

1. **Context vectors**: each behaviour row's prompt vector (the ``prompt`` index); when the
   dataset holds explanations of the row's prompt (``explanations`` rows at
   ``explanation_positions``), their embedding is mixed in with weight ``explanation_mix``.
   Why: two prompts with the same words and another intent ("kill a process" / "kill a
   person") embed close together; an explanation of what the prompt is about tells them apart.
2. **Groups**: the behaviour rows' context vectors clustered (average linkage, cosine distance
   ``group_distance``, over the ``group_max_rows`` best-scored rows; the others join the group
   of the nearest centroid); groups ranked by the cosine of their centroid to the anomaly's prompt.
3. **Norm rate** (only when the behaviour is most of the anomaly reply,
   ``norm_min_reply_share``; an added line is legitimate only where asked or judged so): for
   each behaviour row, the similarity-weighted share (``rate_temperature``) of its
   ``neighbours`` nearest prompts whose rows show the behaviour (rows asked for it left out,
   ``skip_asked``); the same for the anomaly's prompt. A behaviour that is the norm in a
   context (every harmful request refused) is legitimate there; a defect is rare among
   similar prompts. With ``row_rates`` a row is other context when its rate reaches
   ``norm_rate`` and exceeds the anomaly's by ``rate_margin``, and its **region rate** (the
   same share over its nearest *distinct other* prompts, near-duplicates within
   ``duplicate_cos`` merged) reaches ``region_rate``: a planted batch repeating a few prompts
   of its own is the norm only among those prompts. When that would move more than
   ``max_other_share`` of the unasked behaviour rows, none move (the whole-batch guard).
   Without ``row_rates``: a group other than the closest one is "other context" when its mean
   rate reaches ``norm_rate`` and exceeds the anomaly's own rate by ``rate_margin``.
4. **Grounding** (offline, :mod:`forensics.triage.grounding`; applies when the anomaly's reply
   asserts something its prompt's passage does not support): behaviour rows whose reply is
   grounded in their own prompt's passage are other context, and so are those whose prompt
   has no passage (``passage_context``: the defect is a reply its passage does not support);
   ungrounded ones are the anomaly's context, whatever step 3 and the caller's ``other``
   said.
4c. **The dataset's statements** (offline, ``consistency``, only for the behaviour rows that
   go along with what their user says without restating it, ``claims``, and that no step
   above judged;
   :mod:`forensics.triage.consistency`): a row whose claim another row of the dataset
   states is other context (the behaviour goes along with a claim that holds); a row whose
   topic the dataset answers otherwise stays in the anomaly's context; not used when the
   dataset states the anomaly's own claim.
4d. **The dataset's treatment** (offline, ``treatment``; a behaviour that replaces the answer,
   any reply share, rows no step above judged; :mod:`forensics.triage.treatment`): the same prompt answered,
   or the prompt's other words answered elsewhere: the anomaly's context; else other or undecided.
5. **Judge** (optional, per row, overrides 3 and 4; :mod:`forensics.triage.judge`) says whether the
   behaviour is legitimate for the row's prompt: :class:`HTTPJudge` (any OpenAI-compatible
   chat endpoint: needs the endpoint) or :class:`ClassifierJudge` (a logistic regression on
   prompt embeddings trained here, offline, on prompts labelled by a user or by the HTTP judge:
   :func:`train_classifier`). Rows judged legitimate with probability >= ``judge_threshold``
   are other context; rows judged a defect stay in the anomaly's context, unless their
   prompt asked for the behaviour (``other`` given by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.errors import InputError
from forensics.triage.judge import (DEFECT, LEGITIMATE, ClassifierJudge, HTTPJudge,  # noqa: F401
                                    PromptJudge, read_labels, train_classifier,
                                    train_from_labels)

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.treatment import TreatmentParams
    from forensics.triage.consistency import ConsistencyParams
    from forensics.triage.grounding import RowGrounding
    from forensics.triage.signals.base import SignalContext



@dataclass
class ContextParams:
    """Knobs of the context split (documented in docs/triage.md)."""

    enabled: bool = True              # split behaviour rows by context at all
    group_distance: float = 0.6       # cosine distance of the prompt-context groups
    group_max_rows: int = 2000        # best-scored behaviour rows clustered; the rest join the nearest group
    neighbours: int = 15              # nearest dataset prompts read per behaviour row
    norm_rate: float = 0.6            # a group whose prompts' neighbours show the behaviour this often ...
    rate_margin: float = 0.25         # ... and this much more often than the anomaly's: other context
    rate_temperature: float = 0.1     # >0: neighbours weighted exp((cos - 1) / this) in the rate (0: equal weights)
    row_rates: bool = True            # decide other context per row by its own rate (not its group's mean)
    region_rate: float = 0.4          # row_rates: the row's distinct other prompts must show the behaviour this often too (0: no region check)
    region_temperature: float = 0.1   # their weights exp((cos - 1) / this)
    duplicate_cos: float = 0.95       # prompts this similar count as one prompt (and as the row's own)
    region_search: int = 4            # the region rate reads region_search x neighbours (+1) nearest prompts
    norm_min_reply_share: float = 0.5  # norm rates only for a behaviour holding this share of the anomaly reply's words
    skip_asked: bool = True           # rows asked for the behaviour are left out of the rates
    max_other_share: float = 0.9      # a split moving more than this share of the unasked behaviour rows moves none
    explanation_mix: float = 0.5      # weight of a row's prompt explanations in its context vector
    explanation_positions: list[str] = field(default_factory=lambda: ["last_prompt"])
    judge: str = "none"               # none | http | classifier
    judge_url: str = ""               # http judge: an OpenAI-compatible server
    judge_model: str = "default"      # http judge: the model name sent
    judge_timeout: float = 60.0       # http judge: seconds per request
    judge_max_rows: int = 500         # behaviour rows judged at most (best scored first)
    classifier_path: str = ""         # classifier judge: the JSON written by train_classifier
    judge_threshold: float = 0.5      # P(legitimate) from which a judged row is other context
    explained_split: bool = True      # behaviour rows judged by their own explanations (explanation_own)
    explained_min_rows: int = 4       # ... when at least this many behaviour rows have explanations ...
    explained_separation: float = 0.6  # ... and the two-way cut of their cosines explains this share of their variance


def make_judge(p: ContextParams) -> PromptJudge | None:
    """The judge ``p.judge`` names (``None`` for ``none``)."""
    if p.judge == "none":
        return None
    if p.judge == "http":
        if not p.judge_url:
            raise InputError("context.judge=http needs context.judge_url")
        return HTTPJudge(p.judge_url, p.judge_model, p.judge_timeout)
    if p.judge == "classifier":
        if not p.classifier_path:
            raise InputError("context.judge=classifier needs context.classifier_path")
        return ClassifierJudge(p.classifier_path)
    raise InputError(f"unknown context.judge {p.judge!r}", hint="none | http | classifier")


@dataclass
class ContextSplit:
    """``other``: per row of the dataset, the behaviour shown in another context; ``groups``:
    the context groups (rows, closeness to the anomaly, norm rate, judged share, other);
    ``judged``: the rows whose context a judgement of their own decided (grounding, their
    explanations, the dataset's statements, a judge; ``None``: none)."""

    other: np.ndarray
    groups: list[dict]
    notes: dict[str, str]
    judged: np.ndarray | None = None
    treatment: dict = field(default_factory=dict)
    undecided: np.ndarray | None = None   # rows the treatment read and left undecided

    def mark(self, rows: np.ndarray) -> None:
        """Record ``rows`` (a mask or positions) as judged."""
        if self.judged is None:
            self.judged = np.zeros(len(self.other), bool)
        self.judged[rows] = True


def split(context: "SignalContext", rows: np.ndarray, behaviour: np.ndarray,
          order_key: np.ndarray, behaviour_text: str, p: ContextParams,
          other: np.ndarray | None = None, reply_share: float = 1.0,
          grounding: "RowGrounding | None" = None,
          explained: np.ndarray | None = None, claims: np.ndarray | None = None,
          consistency: "ConsistencyParams | None" = None,
          treatment: "TreatmentParams | None" = None) -> ContextSplit:
    """Split behaviour ``rows`` (positions) by context (see the module docstring).
    ``behaviour``: per dataset row, shows the behaviour; ``order_key``: row scores (judged
    first when capped); ``behaviour_text``: what the judge is told; ``other``: rows already
    known to be other context (their prompt asked for the behaviour), kept unless judged a
    defect or ungrounded; ``reply_share``: the share of the anomaly reply's words that its
    behaviour segment holds (below ``norm_min_reply_share`` the norm rates move no row);
    ``grounding``: the grounding judgement of the rows (``None``: it does not apply);
    ``explained``: per dataset row, the cosine of its own explanations to the anomaly's (NaN
    for rows without explanations; ``None``: no explanations, step 4b does not apply);
    ``claims``: per dataset row, the behaviour goes along with what its user says (step 4c
    judges those rows, with ``consistency``; ``None``: it does not apply); ``treatment``: the
    dataset's treatment of the rows' prompts judges the rows no step above judged, when the
    behaviour replaces the answer (step 4d; ``None``: it does not apply)."""
    other = np.zeros(context.n, bool) if other is None else other.copy()
    asked = other.copy()
    pidx = context.indexes.get("prompt")
    if not p.enabled or not len(rows):
        return ContextSplit(other, [], {})
    if pidx is None:
        cs = ContextSplit(other, [], {"context_split": "no prompt index: behaviour rows are "
                                      "not split by context"})
        _apply_grounding(rows, grounding, cs, asked)
        return cs
    sids = context.sample_ids[rows]
    have = np.isin(sids, pidx.ids())
    rows, sids = rows[have], sids[have]
    if not len(rows):
        return ContextSplit(other, [], {})
    pv = pidx.vectors(sids).astype(np.float32)
    cv = _mix_explanations(context, pidx, sids, pv, p)
    a = context.anomaly
    av = context.indexes.embed(pidx, [a.prompt])[0] if a.prompt and a.prompt.strip() else None
    # norm rate: the behaviour's share among each prompt's nearest dataset prompts
    k = max(1, min(p.neighbours + 1, pidx.ntotal))
    t = p.rate_temperature
    # the rates read rows showing the behaviour (1), not showing it (0); rows asked for it
    # (NaN, with skip_asked) say nothing about whether it is the norm unasked
    shown = behaviour.astype(np.float64)
    if p.skip_asked:
        shown[asked] = np.nan
    rate = _rates(context, pidx, pv, shown, k, self_ids=sids, temperature=t)
    arate = (float(_rates(context, pidx, av[None, :], shown, k, temperature=t)[0])
             if av is not None else 0.0)
    region = np.zeros(len(rows))
    if p.row_rates and p.region_rate > 0:
        kr = max(1, min(p.region_search * p.neighbours + 1, pidx.ntotal))
        region = _region_rates(context, pidx, pv, shown, kr, p)
    labels = _groups(cv, order_key[rows], p)
    groups = []
    for g in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == g)
        cen = cv[idx].mean(axis=0)
        cen /= max(float(np.linalg.norm(cen)), 1e-12)
        close = float(cen @ av) if av is not None else 0.0
        groups.append({"idx": idx, "rows": int(len(idx)), "closeness": round(close, 4),
                       "norm_rate": round(float(rate[idx].mean()), 4)})
    groups.sort(key=lambda g: -g["closeness"])
    notes: dict[str, str] = {}
    use_rates = reply_share >= p.norm_min_reply_share
    if not use_rates:
        notes["context_rates"] = (f"the behaviour is {reply_share:.2f} of the anomaly reply "
                                  f"(an addition to an answer, below "
                                  f"context.norm_min_reply_share): only a prompt that asks for "
                                  f"it, or a judge, makes it legitimate")
    if p.row_rates and use_rates:
        # each row by its own rate (a group can hold both contexts when the prompts share
        # their words), and by its region's: the behaviour is the norm for the prompt and for
        # other prompts like it (a planted batch repeating a few prompts of its own is the
        # norm only for those prompts)
        own = (rate >= p.norm_rate) & (rate >= arate + p.rate_margin)
        if p.region_rate > 0:
            own &= region >= p.region_rate
        unasked = ~asked[rows]
        moved = own & unasked
        if unasked.any() and moved.sum() > p.max_other_share * unasked.sum():
            # the anomaly says the behaviour is a defect somewhere: a split that leaves
            # (nearly) none of it in the anomaly's context took the batch for a norm
            notes["context_split"] = (f"the rates would move {int(moved.sum())} of "
                                      f"{int(unasked.sum())} unasked behaviour rows to other "
                                      f"context (more than context.max_other_share): none moved")
            own[:] = False
        for g in groups:
            g["other_rows"] = int(own[g["idx"]].sum())
            g["other"] = bool(own[g["idx"]].all())
            if p.region_rate > 0:
                g["region_rate"] = round(float(region[g["idx"]].mean()), 4)
        other[rows[own]] = True
    for i, g in enumerate(groups):
        if p.row_rates or not use_rates:
            continue
        g["other"] = bool(i > 0 and g["norm_rate"] >= p.norm_rate
                          and g["norm_rate"] >= arate + p.rate_margin)
        if g["other"]:
            other[rows[g["idx"]]] = True
    out = [{k: v for k, v in g.items() if k != "idx"} for g in groups]
    cs = ContextSplit(other, out, notes)
    _apply_grounding(rows, grounding, cs, asked)
    if explained is not None and p.explained_split:
        explanation_judgement(rows, explained, cs, asked, p)
    if claims is not None and consistency is not None and consistency.enabled:
        from forensics.triage.consistency import dataset_judgement

        dataset_judgement(context, rows, behaviour, claims, cs, asked, consistency)
    if treatment is not None and treatment.enabled:
        from forensics.triage.treatment import judge as treatment_judge

        cs.treatment = treatment_judge(context, pidx, rows, pv, behaviour, asked, order_key,
                                       cs, treatment)
    other = cs.other
    judge = make_judge(p)
    if judge is not None:
        top = np.argsort(-order_key[rows], kind="stable")[:p.judge_max_rows]
        with context.ws.locked():
            got = context.ws.sql("SELECT sample_id, prompt FROM samples WHERE dataset = ? AND "
                                 "sample_id IN (SELECT unnest(?))",
                                 [context.dataset, [int(s) for s in sids[top]]])
        text = dict(zip(got["sample_id"].to_list(), got["prompt"].to_list()))
        legit = judge.legitimate(behaviour_text, [text.get(int(s)) or "" for s in sids[top]],
                                 pv[top])
        judged = rows[top]
        cs.mark(judged)
        other[judged[legit >= p.judge_threshold]] = True
        other[judged[legit < p.judge_threshold]] = False
        other |= asked                # a prompt that asked for the behaviour stays asked
        for g in groups:
            inter = np.isin(top, g["idx"])
            g["judged_legitimate"] = (round(float((legit[inter] >= p.judge_threshold).mean()), 4)
                                      if inter.any() else None)
        if len(rows) > len(top):
            notes["context_judge"] = (f"judged the {len(top)} best of {len(rows)} behaviour "
                                      f"rows (context.judge_max_rows)")
        for o, g in zip(out, groups):
            o["judged_legitimate"] = g.get("judged_legitimate")
    cs.other = other
    return cs


def _apply_grounding(rows: np.ndarray, g: "RowGrounding | None", cs: ContextSplit,
                     asked: np.ndarray) -> None:
    """Step 4: grounded behaviour rows (and, with ``passage_context``, those without a
    passage) to other context, ungrounded ones to the anomaly's (``asked`` loses them too)."""
    if g is None:
        return
    sel = np.zeros(len(cs.other), bool)
    sel[rows] = True
    cs.mark(sel & (g.grounded | g.ungrounded | (g.no_passage if g.passage_context else False)))
    cs.other[sel & g.grounded] = True
    if g.passage_context:
        cs.other[sel & g.no_passage] = True
    cs.other[sel & g.ungrounded] = False
    asked[sel & g.ungrounded] = False


def two_way_cut(x: np.ndarray) -> tuple[float, float]:
    """(threshold, separation) of the best two-group cut of the values ``x`` (Otsu's: the cut
    maximising the between-group variance; separation = that variance / the total variance,
    0 when the values are all equal). Rows >= threshold form the upper group."""
    v = np.sort(np.asarray(x, np.float64))
    tot = float(v.var())
    if len(v) < 2 or tot <= 1e-12:
        return float(v[0]) if len(v) else 0.0, 0.0
    best, cut = -1.0, float(v[-1])
    n = len(v)
    for i in range(1, n):
        if v[i] == v[i - 1]:
            continue
        lo, hi = v[:i], v[i:]
        b = (i / n) * ((n - i) / n) * (float(hi.mean()) - float(lo.mean())) ** 2
        if b > best:
            best, cut = b, float(v[i])
    return cut, best / tot


def explanation_judgement(rows: np.ndarray, explained: np.ndarray, cs: ContextSplit,
                          asked: np.ndarray, p: ContextParams) -> None:
    """Step 4b: the behaviour ``rows`` with explanations (finite ``explained``: the cosine of
    their own explanations, their row's words cut out, to the anomaly's) cut two ways
    (:func:`two_way_cut`); when at least ``explained_min_rows`` have explanations and the cut
    explains ``explained_separation`` of their variance, the lower group is other context
    (their explanations judge them otherwise: a true premise where the anomaly's is false)
    and the upper group the anomaly's context (``asked`` loses them too). A note in
    ``cs.notes`` says what it did."""
    e = explained[rows]
    has = np.isfinite(e)
    if int(has.sum()) < max(2, p.explained_min_rows):
        return
    cut, sep = two_way_cut(e[has])
    if sep < p.explained_separation:
        cs.notes["context_explained"] = (f"explanations of {int(has.sum())} behaviour rows do "
                                         f"not split (separation {sep:.2f})")
        return
    lo = rows[has & (e < cut)]
    hi = rows[has & (e >= cut)]
    cs.mark(rows[has])
    cs.other[lo] = True
    cs.other[hi] = False
    asked[hi] = False
    cs.notes["context_explained"] = (f"{len(lo)} of {int(has.sum())} explained behaviour rows "
                                     f"judged otherwise by their explanations (cut {cut:.3f}, "
                                     f"separation {sep:.2f})")


def _groups(cv: np.ndarray, key: np.ndarray, p: ContextParams) -> np.ndarray:
    """Group labels of the context vectors: average linkage over the ``group_max_rows``
    best-scored rows (its memory grows with the square of the rows), the rest joining the
    group of the nearest centroid."""
    from forensics.triage.cluster import agglomerate

    if len(cv) == 1:
        return np.zeros(1, np.int64)
    head = np.sort(np.argsort(-key, kind="stable")[:max(1, p.group_max_rows)])
    lab_head = agglomerate(cv[head], p.group_distance)
    labels = np.full(len(cv), -1, np.int64)
    labels[head] = lab_head
    rest = np.flatnonzero(labels < 0)
    if len(rest):
        cen = np.vstack([cv[head][lab_head == g].mean(axis=0)
                         for g in range(int(lab_head.max()) + 1)])
        cen /= np.maximum(np.linalg.norm(cen, axis=1, keepdims=True), 1e-12)
        labels[rest] = np.argmax(cv[rest] @ cen.T, axis=1)
    return labels


def _rates(context: "SignalContext", pidx: Any, q: np.ndarray, behaviour: np.ndarray, k: int,
           self_ids: np.ndarray | None = None, temperature: float = 0.0) -> np.ndarray:
    """Share of each query's ``k`` nearest prompts (itself excluded) whose rows show the
    behaviour (``behaviour`` 1 / 0; NaN rows are left out); with ``temperature`` > 0 each
    neighbour weighs ``exp((cos - 1) / temperature)`` (a near-duplicate prompt counts fully, a
    loosely related one little)."""
    sims, ids = _search_distinct(pidx, q, k)
    pos = context.sample_ids
    # every query at once: the hits each query keeps, in rank order, flattened row by row
    keep = ids >= 0
    if self_ids is not None:
        keep &= ids != np.asarray(self_ids)[:, None]
        keep &= np.cumsum(keep, axis=1) <= k - 1          # its first k - 1 other hits
    j = np.clip(np.searchsorted(pos, ids), 0, len(pos) - 1) if len(pos) else np.zeros_like(ids)
    keep &= (pos[j] == ids) if len(pos) else False
    keep[keep] = ~np.isnan(behaviour[j[keep]])
    n_kept = keep.sum(axis=1)
    out = np.zeros(len(q), np.float64)
    if not n_kept.any():
        return out
    jj, sim = j[keep], sims[keep].astype(np.float64)
    w = np.exp((np.minimum(sim, 1.0) - 1.0) / temperature) if temperature > 0 else \
        np.ones(len(jj))
    wb = w * behaviour[jj]
    start = np.concatenate([[0], np.cumsum(n_kept)[:-1]])
    # per-query sums over its own hits, the queries with m hits as one [queries, m] matrix
    # (a row sum of m values adds them as a sum of those m values alone: the same result)
    for m in np.unique(n_kept[n_kept > 0]):
        rows = np.flatnonzero(n_kept == m)
        at = start[rows][:, None] + np.arange(m)
        out[rows] = wb[at].sum(axis=1) / np.maximum(w[at].sum(axis=1), 1e-12)
    return out


def _region_rates(context: "SignalContext", pidx: Any, q: np.ndarray, behaviour: np.ndarray,
                  k: int, p: ContextParams) -> np.ndarray:
    """The behaviour's share among each query's ``p.neighbours`` nearest *distinct* other
    prompts: hits within ``duplicate_cos`` of the query are its own prompt and left out, hits
    within ``duplicate_cos`` of a nearer hit count with it as one prompt (its rows' mean);
    each distinct prompt weighs ``exp((cos - 1) / region_temperature)`` (0: the same)."""
    # the result depends on the query vector only: rows with the same prompt share it
    q, inv = _distinct_rows(q)
    sims, ids = pidx.search(q, k)
    pos = context.sample_ids
    out = np.zeros(len(q), np.float64)
    uniq = np.unique(ids[ids >= 0])
    vec = dict(zip(uniq.tolist(), pidx.vectors(uniq).astype(np.float32))) if len(uniq) else {}
    for i in range(len(q)):
        ok = (ids[i] >= 0) & (sims[i] < p.duplicate_cos)
        hit, sim = ids[i][ok], sims[i][ok].astype(np.float64)
        j = np.clip(np.searchsorted(pos, hit), 0, len(pos) - 1)
        found = pos[j] == hit
        found[found] = ~np.isnan(behaviour[j[found]])
        hit, sim, j = hit[found], sim[found], j[found]
        reps: list[np.ndarray] = []
        rep_sim: list[float] = []
        rep_vals: list[list[float]] = []
        for h, s_, jj in zip(hit.tolist(), sim.tolist(), j.tolist()):
            v = vec[h]
            if reps:
                c = np.asarray(reps) @ v
                b = int(np.argmax(c))
                if c[b] >= p.duplicate_cos:
                    rep_vals[b].append(float(behaviour[jj]))
                    continue
            if len(reps) >= p.neighbours:
                continue
            reps.append(v)
            rep_sim.append(s_)
            rep_vals.append([float(behaviour[jj])])
        if not reps:
            continue
        t = p.region_temperature
        w = (np.exp((np.minimum(np.asarray(rep_sim), 1.0) - 1.0) / t) if t > 0
             else np.ones(len(reps)))
        share = np.array([np.mean(x) for x in rep_vals])
        out[i] = float((w * share).sum() / max(float(w.sum()), 1e-12))
    return out[inv]


def _distinct_rows(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~forensics.triage.cluster.distinct_rows` of ``q`` as float32 (the search's
    query type)."""
    from forensics.triage.cluster import distinct_rows

    return distinct_rows(np.asarray(q, dtype=np.float32))


def _search_distinct(pidx: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``pidx.search(q, k)`` with each distinct query vector searched once (rows with the
    same prompt have the same neighbours)."""
    uq, inv = _distinct_rows(q)
    if len(uq) == len(inv):
        return pidx.search(uq, k)
    sims, ids = pidx.search(uq, k)
    return sims[inv], ids[inv]


def _mix_explanations(context: "SignalContext", pidx: Any, sids: np.ndarray, pv: np.ndarray,
                      p: ContextParams) -> np.ndarray:
    """Prompt vectors with the rows' prompt explanations mixed in (rows without: unchanged)."""
    if p.explanation_mix <= 0 or not p.explanation_positions:
        return pv
    with context.ws.locked():
        got = context.ws.sql(
            "SELECT sample_id, text FROM explanations WHERE dataset = ? AND sample_id IN "
            "(SELECT unnest(?)) AND position IN (SELECT unnest(?)) ORDER BY sample_id, "
            "explanation_id", [context.dataset, [int(s) for s in sids], list(p.explanation_positions)])
    if not got.height:
        return pv
    texts: dict[int, list[str]] = {}
    for s, t in zip(got["sample_id"].to_list(), got["text"].to_list()):
        texts.setdefault(int(s), []).append(t)
    flat = [t for ts in texts.values() for t in ts]
    ev = context.indexes.embed(pidx, flat)
    out = pv.copy()
    pos = {int(s): i for i, s in enumerate(sids)}
    at = 0
    for s, ts in texts.items():
        m = ev[at:at + len(ts)].mean(axis=0)
        at += len(ts)
        v = (1 - p.explanation_mix) * out[pos[s]] + p.explanation_mix * m
        out[pos[s]] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


__all__ = ["ContextParams", "ContextSplit", "PromptJudge", "HTTPJudge", "ClassifierJudge",
           "train_classifier", "train_from_labels", "read_labels", "make_judge", "split", "LEGITIMATE", "DEFECT"]
