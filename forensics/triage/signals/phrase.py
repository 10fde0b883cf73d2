"""The ``phrase`` signal: distinctive phrases shared by a batch of rows, over the whole dataset.

Candidate n-grams come from phrases quoted in the anomaly's explanations and (for a
same-language anomaly) from its reply. An n-gram counts when it is rare corpus-wide but shared
by a batch (document frequency between ``min_df`` and ``max_df_frac`` of the rows), weighted
by rarity and by how little it echoes the question (topic words follow the question; a
behaviour does not), and when its rows also carry another seed n-gram more than by chance.
The vocabulary is then expanded by naive-Bayes rounds with n-grams enriched in the matched
rows, so variants of the behaviour that share nothing with the anomaly's exact wording are
reached through the rows between.

Why whole-dataset and not only ANN candidates: a planted batch can hold thousands of rows
while a nearest-neighbour search returns the few closest; phrase matches are cheap column
operations (token postings plus Aho-Corasick passes), so every row gets them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register
from forensics.triage.text import Hits, ngrams, tokens

# the log-odds are clipped before the logistic function (numerical range only, not a knob)
_LOGIT_CLIP = 30.0

# quote PAIRS of any length, filtered by length afterwards: a length bound inside the pattern
# would skip a short quote and pair its closing mark with the next opening one, quoting the
# prose between two quotes
_QUOTE = re.compile(r"[\"“”«»„]([^\"“”«»„]*)[\"“”«»„]")


@dataclass
class PhraseParams:
    """Knobs of the phrase signal (documented in docs/triage.md)."""

    quote_weight: float = 1.0          # source weight of phrases quoted in the explanations
    reply_weight: float = 0.7          # source weight of the anomaly reply's n-grams
    quote_min_chars: int = 3           # quoted phrases shorter than this are ignored
    quote_max_chars: int = 160         # ... and longer than this
    n_max: int = 4                     # longest seed n-gram (tokens)
    min_df: int = 4                    # a batch phrase is held by at least this many rows
    max_df_frac: float = 0.15          # ... and at most this share of the dataset
    common_min_tokens: int = 3         # shorter n-grams made only of common tokens are dropped
    echo_floor: float = 0.5            # echo share assumed when the anomaly prompt holds a word
    echo_power: float = 2.0            # weight factor (1 - echo) ** echo_power
    reply_word_max_prompt: float = 0.1  # single word: prompt df at most this share of reply df
    closed_overlap: float = 0.8        # a sub-n-gram holding >= this share of a longer one's rows goes
    coherence_min_share: float = 0.2   # a seed n-gram's rows must carry a partner n-gram this often
    coherence_min_lift: float = 3.0    # ... and this many times its base rate
    score_best_weight: float = 0.8     # row score = this x best matched weight (scaled) ...
    score_sum_weight: float = 0.2      # ... + this x sum of matched weights (scaled)
    expand: bool = True                # grow the vocabulary from the matched rows
    expand_rounds: int = 4             # naive-Bayes expansion rounds
    expand_seed_share: float = 0.5     # initial matched rows: seed score >= this x the maximum
    expand_max_rows: int = 2000        # matched rows read per round (first ones)
    expand_ngram: int = 3              # longest expansion n-gram
    expand_min_support: int = 3        # an expansion n-gram is in at least this many matched rows
    expand_min_support_share: float = 0.05  # ... and this share of them
    expand_candidates: int = 150       # most frequent candidates considered per round
    expand_enrichment: float = 10.0    # P(g | matched) >= this x P(g | not matched)
    expand_pseudo_count: float = 0.5   # additive smoothing of those two rates
    expand_max_echo: float = 0.3       # an n-gram whose rows echo it in the prompt this often is out
    expand_same_phrase: float = 0.9    # a sub-n-gram with this share of a chosen one's rows is dropped
    max_vocab: int = 40                # expansion n-grams kept per round
    prior_odds: float = 10.0           # prior odds against a row being in the batch
    single_evidence_cap: float = 0.9   # no n-gram's log-likelihood exceeds this share of the prior
    expanded_seed_floor: float = 0.5   # expanded score >= this x seed score
    template_min_rows: int = 4         # identical replies that join as a template variant
    template_min_tokens: int = 4       # ... each at least this many tokens long
    report_vocab: int = 12             # n-grams listed in the run summary


@dataclass
class PhraseResult:
    scores: np.ndarray
    vocab: dict[str, float] = field(default_factory=dict)     # n-gram -> weight used
    seed_vocab: dict[str, float] = field(default_factory=dict)
    expanded: bool = False
    # unsaturated evidence per row (the expansion's log-odds, else the seed score): the
    # posterior saturates at 1.0, so cluster membership cuts on this instead
    strength: np.ndarray | None = None


def quoted_phrases(texts: Iterable[str], min_chars: int = PhraseParams.quote_min_chars,
                   max_chars: int = PhraseParams.quote_max_chars) -> list[str]:
    """Phrases inside quotation marks, ``min_chars`` to ``max_chars`` long."""
    out = []
    for t in texts:
        out.extend(m.group(1).strip() for m in _QUOTE.finditer(t or ""))
    return [q for q in out if min_chars <= len(q) <= max_chars]


def _is_word(g: str) -> bool:
    return any(ch.isalnum() for ch in g)


def phrase_scores(nr: pl.Series, np_: pl.Series, sources: Sequence[tuple[str, float, bool]],
                  prompt_text: str | None, params: PhraseParams | None = None,
                  hits: Hits | None = None, phits: Hits | None = None) -> PhraseResult:
    """Distinctive-phrase score per row in [0, 1].

    ``nr``/``np_``: normalised reply/prompt columns (:func:`forensics.triage.text.norm_expr`).
    ``sources``: ``(text, weight, quoted)`` to draw candidate n-grams from; quoted phrases are
    kept even when no other seed n-gram vouches for them. ``hits``/``phits``: :class:`Hits`
    over ``nr``/``np_`` (e.g. backed by the dataset's stored token index); built by scanning
    when omitted.
    """
    p = params or PhraseParams()
    n = len(nr)
    if n == 0 or not sources:
        return PhraseResult(np.zeros(n, np.float32))
    max_df = max(p.min_df, int(p.max_df_frac * n))
    prompt_toks = set(tokens(prompt_text or ""))
    cand: dict[str, float] = {}
    quoted: set[str] = set()
    for text, w, is_quote in sources:
        for g in ngrams(tokens(text), p.n_max):
            if _is_word(g):
                cand[g] = max(cand.get(g, 0.0), w)
                if is_quote:
                    quoted.add(g)
    if not cand:
        return PhraseResult(np.zeros(n, np.float32))
    # apriori pruning: an n-gram is at most as frequent as its rarest unigram
    uni = sorted({t for g in cand for t in g.split(" ")})
    hits = hits if hits is not None else Hits(nr)
    phits = phits if phits is not None else Hits(np_)
    hits.load_tokens(uni)
    udf = {u: hits.df(u) for u in uni}
    vocab = _weigh(hits, phits, cand, udf, prompt_toks, max_df, n, p)
    vocab = coherent(hits, vocab, keep={g for g in vocab if g in quoted},
                     min_share=p.coherence_min_share, min_lift=p.coherence_min_lift)
    if not vocab:
        return PhraseResult(np.zeros(n, np.float32))
    scores = _score(hits, vocab, p)
    res = PhraseResult(scores, vocab=dict(vocab), seed_vocab=dict(vocab), strength=scores.astype(np.float64))
    if not p.expand:
        return res
    top = float(scores.max())
    in_s = scores >= p.expand_seed_share * top if top > 0 else np.zeros(n, bool)
    if in_s.sum() < p.min_df:
        return res
    post, feats, logit = _expand(nr, phits, in_s, udf, max_df, hits, p)
    if feats:
        res.strength = logit
        res.scores = np.maximum(post, p.expanded_seed_floor * scores).astype(np.float32)
        res.vocab = {**vocab, **feats}
        res.expanded = True
    return res


def _expand(nr: pl.Series, phits: Hits, in_s: np.ndarray, udf: dict[str, int], max_df: int,
            hits: Hits, p: PhraseParams) -> tuple[np.ndarray, dict[str, float], np.ndarray]:
    """Grow the matched row set S by rounds of naive-Bayes expansion.

    Each round picks n-grams much more frequent in S than outside it (``expand_enrichment``),
    that do not echo the prompt (a behaviour is independent of the question) and, for single
    words, that live in replies rather than prompts (so common words that happen to sit
    inside a batch phrase cannot pull in half the corpus); then it scores every row by the
    prior log-odds of S plus the log-likelihood ratios of the n-grams it contains; rows with
    posterior >= 0.5 form the next S. Why: variants of a behaviour share part of their wording
    with rows in S but nothing with the anomaly's exact text, so they are reached through the
    rows between.
    """
    n = len(nr)
    min_df = p.min_df
    dfc: dict[str, int] = dict(udf)
    post = in_s.astype(np.float32)
    feats: dict[str, float] = {}
    logit_out = post.astype(np.float64)
    a = p.expand_pseudo_count

    for _ in range(p.expand_rounds):
        s_idx = np.flatnonzero(in_s)
        ns = len(s_idx)
        if ns < min_df or ns >= n:
            break
        if ns > p.expand_max_rows:
            s_idx = s_idx[:p.expand_max_rows]
        need = max(p.expand_min_support, int(p.expand_min_support_share * len(s_idx)))
        counts = _row_ngram_counts(nr.gather(s_idx.tolist()), p.expand_ngram, need)
        cand = [g for g, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if _is_word(g)][:p.expand_candidates]
        chosen: dict[str, float] = {}
        stats: dict[str, tuple[int, int]] = {}
        # every lookup of this round in one pass per column (one pass costs about the same for
        # one n-gram or hundreds)
        hits.load_tokens(t for g in cand for t in g.split(" "))
        hits.prefetch(cand)
        phits.prefetch(t for g in cand for t in g.split(" ") if _is_word(t))
        for g in cand:
            parts = g.split(" ")
            if any(dfc.setdefault(t, hits.df(t)) < min_df for t in parts):
                continue
            h = hits(g)
            df = int(h.sum())
            cs = int(h[in_s].sum())
            if df > max_df or df < min_df:
                continue
            p_s = (cs + a) / (ns + 2 * a)
            p_o = (df - cs + a) / (n - ns + 2 * a)
            if p_s < p.expand_enrichment * p_o:
                continue
            if len(parts) == 1 and _is_word(g) and not _reply_word(g, df, phits, p):
                continue
            words = [t for t in parts if _is_word(t)]
            echo_mask = np.ones(n, bool)
            for t in words:
                echo_mask &= phits(t)
            if (h & echo_mask).sum() > p.expand_max_echo * df:
                continue
            chosen[g] = math.log(p_s / p_o)
            stats[g] = (df, cs)
        # drop sub-n-grams that are the same phrase as a chosen super-n-gram (no double count)
        same = p.expand_same_phrase
        for g in sorted(chosen, key=len):
            for g2 in chosen:
                if g2 != g and f" {g} " in f" {g2} " and stats[g2][1] >= same * stats[g][1] \
                        and stats[g2][0] >= same * stats[g][0]:
                    chosen[g] = 0.0
                    break
        chosen = {g: w for g, w in chosen.items() if w > 0}
        chosen = dict(sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))[:p.max_vocab])
        if not chosen:
            break
        # no single n-gram may overcome the prior alone: a row joins S on two pieces of
        # evidence. Why: a sub-n-gram that bridges to variants (a fixed prefix shared by every
        # variant) must stay a feature, but a word seen in S only inside a batch phrase also
        # matches ordinary prose; variant rows carry several batch n-grams, prose one.
        prior = math.log(p.prior_odds)
        logit = np.full(n, -prior, np.float64)
        for g, w in chosen.items():
            logit += min(w, p.single_evidence_cap * prior) * hits(g)
        admit_templates(nr, logit, prior, p.template_min_rows, p.template_min_tokens)
        post = (1.0 / (1.0 + np.exp(-np.clip(logit, -_LOGIT_CLIP, _LOGIT_CLIP)))).astype(np.float32)
        logit_out = logit
        feats = chosen
        new_s = post >= 0.5
        if np.array_equal(new_s, in_s):
            break
        in_s = new_s
    return post, feats, logit_out


def admit_templates(nr: pl.Series, logit: np.ndarray, prior: float, min_rows: int,
                    min_tokens: int) -> None:
    """Template variants join the batch: among rows with some batch evidence but below the bar
    (log-odds strictly between ``-prior`` and 0), a group of at least ``min_rows`` rows whose
    whole normalised reply is the SAME text of at least ``min_tokens`` tokens is set to log-odds
    0 (posterior 0.5, a member); the next round learns its own n-grams.

    Why: one shared n-gram is not enough to join (ordinary prose shares a word with a batch
    phrase), but a group of identical replies reached through it is a repeated template, a
    variant of the behaviour; prose rows sharing a word are not copies of each other."""
    part = np.flatnonzero((logit > -prior) & (logit < 0))
    if len(part) < min_rows:
        return
    texts = nr.gather(part.tolist()).to_list()
    groups: dict[str, list[int]] = {}
    for j, t in zip(part, texts):
        t = (t or "").strip()
        if t.count(" ") + 1 >= min_tokens:
            groups.setdefault(t, []).append(int(j))
    for rows in groups.values():
        if len(rows) >= min_rows:
            logit[rows] = 0.0


def _row_ngram_counts(texts: pl.Series, n_max: int, min_count: int) -> dict[str, int]:
    """In how many of ``texts`` (normalised) each 1..n_max-gram occurs, for those occurring in
    at least ``min_count`` texts (vectorised in polars)."""
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


def coherent(hits_of: Hits, vocab: dict[str, float], keep: set[str],
             min_share: float = PhraseParams.coherence_min_share,
             min_lift: float = PhraseParams.coherence_min_lift) -> dict[str, float]:
    """Keep the seed n-grams whose rows also carry another seed n-gram, more than by chance.

    Why: the anomaly reply mixes the behaviour with ordinary answer text; rows sharing a
    behaviour n-gram tend to share more of the behaviour, while rows sharing an ordinary
    fragment share nothing else -- except by chance, and in a large dataset common fragments
    co-occur often enough to pass a fixed share; hence the lift over the partner n-gram's own
    base rate (pairwise: a union of common partners has a base rate near its share). "Other"
    means sharing no WORD: punctuation runs are not content, so two halves of a wrapper that
    share only punctuation can vouch for each other. ``keep`` (quoted phrases) are kept
    regardless: the explanation singled them out.
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


def _reply_word(w: str, df_reply: int, phits: Hits, p: PhraseParams) -> bool:
    """A single word marks a behaviour only if it lives in replies, not in questions: common
    words occur in prompts too, a brand name or an apology does not."""
    return phits.df(w) <= p.reply_word_max_prompt * df_reply


def _closed(vocab: dict[str, float], df: dict[str, int], overlap: float) -> dict[str, float]:
    """Drop n-grams that are the same phrase as a longer one in the vocabulary (nearly the
    same rows), so one phrase is not counted many times and its fragments do not match
    unrelated rows on their own."""
    out = {}
    for g, w in vocab.items():
        if any(g2 != g and f" {g} " in f" {g2} " and df.get(g2, 0) >= overlap * df.get(g, 1)
               for g2 in vocab):
            continue
        out[g] = w
    return out


def _weigh(hits: Hits, phits: Hits, cand: dict[str, float], udf: dict[str, int],
           prompt_toks: set[str], max_df: int, n: int, p: PhraseParams) -> dict[str, float]:
    min_df = p.min_df
    vocab: dict[str, float] = {}
    dfs: dict[str, int] = {}
    hits.prefetch(g for g in cand if min(udf.get(t, 0) for t in g.split(" ")) >= min_df)
    phits.prefetch(udf)
    for g, w in sorted(cand.items()):
        parts = g.split(" ")
        if min(udf.get(t, 0) for t in parts) < min_df:
            continue
        # an n-gram of only very common tokens carries no behaviour
        if all(udf.get(t, 0) > max_df for t in parts) and len(parts) < p.common_min_tokens:
            continue
        hit = hits(g)
        df = int(hit.sum())
        if df < min_df or df > max_df:
            continue
        # topic echo: rows whose prompt repeats the n-gram's words are answering a question
        # about it; a behaviour is independent of the question
        words = [t for t in parts if _is_word(t) and udf.get(t, 0) <= max_df]
        if words:
            echo_mask = np.ones(n, bool)
            for t in words:
                echo_mask = echo_mask & phits(t)
            echo = int((hit & echo_mask).sum()) / df
        else:
            echo = 0.0
        if any(t in prompt_toks for t in words):
            echo = max(echo, p.echo_floor)
        weight = w * math.log(n / df) * (1.0 - echo) ** p.echo_power
        if len(words) == 1 and len(parts) == 1 and not _reply_word(g, df, phits, p):
            continue
        if weight > 0:
            vocab[g] = weight
            dfs[g] = df
    return _closed(vocab, dfs, p.closed_overlap)


def _score(hits: Hits, vocab: dict[str, float], p: PhraseParams) -> np.ndarray:
    """``score_best_weight`` x (best matched n-gram weight) + ``score_sum_weight`` x (sum of
    matched weights), both scaled to the dataset maximum. Why mostly the best: overlapping
    sub-n-grams of one exact phrase would otherwise swamp a row that carries a variant."""
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
    return (p.score_best_weight * best / best.max()
            + p.score_sum_weight * tot / tot.max()).astype(np.float32)


@register
class PhraseSignal:
    """Rows sharing the anomaly's distinctive phrases as a batch (see the module docstring).

    ``row_evidence["strength"]``: unsaturated per-row evidence (the expansion's log-odds, else
    the seed score); ``summary["phrase_expanded"]`` says which."""

    name = "phrase"
    default_weight = 0.35
    Params = PhraseParams

    def score(self, context: SignalContext, params: PhraseParams) -> SignalScores | Unavailable:
        a = context.anomaly
        sources: list[tuple[str, float, bool]] = [
            (q, params.quote_weight, True)
            for q in quoted_phrases(a.explanations, params.quote_min_chars, params.quote_max_chars)]
        switch = a.switches_language
        if a.reply and not switch:
            # a reply in another language than its prompt: its words are language identity,
            # which the language signal covers; only same-language replies feed phrases
            sources.append((a.reply, params.reply_weight, False))
        if not sources:
            return Unavailable("no same-language reply or quoted phrase to draw phrases from")
        df = context.frame
        pr = phrase_scores(df["reply_norm"], df["prompt_norm"], sources, a.prompt, params,
                           hits=context.hits_reply, phits=context.hits_prompt)
        if not pr.vocab:
            return Unavailable("no phrase of the anomaly is shared by a batch of rows")
        top_vocab = sorted(pr.vocab.items(), key=lambda kv: (-kv[1], kv[0]))[:params.report_vocab]
        return SignalScores(
            pr.scores,
            summary={"phrase_vocab": {g: round(w, 3) for g, w in top_vocab},
                     "phrase_expanded": pr.expanded},
            row_evidence={"strength": pr.strength} if pr.strength is not None else {})


__all__ = ["PhraseParams", "PhraseResult", "PhraseSignal", "phrase_scores", "quoted_phrases",
           "coherent", "admit_templates"]
