"""Cluster profiles and labels: size, language pairs, mean signal scores, metadata
concentration (e.g. source, shard: share in the cluster vs in the dataset), example rows, and a
label (the signature plus c-TF-IDF terms: frequent in the cluster, rare in the dataset)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from forensics.triage.cluster import Group
from forensics.triage.params import ProfileParams
from forensics.triage.text import Hits

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace


@dataclass
class Cluster:
    """One ranked cluster of a run. ``members``: row positions (a row belongs to the
    best-ranked cluster holding it); ``example_rows``: positions of the profile's examples;
    ``member_scores``: (sample_id, final score) best first, set once final scores exist."""

    cluster_id: int
    rank: int
    score: float
    label: str
    profile: dict[str, Any]
    members: list[int]
    example_rows: list[int] = field(default_factory=list)
    row_ids: list[str] = field(default_factory=list)
    member_scores: list[tuple[int, float]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.members)

    def to_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "rank": self.rank, "size": self.size,
                "label": self.label, "score": self.score, "profile": self.profile,
                "row_ids": self.row_ids}


class RowMeta:
    """Row metadata for cluster profiles, extracted per key on demand.

    Why not parse every row's JSON: a profile needs the keys of its members (parsed in Python,
    a few thousand rows) and, per key, one dataset-wide column of values (extracted by DuckDB
    in milliseconds). Values are compared as DuckDB's ``json_extract_string`` renders them,
    inside and outside a cluster.
    """

    def __init__(self, ws: "Workspace", dataset: str, meta: pl.Series):
        self.ws, self.dataset, self.meta = ws, dataset, meta
        self._rows: dict[int, dict] = {}
        self._values: dict[str, pl.Series] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def row(self, j: int) -> dict:
        if j not in self._rows:
            try:
                v = json.loads(self.meta[j] or "{}")
            except (ValueError, TypeError):
                v = {}
            self._rows[j] = v if isinstance(v, dict) else {}
        return self._rows[j]

    def values(self, key: str) -> pl.Series:
        if key not in self._values:
            path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
            try:
                with self.ws.locked() as con:
                    vals = pl.from_arrow(con.sql(
                        "SELECT json_extract_string(meta, ?) AS v FROM samples WHERE dataset = ? "
                        "ORDER BY sample_id", params=[path, self.dataset]).to_arrow_table())["v"]
            except Exception:  # noqa: BLE001 - an odd key: parse in Python instead
                vals = None
            if vals is None or len(vals) != len(self.meta):
                py = []
                for j in range(len(self.meta)):
                    v = self.row(j).get(key)
                    py.append(None if v is None else
                              (json.dumps(v) if isinstance(v, bool) else str(v)))
                vals = pl.Series("v", py, dtype=pl.Utf8)
            self._values[key] = vals
        return self._values[key]

    def counts(self, key: str) -> dict[str, int]:
        if key not in self._counts:
            vc = self.values(key).drop_nulls().value_counts()
            self._counts[key] = dict(zip(vc[vc.columns[0]].to_list(), vc["count"].to_list()))
        return self._counts[key]


def meta_concentration(meta: RowMeta, members: list[int], p: ProfileParams) -> dict:
    """For each metadata key: the cluster's top values with their share in the cluster, their
    share in the dataset, and the lift (cluster share / dataset share)."""
    keys = sorted({k for j in members for k, v in meta.row(j).items()
                   if isinstance(v, (str, int, float, bool))})[:p.meta_keys]
    out = {}
    for k in keys:
        cin = Counter(v for v in meta.values(k).gather(members).to_list() if v is not None)
        if not cin:
            continue
        call = meta.counts(k)
        tot_in, tot_all = sum(cin.values()), sum(call.values())
        top = []
        for v, c in sorted(cin.items(), key=lambda kv: (-kv[1], kv[0]))[:p.meta_values]:
            share, base = c / tot_in, call.get(v, 0) / tot_all
            top.append({"value": v, "count": c, "share": round(share, 3),
                        "dataset_share": round(base, 3), "lift": round(share / base, 2) if base else None})
        out[k] = top
    return out


def profile(df: pl.DataFrame, members: list[int], signals: dict[str, np.ndarray],
            fused: np.ndarray, group: Group, p: ProfileParams, meta: RowMeta) -> dict:
    """The profile of one cluster (examples are filled by :func:`fill_examples`)."""
    sub = df[members]
    pairs = Counter(f"{a or '?'}→{b or '?'}" for a, b in zip(sub["prompt_lang"], sub["reply_lang"]))
    prof: dict[str, Any] = {
        "size": len(members),
        "lang_pairs": dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:p.lang_pairs]),
        "mean_scores": {s: round(float(v[members].mean()), 4) for s, v in signals.items()}
        | {"fused": round(float(fused[members].mean()), 4)},
        "kind": group.kind,
    }
    if group.signature is not None:
        prof["signature"] = group.signature
    if group.pool_members is not None:
        prof["found_by_search"] = group.pool_members
        prof["added_by_expansion"] = len(members) - group.pool_members
    if "translation_request" in sub.columns:
        prof["translation_requests"] = int(sub["translation_request"].sum())
    if "expected_reason" in sub.columns:
        from forensics.triage.signals.language import ignored_rows

        prof["ignored_requests"] = int(sub.select(ignored_rows().sum()).item())
    prof["metadata"] = meta_concentration(meta, members, p)
    return prof


def _is_term(w: str, p: ProfileParams, stop: set[str]) -> bool:
    return len(w) >= p.label_min_chars and w not in stop and any(c.isalpha() for c in w)


def label_terms(members_text: list[str], df_all: dict[str, int], n: int, p: ProfileParams) -> list[str]:
    """c-TF-IDF style: frequent in the cluster, rare in the dataset."""
    stop = set(p.stopwords)
    cnt: Counter = Counter()
    for t in members_text:
        cnt.update({w for w in t.split() if _is_term(w, p, stop)})
    scored = []
    for w, c in sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:p.label_top_words]:
        d = df_all.get(w)
        if d is None:
            continue
        scored.append((-(c / max(1, len(members_text))) * math.log(1 + n / max(1, d)), w))
    scored.sort()
    return [w for _, w in scored[:p.label_terms]]


def label_df(nr: pl.Series, np_: pl.Series, member_lists: list[list[int]], hits: tuple[Hits, Hits],
             p: ProfileParams) -> dict[str, int]:
    """Dataset document frequency (reply or prompt) of the candidate label words, from the
    token postings (``hits`` = reply and prompt :class:`~forensics.triage.text.Hits`)."""
    stop = set(p.stopwords)
    words: Counter = Counter()
    for members in member_lists:
        for j in members[:p.label_rows]:
            words.update({w for w in (nr[j] + " " + np_[j]).split() if _is_term(w, p, stop)})
    cand = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:p.label_candidates]]
    hr, hp = hits
    hr.load_tokens(cand)
    hp.load_tokens(cand)
    out = {}
    mask = np.zeros(len(nr), bool)
    for w in cand:
        a, b = hr.rows(w), hp.rows(w)
        mask[a] = True
        mask[b] = True
        out[w] = int(np.count_nonzero(mask))
        mask[a] = False
        mask[b] = False
    return out


def build_clusters(ws: "Workspace", dataset: str, df: pl.DataFrame, sample_ids: np.ndarray,
                   groups: list[Group], signals: dict[str, np.ndarray], fused: np.ndarray,
                   hits: tuple[Hits, Hits], p: ProfileParams) -> tuple[list[Cluster], dict[int, int]]:
    """Clusters from ranked groups: a row belongs to the best-ranked group holding it (a group
    left empty is dropped); profiles, labels and examples. Returns the clusters and
    ``{row position: cluster_id}``."""
    n = df.height
    nr_all, np_all = df["reply_norm"], df["prompt_norm"]
    member_of: dict[int, int] = {}
    clusters: list[Cluster] = []
    ldf = label_df(nr_all, np_all, [g.members for g in groups[:p.label_clusters]], hits, p)
    meta = RowMeta(ws, dataset, df["meta"])
    for rank, g in enumerate(groups, 1):
        members = [j for j in g.members if j not in member_of]
        if not members:
            continue
        cid = rank
        for j in members:
            member_of[j] = cid
        prof = profile(df, members, signals, fused, g, p, meta)
        texts = [nr_all[j] + " " + np_all[j] for j in members[:p.label_rows]]
        terms = label_terms(texts, ldf, n, p) if rank <= p.label_clusters else []
        head = " + ".join(g.signature.values()) if g.signature else "semantic neighbours"
        label = head + (" · " + ", ".join(terms) if terms else "")
        ex = sorted(members, key=lambda j: -fused[j])[:p.examples]
        clusters.append(Cluster(cid, len(clusters) + 1, round(g.score, 6), label, prof, members,
                                example_rows=ex))
    fill_examples(ws, df, sample_ids, clusters, p)
    return clusters, member_of


def fill_examples(ws: "Workspace", df: pl.DataFrame, sample_ids: np.ndarray,
                  clusters: list[Cluster], p: ProfileParams) -> None:
    """``profile["examples"]``: row id, prompt and reply (first ``example_chars`` characters) of
    every cluster's example rows, read from DuckDB in one query (the per-row frame does not
    carry the raw text: it is needed for a handful of rows only)."""
    ids = sorted({int(sample_ids[j]) for c in clusters for j in c.example_rows})
    got: dict[int, tuple[str, str]] = {}
    if ids:
        with ws.locked():
            got = {int(r[0]): (r[1] or "", r[2] or "") for r in ws.rows(
                "SELECT sample_id, left(prompt, ?), left(reply, ?) FROM samples "
                "WHERE sample_id IN (SELECT unnest(?::BIGINT[]))",
                [p.example_chars, p.example_chars, ids])}
    row_ids = df["row_id"]
    for c in clusters:
        exs = []
        for j in c.example_rows:
            pr, rp = got.get(int(sample_ids[j]), ("", ""))
            exs.append({"row_id": row_ids[j], "prompt": pr, "reply": rp})
        c.profile["examples"] = exs


__all__ = ["Cluster", "RowMeta", "build_clusters", "profile", "label_terms", "label_df",
           "meta_concentration", "fill_examples"]
