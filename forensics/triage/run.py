"""Anomaly triage: from an anomaly (explanations, prompt, reply) to ranked clusters of suspect
training rows, stored in ``triage_runs`` / ``findings`` / ``clusters`` / ``cluster_members``.

Pipeline (every step deterministic; parameters in :class:`TriageParams`, recorded per run):

1. **Signals**, each a score in [0, 1] per dataset row:
   ``language`` (behaviour: the anomaly's language switch vs each row's detected languages,
   hard negatives down-weighted; whole dataset, polars), ``phrase`` (distinctive n-grams of
   the anomaly reply / explanation quotes, rare corpus-wide but shared by a batch; whole
   dataset, with vocabulary expansion), ``explanation`` (the anomaly's explanations embedded
   and searched against the sample-explanation index and the pair index), ``prompt`` /
   ``reply`` (the anomaly's own prompt and reply against the prompt / reply indexes) and
   ``quality`` (stored data-quality findings whose check matches the anomaly).
   See :mod:`forensics.triage.signals`. The per-row inputs they need (normalised text,
   requested language, a token index) are derived once per dataset state and cached in
   DuckDB (:mod:`forensics.triage.rows`), so a triage of 100k rows reads them in a
   fraction of a second instead of recomputing them.
2. **Fusion**: a weighted mean of the available signals (training-free score fusion; the
   weights renormalise over the signals that exist for this anomaly and dataset).
3. **Clustering** of the candidate pool by behavioural signature (language pair, phrase
   batch); rows with no signature are grouped by agglomerative clustering of their
   embeddings. 4. **Expansion**: every dataset row with a cluster's signature joins it
   (embedding clusters grow to rows within their radius), so the whole batch surfaces.
5. **Profiles and ranking**: size, label (c-TF-IDF terms), language pairs, metadata
   concentration (e.g. source, shard), mean signal scores, examples; clusters rank by
   size-shrunk mean score, and each row's final score mixes in its cluster's score.

Why fusion of whole-dataset behaviour features with ANN search: embeddings of an
explanation ("the user writes English, the answer is German") barely separate a planted
batch from legitimate German data or translation requests, while the observable behaviour
does; the embeddings still order rows within a behaviour and carry anomalies that have no
observable signature.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from forensics.triage import rows as triage_features

from forensics.triage import signals as ts
from forensics.errors import NotFoundError, StaleError

if TYPE_CHECKING:  # pragma: no cover
    from forensics.workspace import Workspace

SIGNALS = ("language", "phrase", "explanation", "prompt", "reply", "quality")

# quality checks that bear on a language-switch anomaly (our pipelines' check names)
_LANG_CHECKS = re.compile(r"lang|translat|script|mismatch", re.IGNORECASE)
# word stems that name the parts of any sample, not a behaviour: a check called
# "hygiene_empty_reply" is not about an anomaly because its explanation says "reply"
_GENERIC_STEMS = {"reply", "repli", "promp", "answe", "quest", "sampl", "check", "respo",
                  "assis", "model", "outpu", "input", "token", "dataset", "recor", "field",
                  "conte", "messa", "langu"}


@dataclass
class TriageParams:
    """Every knob of a triage; stored in ``triage_runs.params``."""

    limit: int = 200
    weights: dict = field(default_factory=lambda: {
        "language": 0.45, "phrase": 0.35, "explanation": 0.10, "prompt": 0.03,
        "reply": 0.07, "quality": 0.10})
    dense_k: int = 1000              # ANN hits per query
    legit_penalty: float = 0.1       # factor on rows whose prompt asks for the reply language
    min_df: int = 4                  # a "batch" holds at least this many rows
    max_df_frac: float = 0.15        # ... and at most this share of the dataset
    pool: int = 1000                 # candidate rows that are clustered
    lang_threshold: float = 0.25     # language score that puts a row in a language cluster
    phrase_threshold: float = 0.3    # phrase score that puts a row in a phrase cluster
    phrase_knee: bool = True         # ... and (seed-only phrases) above the distribution's knee
    min_fused: float = 0.05          # rows below this fused score are not findings
    agglo_distance: float = 0.6      # cosine distance threshold, embedding clusters
    cluster_smoothing: float = 0.3   # share of a row's final score from its cluster
    examples: int = 3

    @classmethod
    def from_dict(cls, d: dict | None) -> "TriageParams":
        p = cls()
        for k, v in (d or {}).items():
            if not hasattr(p, k):
                from forensics.errors import UsageError

                raise UsageError(f"unknown triage parameter {k!r}",
                                 hint="known: " + ", ".join(asdict(p)))
            if k == "weights":
                w = dict(p.weights)
                w.update(v)
                v = w
            setattr(p, k, v)
        return p


@dataclass
class TriageResult:
    run_id: int
    anomaly_id: int
    dataset: str
    findings: list[dict]
    clusters: list[dict]
    signals_used: list[str]
    signals_unavailable: dict[str, str]
    params: dict
    index_versions: dict
    seconds: float
    total_scored: int = 0

    def to_json(self) -> dict:
        """The fixed ``forensics triage --json`` contract (plus a few extra keys)."""
        return {"run_id": self.run_id, "anomaly_id": self.anomaly_id, "dataset": self.dataset,
                "findings": self.findings, "clusters": self.clusters,
                "signals_used": self.signals_used, "signals_unavailable": self.signals_unavailable,
                "seconds": round(self.seconds, 3)}


# ------------------------------------------------------------------------------ loading
class _LazyEmbedder:
    """Stands in for an index's Embedder in :func:`forensics.search.embed.embed_texts`: the model id
    and dimension come from the index manifest, and the model is loaded only when a query text
    is not in the workspace's embedding cache. Why: loading the model costs 0.1-0.2 s warm and
    ~10 s in a fresh process (the CLI), while a re-run triage (same anomaly, other parameters or
    a changed dataset) finds its queries cached. ``shared`` holds the one model of the run."""

    def __init__(self, oi: Any, shared: dict):
        self.oi, self.shared = oi, shared
        self.model_id = oi.manifest.model_id
        self.dim = int(oi.manifest.dim)

    def encode(self, texts, show_progress: bool = False) -> np.ndarray:
        e = self.shared.get("e")
        if e is not None and e.model_id == self.model_id and self.oi._embedder is None:
            self.oi._embedder = e  # the run's model, already loaded for another index
        e = self.oi.embedder()
        self.shared.setdefault("e", e)
        return e.encode(texts)


def _dense(ws: "Workspace", dataset: str, sample_ids: np.ndarray, queries: dict[str, list[str]],
           k: int, unavailable: dict[str, str], versions: dict, out_open: dict | None = None
           ) -> tuple[dict[str, np.ndarray], dict]:
    """Dense signals: ``{signal: scores[n]}`` from ANN searches; missing indexes recorded in
    ``unavailable``; stale ones raise StaleError (never silently used)."""
    from forensics.search import embed
    from forensics.search import index

    pos = {int(s): i for i, s in enumerate(sample_ids)}
    n = len(sample_ids)
    out: dict[str, np.ndarray] = {}
    opened: dict[str, Any] = {}
    out_open = out_open if out_open is not None else {}

    shared: dict[str, Any] = {}   # ONE Embedder for every index of the run (model load is seconds)

    def get(fld: str):
        if fld not in opened:
            try:
                opened[fld] = index.open_index(ws, dataset, fld, embedder=shared.get("e"),
                                               read_only=True)
            except NotFoundError:
                opened[fld] = None
            except StaleError as e:
                raise StaleError(f"triage refuses a stale index: {e.message}", hint=e.hint) from e
            if opened[fld] is not None:
                m = opened[fld].manifest
                versions[fld] = {"built_at": m.built_at, "model_id": m.model_id,
                                 "dataset_version": m.dataset_version, "rows": m.rows,
                                 "index_type": m.index_type, "checksum": m.checksum[:16]}
        return opened[fld]

    expl_map: dict[int, int] | None = None
    plan = {"explanation": ["explanation", "pair"], "prompt": ["prompt", "pair"],
            "reply": ["reply", "pair"]}
    for sig, fields in plan.items():
        texts = [t for t in queries.get(sig, []) if t and t.strip()]
        if not texts:
            unavailable[sig] = "the anomaly has no " + ("explanations" if sig == "explanation" else sig)
            continue
        per_query: list[np.ndarray] = []
        used = []
        for fld in fields:
            oi = get(fld)
            if oi is None:
                continue
            if sig != "explanation" and fld == "pair" and used:
                continue  # prompt/reply: the field index if present, else pair
            vecs = embed.embed_texts(ws, texts, _LazyEmbedder(oi, shared))
            kk = min(k, oi.ntotal) if oi.ntotal else 1
            scores, ids = oi.search(vecs, kk)
            if fld == "explanation" and expl_map is None:
                expl_map = {int(a): int(b) for a, b in ws.rows(
                    "SELECT explanation_id, sample_id FROM explanations WHERE dataset = ? "
                    "AND sample_id IS NOT NULL", [dataset])}
            for q in range(len(texts)):
                v = np.zeros(n, np.float32)
                row_s, row_i = scores[q], ids[q]
                ok = row_i >= 0
                if not ok.any():
                    per_query.append(v)
                    continue
                s, ii = row_s[ok], row_i[ok]
                hi, lo = float(s.max()), float(s.min())
                norm = (s - lo) / (hi - lo) if hi > lo else np.ones_like(s)
                for sc, x in zip(norm, ii):
                    sid = expl_map.get(int(x)) if fld == "explanation" else int(x)
                    j = pos.get(sid) if sid is not None else None
                    if j is not None and sc > v[j]:
                        v[j] = sc
                per_query.append(v)
            used.append(fld)
            if sig != "explanation":
                break
        if not per_query:
            unavailable[sig] = "no " + " or ".join(fields) + " index for this dataset"
            continue
        out[sig] = np.mean(per_query, axis=0).astype(np.float32)
        if sig == "explanation" and "explanation" not in used:
            unavailable["explanation_index"] = ("no sample-explanation index (dataset has no "
                                                "explanations, or none indexed); used pair index")
    out_open.update(opened)
    return out, versions


def _quality(ws: "Workspace", dataset: str, sample_ids: np.ndarray, anomaly_text: str,
             language_active: bool) -> tuple[np.ndarray | None, list[str]]:
    rows = ws.rows(
        "SELECT q.\"check\", q.sample_id, q.severity, q.score FROM quality_findings q "
        "JOIN samples s USING (sample_id) WHERE s.dataset = ? AND q.pipeline_run_id = ("
        " SELECT max(q2.pipeline_run_id) FROM quality_findings q2 WHERE q2.\"check\" = q.\"check\""
        " AND q2.sample_id IN (SELECT sample_id FROM samples WHERE dataset = ?))",
        [dataset, dataset])
    if not rows:
        return None, []
    words = set(re.findall(r"\w{5,}", anomaly_text.lower()))
    stems = {w[:5] for w in words} - _GENERIC_STEMS
    checks = sorted({r[0] for r in rows})
    relevant = []
    for c in checks:
        cw = {w[:5] for w in re.findall(r"[a-z]{5,}", c.lower())}
        if (language_active and _LANG_CHECKS.search(c)) or (cw & stems):
            relevant.append(c)
    if not relevant:
        return None, []
    pos = {int(s): i for i, s in enumerate(sample_ids)}
    sev = {"error": 1.0, "warning": 0.7, "info": 0.3}
    v = np.zeros(len(sample_ids), np.float32)
    for check, sid, severity, score in rows:
        if check not in relevant or int(sid) not in pos:
            continue
        s = sev.get((severity or "").lower(), 0.7)
        if score is not None and 0 <= float(score) <= 1:
            s = max(s * 0.5, float(score))
        j = pos[int(sid)]
        v[j] = max(v[j], s)
    return v, relevant


# ------------------------------------------------------------------------------ clustering
def _agglomerate(vecs: np.ndarray, threshold: float) -> np.ndarray:
    """Deterministic average-linkage clustering on cosine distance; labels 0..k-1."""
    if len(vecs) == 1:
        return np.zeros(1, np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    z = linkage(vecs.astype(np.float64), method="average", metric="cosine")
    lab = fcluster(z, t=threshold, criterion="distance")
    # relabel by first occurrence so labels do not depend on scipy's numbering
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(l), len(first)) for l in lab], np.int64)


_STOP = set("the a an of to in and or is are was were be been for on at by with as that this it its "
            "from which who what when where how why did does do not no yes than then there their "
            "they he she his her him we you your i me my our can could would should will shall may "
            "might has have had but if so also into about over after before between answer question "
            "text passage please".split())


def _label_terms(members_text: list[str], df_all: dict[str, int], n: int, top: int = 4) -> list[str]:
    """c-TF-IDF style: frequent in the cluster, rare in the dataset."""
    cnt: Counter = Counter()
    for t in members_text:
        cnt.update({w for w in t.split() if len(w) >= 3 and w not in _STOP and any(c.isalpha() for c in w)})
    scored = []
    for w, c in sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:60]:
        d = df_all.get(w)
        if d is None:
            continue
        scored.append((-(c / max(1, len(members_text))) * math.log(1 + n / max(1, d)), w))
    scored.sort()
    return [w for _, w in scored[:top]]


# ------------------------------------------------------------------------------ main
def triage(ws: "Workspace", anomaly_id: int, dataset: str, limit: int = 200,
           params: dict | TriageParams | None = None, progress: bool = False) -> TriageResult:
    """Run a triage of ``anomaly_id`` against ``dataset``; store and return it."""
    from forensics.triage import anomaly as anomaly_mod

    t0 = time.perf_counter()
    p = params if isinstance(params, TriageParams) else TriageParams.from_dict(params)
    p.limit = int(limit)
    if p.limit < 0:
        from forensics.errors import UsageError

        raise UsageError("--limit must be >= 0")
    a = anomaly_mod.get(ws, anomaly_id)
    ws.require_dataset(dataset)
    rf = triage_features.load(ws, dataset)
    df = rf.frame
    n = df.height
    sample_ids = df["sample_id"].to_numpy().astype(np.int64) if n else np.zeros(0, np.int64)
    unavailable: dict[str, str] = {}
    versions: dict = {"row_features": rf.state} if rf.state else {}
    signals: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    opened: dict[str, Any] = {}          # indexes opened once per run, shared by every step
    strength: dict[str, np.ndarray] = {}  # unsaturated per-row evidence for cluster membership

    def step(msg: str) -> None:
        if progress:
            from forensics.cli._common import err_console

            err_console.print(f"[dim]{time.perf_counter() - t0:6.2f}s[/] {msg}")

    # ---- behaviour: language switch
    tgt = ts.language_target(a.prompt_lang, a.reply_lang, a.explanations, a.prompt)
    info["language_target"] = {"sources": tgt.sources, "targets": tgt.targets,
                               "evidence": tgt.evidence}
    info["row_features"] = {"cached": rf.cached, "seconds": round(rf.seconds, 3)}
    hits_r, hits_p = rf.hits("reply"), rf.hits("prompt")  # shared by phrases and labels
    step(f"row features ({'cached' if rf.cached else 'computed and stored'})")
    if tgt.active and n:
        signals["language"] = ts.language_scores(df, tgt, p.legit_penalty)
    elif not tgt.active:
        unavailable["language"] = "the anomaly shows no language switch"
    step("language signal")

    # ---- distinctive phrases
    sources: list[tuple[str, float]] = [(q, 1.0) for q in ts.quoted_phrases(a.explanations)]
    switch = bool(a.prompt_lang and a.reply_lang and a.prompt_lang != a.reply_lang)
    if a.reply and not switch:
        # a reply in another language than its prompt: its words are language identity, which
        # the language signal already covers; only same-language replies feed phrases
        sources.append((a.reply, 0.7))
    if n and sources:
        pr = ts.phrase_scores(df["_nr"], df["_np"], sources, a.prompt, min_df=p.min_df,
                              max_df_frac=p.max_df_frac, hits=hits_r, phits=hits_p)
        if pr.vocab:
            signals["phrase"] = pr.scores
            if pr.strength is not None:
                strength["phrase"] = pr.strength
                strength["phrase_expanded"] = np.array(pr.expanded)
            top_vocab = sorted(pr.vocab.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
            info["phrase_vocab"] = {g: round(w, 3) for g, w in top_vocab}
            info["phrase_expanded"] = pr.expanded
        else:
            unavailable["phrase"] = "no phrase of the anomaly is shared by a batch of rows"
    elif not sources:
        unavailable["phrase"] = "no same-language reply or quoted phrase to draw phrases from"
    step("phrase signal")

    # ---- dense (ANN) signals
    if n:
        dense, versions = _dense(ws, dataset, sample_ids,
                                 {"explanation": a.explanations, "prompt": [a.prompt or ""],
                                  "reply": [a.reply or ""]}, p.dense_k, unavailable, versions,
                                 opened)
        signals.update(dense)
    step("dense signals")

    # ---- quality findings
    if n:
        qv, checks = _quality(ws, dataset, sample_ids,
                              " ".join([a.title, *a.explanations]), tgt.active)
        if qv is not None:
            signals["quality"] = qv
            info["quality_checks"] = checks
        else:
            unavailable["quality"] = "no stored quality findings relevant to this anomaly"

    used = [s for s in SIGNALS if s in signals]
    wsum = sum(p.weights.get(s, 0.0) for s in used)
    fused = np.zeros(n, np.float32)
    for s in used:
        fused += (p.weights.get(s, 0.0) / wsum) * signals[s] if wsum > 0 else 0
    step(f"fused {len(used)} signals over {n} rows")

    clusters, member_of = (_cluster(ws, dataset, df, sample_ids, signals, fused, p, opened, strength,
                                    (hits_r, hits_p),
                                    lang_targets=set(tgt.targets) if tgt.active else set())
                           if n else ([], {}))
    step(f"{len(clusters)} clusters")

    # ---- final scores: fused, plus a share of the row's cluster score
    final = (1 - p.cluster_smoothing) * fused
    if clusters:
        top_cs = max(c["score"] for c in clusters) or 1.0
        cscore = {c["cluster_id"]: c["score"] / top_cs for c in clusters}
        for j, cid in member_of.items():
            final[j] += p.cluster_smoothing * cscore[cid]
    order = np.lexsort((sample_ids, -final)) if n else np.zeros(0, np.int64)
    keep = [int(j) for j in order if fused[j] >= p.min_fused or j in member_of]
    findings_idx = keep[:p.limit]
    row_ids = df["row_id"].to_list() if n else []
    findings = []
    for rank, j in enumerate(findings_idx, 1):
        sig = {s: round(float(signals[s][j]), 4) for s in used}
        sig["fused"] = round(float(fused[j]), 4)
        findings.append({"rank": rank, "row_id": row_ids[j], "sample_id": int(sample_ids[j]),
                         "score": round(float(final[j]), 6), "cluster_id": member_of.get(j),
                         "signals": sig})
    # cluster member scores = final scores; members listed best first
    for c in clusters:
        js = c.pop("_members")
        js.sort(key=lambda j: (-final[j], sample_ids[j]))
        c["row_ids"] = [row_ids[j] for j in js]
        c["_member_scores"] = [(int(sample_ids[j]), float(final[j])) for j in js]

    params_json = asdict(p)
    run_id = _store(ws, a.anomaly_id, dataset, params_json, versions, findings, clusters,
                    {"signals_used": used, "signals_unavailable": unavailable, "rows": n,
                     **info})
    for c in clusters:
        c.pop("_member_scores", None)
    out_findings = [{k: f[k] for k in ("row_id", "sample_id", "score", "cluster_id", "signals")}
                    | {"rank": f["rank"]} for f in findings]
    return TriageResult(run_id=run_id, anomaly_id=a.anomaly_id, dataset=dataset,
                        findings=out_findings, clusters=clusters, signals_used=used,
                        signals_unavailable=unavailable, params=params_json,
                        index_versions=versions, seconds=time.perf_counter() - t0,
                        total_scored=n)


def knee_cut(values: np.ndarray, min_size: int, min_gap_share: float = 0.3) -> float | None:
    """Membership cut from the score distribution itself: the widest gap between consecutive
    sorted (log) scores that leaves at least ``min_size`` rows above it, if that gap spans at least
    ``min_gap_share`` of the score range. Why: a planted batch carries the behaviour in full
    and scores as a plateau; rows that only share part of its wording (the same topic, one
    common fragment) trail below a visible step. No step -> no cut (keep everyone)."""
    # on a log scale: evidence is additive log-odds, a batch's variants differ by a factor
    # (fewer shared n-grams) while the trailing rows sit an order of magnitude below
    v = np.log(np.clip(np.sort(np.asarray(values, np.float64))[::-1], 0.1, None))
    if len(v) <= min_size:
        return None
    rng = float(v[0] - v[-1])
    if rng <= 0:
        return None
    gaps = v[min_size - 1:-1] - v[min_size:]
    i = int(np.argmax(gaps))
    if gaps[i] < min_gap_share * rng:
        return None
    k = i + min_size - 1
    return float(np.exp((v[k] + v[k + 1]) / 2))


def _cluster(ws: "Workspace", dataset: str, df: pl.DataFrame, sample_ids: np.ndarray,
             signals: dict[str, np.ndarray], fused: np.ndarray, p: TriageParams,
             opened: dict | None = None, strength: dict[str, np.ndarray] | None = None,
             hits: tuple | None = None, lang_targets: set[str] | None = None
             ) -> tuple[list[dict], dict[int, int]]:
    n = df.height
    lang = signals.get("language")
    phrase = signals.get("phrase")
    order = np.lexsort((sample_ids, -fused))
    pool = [int(j) for j in order[:p.pool] if fused[j] >= p.min_fused]
    if not pool:
        return [], {}
    plang = df["prompt_lang"].to_list()
    rlang = df["reply_lang"].to_list()

    ph_ok = None
    if phrase is not None:
        ph_ok = phrase >= p.phrase_threshold
        st = (strength or {}).get("phrase")
        if st is not None and bool((strength or {}).get("phrase_expanded", False)):
            # the expansion's own batch: posterior >= 0.5, i.e. at least two batch n-grams
            # (one alone cannot beat the prior, see triage_signals._expand); rows that only
            # share the anomaly's seed wording stay out
            ph_ok &= st >= 0.0
        elif st is not None and p.phrase_knee:
            cut = knee_cut(st[ph_ok], p.min_df)
            if cut is not None:
                ph_ok &= st >= cut
        # a phrase whose rows all reply in the switch's target language is language identity
        # (an explanation quoting the foreign reply: "Paläoklimatologen messen das
        # Verhältnis"), already covered by the language signal: as a signature it would only
        # split the language batch in two (a German batch into "en→de" and "en→de + phrase")
        if lang_targets and ph_ok.any():
            in_target = np.isin(np.asarray(rlang, dtype=object), list(lang_targets))
            if float(in_target[ph_ok].mean()) >= 0.8:
                ph_ok = None

    def signature(j: int) -> tuple | None:
        parts = []
        if lang is not None and lang[j] >= p.lang_threshold:
            parts.append(("lang", f"{plang[j]}→{rlang[j]}"))
        if ph_ok is not None and ph_ok[j]:
            parts.append(("phrase", "batch phrase"))
        return tuple(parts) if parts else None

    groups: dict[tuple, list[int]] = {}
    rest: list[int] = []
    for j in pool:
        s = signature(j)
        if s is None:
            rest.append(j)
        else:
            groups.setdefault(s, []).append(j)
    # expansion over the whole dataset: every row with a pool group's signature joins it
    sig_groups: dict[tuple, list[int]] = {s: [] for s in groups}
    cand = np.zeros(n, bool)
    if lang is not None:
        cand |= lang >= p.lang_threshold
    if ph_ok is not None:
        cand |= ph_ok
    for j in np.flatnonzero(cand):
        s = signature(int(j))
        if s in sig_groups:
            sig_groups[s].append(int(j))
    # a combined signature held by a single row is not a batch: the row joins the group of one
    # of its parts (language first) when that group exists. Why: the demo's one planted row
    # about the anomaly's own topic matched both the language switch and a topic phrase from
    # the explanation, and fell out of the German batch into an embedding cluster
    for s in [s for s, m in sig_groups.items() if len(m) == 1 and len(s) > 1]:
        for part in s:
            if len(sig_groups.get((part,), [])) >= 2:
                sig_groups[(part,)].extend(sig_groups.pop(s))
                break
    raw: list[tuple[dict, list[int]]] = []
    for s, members in sig_groups.items():
        if len(members) < 2:
            rest.extend(m for m in members if m in set(pool))
            continue
        raw.append(({"kind": "signature", "signature": {k: v for k, v in s},
                     "pool_members": len(groups[s])}, members))
    # rows with no behavioural signature: embedding clusters, grown within their radius
    rest = [j for j in rest if fused[j] >= p.min_fused]
    if rest:
        raw.extend(_embedding_clusters(ws, dataset, sample_ids, rest, fused, p,
                                       (opened or {}).get("pair")))
    # profiles & ranking
    clusters = []
    member_of: dict[int, int] = {}
    nr_all = df["_nr"]
    scored = []
    for meta, members in raw:
        members = sorted(set(members))
        size = len(members)
        mean = float(fused[members].mean())
        score = mean * size / (size + 2.0)
        scored.append((score, members, meta))
    scored.sort(key=lambda x: (-x[0], sample_ids[x[1][0]]))
    # a row belongs to the best-ranked cluster holding it
    label_df = _label_df(nr_all, df["_np"], [m for _, m, _ in scored[:20]], hits)
    meta_index = _Meta(ws, dataset, df["meta"])
    for rank, (score, members, meta) in enumerate(scored, 1):
        members = [j for j in members if j not in member_of]
        if not members:
            continue
        cid = rank
        for j in members:
            member_of[j] = cid
        prof = _profile(df, members, signals, fused, meta, p, meta_index)
        texts = [nr_all[j] + " " + df["_np"][j] for j in members[:400]]
        terms = _label_terms(texts, label_df, n) if rank <= 20 else []
        sigpart = meta.get("signature", {})
        head = " + ".join(v for v in sigpart.values()) if sigpart else "semantic neighbours"
        if "phrase" in sigpart and prof.get("phrases"):
            head = head.replace("batch phrase", "phrase \"" + prof["phrases"][0] + "\"")
        label = head + (" · " + ", ".join(terms) if terms else "")
        clusters.append({"cluster_id": cid, "rank": len(clusters) + 1, "size": len(members),
                         "label": label, "score": round(score, 6), "profile": prof,
                         "_members": members})
    _fill_examples(ws, sample_ids, clusters)
    return clusters, member_of


def _fill_examples(ws: "Workspace", sample_ids: np.ndarray, clusters: list[dict]) -> None:
    """Prompt and reply (first 240 characters) of every cluster's example rows, read from
    DuckDB in one query: the per-row frame does not carry the raw text (it is only needed
    for a handful of examples, and loading it for every row cost ~0.15 s at 100k rows)."""
    exs = [e for c in clusters for e in c["profile"].get("examples", [])]
    if not exs:
        return
    ids = sorted({int(sample_ids[e["_j"]]) for e in exs})
    got = {int(r[0]): (r[1] or "", r[2] or "") for r in ws.rows(
        "SELECT sample_id, left(prompt, 240), left(reply, 240) FROM samples "
        "WHERE sample_id IN (SELECT unnest(?::BIGINT[]))", [ids])}
    for e in exs:
        pr, rp = got.get(int(sample_ids[e.pop("_j")]), ("", ""))
        e["prompt"], e["reply"] = pr, rp


def _label_df(nr: pl.Series, np_: pl.Series, member_lists: list[list[int]],
              hits: tuple | None = None) -> dict[str, int]:
    """Dataset document frequency (reply or prompt) of the candidate label words, from the
    token postings (``hits`` = reply and prompt :class:`~forensics.triage_signals.Hits`)."""
    words: Counter = Counter()
    for members in member_lists:
        for j in members[:400]:
            words.update({w for w in (nr[j] + " " + np_[j]).split()
                          if len(w) >= 3 and w not in _STOP and any(c.isalpha() for c in w)})
    cand = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:150]]
    hr, hp = hits if hits is not None else (ts.Hits(nr), ts.Hits(np_))
    hr._tokens(cand)
    hp._tokens(cand)
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


def _embedding_clusters(ws: "Workspace", dataset: str, sample_ids: np.ndarray, rest: list[int],
                        fused: np.ndarray, p: TriageParams, oi: Any = None
                        ) -> list[tuple[dict, list[int]]]:
    from forensics.search import index

    if oi is None:
        try:
            oi = index.open_index(ws, dataset, "pair", read_only=True)
        except (NotFoundError, StaleError):
            oi = None
    if oi is None:
        return [({"kind": "residual"}, rest)]
    rest = rest[:500]
    vecs = oi.vectors(sample_ids[rest])
    labels = _agglomerate(vecs, p.agglo_distance)
    pos = {int(s): i for i, s in enumerate(sample_ids)}
    out = []
    for lab in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == lab)
        members = [rest[i] for i in idx]
        if len(members) < 2:
            out.append(({"kind": "singleton"}, members))
            continue
        cen = vecs[idx].mean(axis=0)
        cen /= max(np.linalg.norm(cen), 1e-12)
        radius = float((vecs[idx] @ cen).min())
        k = min(oi.ntotal, 4 * len(members) + 10)
        s, ids = oi.search(cen[None, :], k)
        grown = set(members)
        for sc, x in zip(s[0], ids[0]):
            j = pos.get(int(x))
            if x >= 0 and sc >= radius and j is not None:
                grown.add(j)
        out.append(({"kind": "embedding", "radius": round(radius, 4),
                     "pool_members": len(members)}, sorted(grown)))
    return out


def _profile(df: pl.DataFrame, members: list[int], signals: dict[str, np.ndarray],
             fused: np.ndarray, meta: dict, p: TriageParams, meta_index: "_Meta") -> dict:
    sub = df[members]
    pairs = Counter(f"{a or '?'}→{b or '?'}" for a, b in zip(sub["prompt_lang"], sub["reply_lang"]))
    prof: dict[str, Any] = {
        "size": len(members),
        "lang_pairs": dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:8]),
        "mean_scores": {s: round(float(v[members].mean()), 4) for s, v in signals.items()}
        | {"fused": round(float(fused[members].mean()), 4)},
        "kind": meta.get("kind"),
    }
    if "signature" in meta:
        prof["signature"] = meta["signature"]
    if "pool_members" in meta:
        prof["found_by_search"] = meta["pool_members"]
        prof["added_by_expansion"] = len(members) - meta["pool_members"]
    if "translation_request" in sub.columns:
        prof["translation_requests"] = int(sub["translation_request"].sum())
    prof["metadata"] = _meta_concentration(meta_index, members)
    ex = sorted(members, key=lambda j: -fused[j])[:p.examples]
    # texts filled in by _fill_examples (one query for every cluster's examples)
    prof["examples"] = [{"row_id": df["row_id"][j], "_j": int(j)} for j in ex]
    return prof


class _Meta:
    """Row metadata for cluster profiles, extracted per key on demand.

    Why not parse every row's JSON: at 100k rows that alone cost 0.2-0.5 s per triage, while
    a profile needs the keys of its members (parsed in Python, a few thousand rows) and, per
    key, one dataset-wide column of values (extracted by DuckDB in milliseconds). Values are
    compared as DuckDB's ``json_extract_string`` renders them, inside and outside a cluster.
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
                vals = pl.from_arrow(self.ws.con.sql(
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


def _meta_concentration(meta: _Meta, members: list[int]) -> dict:
    """For each metadata key: the cluster's top values with their share in the cluster, their
    share in the dataset, and the lift (cluster share / dataset share)."""
    keys = sorted({k for j in members for k, v in meta.row(j).items()
                   if isinstance(v, (str, int, float, bool))})[:6]
    out = {}
    for k in keys:
        cin = Counter(v for v in meta.values(k).gather(members).to_list() if v is not None)
        if not cin:
            continue
        call = meta.counts(k)
        tot_in, tot_all = sum(cin.values()), sum(call.values())
        top = []
        for v, c in sorted(cin.items(), key=lambda kv: (-kv[1], kv[0]))[:5]:
            share, base = c / tot_in, call.get(v, 0) / tot_all
            top.append({"value": v, "count": c, "share": round(share, 3),
                        "dataset_share": round(base, 3), "lift": round(share / base, 2) if base else None})
        out[k] = top
    return out


# ------------------------------------------------------------------------------ storage
def _store(ws: "Workspace", anomaly_id: int, dataset: str, params: dict, versions: dict,
           findings: list[dict], clusters: list[dict], summary: dict) -> int:
    run_id = ws.next_id("triage_run_id_seq")
    con = ws.con
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("INSERT INTO triage_runs (run_id, anomaly_id, dataset, status, params, "
                    "index_versions, summary) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                    [run_id, anomaly_id, dataset, json.dumps(params), json.dumps(versions),
                     json.dumps(summary, ensure_ascii=False, default=str)])
        if findings:
            f = pl.DataFrame({
                "run_id": [run_id] * len(findings),
                "rank": [x["rank"] for x in findings],
                "sample_id": [x["sample_id"] for x in findings],
                "row_id": [x["row_id"] for x in findings],
                "score": [x["score"] for x in findings],
                "cluster_id": [x["cluster_id"] for x in findings],
                "signals": [json.dumps(x["signals"]) for x in findings],
            }, schema={"run_id": pl.Int64, "rank": pl.Int32, "sample_id": pl.Int64,
                       "row_id": pl.Utf8, "score": pl.Float64, "cluster_id": pl.Int32,
                       "signals": pl.Utf8})
            con.register("_triage_findings", f)
            con.execute("INSERT INTO findings SELECT run_id, rank, sample_id, row_id, score, "
                        "cluster_id, signals::JSON FROM _triage_findings")
            con.unregister("_triage_findings")
        if clusters:
            c = pl.DataFrame({
                "run_id": [run_id] * len(clusters),
                "cluster_id": [x["cluster_id"] for x in clusters],
                "rank": [x["rank"] for x in clusters],
                "size": [x["size"] for x in clusters],
                "label": [x["label"] for x in clusters],
                "score": [x["score"] for x in clusters],
                "profile": [json.dumps(x["profile"], ensure_ascii=False) for x in clusters],
            }, schema={"run_id": pl.Int64, "cluster_id": pl.Int32, "rank": pl.Int32,
                       "size": pl.Int32, "label": pl.Utf8, "score": pl.Float64, "profile": pl.Utf8})
            con.register("_triage_clusters", c)
            con.execute("INSERT INTO clusters SELECT run_id, cluster_id, rank, size, label, score, "
                        "profile::JSON FROM _triage_clusters")
            con.unregister("_triage_clusters")
            mem = [(x["cluster_id"], sid, sc) for x in clusters for sid, sc in x["_member_scores"]]
            m = pl.DataFrame({"run_id": [run_id] * len(mem), "cluster_id": [a for a, _, _ in mem],
                              "sample_id": [b for _, b, _ in mem], "score": [s for _, _, s in mem]},
                             schema={"run_id": pl.Int64, "cluster_id": pl.Int32,
                                     "sample_id": pl.Int64, "score": pl.Float64})
            con.register("_triage_members", m)
            con.execute("INSERT INTO cluster_members SELECT run_id, cluster_id, sample_id, score "
                        "FROM _triage_members")
            con.unregister("_triage_members")
        con.execute("UPDATE triage_runs SET status = 'done', finished_at = current_timestamp "
                    "WHERE run_id = ?", [run_id])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return run_id


# ------------------------------------------------------------------------------ reading back
def load_run(ws: "Workspace", run_id: int) -> dict:
    row = ws.one("SELECT run_id, anomaly_id, dataset, status, CAST(params AS VARCHAR), "
                 "CAST(index_versions AS VARCHAR), CAST(summary AS VARCHAR) FROM triage_runs "
                 "WHERE run_id = ?", [int(run_id)])
    if row is None:
        raise NotFoundError(f"triage run {run_id} not found",
                            hint="list runs with: forensics sql \"SELECT * FROM triage_runs\"")
    return {"run_id": row[0], "anomaly_id": row[1], "dataset": row[2], "status": row[3],
            "params": json.loads(row[4] or "{}"), "index_versions": json.loads(row[5] or "{}"),
            "summary": json.loads(row[6] or "{}")}


def export_frame(ws: "Workspace", run_id: int) -> pl.DataFrame:
    """Findings joined with sample text, plus every cluster member that is not a finding
    (``rank`` null), so a data team can drop or fix all suspect rows."""
    load_run(ws, run_id)
    return ws.sql(
        "WITH f AS (SELECT run_id, rank, sample_id, score, cluster_id, CAST(signals AS VARCHAR) "
        "AS signals FROM findings WHERE run_id = ?), "
        "m AS (SELECT run_id, NULL::INTEGER AS rank, sample_id, score, cluster_id, NULL AS signals "
        "FROM cluster_members WHERE run_id = ? AND sample_id NOT IN (SELECT sample_id FROM f)), "
        "u AS (SELECT * FROM f UNION ALL SELECT * FROM m) "
        "SELECT u.run_id, u.rank, s.row_id, u.sample_id, u.score, u.cluster_id, c.rank AS cluster_rank, "
        "c.label AS cluster_label, s.dataset, s.prompt, s.reply, s.prompt_lang, s.reply_lang, "
        "CAST(s.meta AS VARCHAR) AS meta, u.signals "
        "FROM u JOIN samples s USING (sample_id) "
        "LEFT JOIN clusters c ON c.run_id = u.run_id AND c.cluster_id = u.cluster_id "
        "ORDER BY u.rank NULLS LAST, c.rank NULLS LAST, u.score DESC, u.sample_id",
        [int(run_id), int(run_id)])


def export(ws: "Workspace", run_id: int, fmt: str, path: str) -> int:
    df = export_frame(ws, run_id)
    if fmt == "csv":
        df.write_csv(path)
    elif fmt == "parquet":
        df.write_parquet(path)
    elif fmt == "jsonl":
        df.write_ndjson(path)
    else:
        from forensics.errors import UsageError

        raise UsageError(f"unknown format {fmt!r}", hint="csv, parquet or jsonl")
    return df.height


__all__ = ["triage", "TriageParams", "TriageResult", "load_run", "export_frame", "export", "SIGNALS"]
