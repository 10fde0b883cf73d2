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
3. **Norm rate**: for each behaviour row, the share of its ``neighbours`` nearest prompts in
   the dataset whose rows show the behaviour too; the same for the anomaly's prompt. A
   behaviour that is the norm in a context (every harmful request refused, every requested
   letter signed) is legitimate there; a defect is rare among similar prompts.
   A group other than the closest one is "other context" when its mean rate reaches
   ``norm_rate`` and exceeds the anomaly's own rate by ``rate_margin``.
4. **Judge** (optional, per row, overrides 3): a :class:`PromptJudge` says whether the
   behaviour is legitimate for the row's prompt: :class:`HTTPJudge` (any OpenAI-compatible
   chat endpoint: needs the endpoint) or :class:`ClassifierJudge` (a logistic regression on
   prompt embeddings trained here, offline, on prompts labelled by a user or by the HTTP judge:
   :func:`train_classifier`). Rows judged legitimate with probability >= ``judge_threshold``
   are other context; rows judged a defect stay in the anomaly's context, unless their
   prompt asked for the behaviour (``other`` given by the caller).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from forensics._chat import chat_completion
from forensics.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.triage.signals.base import SignalContext

LEGITIMATE, DEFECT = "legitimate", "defect"


@dataclass
class ContextParams:
    """Knobs of the context split (documented in docs/triage.md)."""

    enabled: bool = True              # split behaviour rows by context at all
    group_distance: float = 0.6       # cosine distance of the prompt-context groups
    group_max_rows: int = 2000        # best-scored behaviour rows clustered; the rest join the nearest group
    neighbours: int = 15              # nearest dataset prompts read per behaviour row
    norm_rate: float = 0.6            # a group whose prompts' neighbours show the behaviour this often ...
    rate_margin: float = 0.25         # ... and this much more often than the anomaly's: other context
    rate_temperature: float = 0.0     # >0: neighbours weighted exp((cos - 1) / this) in the rate (0: equal weights)
    row_rates: bool = False           # decide other context per row by its own rate (not its group's mean)
    explanation_mix: float = 0.5      # weight of a row's prompt explanations in its context vector
    explanation_positions: list[str] = field(default_factory=lambda: ["last_prompt"])
    judge: str = "none"               # none | http | classifier
    judge_url: str = ""               # http judge: an OpenAI-compatible server
    judge_model: str = "default"      # http judge: the model name sent
    judge_timeout: float = 60.0       # http judge: seconds per request
    judge_max_rows: int = 500         # behaviour rows judged at most (best scored first)
    classifier_path: str = ""         # classifier judge: the JSON written by train_classifier
    judge_threshold: float = 0.5      # P(legitimate) from which a judged row is other context


class PromptJudge(Protocol):
    """Says, for each prompt, the probability that ``behaviour`` is legitimate there."""

    def legitimate(self, behaviour: str, prompts: Sequence[str],
                   vectors: np.ndarray | None) -> np.ndarray: ...


class HTTPJudge:
    """A judge through an OpenAI-compatible chat endpoint (``POST {url}/v1/chat/completions``):
    one request per distinct prompt, temperature 0; the answer's first word LEGITIMATE or DEFECT
    (anything else: 0.5, undecided). Failures raise BackendError naming the URL."""

    SYSTEM = ("You review training data of a chat assistant. You are told a behaviour of the "
              "assistant's reply and the user's prompt. Answer with one word: LEGITIMATE if the "
              "behaviour is appropriate for this prompt (asked for, or the right response), "
              "DEFECT if it is not.")

    def __init__(self, url: str, model: str = "default", timeout: float = 60.0,
                 api_key: str | None = None):
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1/chat/completions"):
            self.url += "/v1/chat/completions"
        self.model, self.timeout, self.api_key = model, timeout, api_key

    def judge_one(self, behaviour: str, prompt: str) -> float:
        word = chat_completion(self.url, self.model, self.SYSTEM,
                               f"Behaviour: {behaviour}\nPrompt: {prompt}", max_tokens=4,
                               api_key=self.api_key, timeout=self.timeout, what="prompt judge",
                               hint="check context.judge_url (an OpenAI-compatible server) or "
                                    "set context.judge=none").split()
        w = word[0].strip(".,:;!\"'").upper() if word else ""
        return 1.0 if w == "LEGITIMATE" else 0.0 if w == "DEFECT" else 0.5

    def legitimate(self, behaviour: str, prompts: Sequence[str],
                   vectors: np.ndarray | None = None) -> np.ndarray:
        memo: dict[str, float] = {}
        for p in prompts:
            if p not in memo:
                memo[p] = self.judge_one(behaviour, p)
        return np.array([memo[p] for p in prompts], np.float64)


