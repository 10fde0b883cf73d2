"""Precision / recall / F1 of the ``mistranslation`` check's three language findings on the real
language development set, beside the baseline, in one run.

Usage: python bench/language_quality.py [--data bench/data/langdev.jsonl] [--extra DIR]
       [--real DIR] [--baseline-ref 6f5a5cd] [--no-baseline] [--split dev|check|real|all]

Data: ``bench/data/langdev.jsonl`` (built by ``python -m forensics.testing.langdev`` from XQuAD
real text, CC-BY-SA 4.0, licence beside it; see docs/language-dev-set.md); ``--extra DIR``
adds every ``*.jsonl`` in DIR with the same row schema (split ``extra``), e.g. fetched public
data kept under ../shared/data/ (never committed). ``--real DIR`` (default
``bench/data/langreal``) adds real model completions labelled by reading them (split ``real``;
provenance and licence in that folder, see docs/language-dev-set.md).

New: the rows are ingested into a real workspace and the shipped ``mistranslation`` pipeline
runs through the public API (``load_pipeline`` / ``run_pipeline``); each finding counts for the
finding type its check name or detail names (``unrequested_switch``, ``ignored_request``,
``mixed_language``).

Baseline: today's whole-reply rule is main's check itself, not a copy: the tree of
``--baseline-ref`` (default: the main commit before the language findings) is extracted with
``git archive`` and its own ingest + ``mistranslation`` pipeline run in a subprocess on a
workspace of its own. It has one finding kind; every row it flags counts as a prediction of
each finding type (so its precision on one type also pays for rows of the other types).

Per type: positives are the rows labelled with it; a row flagged with the type but labelled
otherwise is a false positive. Settings: ``monolingual`` (the expected reply language is the
prompt's language) and ``cross-lingual`` (a request for another language, a translation).
The errors of the new check are listed (by row kind, and the first 200 rows) for the dev and
extra rows only: the check and real splits' rows stay unread. Writes bench/results/language_quality.json
through bench/_results.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import shared_dir, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FINDINGS = ("unrequested_switch", "ignored_request", "mixed_language")
DATA = REPO / "bench" / "data" / "langdev.jsonl"
REAL = REPO / "bench" / "data" / "langreal"
UNSEEN = ("check", "real")  # splits whose errors are never listed
BASELINE_REF = "6f5a5cd"
SETTINGS = ("all", "monolingual", "cross-lingual")

# run in a subprocess on the baseline tree: ingest, run its mistranslation pipeline, print the
# flagged row ids as JSON
_BASELINE = r"""
import json, sys
import forensics
from forensics.ingest import ingest
from forensics.quality import load_pipeline, run_pipeline
ws = forensics.init(sys.argv[1])
ingest(ws, sys.argv[2], "dev")
r = run_pipeline(ws, load_pipeline("mistranslation"), "dev")
rows = ws.rows("SELECT row_id, \"check\", detail FROM v_quality_findings WHERE pipeline_run_id = ?",
               [r.pipeline_run_id])
