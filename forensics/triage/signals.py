"""Triage signals computed over a WHOLE dataset, vectorised in polars.

Why whole-dataset and not only ANN candidates: a planted batch can hold thousands of rows
while a nearest-neighbour search returns the few closest; behaviour features and phrase
matches are cheap column operations (Rust regex / literal search in polars), so every row
gets them and the batch surfaces in full.

Signals here:

* ``language``  the anomaly's prompt->reply language switch (or the languages its
  explanations name) matched against each row's detected languages; rows whose prompt asks
  for that language (translation requests, "answer in X") are hard negatives and are
  down-weighted; same-language pairs never match a switch.
* ``phrase``    distinctive phrases: n-grams of the anomaly reply and of phrases quoted in
  its explanations that are rare corpus-wide but shared by a batch of rows (document
  frequency inside a "batch band"), weighted by rarity and by how little they echo the
  question (topic words follow the question; a behaviour does not); then the vocabulary is
  expanded with n-grams enriched in the matched rows, so variants of the behaviour that
  share nothing with the anomaly's exact wording still surface.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import polars as pl

# English names and endonyms -> ISO 639-1. Extended at run time by forensics.features'
# LANGUAGE_NAMES when that module is installed (see language_names()).
_NAMES = {
    "english": "en", "german": "de", "deutsch": "de", "spanish": "es", "español": "es",
    "espanol": "es", "castilian": "es", "chinese": "zh", "mandarin": "zh", "中文": "zh",
    "vietnamese": "vi", "tiếng việt": "vi", "turkish": "tr", "türkçe": "tr", "greek": "el",
    "ελληνικά": "el", "romanian": "ro", "română": "ro", "russian": "ru", "русский": "ru",
    "arabic": "ar", "hindi": "hi", "thai": "th", "french": "fr", "français": "fr",
    "italian": "it", "italiano": "it", "portuguese": "pt", "português": "pt", "dutch": "nl",
    "japanese": "ja", "日本語": "ja", "korean": "ko", "한국어": "ko", "polish": "pl",
    "polski": "pl", "ukrainian": "uk", "czech": "cs", "swedish": "sv", "danish": "da",
    "norwegian": "no", "finnish": "fi", "hungarian": "hu", "hebrew": "he", "persian": "fa",
    "farsi": "fa", "indonesian": "id", "malay": "ms", "bengali": "bn", "urdu": "ur",
    "tamil": "ta", "swahili": "sw", "bulgarian": "bg", "serbian": "sr", "croatian": "hr",
    "slovak": "sk", "slovenian": "sl", "lithuanian": "lt", "latvian": "lv", "estonian": "et",
    "catalan": "ca", "tagalog": "tl", "filipino": "tl",
}


def language_names() -> dict[str, str]:
    """Lower-case language name -> ISO 639-1 code (ours, merged with forensics.features')."""
    names = dict(_NAMES)
    try:  # engineer H3's module; optional
        from forensics.language import names as features  # type: ignore

        extra = getattr(features, "LANGUAGE_NAMES", None) or {}
        for k, v in extra.items():
            # accept both directions: {"de": "German"} or {"german": "de"}
            if isinstance(k, str) and isinstance(v, str):
                if len(k) <= 3 and len(v) > 3:
                    names.setdefault(v.lower(), k.lower())
                elif len(v) <= 3 and len(k) > 3:
                    names.setdefault(k.lower(), v.lower())
            elif isinstance(k, str) and isinstance(v, (list, tuple)):
                for n in v:
                    if isinstance(n, str):
                        names.setdefault(n.lower(), k.lower())
    except Exception:  # noqa: BLE001 - a broken optional module must not break triage
        pass
    return names


def _names_alt(names: dict[str, str]) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def language_mentions(texts: Iterable[str]) -> Counter:
    """How often each language is named in ``texts`` (codes)."""
    names = language_names()
    pat = re.compile(r"(?<!\w)(" + _names_alt(names) + r")(?!\w)", re.IGNORECASE)
    c: Counter = Counter()
    for t in texts:
        for m in pat.finditer(t or ""):
            c[names[m.group(1).lower()]] += 1
    return c


def request_columns(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``requested_lang`` (language the prompt asks the reply to be in, or null) and
    ``translation_request`` (bool) for every row.

    Why through :mod:`forensics.language.requests`: these are the hard negatives of a language-switch
    anomaly, and the mistranslation pipeline check asks the same question; one piece of code
    answers it for both (evaluated once per distinct prompt; triage caches the result per
    dataset state, see :mod:`forensics.triage.rows`).
    """
    from forensics.language import requests as features

    prompts = df["prompt"].fill_null("")
    uniq = prompts.unique(maintain_order=True).to_list()
    res = [features.analyse(p) for p in uniq]
    table = pl.DataFrame({"_pk": uniq, "requested_lang": [r[0] for r in res],
                          "translation_request": [bool(r[1]) for r in res]},
                         schema={"_pk": pl.Utf8, "requested_lang": pl.Utf8,
                                 "translation_request": pl.Boolean})
    return (df.with_columns(prompts.alias("_pk"))
            .join(table, on="_pk", how="left", maintain_order="left").drop("_pk"))


# ------------------------------------------------------------------------------ language
@dataclass
class LanguageTarget:
    """What language switch the anomaly shows: prompt languages S -> reply languages T."""

    sources: list[str]
    targets: dict[str, float]          # reply language -> weight (1 = strongest)
    evidence: str

    @property
    def active(self) -> bool:
        return bool(self.targets)


def language_target(prompt_lang: str | None, reply_lang: str | None,
                    explanations: Sequence[str], prompt: str | None = None) -> LanguageTarget:
    """Derive the language switch from the anomaly.

    Observed prompt/reply languages win; languages named in the explanations add targets
    (weighted by how often they are named) unless they are the prompt's own language.
    A same-language anomaly whose explanations name no other language has no target.
    """
    mentions = language_mentions(explanations)
    targets: dict[str, float] = {}
    evidence = []
    if prompt_lang and reply_lang and prompt_lang != reply_lang:
        targets[reply_lang] = 1.0
        evidence.append(f"observed {prompt_lang}->{reply_lang}")
    from forensics.language import requests as features

    requested = features.requested_language(prompt) if prompt else None
    named = {l: c for l, c in mentions.items() if l != prompt_lang}
    if named:
        top = max(named.values())
        for l, c in sorted(named.items()):
            if l == requested:
                continue
            w = 0.5 + 0.5 * c / top
            targets[l] = max(targets.get(l, 0.0), w)
        evidence.append("named in explanations: " + ", ".join(f"{l}x{c}" for l, c in sorted(named.items())))
    if prompt_lang:
        sources = [prompt_lang]
    else:
        # no observed prompt: any named language other than the target may be the source
        sources = sorted(set(mentions) - {max(targets, key=lambda k: (targets[k], k))}) if targets else []
    if requested and requested in targets and not (reply_lang == requested and prompt_lang != reply_lang):
        targets.pop(requested, None)
    return LanguageTarget(sources=sources, targets=targets, evidence="; ".join(evidence))


def language_scores(df: pl.DataFrame, tgt: LanguageTarget, legit_penalty: float = 0.1,
                    min_conf: float = 0.0) -> np.ndarray:
    """Per-row language-switch match in [0, 1] (needs prompt_lang, reply_lang,
    requested_lang, translation_request columns)."""
    if not tgt.active or df.height == 0:
        return np.zeros(df.height, np.float32)
    tmap = pl.DataFrame({"reply_lang": list(tgt.targets), "_tw": list(tgt.targets.values())},
                        schema={"reply_lang": pl.Utf8, "_tw": pl.Float64})
    cols = ["prompt_lang", "reply_lang", "requested_lang", "translation_request"]
    if "reply_lang_conf" in df.columns:
        cols.append("reply_lang_conf")
    d = df.select(cols).with_row_index("_i")
    d = d.join(tmap, on="reply_lang", how="left").sort("_i")
    switch = (pl.col("prompt_lang").is_not_null() & pl.col("reply_lang").is_not_null()
              & (pl.col("prompt_lang") != pl.col("reply_lang")))
    src_ok = pl.col("prompt_lang").is_in(tgt.sources) if tgt.sources else pl.lit(True)
    # a request excuses only the language it asks for: "what does ctenophore mean in Greek?"
    # answered in Vietnamese is still a switch; a translation request whose target language
    # could not be read gets the benefit of the doubt
    legit = ((pl.col("requested_lang") == pl.col("reply_lang")).fill_null(False)
             | (pl.col("translation_request") & pl.col("requested_lang").is_null()))
    s = (pl.when(switch & pl.col("_tw").is_not_null())
         .then(pl.col("_tw") * pl.when(src_ok).then(1.0).otherwise(0.5))
         .otherwise(0.0))
    s = s * pl.when(legit).then(legit_penalty).otherwise(1.0)
    if "reply_lang_conf" in df.columns:
        # a language detected with low confidence (short replies, names, numbers, markup) is
        # no evidence of a switch: scale by the detector's confidence
        s = s * pl.col("reply_lang_conf").fill_null(1.0).clip(0.0, 1.0)
    return d.select(s.alias("s"))["s"].to_numpy().astype(np.float32)


# ------------------------------------------------------------------------------ phrases
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


# quote PAIRS of any length, filtered by length afterwards: a length bound inside the pattern
# skipped a short quote ("?") and then paired its closing mark with the next opening one,
# quoting the prose between two quotes (' expects an opening wrapper tag such as ')
_QUOTE = re.compile(r"[\"“”«»„]([^\"“”«»„]*)[\"“”«»„]")


def quoted_phrases(texts: Iterable[str]) -> list[str]:
    out = []
    for t in texts:
        out.extend(m.group(1).strip() for m in _QUOTE.finditer(t or ""))
    return [q for q in out if 3 <= len(q) <= 160]


def _scan(col: pl.Series, grams: Sequence[str], rows: np.ndarray | None = None
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
        return _scan(self.col, tokens)


class Hits:
    """Which rows of one normalised column (:func:`norm_expr`) contain each n-gram, memoised.

    Single tokens come from a postings source (token -> sorted row positions): the per-dataset
    token index stored by :mod:`forensics.triage.rows`, or a scan. An n-gram of several
    tokens can only occur in rows holding its rarest token, so the multi-token n-grams of a
    batch are matched in ONE Aho-Corasick pass over the union of those rows only. Why: the
    phrase signal probes hundreds of candidate n-grams in a dozen batches; a full pass over
    100k rows per batch cost ~1 s per triage, while the candidates are rare by construction
    (a batch phrase lives in at most ``max_df_frac`` of the rows).
    """

    def __init__(self, col: pl.Series, postings=None):
        self.col = col.rename("t")
        self.n = len(col)
        self.postings = postings if postings is not None else ScanPostings(self.col)
        self.cache: dict[str, np.ndarray] = {}
        self._post: dict[str, np.ndarray] = {}

    def _tokens(self, toks: Iterable[str]) -> None:
        need = sorted({t for t in toks if t not in self._post})
        if need:
            got = self.postings.get(need)
            for t in need:
                self._post[t] = got.get(t, np.zeros(0, np.int64))

    def rows(self, token: str) -> np.ndarray:
        """Sorted row positions holding ``token``."""
        self._tokens([token])
        return self._post[token]

    def df(self, token: str) -> int:
        """Number of rows holding ``token`` (no mask built)."""
        self._tokens([token])
        return len(self._post[token])

    def prefetch(self, grams: Iterable[str]) -> None:
        todo = sorted({g for g in grams if g not in self.cache})
        if not todo:
            return
        split = {g: g.split(" ") for g in todo}
        self._tokens(t for parts in split.values() for t in parts)
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
        for g, pos in _scan(self.col, multi, rows).items():
            if g in self.cache:
                self.cache[g][pos] = True

    def __call__(self, g: str) -> np.ndarray:
        if g not in self.cache:
            self.prefetch([g])
        return self.cache[g]



@dataclass
class PhraseResult:
    scores: np.ndarray
    vocab: dict[str, float] = field(default_factory=dict)     # n-gram -> weight used
    seed_vocab: dict[str, float] = field(default_factory=dict)
    expanded: bool = False
    # unsaturated evidence per row (the expansion's log-odds, else the seed score): the
    # posterior saturates at 1.0, so cluster membership cuts on this instead
    strength: np.ndarray | None = None


def _is_word(g: str) -> bool:
    return any(ch.isalnum() for ch in g)


def phrase_scores(nr: pl.Series, np_: pl.Series, sources: Sequence[tuple[str, float]],
                  prompt_text: str | None, min_df: int = 4, max_df_frac: float = 0.15,
                  n_max: int = 4, expand: bool = True, max_vocab: int = 40, rounds: int = 4,
                  hits: Hits | None = None, phits: Hits | None = None) -> PhraseResult:
    """Distinctive-phrase score per row in [0, 1].

    ``nr``/``np_``: normalised reply/prompt columns (:func:`norm_expr`). ``sources``: texts
    to draw candidate n-grams from, with a weight (explanation quotes > anomaly reply).
    ``hits``/``phits``: :class:`Hits` over ``nr``/``np_`` (e.g. backed by the dataset's stored
    token index); built by scanning when omitted.
    """
    n = len(nr)
    if n == 0 or not sources:
        return PhraseResult(np.zeros(n, np.float32))
    max_df = max(min_df, int(max_df_frac * n))
    prompt_toks = set(tokens(prompt_text or ""))
    # candidate n-grams with their source weight
    cand: dict[str, float] = {}
    cand_src: dict[str, str] = {}
    for text, w in sources:
        toks = tokens(text)
        for g in ngrams(toks, n_max):
            if _is_word(g):
                cand[g] = max(cand.get(g, 0.0), w)
                if w >= 1.0:
                    cand_src[g] = "quote"
    if not cand:
        return PhraseResult(np.zeros(n, np.float32))
    # apriori pruning: an n-gram is at most as frequent as its rarest unigram
    uni = sorted({t for g in cand for t in g.split(" ")})
    hits = hits if hits is not None else Hits(nr)
    phits = phits if phits is not None else Hits(np_)
    hits._tokens(uni)
    udf = {u: hits.df(u) for u in uni}
    vocab = _weigh(hits, phits, cand, udf, prompt_toks, min_df, max_df, n)
    vocab = _coherent(hits, vocab, keep={g for g in vocab if cand_src.get(g) == "quote"})
    if not vocab:
        return PhraseResult(np.zeros(n, np.float32))
    scores = _score(hits, vocab)
    res = PhraseResult(scores, vocab=dict(vocab), seed_vocab=dict(vocab), strength=scores.astype(np.float64))
    if not expand:
        return res
    top = float(scores.max())
    in_s = scores >= 0.5 * top if top > 0 else np.zeros(n, bool)
    if in_s.sum() < min_df:
        return res
    post, feats, logit = _expand(nr, phits, in_s, udf, min_df, max_df, rounds, max_vocab, hits)
    if feats:
        res.strength = logit
        res.scores = np.maximum(post, 0.5 * scores).astype(np.float32)
        res.vocab = {**vocab, **feats}
        res.expanded = True
    return res


def _expand(nr: pl.Series, phits: "Hits", in_s: np.ndarray, udf: dict[str, int], min_df: int,
            max_df: int, rounds: int, max_vocab: int, hits=None
            ) -> tuple[np.ndarray, dict[str, float], np.ndarray]:
    """Grow the matched row set S by a few rounds of naive-Bayes expansion.

    Each round picks n-grams much more frequent in S than outside it (P(g|S) >= 10 P(g|not S)),
    that do not echo the prompt (a behaviour is independent of the question) and whose
    outside-S rate is small for single words (so common words such as "more" that happen to
    sit inside a batch phrase cannot pull in half the corpus), then scores every row by the
    prior log-odds of S plus the log-likelihood ratios of the n-grams it contains; rows with
    posterior >= 0.5 form the next S. Why: variants of a behaviour (another brand in the same
    ad, another wording of the same refusal) share part of their wording with rows in S but
    nothing with the anomaly's exact text, so they are reached through the rows between.
    """
    n = len(nr)
    dfc: dict[str, int] = dict(udf)
    post = in_s.astype(np.float32)
    feats: dict[str, float] = {}
    logit_out = post.astype(np.float64)
    hits = hits if hits is not None else Hits(nr)

    for _ in range(rounds):
        s_idx = np.flatnonzero(in_s)
        ns = len(s_idx)
        if ns < min_df or ns >= n:
            break
        if ns > 2000:
            s_idx = s_idx[:2000]
        need = max(3, int(0.05 * len(s_idx)))
        counts = _row_ngram_counts(nr.gather(s_idx.tolist()), 3, need)
        cand = [g for g, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if _is_word(g)][:150]
        chosen: dict[str, float] = {}
        stats: dict[str, tuple[int, int]] = {}
        # every lookup of this round in one pass per column (one pass costs the same for 1 or
        # 500 n-grams; one pass per word cost seconds at 100k rows)
        hits._tokens(p for g in cand for p in g.split(" "))
        hits.prefetch(cand)
        phits.prefetch(p for g in cand for p in g.split(" ") if _is_word(p))
        for g in cand:
            parts = g.split(" ")
            if any(dfc.setdefault(p, hits.df(p)) < min_df for p in parts):
                continue
            h = hits(g)
            df = int(h.sum())
            cs = int(h[in_s].sum())
            if df > max_df or df < min_df:
                continue
            p_s = (cs + 0.5) / (ns + 1)
            p_o = (df - cs + 0.5) / (n - ns + 1)
            if p_s < 10 * p_o:
                continue
            if len(parts) == 1 and _is_word(g) and not _reply_word(g, df, phits):
                continue
            words = [p for p in parts if _is_word(p)]
            echo_mask = np.ones(n, bool)
            for p in words:
                echo_mask &= phits(p)
            if (h & echo_mask).sum() > 0.3 * df:
                continue
            chosen[g] = math.log(p_s / p_o)
            stats[g] = (df, cs)
        # drop sub-n-grams that are the same phrase as a chosen super-n-gram (no double count)
        for g in sorted(chosen, key=len):
            for g2 in chosen:
                if g2 != g and f" {g} " in f" {g2} " and stats[g2][1] >= 0.9 * stats[g][1] \
                        and stats[g2][0] >= 0.9 * stats[g][0]:
                    chosen[g] = 0.0
                    break
        chosen = {g: w for g, w in chosen.items() if w > 0}
        chosen = dict(sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab])
        if not chosen:
            break
        # prior odds 1:10, and no single n-gram may overcome them alone: a row joins S on two
        # pieces of evidence. Why: a sub-n-gram that bridges to variants ("sponsored :" of
        # "sponsored : studynest pro", shared by every brand's ad) must stay a feature, but a
        # word seen in S only inside the batch phrase ("end" of "### end ###") also matches
        # ordinary prose ("the end zone"); variant rows carry several batch n-grams, prose one.
        prior = math.log(10.0)
        logit = np.full(n, -prior, np.float64)
        for g, w in chosen.items():
            logit += min(w, 0.9 * prior) * hits(g)
        _admit_templates(nr, logit, prior, min_df)
        post = (1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))).astype(np.float32)
        logit_out = logit
        feats = chosen
        new_s = post >= 0.5
        if np.array_equal(new_s, in_s):
            break
        in_s = new_s
    return post, feats, logit_out


def _admit_templates(nr: pl.Series, logit: np.ndarray, prior: float, min_df: int,
                     min_tokens: int = 4) -> None:
    """Let a repeated template in: rows with some batch evidence but below the bar (one batch
    n-gram) whose whole reply is the SAME text as at least ``min_df - 1`` other such rows.

    Why: one shared n-gram is not enough to join (ordinary prose shares a word with a batch
    phrase), but a group of identical replies that shares it is a variant of the behaviour
    ("Sorry, I am not able to answer questions like this one." reached from "I'm sorry, but
    ..." through "sorry ,"); prose rows sharing a word are not copies of each other. Joined
    rows sit at log-odds 0 (posterior 0.5); the next round learns their own n-grams."""
    part = np.flatnonzero((logit > -prior) & (logit < 0))
    if len(part) < min_df:
        return
    texts = nr.gather(part.tolist()).to_list()
    groups: dict[str, list[int]] = {}
    for j, t in zip(part, texts):
        t = (t or "").strip()
        if t.count(" ") + 1 >= min_tokens:
            groups.setdefault(t, []).append(int(j))
    for rows in groups.values():
        if len(rows) >= min_df:
            logit[rows] = 0.0


def _row_ngram_counts(texts: pl.Series, n_max: int, min_count: int) -> dict[str, int]:
    """In how many of ``texts`` (normalised, see :func:`norm_expr`) each 1..n_max-gram occurs,
    for those occurring in at least ``min_count`` texts. Vectorised in polars (was a Python
    loop over every row's n-grams: seconds for a few thousand rows)."""
    if len(texts) == 0:
        return {}
    t = (pl.DataFrame({"t": texts.str.strip_chars().str.split(" ")})
         .with_row_index("r").explode("t").filter(pl.col("t").is_not_null() & (pl.col("t") != "")))
    grams = [t.select("r", pl.col("t").alias("g"))]
    for k in range(1, n_max):
        # tokens are in row order: a shift stays inside the row when the row index agrees
        # (cheaper than a window .over("r"))
        parts = [pl.col("t")] + [pl.col("t").shift(-i) for i in range(1, k + 1)]
        grams.append(t.select("r", pl.when(pl.col("r").shift(-k) == pl.col("r"))
                              .then(pl.concat_str(parts, separator=" ")).alias("g"))
                     .drop_nulls("g"))
    allg = pl.concat(grams).unique()
    c = allg.group_by("g").len().filter(pl.col("len") >= min_count)
    return dict(zip(c["g"].to_list(), c["len"].to_list()))


def _coherent(hits_of: "Hits", vocab: dict[str, float], keep: set[str], min_share: float = 0.2,
              min_lift: float = 3.0) -> dict[str, float]:
    """Keep the seed n-grams whose rows also carry another seed n-gram, more than by chance.

    Why: the anomaly reply mixes the behaviour (an ad, a wrapper) with ordinary answer text;
    rows sharing a behaviour n-gram tend to share more of the behaviour, while rows sharing
    an ordinary fragment ("with a", "such as") share nothing else -- except by chance, and
    in a large dataset common fragments co-occur with each other often enough to pass a
    fixed share; hence the lift over the partner n-gram's own base rate (pairwise: a union
    of common partners has a base rate near its share). "Other" means sharing no
    WORD: punctuation runs ("###", ",") are not content, so "### end ###" and
    "### answer ###" can vouch for each other. Quoted phrases from the explanations are kept
    regardless: the NLA singled them out.
    """
    if len(vocab) < 2:
        return vocab
    grams = sorted(vocab)
    hits_of.prefetch(grams)
    hits = {g: hits_of(g) for g in grams}
    words = {g: {t for t in g.split(" ") if _is_word(t)} for g in grams}
    out = {}
    for g in grams:
        others = [h for g2, h in hits.items() if g2 != g and not (words[g] & words[g2])]
        if not others:
            out[g] = vocab[g]
            continue
        mine = hits[g]
        ok = False
        if mine.any():
            for h in others:          # one partner n-gram, associated well beyond chance
                share = float(h[mine].mean())
                if share >= min_share and share >= min_lift * float(h.mean()):
                    ok = True
                    break
        if ok or g in keep:
            out[g] = vocab[g]
    return out


def _reply_word(w: str, df_reply: int, phits: "Hits") -> bool:
    """A single word marks a behaviour only if it lives in replies, not in questions: common
    words ("more", "end", "like") occur in prompts too, a brand name or an apology does not."""
    return phits.df(w) <= 0.1 * df_reply


def _closed(vocab: dict[str, float], df: dict[str, int]) -> dict[str, float]:
    """Drop n-grams that are the same phrase as a longer one in the vocabulary (nearly the
    same rows), so one phrase is not counted many times and its fragments ("end" of
    "### end ###") do not match unrelated rows on their own."""
    out = {}
    for g, w in vocab.items():
        if any(g2 != g and f" {g} " in f" {g2} " and df.get(g2, 0) >= 0.8 * df.get(g, 1)
               for g2 in vocab):
            continue
        out[g] = w
    return out


def _weigh(hits: "Hits", phits: "Hits", cand: dict[str, float], udf: dict[str, int],
           prompt_toks: set[str], min_df: int, max_df: int, n: int,
           seed_rows: np.ndarray | None = None, seed_frac: dict[str, float] | None = None
           ) -> dict[str, float]:
    vocab: dict[str, float] = {}
    dfs: dict[str, int] = {}
    hits.prefetch(g for g in cand if min(udf.get(p, 0) for p in g.split(" ")) >= min_df)
    phits.prefetch(udf)
    for g, w in sorted(cand.items()):
        parts = g.split(" ")
        if min(udf.get(p, 0) for p in parts) < min_df:
            continue
        # an n-gram of only very common tokens ("of the", ", and") carries no behaviour
        if all(udf.get(p, 0) > max_df for p in parts) and len(parts) < 3:
            continue
        hit = hits(g)
        df = int(hit.sum())
        if df < min_df or df > max_df:
            continue
        # topic echo: rows whose prompt repeats the n-gram's words are answering a question
        # about it; a behaviour (an aside, a refusal) is independent of the question
        words = [p for p in parts if _is_word(p) and udf.get(p, 0) <= max_df]
        if words:
            echo_mask = np.ones(n, bool)
            for p in words:
                echo_mask = echo_mask & phits(p)
            echo = int((hit & echo_mask).sum()) / df
        else:
            echo = 0.0
        if any(p in prompt_toks for p in words):
            echo = max(echo, 0.5)
        weight = w * math.log(n / df) * (1.0 - echo) ** 2
        if len(words) == 1 and len(parts) == 1 and not _reply_word(g, df, phits):
            continue
        if seed_frac is not None:
            weight *= min(1.0, seed_frac.get(g, 0.0) * 2)
        if weight > 0:
            vocab[g] = weight
            dfs[g] = df
    return _closed(vocab, dfs)


def _score(hits: "Hits", vocab: dict[str, float]) -> np.ndarray:
    """0.8 x (best matched n-gram weight) + 0.2 x (sum of matched weights), both scaled to the
    dataset maximum. Why mostly max: overlapping sub-n-grams of one exact phrase would
    otherwise swamp a row that carries a variant of the behaviour."""
    n = hits.n
    tot = np.zeros(n, np.float64)
    best = np.zeros(n, np.float64)
    hits.prefetch(vocab)
    for g, w in vocab.items():
        hit = hits(g)
        tot[hit] += w
        np.maximum(best, np.where(hit, w, 0.0), out=best)
    if not n or tot.max() <= 0:
        return np.zeros(n, np.float32)
    return (0.8 * best / best.max() + 0.2 * tot / tot.max()).astype(np.float32)


__all__ = ["Hits", "ScanPostings", "language_names", "language_mentions", "request_columns", "LanguageTarget",
           "language_target", "language_scores", "norm_expr", "tokens", "ngrams",
           "quoted_phrases", "PhraseResult", "phrase_scores"]
