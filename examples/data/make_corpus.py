"""Regenerate the demo corpus shipped in this directory (run once by the maintainers).

The demo must run on a fresh clone without ../shared, so the generated JSONL and its labels
are committed; this script documents exactly how they were made. It reads the XQuAD files
(CC-BY-SA 4.0, licence file beside the output) and calls ``forensics.testing.synth.build_corpus``.

    .venv/bin/python examples/data/make_corpus.py [--xquad ../shared/data/xquad]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from forensics.testing.synth import build_corpus

HERE = Path(__file__).resolve().parent
SEED = 7
PARAMS = dict(seed=SEED, planted_langs=("de",), other_families=("aside",),
              n_clean=1400, n_native=520, n_translation=320, n_planted_per_lang=90,
              n_planted_per_family=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xquad", default=str(HERE.parents[2] / "shared" / "data" / "xquad"))
    args = ap.parse_args()
    corpus = build_corpus(args.xquad, **PARAMS)
    corpus.write_jsonl(HERE / "demo_corpus.jsonl")
    with (HERE / "demo_labels.jsonl").open("w", encoding="utf-8") as f:
        for r in corpus.records:
            f.write(json.dumps({"id": r["id"], "label": corpus.labels[r["id"]]}) + "\n")
    (HERE / "demo_anomalies.json").write_text(
        json.dumps({k: corpus.anomaly(k) for k in corpus.families}, ensure_ascii=False, indent=2)
        + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for v in corpus.labels.values():
        counts[v] = counts.get(v, 0) + 1
    print(f"{len(corpus.records)} rows: {counts}")


if __name__ == "__main__":
    main()