print(json.dumps([[a, b, c] for a, b, c in rows]))
"""


def load_rows(data: Path, extra: Path | None, real: Path | None = None) -> list[dict]:
    from forensics.testing import langdev

    if data.exists():
        rows = langdev.read_jsonl(data)
    else:  # the committed file is missing: build it from XQuAD
        rows = langdev.build(shared_dir() / "data" / "xquad")
    for folder, split, tag in ((extra, "extra", "x"), (real, "real", "r")):
        if folder is None or not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.jsonl")):
            for i, r in enumerate(langdev.read_jsonl(f)):
                r["split"] = split
                r["id"] = f"{tag}-{f.stem}-{r.get('id', i)}"
                rows.append(r)
    return rows


def finding_type(check: str, group_id: str | None, detail: str) -> str | None:
    """The finding type a finding names: its check name, its group id, else the first type
    named in its detail."""
    for text in (check, group_id):
        for f in FINDINGS:
            if f in (text or ""):
                return f
    at = {f: (detail or "").find(f) for f in FINDINGS}
    named = [f for f in FINDINGS if at[f] >= 0]
    return min(named, key=lambda f: at[f]) if named else None


def prf(pred: set, pos: set) -> dict:
    tp = len(pred & pos)
    p = tp / len(pred) if pred else None
    r = tp / len(pos) if pos else None
    f1 = (2 * p * r / (p + r) if p is not None and r is not None and p + r > 0
          else (0.0 if p is not None and r is not None else None))
    return {"precision": None if p is None else round(p, 3),
            "recall": None if r is None else round(r, 3),
            "f1": None if f1 is None else round(f1, 3),
            "tp": tp, "flagged": len(pred), "positives": len(pos)}


def score(rows: list[dict], pred: dict[str, set[str]]) -> dict:
    """``{setting: {finding: prf}}`` for predictions ``{finding: row ids}``."""
    out = {}
    for s in SETTINGS:
        ids = {r["id"] for r in rows if s == "all" or r["setting"] == s}
        out[s] = {f: prf(pred[f] & ids, {r["id"] for r in rows if r["id"] in ids
                                         and r["labels"][f]}) for f in FINDINGS}
        anyp = set().union(*pred.values()) & ids
        out[s]["any"] = prf(anyp, {r["id"] for r in rows if r["id"] in ids
                                   and any(r["labels"].values())})
    return out


def write_input(rows: list[dict], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"id": r["id"], "prompt": r["prompt"], "reply": r["reply"]},
                                ensure_ascii=False) + "\n")
    return path


def run_new(rows: list[dict], tmp: Path) -> tuple[dict[str, set], list, float]:
    import forensics
    from forensics.ingest import ingest
    from forensics.quality import load_pipeline, run_pipeline

    f = write_input(rows, tmp / "new.jsonl")
    ws = forensics.init(tmp / "ws-new")
    ingest(ws, f, "dev")
    t = time.perf_counter()
    r = run_pipeline(ws, load_pipeline("mistranslation"), "dev")
    secs = time.perf_counter() - t
    got = ws.rows('SELECT row_id, "check", group_id, detail FROM v_quality_findings '
                  "WHERE pipeline_run_id = ?", [r.pipeline_run_id])
    ws.close()
    pred: dict[str, set] = {k: set() for k in FINDINGS}
    untyped = []
    for rid, chk, gid, detail in got:
        k = finding_type(chk, gid, detail)
        if k is None:
            untyped.append(rid)
        else:
            pred[k].add(rid)
    if untyped:
        print(f"note: {len(untyped)} findings name no finding type (counted nowhere)")
    return pred, [list(x) for x in got], secs


def run_baseline(rows: list[dict], tmp: Path, ref: str) -> tuple[dict[str, set], list, float]:
    src = tmp / "baseline-src"
    src.mkdir()
    arch = subprocess.run(["git", "archive", ref, "forensics", "pipelines"], cwd=REPO,
                          capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=arch, check=True)
    f = write_input(rows, tmp / "baseline.jsonl")
    env = dict(os.environ, PYTHONPATH=str(src))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _BASELINE, str(tmp / "ws-baseline"), str(f)],
                         cwd=src, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"baseline run failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    flagged = {rid for rid, _, _ in got}
    return {k: set(flagged) for k in FINDINGS}, got, time.perf_counter() - t


def fmt(m: dict) -> str:
    v = lambda x: "  -  " if x is None else f"{x:5.3f}"  # noqa: E731
    return f"{v(m['precision'])} {v(m['recall'])} {v(m['f1'])}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--extra", type=Path, default=None,
                    help="a folder of extra *.jsonl rows in the dev-set schema (not committed)")
    ap.add_argument("--real", type=Path, default=REAL,
                    help="a folder of real completions labelled by reading (split real)")
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--split", choices=("dev", "check", "real", "all"), default="all",
                    help="which rows to score (the table always shows dev and check apart)")
    args = ap.parse_args()
    rows = load_rows(args.data, args.extra, args.real)
    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    tmp = Path(tempfile.mkdtemp(prefix="bench-langq-"))
    new, new_raw, new_s = run_new(rows, tmp)
    base, base_raw, base_s = ({k: set() for k in FINDINGS}, [], 0.0) if args.no_baseline \
        else run_baseline(rows, tmp, args.baseline_ref)
    splits = sorted({r["split"] for r in rows}, key=lambda s: ("dev", "check", "real", "extra").index(s)
                    if s in ("dev", "check", "real", "extra") else 9)
    result: dict = {"rows": len(rows), "baseline_ref": None if args.no_baseline else args.baseline_ref,
                    "new_pipeline_seconds": round(new_s, 2),
                    "baseline_seconds_with_start_and_ingest": round(base_s, 2),
                    "by_split": {}}
    print(f"{len(rows)} rows; new = this tree's mistranslation pipeline, baseline = "
          f"{'none' if args.no_baseline else 'the check at ' + args.baseline_ref}")
    print(f"{'split':6} {'setting':13} {'finding':19} {'pos':>4} | {'new P     R     F1':>19} | "
          f"{'base P    R     F1':>19}")
    for sp in splits + (["all"] if len(splits) > 1 else []):
        sub = rows if sp == "all" else [r for r in rows if r["split"] == sp]
        ids = {r["id"] for r in sub}
        n = score(sub, {k: v & ids for k, v in new.items()})
        b = score(sub, {k: v & ids for k, v in base.items()})
        result["by_split"][sp] = {"rows": len(sub), "new": n, "baseline": b}
        for s in SETTINGS:
            for f in FINDINGS + ("any",):
                if not n[s][f]["positives"] and not n[s][f]["flagged"] and f != "any":
                    continue
                print(f"{sp:6} {s:13} {f:19} {n[s][f]['positives']:4d} | {fmt(n[s][f])} | "
                      f"{fmt(b[s][f])}")
    # errors of the new check, for reading: never the check or real splits' (they stay unseen)
    lab = {r["id"]: r for r in rows if r["split"] not in UNSEEN}
    errs = []
    for f in FINDINGS:
        for rid in sorted((new[f] & set(lab)) - {i for i, r in lab.items() if r["labels"][f]}):
            errs.append({"type": "fp", "finding": f, "id": rid, "kind": lab[rid]["kind"]})
        for rid in sorted({i for i, r in lab.items() if r["labels"][f]} - new[f]):
            errs.append({"type": "fn", "finding": f, "id": rid, "kind": lab[rid]["kind"]})
    from collections import Counter

    cnt = Counter(f"{e['type']}:{e['finding']}:{e['kind']}" for e in errs)
    result["new_errors_by_kind"] = dict(sorted(cnt.items()))
    result["new_errors"] = errs[:200]
    print("new check errors by row kind (dev and extra rows only):",
          json.dumps(result["new_errors_by_kind"], indent=None))
    write_result("language_quality", {"parameters": {k: str(v) for k, v in vars(args).items()},
                                      **result})


if __name__ == "__main__":
    main()