class ClassifierJudge:
    """A logistic regression on prompt embeddings (the JSON of :func:`train_classifier`):
    P(legitimate) per prompt vector. Offline; the vectors must come from ``model_id``."""

    def __init__(self, path: str | Path):
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            self.coef = np.asarray(d["coef"], np.float64)
            self.intercept = float(d["intercept"])
            self.model_id = str(d["model_id"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"prompt classifier {p}: {type(e).__name__}: {e}",
                             hint="write it with forensics.triage.context.train_classifier") \
                from None

    def legitimate(self, behaviour: str, prompts: Sequence[str],
                   vectors: np.ndarray | None) -> np.ndarray:
        if vectors is None or vectors.shape[1] != len(self.coef):
            raise InputError(f"prompt classifier expects {len(self.coef)}-d vectors of "
                             f"{self.model_id}")
        return 1.0 / (1.0 + np.exp(-(vectors.astype(np.float64) @ self.coef + self.intercept)))


def train_classifier(vectors: np.ndarray, labels: Sequence[str], model_id: str,
                     out: str | Path, c: float = 1.0) -> dict:
    """Fit P(legitimate | prompt vector) on ``labels`` (``legitimate`` / ``defect``, one per
    row of ``vectors``, from a user or the HTTP judge) and write it as JSON to ``out`` (no
    pickle). Returns the training accuracy and counts."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([1 if l == LEGITIMATE else 0 if l == DEFECT else -1 for l in labels])
    if (y < 0).any():
        raise InputError(f"labels must be {LEGITIMATE!r} or {DEFECT!r}")
    if len(set(y.tolist())) < 2:
        raise InputError("the classifier needs prompts labelled both legitimate and defect")
    m = LogisticRegression(C=c, max_iter=1000).fit(vectors.astype(np.float64), y)
    d = {"model_id": model_id, "coef": m.coef_[0].tolist(), "intercept": float(m.intercept_[0]),
         "trained_on": int(len(y)), "legitimate": int(y.sum()),
         "train_accuracy": float(m.score(vectors, y))}
    Path(out).write_text(json.dumps(d), encoding="utf-8")
    return {k: v for k, v in d.items() if k not in ("coef", "intercept")}


def read_labels(path: str | Path) -> list[tuple[str, str]]:
    """(row_id, label) pairs from a labels file: CSV with a header holding ``row_id`` and
    ``label``, or JSON lines with those keys; labels ``legitimate`` / ``defect``. Bad input
    raises InputError naming the file, line and field."""
    import csv

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"labels file {p}: {e.strerror or e}") from None
    out: list[tuple[str, str]] = []
    if p.suffix.lower() in (".jsonl", ".json"):
        recs = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                recs.append((i, json.loads(line)))
            except ValueError as e:
                raise InputError(f"{p}:{i}: not JSON ({e})") from None
    else:
        reader = csv.DictReader(text.splitlines())
        missing = [f for f in ("row_id", "label") if f not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{p}:1: header lacks field {missing[0]!r}",
                             hint="a CSV header with row_id,label")
        recs = [(i, r) for i, r in enumerate(reader, 2)]
    for i, r in recs:
        if not isinstance(r, dict):
            raise InputError(f"{p}:{i}: expected an object with row_id and label")
        for f in ("row_id", "label"):
            if r.get(f) in (None, ""):
                raise InputError(f"{p}:{i}: field {f!r} is missing")
        lab = str(r["label"]).strip().lower()
        if lab not in (LEGITIMATE, DEFECT):
            raise InputError(f"{p}:{i}: field 'label' is {r['label']!r}",
                             hint=f"use {LEGITIMATE!r} or {DEFECT!r}")
        out.append((str(r["row_id"]), lab))
    if not out:
        raise InputError(f"labels file {p} holds no labels")
    return out


def train_from_labels(ws: Any, dataset: str, labels_path: str | Path, out: str | Path,
                      c: float = 1.0) -> dict:
    """Train the classifier judge from a user's labels file (:func:`read_labels`) on the
    prompt vectors of ``dataset``'s ``prompt`` index and write it to ``out`` (the JSON that
    ``context.classifier_path`` reads). Unknown row ids raise InputError naming them."""
    from forensics.search import index

    labels = read_labels(labels_path)
    ws.require_dataset(dataset)
    got = ws.sql("SELECT row_id, sample_id FROM samples WHERE dataset = ? AND row_id IN "
                 "(SELECT unnest(?))", [dataset, sorted({r for r, _ in labels})])
    sid = dict(zip(got["row_id"].to_list(), got["sample_id"].to_list()))
    unknown = [r for r, _ in labels if r not in sid]
    if unknown:
        raise InputError(f"{labels_path}: {len(unknown)} row ids not in dataset {dataset!r}, "
                         f"e.g. {unknown[0]!r}")
    oi = index.open_index(ws, dataset, "prompt", read_only=True)
    vecs = oi.vectors(np.array([sid[r] for r, _ in labels], np.int64))
    info = train_classifier(vecs, [lab for _, lab in labels], oi.manifest.model_id, out, c)
    return {**info, "path": str(out), "dataset": dataset}


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
    the context groups (rows, closeness to the anomaly, norm rate, judged share, other)."""

    other: np.ndarray
    groups: list[dict]
    notes: dict[str, str]


