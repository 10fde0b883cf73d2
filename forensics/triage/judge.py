"""Prompt judges of the context split: whether a behaviour is legitimate for a prompt.

:class:`HTTPJudge` asks any OpenAI-compatible chat endpoint (needs the endpoint);
:class:`ClassifierJudge` is a logistic regression on prompt embeddings trained here, offline,
from a user's labels (:func:`train_from_labels`, ``forensics judge train``) or from the HTTP
judge's answers (:func:`train_classifier`). :func:`forensics.triage.context.make_judge` picks
one from the context parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from forensics._chat import chat_completion
from forensics.errors import InputError

LEGITIMATE, DEFECT = "legitimate", "defect"


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
