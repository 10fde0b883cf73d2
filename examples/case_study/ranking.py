"""How the case study ranks training rows by their NLA explanations alone (``ap_explanations``).

Every row and the anomaly are explained at the last prompt token once greedily and
``ExplanationRanking.samples`` more times by sampling (temperature, top-p, seed). A row's
document is its explanations joined (``rows="pool"``); the anomaly's samples are compared with
each row's document one at a time and the similarities averaged (``query="each"``). The
similarity is BM25 over word 1..``ngram_max``-grams (``bm25``), the cosine of TF-IDF vectors of
the same n-grams (``tfidf``) or the MiniLM cosine (``minilm``). The measurements behind the
defaults are in docs/case_study.md, "Ranking by explanations".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SIMILARITIES = ("bm25", "tfidf", "minilm")
ROW_DOCS = ("pool", "greedy")
QUERIES = ("each", "pool", "greedy")
_TOKENS = r"(?u)\b\w+\b"


@dataclass
class ExplanationRanking:
    """Knobs of ``ap_explanations`` (recorded in case-study-summary.json as ``explanation_ranking``).

    ``samples``: sampled explanations per position besides the greedy one (0 = greedy only),
    drawn with ``temperature``, ``top_p`` and ``seed``. ``rows``: ``pool`` (a row's document is
    its greedy explanation and its samples joined) or ``greedy``. ``query``: ``each`` (the mean
    similarity over the anomaly's samples, the greedy one when there are none), ``pool`` (one
    document of all of them) or ``greedy``. ``similarity``: ``bm25`` (``bm25_k1``, ``bm25_b``;
    idf from the rows' documents), ``tfidf`` (sublinear tf, idf fitted on the rows' documents)
    or ``minilm``; n-grams of 1..``ngram_max`` words for the first two.
    Why these (docs/case_study.md, "Ranking by explanations"): over the 15 held-out cue prompts
    the target answers in German, each taken as the anomaly, 8 samples at 0.7 raise the mean AP
    from 0.40 (greedy, TF-IDF) to 0.51, BM25 to 0.54; 4 samples give 0.42-0.54 by draw, 2 give
    0.47-0.49, temperature 1.0 less; MiniLM pools an explanation's short fields into one
    topic-dominated vector (0.20)."""

    similarity: str = "bm25"
    ngram_max: int = 2
    samples: int = 8
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    rows: str = "pool"
    query: str = "each"
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    def __post_init__(self) -> None:
        for name, value, allowed in (("similarity", self.similarity, SIMILARITIES), ("rows", self.rows, ROW_DOCS),
                                     ("query", self.query, QUERIES)):
            if value not in allowed:
                raise ValueError(f"ExplanationRanking.{name} {value!r}: choose one of {', '.join(allowed)}")
        if self.samples < 0 or self.ngram_max < 1:
            raise ValueError(f"ExplanationRanking: samples {self.samples} must be >= 0, ngram_max "
                             f"{self.ngram_max} >= 1")
        if self.samples and self.temperature <= 0:
            raise ValueError(f"ExplanationRanking.samples {self.samples} needs temperature > 0")

    def cli_sampling(self) -> list[str]:
        """The ``forensics explain`` options that draw this ranking's samples ([] = greedy only)."""
        if not self.samples:
            return []
        return ["--temperature", str(self.temperature), "--top-p", str(self.top_p),
                "--samples", str(self.samples), "--sampling-seed", str(self.seed)]


def _documents(texts: Sequence[Sequence[str]], how: str) -> list[str]:
    """One document per owner: its first (greedy) explanation, or all of them joined."""
    return [(" . ".join(t for t in ts if t) if how == "pool" else (ts[0] if ts else "")) for ts in texts]


def _queries(anomaly: Sequence[str], how: str) -> list[str]:
    if how == "greedy" or len(anomaly) == 1:
        return [anomaly[0]] if anomaly else [""]
    if how == "pool":
        return [" . ".join(anomaly)]
    return list(anomaly[1:])  # each sample on its own


def bm25_matrix(queries: Sequence[str], docs: Sequence[str], ngram_max: int = 2, k1: float = 1.2,
                b: float = 0.75):
    """[docs x queries] Okapi BM25 with idf log(1 + (N - df + 0.5) / (df + 0.5)) over word
    n-grams (scikit-learn's CountVectorizer supplies the n-grams; a query term counts once)."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import CountVectorizer

    v = CountVectorizer(ngram_range=(1, ngram_max), token_pattern=_TOKENS).fit(docs)
    tf = v.transform(docs).astype(np.float64).tocoo()
    n = len(docs)
    df = np.bincount(tf.col, minlength=tf.shape[1])
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    dl = np.asarray(v.transform(docs).sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * dl / max(dl.mean(), 1e-12))
    w = tf.data * (k1 + 1) / (tf.data + norm[tf.row]) * idf[tf.col]
    m = sp.csr_matrix((w, (tf.row, tf.col)), shape=tf.shape)
    q = (v.transform(queries) > 0).astype(np.float64)
    return np.asarray((m @ q.T).todense())


def explanation_scores(anomaly: Sequence[str], rows: Sequence[Sequence[str]], cfg: ExplanationRanking,
                       emb=None):
    """Similarity of each row's explanations to the anomaly's, per ``cfg``. ``anomaly``: its greedy
    explanation first, then its samples; ``rows``: the same per row. ``emb``: an embedder with
    ``encode`` (only for ``minilm``)."""
    import numpy as np

    docs = _documents(rows, cfg.rows)
    qs = _queries(anomaly, cfg.query)
    if cfg.similarity == "minilm":
        m = emb.encode(docs) @ emb.encode(qs).T
    elif cfg.similarity == "bm25":
        m = bm25_matrix(qs, docs, cfg.ngram_max, cfg.bm25_k1, cfg.bm25_b)
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer

        v = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), sublinear_tf=True, token_pattern=_TOKENS).fit(docs)
        m = np.asarray((v.transform(docs) @ v.transform(qs).T).todense())
    return np.asarray(m, dtype=np.float64).mean(axis=1)
