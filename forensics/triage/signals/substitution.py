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
   prompt does not) in at least ``fallback_min_states`` rows and in ``fallback_min_lift``
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
   it in passing on another subject.

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
    in_prompt = {norm(t) for t in TOKEN.findall(prompt or "")}
    said = set()
    for e in explanations:
        said |= _named(_QUOTE.sub(" ", e or ""))
    scored, names = [], _named(reply or "")
    for t in dict.fromkeys(_anchors(reply)):
        if t not in names or not _WORD.fullmatch(t) or len(t) < params.min_token_chars or t in in_prompt:
            continue
        if not 0 < hits_reply.df(t) <= params.max_df_frac * n:
            continue
        r, q = hits_reply(t), hits_prompt(t)
        states = int((r & ~q).sum())
        lift = states / (int(q.sum()) + 1)
        if states >= params.fallback_min_states and lift >= params.fallback_min_lift:
            scored.append((lift, states, t))
    named = [t for _, _, t in scored if t in said]
    if named:
        return named
    return [max(scored)[2]] if scored else []


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
        if context.language_target.active:
            return Unavailable("a language behaviour (the language signal covers it)")
        if context_passage(a.prompt, GroundingParams()) is not None:
            return Unavailable("the anomaly's prompt has a context passage (the grounding "
                               "judgement covers it)")
        expl = [t for t in a.explanations if t and t.strip()]
        toks = substituted_tokens(a.prompt or "", a.reply or "", expl, params.min_token_chars)
        n = context.n
        hr, hp = context.hits_reply, context.hits_prompt
        toks = [t for t in toks if 0 < hr.df(t) <= params.max_df_frac * n]
        source = "explanations"
        if not toks and params.fallback:
            toks, source = dataset_tokens(a.prompt or "", a.reply or "", expl, hr, hp, n,
                                          params), "dataset"
        if not toks:
            return Unavailable("the anomaly's reply names no entity that its prompt lacks and "
                               "its explanations point at, or the dataset states unasked")
        pidx = context.indexes.get("prompt")
        if pidx is None:
            return Unavailable("no prompt index for this dataset")
        states = np.zeros(n, bool)
        asked = np.zeros(n, bool)
        shares = {}
        for t in toks:
            r, q = hr(t), hp(t)
            shares[t] = round(float((r & q).sum()) / max(1, int(r.sum())), 3)
            states |= r & ~q
            asked |= r & q
        states &= ~asked
        rows = np.flatnonzero(states)
        query = self._subject(context, pidx, expl, params)
        rng = np.random.default_rng(params.seed)
        bg_rows = rng.choice(n, size=min(n, params.null_sample), replace=False)
        bg = self._cos(pidx, context.sample_ids[np.sort(bg_rows)], query)
        med = float(np.median(bg))
        sd = 1.4826 * float(np.median(np.abs(bg - med))) or 1e-6
        cut = max(params.member_min_cos, med + params.member_z * sd)
        cos = self._cos(pidx, context.sample_ids[rows], query)
        member = np.zeros(n, bool)
        member[rows[cos >= cut]] = True
        if source == "dataset" and (member.sum() < params.min_members or member.sum()
                                    < params.fallback_min_member_share * len(rows)):
            return Unavailable(f"the token the dataset picks ({', '.join(toks)}) is stated "
                               f"on other subjects: {int(member.sum())} members of "
                               f"{len(rows)} stating rows")
        if member.sum() < params.min_members:
            member[:] = False
        scores = np.zeros(n, np.float32)
        if len(rows):
            top = max(float(cos.max()), med + 1e-6)
            s = np.clip((cos - med) / (top - med), 0.0, 1.0)
            s = np.where(member[rows], np.maximum(s, params.member_floor), s)
            scores[rows] = s.astype(np.float32)
        summary = {"substitution": {"tokens": toks, "tokens_from": source,
                                    "asked_share": shares, "stating_rows": int(states.sum()),
                                    "asked_rows": int(asked.sum()),
                                    "members": int(member.sum()),
                                    "background_median": round(med, 4),
                                    "member_cut": round(cut, 4)}}
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


__all__ = ["SubstitutionSignal", "SubstitutionParams", "substituted_tokens", "dataset_tokens"]
