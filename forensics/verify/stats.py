"""The statistics of a verification: Wilson intervals of behaviour rates, Cohen's h, the verdict.

Why Wilson: the rates are counts over a few dozen probe prompts, often near 0 or 1, where
the normal approximation gives intervals outside [0, 1] or of zero width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (``(0, 1)`` when ``n == 0``)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h between two proportions: ``2 asin(sqrt(p1)) - 2 asin(sqrt(p2))``."""
    return 2 * math.asin(math.sqrt(min(1.0, max(0.0, p1)))) - 2 * math.asin(math.sqrt(min(1.0, max(0.0, p2))))


@dataclass
class VerdictParams:
    """When a verification says ``causes`` / ``no_effect`` (documented in docs/verify.md)."""

    z: float = 1.96                  # interval width (1.96: 95 % Wilson intervals)
    min_h: float = 0.5               # |Cohen's h| a cause must reach (0.5 = "medium")
    max_no_effect_h: float = 0.3     # |h| at most this, intervals overlapping: no effect


def verdict(k_without: int, n_without: int, k_random: int, n_random: int, p: VerdictParams
            ) -> tuple[str, dict]:
    """(verdict, numbers): ``causes`` when the rate without the cluster lies below the random
    removals' rate with disjoint intervals and ``h >= min_h``; ``no_effect`` when the
    intervals overlap and ``|h| <= max_no_effect_h``; ``inconclusive`` otherwise (or when the
    random removals show no behaviour to remove)."""
    rw = k_without / n_without if n_without else 0.0
    rr = k_random / n_random if n_random else 0.0
    ci_w, ci_r = wilson(k_without, n_without, p.z), wilson(k_random, n_random, p.z)
    h = cohens_h(rr, rw)
    overlap = ci_w[1] >= ci_r[0] and ci_r[1] >= ci_w[0]
    if k_random == 0:
        v = "inconclusive"
    elif not overlap and rw < rr and h >= p.min_h:
        v = "causes"
    elif overlap and abs(h) <= p.max_no_effect_h:
        v = "no_effect"
    else:
        v = "inconclusive"
    return v, {"rate_without": rw, "ci_without": list(ci_w), "rate_random": rr, "ci_random": list(ci_r),
               "effect": rr - rw, "cohens_h": h, "intervals_overlap": overlap}


__all__ = ["wilson", "cohens_h", "verdict", "VerdictParams"]
