"""``check.hygiene``: mechanical damage in a pair, one finding name per defect family.

Row-local (per batch, anywhere): ``hygiene.empty_reply``, ``hygiene.truncated``,
``hygiene.mojibake`` (UTF-8 decoded as cp1252/latin-1: "Ã©", "â€™", or U+FFFD),
``hygiene.control_chars`` (C0/C1 controls other than tab/newline, bidi overrides),
``hygiene.echo`` (the reply repeats the prompt). Global: ``hygiene.length_outlier`` needs the
dataset's length distribution, so ``map`` emits log-lengths per batch and ``reduce`` (driver)
computes a robust z-score (median/MAD) over all of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from forensics.quality.core import Batch, Finding, Step, register

# Typical mojibake: UTF-8 bytes read as cp1252/latin-1 ("Ã©", "â€™", "Ã¼", "Ð¿"), and the
# replacement character left by a lossy decode.
_MOJI = re.compile(r"[ÃÂ][\u0080-\u00bf\u2018-\u203a€‚ƒ„…†‡ˆ‰Š‹ŒŽ''""•–—˜™š›œžŸ¡-¿]|â€[\u0080-\u00bf™œ\u009d“”˜¢¦¡]|"
                   r"â€|Ð[\u0080-\u00bf]|Ñ[\u0080-\u00bf]|ï»¿|\ufffd")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_TRAIL_WORDS = {"the", "a", "an", "and", "or", "of", "to", "in", "with", "for", "that", "is",
                "are", "was", "but", "by", "on", "at", "as", "from", "which", "this", "his", "her",
                "der", "die", "das", "und", "le", "la", "les", "et", "de", "el", "y", "и", "в"}
_WS = re.compile(r"\s+")


def _norm(s: str) -> str:
    return _WS.sub(" ", s).strip().lower()


def mojibake_hits(text: str) -> int:
    return len(_MOJI.findall(text)) if text else 0


def looks_truncated(reply: str) -> str | None:
    """Why the reply looks cut off, or None. Conservative: short answers ("Denver Broncos")
    end without punctuation legitimately, so only clear cut-offs count."""
    r = reply.rstrip()
    if not r:
        return None
    if r.count("```") % 2 == 1:
        return "unclosed code fence"
    if r.endswith((",", ":", ";", "(", "[", "{", "-", "–", "/", "\\")) and len(r) > 20:
        return f"ends with {r[-1]!r}"
    last = r.split()[-1].lower() if r.split() else ""
    if len(r) > 40 and last in _TRAIL_WORDS:
        return f"ends with the word {last!r}"
    if r.endswith("...") and len(r) > 200:
        return "ends with '...'"
    words = r.split()
    if (len(words) >= 8 and r[-1].isalnum() and "```" not in r and "\n" not in r
            and sum(w[:1].isupper() for w in words) < 0.5 * len(words)):
        return "prose ends mid-sentence (no closing punctuation)"
    return None


@register("check.hygiene")
@dataclass
class HygieneCheck(Step):
    kind = "check"
    scope = "global"
    z_max: float = 4.0          # |robust z| of log reply length above this: length outlier
    min_rows_for_outliers: int = 50
    mojibake_min: int = 1       # mojibake sequences needed to flag a row
    echo: bool = True

    def process(self, batch: Batch) -> tuple[Batch, list[Finding]]:
        out: list[Finding] = []
        for sid, p, r in zip(batch.col("sample_id"), batch.col("prompt"), batch.col("reply")):
            p, r, sid = p or "", r or "", int(sid)
            if not r.strip():
                out.append(Finding("hygiene.empty_reply", sid, "error", 1.0,
                                   "reply is empty or whitespace"))
            else:
                why = looks_truncated(r)
                if why:
                    out.append(Finding("hygiene.truncated", sid, "warning", 0.7,
                                       f"reply looks truncated: {why}"))
            n = mojibake_hits(p) + mojibake_hits(r)
            if n >= self.mojibake_min:
                m = _MOJI.search(r) or _MOJI.search(p)
                frag = (r if _MOJI.search(r) else p)[max(0, m.start() - 10):m.end() + 10]
                out.append(Finding("hygiene.mojibake", sid, "error" if n >= 3 else "warning",
                                   round(min(1.0, 0.4 + 0.2 * n), 3),
                                   f"{n} mojibake sequence(s), e.g. {frag!r}"))
            c = len(_CTRL.findall(p)) + len(_CTRL.findall(r))
            if c:
                ex = sorted({f"U+{ord(ch):04X}" for ch in _CTRL.findall(p + r)})[:5]
                out.append(Finding("hygiene.control_chars", sid, "warning",
                                   round(min(1.0, 0.5 + 0.1 * c), 3),
                                   f"{c} control character(s): {', '.join(ex)}"))
            if self.echo and p.strip() and r.strip() and _norm(p) == _norm(r):
                out.append(Finding("hygiene.echo", sid, "error", 1.0, "reply repeats the prompt"))
        return batch, out

    def map(self, batch: Batch):
        import pyarrow as pa

        return pa.table({
            "sample_id": pa.array([int(s) for s in batch.col("sample_id")], pa.int64()),
            "loglen": pa.array([math.log1p(len(r or "")) for r in batch.col("reply")], pa.float64()),
            "chars": pa.array([len(r or "") for r in batch.col("reply")], pa.int64()),
        })

    def reduce(self, tables: list) -> list[Finding]:
        import numpy as np
        import pyarrow as pa

        tables = [t for t in tables if t is not None and len(t)]
        if not tables:
            return []
        t = pa.concat_tables(tables)
        if len(t) < self.min_rows_for_outliers:
            return []
        x = t["loglen"].to_numpy()
        med = float(np.median(x))
        mad = float(np.median(np.abs(x - med))) * 1.4826
        if mad < 1e-9:
            return []
        z = (x - med) / mad
        ids = t["sample_id"].to_numpy()
        chars = t["chars"].to_numpy()
        typical = int(round(math.expm1(med)))
        out = []
        for i in np.nonzero(np.abs(z) > self.z_max)[0]:
            zi = float(z[i])
            out.append(Finding("hygiene.length_outlier", int(ids[i]), "info",
                               round(min(1.0, abs(zi) / (2 * self.z_max)), 4),
                               f"reply {int(chars[i])} chars, robust z {zi:+.1f} "
                               f"(typical {typical} chars)"))
        return out
