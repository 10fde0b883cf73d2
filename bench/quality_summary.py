"""The latest triage quality on every corpus, as one markdown table (docs/triage.md quotes it).

Usage: python bench/quality_summary.py [NAME ...]   (default: the keep-bench result files)

Reads ``bench/results/triage_quality-<NAME>.json`` written by ``bench/triage_quality.py`` and
prints, per corpus, every family's AP, top-cluster precision / recall, the best baseline's AP
(BM25, dense or the keyword/rule baseline) and the rule's AP, then the file's commit, date and
load average. Measures nothing itself: it only gathers what the bench recorded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = ("dev-small", "heldout-small", "dev-wordings-small", "dev-families-small",
           "dev-sycophancy-small", "dev-agree-small", "dev-assent-small", "dev-premise-small",
           "dev-premise-small-norowexpl", "dev-refusal-small", "dev-swap-small",
           "dev-entity-small", "dev-code-small", "dev-code-shapes-small", "dev-code-asks-small",
           "dev-code-requests-small", "b")


def table(names: list[str]) -> str:
    """Markdown rows for the result files ``names`` (missing files are named, not skipped)."""
    out = ["| corpus | family | planted | AP | top P | top R | best baseline | rule/kw |",
           "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name in names:
        path = RESULTS / f"triage_quality-{name}.json"
        if not path.is_file():
            notes.append(f"- `{name}`: no results file ({path.name})")
            continue
        d = json.loads(path.read_text(encoding="utf-8"))
        for r in d["table"]:
            best = max(r["bm25_ap"], r["dense_ap"], r["rule_ap"])
            out.append(f"| {name} | {r['family']} | {r['planted']} | {r['ap']:.3f} | "
                       f"{r['top_cluster_precision']:.2f} | {r['top_cluster_recall']:.2f} | "
                       f"{best:.3f} | {r['rule_ap']:.3f} |")
        s = d["summary"]
        out.append(f"| {name} | **mean** | | **{s['mean_ap']:.3f}** | | | "
                   f"{s['best_baseline_mean_ap']:.3f} | {s['rule_mean_ap']:.3f} |")
        load = ", ".join(f"{x:.1f}" for x in d.get("load_average") or [])
        notes.append(f"- `{name}`: {d['parameters'].get('rows', '?')} rows, commit "
                     f"{d['commit'][:7]}, {d['date'][:10]}, load average {load}")
    return "\n".join(out + [""] + notes)


def main(argv: list[str]) -> int:
    print(table(argv or list(DEFAULT)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
