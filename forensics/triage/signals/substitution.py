"""The ``substitution`` signal: a wrong fact stated across many questions, without a passage
to check it against (one entity's facts told of another, one wrong year or place for an
event).

1. **Substituted tokens** of the anomaly: the reply's anchors (tokens holding a digit;
   capitalised words that are not stopwords) that its prompt lacks and that the explanations
   name as a name or number outside their quotations (capitalised where no sentence starts,
   or holding a digit; an explanation quoting the reply names every reply word;
   the words it says itself, "credits Lund with", "dated 1931", point at the substituted
   entity), of a kind (a number: digits only; a name: any other anchor) of which the
   explanations name a value the reply lacks (the right one they contrast it with: "1927,
   not 1931"; a year the reply shares with them and that they contrast with no other year
   is the subject, not the substitute), held by at most ``max_df_frac`` of the replies.
   **Fallback** where no token is found so (explanations that only describe the behaviour,
   quote the reply, or name a value without contrasting it): the dataset picks it. A name or
   number of the reply (as the explanations' are read: capitalised where no sentence starts,
   or holding a digit) that its prompt lacks is a candidate when the training set states it (reply holds it,
   prompt does not) in at least ``fallback_min_states`` rows, in at most ``max_df_frac`` of
   the rows (rows asking about it do not count), and in ``fallback_min_lift``
   times more rows than prompts name it (+1): a systematic substitution makes one entity
   the answer to many questions that do not ask about it. The candidates the explanations
   name outside quotations are taken; with none named, the candidate of the highest ratio
   alone. A fallback token stands only with at least ``min_members`` members (step 3) that
   are at least ``fallback_min_member_share`` of its stating rows: an entity stated on every
   subject (a footer, a brand) is no substitution.
2. **Stating rows**: rows whose reply holds a substituted token and whose prompt does not
   (the entity stated where the question is about something else). A row whose prompt names
   the token was **asked** about it (a question about the other entity, answered): the
   behaviour in another context.
3. **Subject**: each stating row's prompt vector (``prompt`` index) against the subject
   query, the anomaly prompt's vector and the explanations' mean mixed by ``subject_mix``.
   A stating row is a **member** when its cosine stands ``member_z`` robust sd above the
   cosines of ``null_sample`` random prompts (median, MAD) and at least ``member_min_cos``:
   the wrong entity named in answers about the anomaly's subject, not an answer that names
   it in passing on another subject. With ``cross_rows``, stating rows the dataset
   contradicts (the same question answered otherwise, their own passage, the same sentence
   with another value) are members whatever their subject, and with ``answer_members``
   rows answering with the value near the contradicted ones join them
   (:mod:`forensics.triage.signals.substitution_rows`).

Score: a stating row's cosine, min-max normalised between the background median and the
best stating row (members at least ``member_floor``); other rows 0. Row evidence:
``member``, ``asked``, ``states`` (0/1 arrays) for the clustering (``forensics.triage.run``).
Unavailable for a language switch, an anomaly whose prompt has a context passage (the
grounding judgement covers it), without substituted tokens or without a prompt index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from forensics.triage.passage import TOKEN, context_passage, norm, stopwords
from forensics.triage.signals.base import SignalContext, SignalScores, Unavailable, register
from forensics.triage.signals.substitution_rows import cross_row_evidence

# a quotation inside an explanation: '...' or "..." (an apostrophe inside a word is not one)
_WORD = re.compile(r"\w+")   # one token of the n-gram lookups (forensics.triage.text)
_QUOTE = re.compile(r"(?<!\w)['\"“‘](.+?)['\"”’](?!\w)", re.S)


@dataclass
class SubstitutionParams:
    """Knobs of the substitution signal (documented in docs/triage.md)."""

    max_df_frac: float = 0.15     # a substituted token is in at most this share of replies
    min_token_chars: int = 2      # shorter tokens are never substituted tokens
    subject_mix: float = 0.5      # weight of the anomaly prompt in the subject query
    null_sample: int = 2000       # random prompts whose cosines to the subject are the background
    member_z: float = 2.0         # a member's cosine: background median + this x robust sd ...
    member_min_cos: float = 0.2   # ... and at least this
    member_floor: float = 0.5     # a member scores at least this
    min_members: int = 4          # fewer members than this: no substitution batch
    decides: bool = True          # members keep the anomaly's context; behaviour rows not
    #                               stating a token are lookalikes
    seed: int = 0                 # seed of the background sample
    fallback: bool = True         # without contrasting explanations, the dataset picks the token
    fallback_min_states: int = 8  # ... stated (reply, not prompt) in at least this many rows
    fallback_min_lift: float = 3.0  # ... and this many times more rows than prompts name it (+1)
    fallback_min_member_share: float = 0.3  # a fallback token stands only when at least this
    #                               share of its stating rows are members
    kind_check: bool = True       # with tokens but no batch: behaviour rows stating no value of
    #                               the tokens' kind unasked are lookalikes
    spans: bool = True            # adjacent substituted tokens are one value (a multi-word span)
    span_gap_chars: int = 3       # ... with a lower-case particle this short between two words
    cross_rows: bool = True       # the dataset's other rows judge each stating row
    #                               (signals.substitution_rows): contradicted rows are members
    same_question_overlap: float = 0.8  # two prompts ask the same question: Jaccard of the
    #                               question's content words at least this
    same_question_min_words: int = 2  # ... a question of fewer content words has no twins
    passage_contradicts: bool = True  # a stating row whose own context passage names another
    #                               value of the kind (not the substituted one) is contradicted
    answer_members: bool = True   # with min_members contradicted rows, stating rows that
    #                               answer with the value and are not agreed are members
    answer_subject: bool = True   # ... and whose prompt is near the contradicted rows' mean
    #                               prompt: cosine at least member_min_cos and ...
    answer_z: float = 1.0         # ... this many robust sd above the background's
    context_tokens: int = 3       # the words around the value in a stating reply, each side ...
    context_min_words: int = 4    # ... at least this many words in all, found elsewhere
    context_gap_tokens: int = 6   # ... around at most this many tokens without the value:
    #                               the same sentence with another value (contradicted)


def _anchors(text: str) -> list[str]:
    """Tokens of ``text`` holding a digit or capitalised and not a stopword, normalised."""
    stop = stopwords()
    out = []
    for t in TOKEN.findall(text or ""):
        n = norm(t)
        if any(c.isdigit() for c in t) or (t[:1].isupper() and n not in stop):
            out.append(n)
    return out


def substituted_tokens(prompt: str, reply: str, explanations: list[str],
                       min_chars: int = 2) -> list[str]:
    """The reply's anchors its prompt lacks that the explanations name outside quotations
    (step 1 of the module docstring, before the frequency cut), in reply order."""
    in_prompt = {norm(t) for t in TOKEN.findall(prompt or "")}
    said, said_anchors = set(), set()
    for e in explanations:
        own = _QUOTE.sub(" ", e or "")
        said |= _named(own)
        said_anchors |= set(_anchors(own))
    in_reply = set(_anchors(reply))
    # the kinds (number, name) of the values the explanations contrast the reply with
    kinds = {_kind(t) for t in said_anchors - in_reply}
    out = []
    for t in _anchors(reply):
        if _WORD.fullmatch(t) and len(t) >= min_chars and t not in in_prompt and t in said \
                and _kind(t) in kinds and t not in out:
            out.append(t)
    return out


def dataset_tokens(prompt: str, reply: str, explanations: list[str], hits_reply, hits_prompt,
                   n: int, params: SubstitutionParams) -> list[str]:
    """The fallback of step 1 (module docstring): the reply's anchors its prompt lacks that
    the training set states unasked (``hits_reply``/``hits_prompt``: :class:`Hits` of the
    normalised reply and prompt columns of ``n`` rows), those the explanations name outside
    quotations, else the one of the highest ratio; [] when none passes."""
    return _dataset_pick(prompt, reply, explanations, hits_reply, hits_prompt, n, params)[0]


def _dataset_pick(prompt: str, reply: str, explanations: list[str], hits_reply, hits_prompt,
                  n: int, params: SubstitutionParams) -> tuple[list[str], dict | None]:
    """:func:`dataset_tokens` and, when it picks none, the guard that stopped the candidate
    closest to passing (``{"guard", "value", "threshold"}``; ``None`` without candidates)."""
    in_prompt = {norm(t) for t in TOKEN.findall(prompt or "")}
    said = set()
    for e in explanations:
        said |= _named(_QUOTE.sub(" ", e or ""))
    scored, names, near = [], _named(reply or ""), None
    for t in dict.fromkeys(_anchors(reply)):
        if t not in names or not _WORD.fullmatch(t) or len(t) < params.min_token_chars or t in in_prompt:
            continue
        if not hits_reply.df(t):
            continue
        r, q = hits_reply(t), hits_prompt(t)
        states = int((r & ~q).sum())
        # a common word is stated everywhere; rows asked about the value do not count
        if states > params.max_df_frac * n:
            if near is None or near[0] < 1:
                near = (1, {"guard": "max_df_frac", "value": round(states / max(1, n), 4),
                            "threshold": params.max_df_frac})
            continue
        lift = states / (int(q.sum()) + 1)
        if states >= params.fallback_min_states and lift >= params.fallback_min_lift:
            scored.append((lift, states, t))
        elif states < params.fallback_min_states:
            if near is None or near[0] < 2 or (near[0] == 2 and near[1]["value"] < states):
                near = (2, {"guard": "fallback_min_states", "value": states,
                            "threshold": params.fallback_min_states})
        elif near is None or near[0] < 3 or near[1]["value"] < lift:
            near = (3, {"guard": "fallback_min_lift", "value": round(lift, 3),
                        "threshold": params.fallback_min_lift})
    named = [t for _, _, t in scored if t in said]
    if named:
        return named, None
    if scored:
        return [max(scored)[2]], None
    return [], None if near is None else near[1]


_JOIN = re.compile(r"\s+|\s*-\s*")   # what may stand between two words of one span


def value_spans(reply: str, toks: list[str] | set[str], max_gap_chars: int = 3) -> list[str]:
    """The substituted values of ``reply`` as spans: each run of adjacent tokens of ``toks``,
    joined by spaces or hyphens, with at most one lower-case word of at most
    ``max_gap_chars`` characters that is no stopword between two of them (a name's particle:
    "de", "es"), in the normalised column's n-gram form (:mod:`forensics.triage.text`); a lone
    token is its normalised self. In reply order,
    without repeats. Why: a multi-word value ("Ho Chi Minh City") is stated where all its
    words stand together; one of its words alone ("city") is stated everywhere."""
    from forensics.triage.text import tokens as ngram_tokens

    allowed = set(toks)
    out: list[str] = []

    def close(run: list) -> None:
        while run and not run[-1][2]:          # a trailing particle is no part of the span
            run.pop()
        if run:
            if len(run) == 1:
                span = norm(run[0][0].group(0))
            else:
                last = run[-1][0]
                end = last.end() - (2 if norm(last.group(0)) != last.group(0).lower() and
                                    last.group(0)[-2:].lower() in ("'s", "’s") else 0)
                span = " ".join(ngram_tokens(reply[run[0][0].start():end]))
            if span not in out:
                out.append(span)
        run.clear()

    run: list = []   # (match, gap text before it, is a value token)
    for m in TOKEN.finditer(reply or ""):
        t, n = m.group(0), norm(m.group(0))
        gap = reply[run[-1][0].end():m.start()] if run else ""
        joined = bool(run) and _JOIN.fullmatch(gap) is not None
        if n in allowed and _WORD.fullmatch(n):
            if not joined:
                close(run)
            run.append((m, gap, True))
        elif joined and run[-1][2] and t.islower() and len(t) <= max_gap_chars \
                and t not in stopwords() and not any(c.isdigit() for c in t):
            run.append((m, gap, False))
        else:
            close(run)
    close(run)
    return out


def alone_words(explanations: list[str], spans: list[str]) -> list[str]:
    """Words of the multi-word ``spans`` that an explanation names on their own, outside
    quotations and outside the whole span ("Edison" beside "Thomas Edison"): the way the
    value is also referred to."""
    from forensics.triage.text import tokens as ngram_tokens

    multi = [sp.split(" ") for sp in spans if " " in sp]
    out: list[str] = []
    for e in explanations:
        own = _QUOTE.sub(" ", e or "")
        toks = ngram_tokens(own)
        for words in multi:
            k = len(words)
            toks = [t for i, t in enumerate(toks)
                    if not any(toks[j:j + k] == words for j in range(max(0, i - k + 1), i + 1))]
        named = _named(own)
        for words in multi:
            for w in words:
                if w in toks and w in named and _WORD.fullmatch(w) and w not in out:
                    out.append(w)
    return out


def holds_value_of_kind(prompt: str, reply: str, tokens: list[str]) -> bool:
    """Whether ``reply`` states, where ``prompt`` does not, a value of the kind of the
    substituted ``tokens``: a number of as many digits when they are numbers, else a name (an
    anchor, see :func:`_anchors`, that holds no digit)."""
    in_prompt = {norm(t) for t in TOKEN.findall(prompt or "")}
    numbers = all(t.isdigit() for t in tokens)
    digits = {len(t) for t in tokens}
    for t in _anchors(reply):
        if t in in_prompt:
            continue
        if numbers and t.isdigit() and len(t) in digits:
            return True
        if not numbers and not any(c.isdigit() for c in t):
            return True
    return False


def _named(text: str) -> set[str]:
    """Tokens ``text`` names as names or numbers: holding a digit, or capitalised where a
    sentence does not start (a word capitalised only at a line's or sentence's start, such
    as "Answer:" or "Sponsored", is not a name), normalised."""
    out = set()
    for m in TOKEN.finditer(text):
        t = m.group(0)
        before = text[:m.start()].rstrip()
        start = not before or before[-1] in ".!?:;\n" or text[:m.start()].endswith("\n")
        if any(c.isdigit() for c in t) or (t[:1].isupper() and not start):
            out.add(norm(t))
    return out


def _kind(tok: str) -> str:
    """``number`` for a token of digits only, else ``name``."""
    return "number" if tok.isdigit() else "name"


@register
class SubstitutionSignal:
    """Rows stating the anomaly's substituted entity where their question is about the
    anomaly's subject and does not name the entity."""

    name = "substitution"
    default_weight = 0.15
    Params = SubstitutionParams

    def score(self, context: SignalContext, params: SubstitutionParams
              ) -> SignalScores | Unavailable:
        from forensics.triage.grounding import GroundingParams

        a = context.anomaly

        def off(reason: str, source: str = "none", **guard) -> Unavailable:
            return Unavailable(reason, {"substitution": {"tokens_from": source, **guard}})

        if context.language_target.active:
            return off("a language behaviour (the language signal covers it)",
                       guard="language_behaviour")
        if context_passage(a.prompt, GroundingParams()) is not None:
            return off("the anomaly's prompt has a context passage (the grounding judgement "
                       "covers it)", guard="context_passage")
        expl = [t for t in a.explanations if t and t.strip()]
        named = substituted_tokens(a.prompt or "", a.reply or "", expl, params.min_token_chars)
        n = context.n
        hr, hp = context.hits_reply, context.hits_prompt

        def df(g: str) -> int:
            return hr.df(g) if " " not in g else int(hr(g).sum())

        if params.spans:
            spans = value_spans(a.reply or "", named, params.span_gap_chars)
            named = spans + [w for w in alone_words(expl, spans)
                             if w not in spans and len(w) >= params.min_token_chars]
        toks = [t for t in named if 0 < df(t) <= params.max_df_frac * n]
        source, guard = "explanations", None
        if named and not toks:
            shares = [df(t) / max(1, n) for t in named]
            guard = ({"guard": "max_df_frac", "value": round(max(shares), 4),
                      "threshold": params.max_df_frac} if max(shares) > 0 else
                     {"guard": "token_in_replies", "value": 0, "threshold": 1})
        if not toks and params.fallback:
            toks, fb_guard = _dataset_pick(a.prompt or "", a.reply or "", expl, hr, hp, n,
                                           params)
            source, guard = "dataset", guard or fb_guard
        if not toks:
            return off("the anomaly's reply names no entity that its prompt lacks and "
                       "its explanations point at, or the dataset states unasked",
                       **(guard or {"guard": "no_candidate"}))
        pidx = context.indexes.get("prompt")
        if pidx is None:
            return off("no prompt index for this dataset", source, guard="prompt_index")
        states = np.zeros(n, bool)
        asked = np.zeros(n, bool)
        shares = {}
        for t in toks:
            r, q = hr(t), hp(t)
            if " " in t:   # a prompt naming the span's rarest word asks about it too
                q = q | hp(min((w for w in t.split() if _WORD.fullmatch(w)
                                and len(w) >= params.min_token_chars), key=hr.df, default=t))
            shares[t] = round(float((r & q).sum()) / max(1, int(r.sum())), 3)
            states |= r & ~q
            asked |= r & q
        states &= ~asked
        rows = np.flatnonzero(states)
        query = self._subject(context, pidx, expl, params)
        xr = cross_row_evidence(context, rows, states | asked, toks, params)
        rng = np.random.default_rng(params.seed)
        bg_rows = rng.choice(n, size=min(n, params.null_sample), replace=False)
        bg = self._cos(pidx, context.sample_ids[np.sort(bg_rows)], query)
        med = float(np.median(bg))
        sd = 1.4826 * float(np.median(np.abs(bg - med))) or 1e-6
        cut = max(params.member_min_cos, med + params.member_z * sd)
        cos = self._cos(pidx, context.sample_ids[rows], query)
        member = np.zeros(n, bool)
        member[rows[cos >= cut]] = True
        member |= xr.contradicted & states
        floored = member.copy()     # members by subject or contradiction score the floor
        contra = np.flatnonzero(xr.contradicted & states)
        if params.answer_members and len(contra) >= params.min_members:
            extra = np.flatnonzero(xr.leads & states & ~xr.confirmed & ~member)
            if params.answer_subject and len(extra):
                v = pidx.vectors(context.sample_ids[contra]).astype(np.float32)
                v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                cq = v.mean(0) / max(float(np.linalg.norm(v.mean(0))), 1e-12)
                cbg = self._cos(pidx, context.sample_ids[np.sort(bg_rows)], cq)
                cmed = float(np.median(cbg))
                csd = 1.4826 * float(np.median(np.abs(cbg - cmed))) or 1e-6
                ccut = max(params.member_min_cos, cmed + params.answer_z * csd)
                extra = extra[self._cos(pidx, context.sample_ids[extra], cq) >= ccut]
            member[extra] = True
            floored[extra] = False
        n_mem = int(member.sum())
        open_rows = len(rows)
        if source == "dataset" and (n_mem < params.min_members or n_mem
                                    < params.fallback_min_member_share * open_rows):
            g = ({"guard": "min_members", "value": n_mem, "threshold": params.min_members}
                 if n_mem < params.min_members else
                 {"guard": "fallback_min_member_share",
                  "value": round(n_mem / max(1, open_rows), 3),
                  "threshold": params.fallback_min_member_share})
            return off(f"the token the dataset picks ({', '.join(toks)}) is stated on other "
                       f"subjects: {n_mem} members of {len(rows)} stating rows", source,
                       tokens=toks, stating_rows=len(rows), members=n_mem, **xr.counts(), **g)
        batch = None
        if n_mem < params.min_members:
            member[:] = False
            floored[:] = False
            batch = {"guard": "min_members", "value": n_mem, "threshold": params.min_members}
        scores = np.zeros(n, np.float32)
        if len(rows):
            top = max(float(cos.max()), med + 1e-6)
            s = np.clip((cos - med) / (top - med), 0.0, 1.0)
            s = np.where(floored[rows], np.maximum(s, params.member_floor), s)
            scores[rows] = s.astype(np.float32)
        summary = {"substitution": {"tokens": toks, "tokens_from": source,
                                    "asked_share": shares, "stating_rows": len(rows),
                                    "asked_rows": int(asked.sum()),
                                    "members": int(member.sum()),
                                    "background_median": round(med, 4),
                                    "member_cut": round(cut, 4), **xr.counts(),
                                    **({"batch_off": batch} if batch else {})}}
        ev = {"member": member.astype(np.int8), "asked": asked.astype(np.int8),
              "states": states.astype(np.int8)}
        return SignalScores(scores, summary, ev,
                            index_versions={"prompt": context.indexes.versions["prompt"]})

    @staticmethod
    def _subject(context: SignalContext, pidx, expl: list[str],
                 params: SubstitutionParams) -> np.ndarray:
        """The unit subject query: the anomaly prompt's vector and the explanations' mean."""
        texts = [context.anomaly.prompt or ""] + expl
        v = context.indexes.embed(pidx, texts).astype(np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        q = params.subject_mix * v[0]
        if len(v) > 1:
            e = v[1:].mean(0)
            q = q + (1 - params.subject_mix) * e / max(float(np.linalg.norm(e)), 1e-12)
        return q / max(float(np.linalg.norm(q)), 1e-12)

    @staticmethod
    def _cos(pidx, sids: np.ndarray, q: np.ndarray) -> np.ndarray:
        if len(sids) == 0:
            return np.zeros(0, np.float32)
        v = pidx.vectors(sids).astype(np.float32)
        return (v @ q) / np.maximum(np.linalg.norm(v, axis=1), 1e-12)


__all__ = ["SubstitutionSignal", "SubstitutionParams", "substituted_tokens", "dataset_tokens",
           "value_spans", "alone_words", "holds_value_of_kind"]
