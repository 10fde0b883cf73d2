"""Triage quality vs baselines on a synth corpus (real ingest, real FAISS). Prints one table.

Usage: python bench/triage_quality.py [--heldout] [--small]
Baselines (same run): BM25 over prompt+reply with the explanations as query; dense retrieval
(explanations -> pair index, default embedder); rule "prompt en and reply in target language"
(language families) or keyword search for the anomaly's distinctive phrase (other families).
"""
from __future__ import annotations

import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
XQ = REPO.parent / "shared" / "data" / "xquad"


def ap(ranked, pos):
    pos, hits, s = set(pos), 0, 0.0
    for i, r in enumerate(ranked, 1):
        if r in pos:
            hits += 1
            s += hits / i
    return s / len(pos) if pos else 0.0


def cli(ws, *a):
    subprocess.run([sys.executable, "-m", "forensics", "--workspace", str(ws), *map(str, a)],
                   check=True, capture_output=True, cwd=REPO)


def main() -> None:
    ap_ = argparse.ArgumentParser()
    ap_.add_argument("--heldout", action="store_true", help="other languages/sources/wording")
    ap_.add_argument("--small", action="store_true")
    args = ap_.parse_args()
    import forensics
    from forensics import triage
    from forensics.triage import anomaly
    from forensics.search import index
    from forensics.search import embed
    from forensics.testing.synth import build_corpus
    import bm25s, numpy as np

    kw = dict(n_clean=300, n_native=120, n_translation=80, n_planted_per_lang=30) if args.small else {}
    if args.heldout:
        c = build_corpus(XQ, seed=11, planted_langs=("ro", "vi"), other_families=("refusal",),
                         sources=("crawl-b", "acme-data", "zeta-labs", "forum-x"), **kw)
    else:
        c = build_corpus(XQ, seed=0, planted_langs=("de", "zh"), other_families=("aside", "format"), **kw)
    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    ws_dir = tmp / "ws"
    cli(ws_dir, "init")
    f = c.write_jsonl(tmp / "train.jsonl")
    cli(ws_dir, "ingest", f, "--dataset", "train", "--meta-fields", "source,shard", "-q")
    for fld in ("pair", "prompt", "reply"):
        cli(ws_dir, "index", "build", "--dataset", "train", "--field", fld)
    ws = forensics.open(ws_dir)
    ids = ws.sql("SELECT row_id, prompt, reply, prompt_lang, reply_lang FROM samples "
                 "WHERE dataset='train' ORDER BY sample_id")
    rows = ids["row_id"].to_list()
    texts = [f"{p or ''}\n{r or ''}" for p, r in zip(ids["prompt"], ids["reply"])]
    retr = bm25s.BM25()
    retr.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
    oi = index.open_index(ws, "train", "pair")
    print(f"{'family':10s} {'planted':>7s} {'AP':>6s} {'P@n':>6s} {'clP':>5s} {'clR':>5s} "
          f"{'bm25':>6s} {'dense':>6s} {'rule/kw':>7s} {'sec':>5s}")
    aps, best = [], []
    for fam in c.families:
        a = c.anomaly(fam)
        aid = anomaly.add(ws, a["title"], a["prompt"], a["reply"], a["explanations"])
        t = time.perf_counter()
        res = triage.triage(ws, aid, "train", limit=len(rows))
        sec = time.perf_counter() - t
        pos = c.planted_ids(fam)
        ranked = [x["row_id"] for x in res.findings]
        seen = set(ranked)
        ranked += [r for r in rows if r not in seen]
        top = res.clusters[0]["row_ids"] if res.clusters else []
        tp = len(set(top) & set(pos))
        q = " ".join(a["explanations"])
        docs, sc = retr.retrieve(bm25s.tokenize([q], show_progress=False), k=len(rows), show_progress=False)
        b_bm = ap([rows[i] for i in docs[0]], pos)
        qv = embed.embed_texts(ws, a["explanations"], oi.embedder())
        s, i = oi.search(qv, oi.ntotal)
        best_s = {}
        for srow, irow in zip(s, i):
            for sv, iv in zip(srow, irow):
                best_s[int(iv)] = max(best_s.get(int(iv), -9), float(sv))
        sid = ws.sql("SELECT sample_id, row_id FROM samples WHERE dataset='train'")
        m = dict(zip(sid["sample_id"].to_list(), sid["row_id"].to_list()))
        b_dn = ap([m[k] for k in sorted(best_s, key=lambda k: -best_s[k])], pos)
        if ":" not in fam and len(fam) == 2:
            hit = [r for r, pl, rl in zip(rows, ids["prompt_lang"], ids["reply_lang"]) if pl == "en" and rl == fam]
        else:
            phrase = a["reply"].split(". ")[-1][:30].lower() if fam == "aside" else a["reply"][:20].lower()
            hit = [r for r, t in zip(rows, texts) if phrase in t.lower()]
        b_rule = ap(hit + [r for r in rows if r not in set(hit)], pos)
        aps.append(ap(ranked, pos)); best.append(max(b_bm, b_dn, b_rule))
        print(f"{fam:10s} {len(pos):7d} {aps[-1]:6.3f} {len(set(ranked[:len(pos)]) & set(pos)) / len(pos):6.3f} "
              f"{tp / max(1, len(top)):5.2f} {tp / len(pos):5.2f} {b_bm:6.3f} {b_dn:6.3f} {b_rule:7.3f} {sec:5.2f}")
    print(f"{'mean':10s} {'':7s} {np.mean(aps):6.3f}   best-baseline mean {np.mean(best):.3f}  "
          f"gap {np.mean(aps) - np.mean(best):+.3f}")


if __name__ == "__main__":
    main()