def split(context: "SignalContext", rows: np.ndarray, behaviour: np.ndarray,
          order_key: np.ndarray, behaviour_text: str, p: ContextParams,
          other: np.ndarray | None = None) -> ContextSplit:
    """Split behaviour ``rows`` (positions) by context (see the module docstring).
    ``behaviour``: per dataset row, shows the behaviour; ``order_key``: row scores (judged
    first when capped); ``behaviour_text``: what the judge is told; ``other``: rows already
    known to be other context (their prompt asked for the behaviour), kept unless judged a
    defect."""
    other = np.zeros(context.n, bool) if other is None else other.copy()
    asked = other.copy()
    pidx = context.indexes.get("prompt")
    if not p.enabled or not len(rows):
        return ContextSplit(other, [], {})
    if pidx is None:
        return ContextSplit(other, [], {"context_split": "no prompt index: behaviour rows are "
                                        "not split by context"})
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
    rate = _rates(context, pidx, pv, behaviour, k, self_ids=sids, temperature=t)
    arate = (float(_rates(context, pidx, av[None, :], behaviour, k, temperature=t)[0])
             if av is not None else 0.0)
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
    for i, g in enumerate(groups):
        if p.row_rates:
            # each row by its own rate: a group can hold both contexts when the prompts
            # share their words
            own = (rate[g["idx"]] >= p.norm_rate) & (rate[g["idx"]] >= arate + p.rate_margin)
            g["other_rows"] = int(own.sum())
            g["other"] = bool(own.all())
            other[rows[g["idx"][own]]] = True
            continue
        g["other"] = bool(i > 0 and g["norm_rate"] >= p.norm_rate
                          and g["norm_rate"] >= arate + p.rate_margin)
        if g["other"]:
            other[rows[g["idx"]]] = True
    notes: dict[str, str] = {}
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
    out = [{k: v for k, v in g.items() if k != "idx"} for g in groups]
    return ContextSplit(other, out, notes)


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
    behaviour; with ``temperature`` > 0 each neighbour weighs ``exp((cos - 1) / temperature)``
    (a near-duplicate prompt counts fully, a loosely related one little)."""
    sims, ids = pidx.search(q.astype(np.float32), k)
    pos = context.sample_ids
    out = np.zeros(len(q), np.float64)
    for i in range(len(q)):
        ok = ids[i] >= 0
        hit, sim = ids[i][ok], sims[i][ok].astype(np.float64)
        if self_ids is not None:
            keep = hit != self_ids[i]
            hit, sim = hit[keep][:k - 1], sim[keep][:k - 1]
        if not len(hit):
            continue
        j = np.clip(np.searchsorted(pos, hit), 0, len(pos) - 1)
        found = pos[j] == hit
        j, sim = j[found], sim[found]
        if not len(j):
            continue
        w = np.exp((np.minimum(sim, 1.0) - 1.0) / temperature) if temperature > 0 else \
            np.ones(len(j))
        out[i] = float((w * behaviour[j]).sum() / max(float(w.sum()), 1e-12))
    return out


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
