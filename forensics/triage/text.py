"""Normalised text and n-gram lookups shared by the phrase signal, the row-feature cache and
cluster labels.

A normalised column (:func:`norm_expr`) holds each text lower-cased, its tokens (word runs and
punctuation runs) separated by single spaces and padded with one space both sides, so a
literal search for `` a b `` is an n-gram match. :class:`Hits` answers "which rows contain this
n-gram" over such a column, from token postings (stored by :mod:`forensics.triage.rows`) or
by scanning.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import polars as pl

_TOKEN = r"(\w+|[^\w\s]+)"


def norm_expr(col: str) -> pl.Expr:
    """Lower-case, tokens (word runs and punctuation runs) separated by single spaces, padded
    with a space both sides, so `` a b `` literal search is an n-gram match."""
    return (pl.lit(" ") + pl.col(col).fill_null("").str.to_lowercase()
            .str.replace_all(_TOKEN, " ${1} ").str.replace_all(r"\s+", " ").str.strip_chars()
            + pl.lit(" "))


def tokens(text: str) -> list[str]:
    return re.findall(_TOKEN, (text or "").lower())


def ngrams(toks: Sequence[str], n_max: int = 4) -> set[str]:
    out = set()
    for n in range(1, n_max + 1):
        for i in range(len(toks) - n + 1):
            out.add(" ".join(toks[i:i + n]))
    return out


def scan(col: pl.Series, grams: Sequence[str], rows: np.ndarray | None = None
          ) -> dict[str, np.ndarray]:
    """Row positions (into the whole ``col``) of each n-gram, in ONE Aho-Corasick pass (polars
    ``str.extract_many``) over ``col`` or only over its ``rows``."""
    out: dict[str, list[np.ndarray]] = {}
    if not grams or len(col) == 0:
        return {}
    sub = col.rename("t").to_frame().with_row_index("i")
    if rows is not None:
        sub = sub[rows.tolist()] if len(rows) else sub.head(0)
    pats = [f" {g} " for g in grams]
    ex = (sub.select("i", pl.col("t").str.extract_many(pats, overlapping=True).alias("m"))
          .explode("m").drop_nulls("m").unique()
          .group_by("m").agg(pl.col("i").sort()))
    return {m[1:-1]: np.asarray(i, np.int64) for m, i in zip(ex["m"].to_list(), ex["i"].to_list())}


class ScanPostings:
    """Token postings found by scanning the column (no precomputed index: a read-only
    workspace, or a frame that is not a whole dataset)."""

    def __init__(self, col: pl.Series):
        self.col = col

    def get(self, tokens: Sequence[str]) -> dict[str, np.ndarray]:
        return scan(self.col, tokens)


class Hits:
    """Which rows of one normalised column (:func:`norm_expr`) contain each n-gram, memoised.

    Single tokens come from a postings source (token -> sorted row positions): the per-dataset
    token index stored by :mod:`forensics.triage.rows`, or a scan. An n-gram of several
    tokens can only occur in rows holding its rarest token, so the multi-token n-grams of a
    batch are matched in ONE Aho-Corasick pass over the rows holding all of its tokens only.
    Why: the phrase signal probes hundreds of candidate n-grams in a dozen batches, and a full
    pass over the column per batch costs far more than a pass over the rows that can match
    (the candidates are rare by construction: a batch phrase lives in few rows).
    """

    def __init__(self, col: pl.Series, postings=None):
        self.col = col.rename("t")
        self.n = len(col)
        self.postings = postings if postings is not None else ScanPostings(self.col)
        self.cache: dict[str, np.ndarray] = {}
        self._post: dict[str, np.ndarray] = {}

    def load_tokens(self, toks: Iterable[str]) -> None:
        """Fetch the postings of ``toks`` in one call (later lookups are memoised)."""
        need = sorted({t for t in toks if t not in self._post})
        if need:
            got = self.postings.get(need)
            for t in need:
                self._post[t] = got.get(t, np.zeros(0, np.int64))

    def rows(self, token: str) -> np.ndarray:
        """Sorted row positions holding ``token``."""
        self.load_tokens([token])
        return self._post[token]

    def df(self, token: str) -> int:
        """Number of rows holding ``token`` (no mask built)."""
        self.load_tokens([token])
        return len(self._post[token])

    def prefetch(self, grams: Iterable[str]) -> None:
        todo = sorted({g for g in grams if g not in self.cache})
        if not todo:
            return
        split = {g: g.split(" ") for g in todo}
        self.load_tokens(t for parts in split.values() for t in parts)
        multi = []
        for g, parts in split.items():
            m = np.zeros(self.n, bool)
            self.cache[g] = m
            if len(parts) == 1:
                m[self._post[g]] = True
            elif all(len(self._post[t]) for t in parts):
                multi.append(g)
        if not multi:
            return
        # candidate rows: those holding every token of some n-gram (AND of the tokens' row
        # masks; the rarest token's rows alone would let "of the ..." n-grams scan everything)
        union = np.zeros(self.n, bool)
        m = np.empty(self.n, bool)
        t_m = np.empty(self.n, bool)
        for g in multi:
            parts = sorted(set(split[g]), key=lambda t: len(self._post[t]))
            m[:] = False
            m[self._post[parts[0]]] = True
            for t in parts[1:]:
                t_m[:] = False
                t_m[self._post[t]] = True
                m &= t_m
            union |= m
        rows = np.flatnonzero(union)
        for g, pos in scan(self.col, multi, rows).items():
            if g in self.cache:
                self.cache[g][pos] = True

    def __call__(self, g: str) -> np.ndarray:
        if g not in self.cache:
            self.prefetch([g])
        return self.cache[g]


__all__ = ["norm_expr", "tokens", "ngrams", "scan", "ScanPostings", "Hits"]
