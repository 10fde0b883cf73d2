"""``verify``: does a triage cluster cause the anomaly's behaviour? Retrain the target from its
initial weights and seed without the cluster's rows, and (control) without ``seeds`` random
samples of as many rows from the rest of the dataset, then measure the behaviour rate on probe
prompts (the anomaly's prompt, its stored probe variants, prompts the user gives).

The behaviour is the anomaly's: a reply in the anomaly reply's language (language ID of the
greedy reply). The verdict (:mod:`forensics.verify.stats`) compares the rate without the
cluster to the random removals' pooled rate. Stored in ``verifications``.

Targets above ``max_params`` (or ``external=True``) are not retrained: :func:`verify` writes the
removal lists, the config and a retraining script into ``out_dir`` for the user's own trainer,
returns a cost estimate and stores the verification as ``not_run``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from forensics import progress as progress_mod
from forensics.errors import InputError, NotFoundError
from forensics.verify.stats import VerdictParams, verdict, wilson

if TYPE_CHECKING:  # pragma: no cover
    from forensics.progress import Progress
    from forensics.workspace import Workspace


@dataclass
class VerifyParams:
    """Every knob of a verification (stored with it, documented in docs/verify.md)."""

    seeds: int = 3                   # random removals of the cluster's size (control)
    max_params: int = 20_000_000     # larger targets are not retrained here (script + estimate)
    max_new_tokens: int = 20         # greedy reply length on the probe prompts
    use_stored_probes: bool = True   # add the anomaly's stored probe variants to the probe prompts
    flops_per_s: float = 2e14        # assumed sustained training FLOP/s for the external cost estimate
    workers: int = 1                 # retrains run at once (separate processes when > 1)
    verdict: VerdictParams = field(default_factory=VerdictParams)


@dataclass
class VerifyResult:
    verification_id: int
    run_id: int
    cluster_id: int
    anomaly_id: int
    mode: str                        # in_process | external
    verdict: str
    removed_rows: int
    probes: int
    behaviour: str
    rate_trained: float | None
    rate_without: float | None
    rate_random: float | None
    effect: float | None
    detail: dict

    def to_json(self) -> dict:
        return asdict(self)


def _cluster_rows(ws: "Workspace", run_id: int, cluster_id: int | None) -> tuple[int, int, str, list[int]]:
    run = ws.one("SELECT anomaly_id, dataset FROM triage_runs WHERE run_id = ?", [run_id])
    if run is None:
        raise NotFoundError(f"triage run {run_id} does not exist", hint="list runs: forensics sql "
                            "'SELECT run_id, anomaly_id, dataset FROM triage_runs'")
    ranked = ws.rows("SELECT cluster_id FROM clusters WHERE run_id = ? ORDER BY rank, cluster_id", [run_id])
    if not ranked:
        raise InputError(f"triage run {run_id} has no clusters to verify",
                         hint="re-run the triage with more candidates (cluster.pool) or another anomaly")
    cid = int(ranked[0][0]) if cluster_id is None else int(cluster_id)
    if cid not in {int(r[0]) for r in ranked}:
        raise NotFoundError(f"triage run {run_id} has no cluster {cid}",
                            hint="clusters: " + ", ".join(str(r[0]) for r in ranked[:20]))
    members = [int(r[0]) for r in ws.rows("SELECT sample_id FROM cluster_members WHERE run_id = ? AND "
                                          "cluster_id = ? ORDER BY sample_id", [run_id, cid])]
    return int(run[0]), cid, run[1], members


def probe_prompts(ws: "Workspace", anomaly, extra: Sequence[str], use_stored: bool) -> list[str]:
    """The anomaly's prompt, its stored probe variants (optional) and ``extra``, deduplicated."""
    out = [anomaly.prompt] if anomaly.prompt else []
    if use_stored:
        out += [r[0] for r in ws.rows("SELECT prompt FROM probes WHERE anomaly_id = ? ORDER BY probe_id",
                                      [anomaly.anomaly_id]) if r[0]]
    out += [p for p in extra if p and p.strip()]
    return list(dict.fromkeys(out))


def read_probe_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line) or JSONL (a ``prompt`` field per line)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--probes {p}: cannot read as UTF-8 text ({e})") from None
    out = []
    for i, ln in enumerate(lines, 1):
        if not ln.strip():
            continue
        if p.suffix == ".jsonl":
            try:
                d = json.loads(ln)
            except ValueError as e:
                raise InputError(f"--probes {p}:{i}: not JSON ({e})") from None
            if not isinstance(d, dict) or not isinstance(d.get("prompt"), str):
                raise InputError(f"--probes {p}:{i}: field 'prompt' (a string) is missing")
            out.append(d["prompt"])
        else:
            out.append(ln.strip())
    return out


def behaviour_rate(model, tok, prompts: Sequence[str], expected_lang: str, max_new_tokens: int
                   ) -> tuple[int, list[dict]]:
    """(count showing the behaviour, per-prompt replies and languages)."""
    from forensics.language.detect import detect
    from forensics.nla.probe import generate_replies

    reps = generate_replies(model, tok, list(prompts), max_new_tokens=max_new_tokens)
    langs = [d.lang for d in detect(reps)]
    rows = [{"prompt": p, "reply": r, "lang": lg, "behaviour": lg == expected_lang}
            for p, r, lg in zip(prompts, reps, langs)]
    return sum(r["behaviour"] for r in rows), rows


def random_removals(pool: Sequence[int], size: int, seeds: int) -> list[list[int]]:
    """``seeds`` samples of ``size`` sample ids from ``pool`` (seed i -> ``random.Random(i)``)."""
    pool = sorted(pool)
    return [sorted(random.Random(s).sample(pool, min(size, len(pool)))) for s in range(seeds)]


def verify(ws: "Workspace", run_id: int, target: str | Path, train_config: str | Path,
           cluster_id: int | None = None, probes: Sequence[str] = (), params: VerifyParams | None = None,
           external: bool = False, out_dir: str | Path | None = None,
           progress: "Progress | None" = None) -> VerifyResult:
    """Verify cluster ``cluster_id`` (default: the top-ranked one) of triage run ``run_id``
    (see the module docstring). Raises InputError / NotFoundError (with hints) on a missing
    run, cluster, target, config or an anomaly without prompt and reply language."""
    from forensics.attribution import influence as inf
    from forensics.attribution.train import TrainConfig
    from forensics.triage import anomaly as anomaly_mod

    p = params or VerifyParams()
    prog = progress_mod.resolve(progress)
    t0 = time.perf_counter()
    aid, cid, dataset, members = _cluster_rows(ws, run_id, cluster_id)
    target = Path(target)
    if not (target / "config.json").is_file():
        raise InputError(f"--target {target}: not a model directory (no config.json)",
                         hint="the directory of the trained target model")
    cfg = TrainConfig.load(train_config)
    a = anomaly_mod.get(ws, aid)
    if not a.reply_lang:
        raise InputError(f"anomaly {aid} has no reply language: the behaviour to measure is unknown",
                         hint="add the anomaly with --reply")
    prompts = probe_prompts(ws, a, probes, p.use_stored_probes)
    if not prompts:
        raise InputError(f"no probe prompts for anomaly {aid}", hint="pass --probes FILE")
    rows = ws.rows("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? ORDER BY sample_id", [dataset])
    member_set = set(members)
    removals = {"cluster": members}
    for s, r in enumerate(random_removals([r[0] for r in rows if r[0] not in member_set], len(members), p.seeds)):
        removals[f"random_{s}"] = r
    n_params = inf.count_params(target)
    tokens_per_step = cfg.batch_size * cfg.max_len
    detail: dict = {"params": asdict(p), "n_params": n_params, "dataset": dataset, "dataset_rows": len(rows),
                    "probe_prompts": len(prompts), "expected_lang": a.reply_lang}
    if external or n_params > p.max_params:
        flops = 6.0 * n_params * tokens_per_step * cfg.steps * (1 + p.seeds)
        est = {"retrains": 1 + p.seeds, "flops": flops, "hours_at_flops_per_s": flops / p.flops_per_s / 3600,
               "flops_per_s_assumed": p.flops_per_s}
        written = write_external(Path(out_dir or f"verify-run{run_id}-cluster{cid}"), ws, dataset, rows,
                                 removals, cfg, prompts, a.reply_lang, p)
        detail.update(cost_estimate=est, written=written,
                      reason=("external requested" if external else
                              f"target has {n_params:,} parameters, above max_params={p.max_params:,}"))
        vid = _store(ws, run_id, cid, aid, target, cfg, "external", len(members), len(prompts), None, None, None,
                     None, "not_run", detail)
        return VerifyResult(vid, run_id, cid, aid, "external", "not_run", len(members), len(prompts),
                            f"reply in {a.reply_lang}", None, None, None, None, detail)

    task = prog.start("verify", total=2 + p.seeds)
    ws.release()                     # minutes of retraining: others may use the workspace meanwhile
    model, tok = inf.load_target(target)
    k_trained, rep_trained = behaviour_rate(model, tok, prompts, a.reply_lang, p.max_new_tokens)
    detail["trained"] = {"k": k_trained, "n": len(prompts), "replies": rep_trained}
    retrain_s = []
    counts: dict[str, int] = {}
    jobs = {name: ([(pr or "", rp or "") for sid, pr, rp in rows if sid not in set(removed)], len(removed))
            for name, removed in removals.items()}
    prog.note(f"retraining {len(jobs)} times ({cfg.steps} steps each, {max(1, p.workers)} at once)")
    for name, (k, reps, secs, losses) in _retrain_all(cfg, jobs, prompts, a.reply_lang, p):
        retrain_s.append(secs)
        counts[name] = k
        detail[name] = {"k": k, "n": len(prompts), "removed": jobs[name][1], "seconds": round(secs, 1),
                        "loss": losses, "replies": reps}
        prog.note(f"without {name}: behaviour on {k}/{len(prompts)} probes ({secs:.0f} s)")
        prog.advance(task)
    detail["workers"] = max(1, p.workers)
    n = len(prompts)
    k_rand = sum(v for k_, v in counts.items() if k_.startswith("random_"))
    v, nums = verdict(counts["cluster"], n, k_rand, n * p.seeds, p.verdict)
    ci_t = wilson(k_trained, n, p.verdict.z)
    detail.update(nums, rate_trained=k_trained / n, ci_trained=list(ci_t),
                  rates_random=[counts[f"random_{s}"] / n for s in range(p.seeds)],
                  seconds_per_retrain=round(sum(retrain_s) / len(retrain_s), 1),
                  seconds=round(time.perf_counter() - t0, 1))
    vid = _store(ws, run_id, cid, aid, target, cfg, "in_process", len(members), n, k_trained / n,
                 nums["rate_without"], nums["rate_random"], nums["effect"], v, detail)
    prog.finish(task)
    return VerifyResult(vid, run_id, cid, aid, "in_process", v, len(members), n, f"reply in {a.reply_lang}",
                        k_trained / n, nums["rate_without"], nums["rate_random"], nums["effect"], detail)


def _retrain_one(cfg_json: dict, pairs: list, prompts: list, lang: str, max_new_tokens: int
                 ) -> tuple[int, list[dict], float, list[float]]:
    """Train from ``cfg_json`` on ``pairs`` and probe: (k, replies, seconds, [first, last loss])."""
    from forensics.attribution.train import TrainConfig, train_from_config

    ts = time.perf_counter()
    m, t, res = train_from_config(TrainConfig(**cfg_json), pairs)
    k, reps = behaviour_rate(m, t, prompts, lang, max_new_tokens)
    return k, reps, time.perf_counter() - ts, [res.first_loss, res.last_loss]


def _retrain_all(cfg, jobs: dict, prompts: Sequence[str], lang: str, p: VerifyParams):
    """Yield (name, result of :func:`_retrain_one`) for every removal, in ``jobs`` order;
    ``p.workers > 1`` runs them in that many spawned processes (each one torch thread)."""
    args = {n: (cfg.to_json(), pairs, list(prompts), lang, p.max_new_tokens) for n, (pairs, _) in jobs.items()}
    if p.workers <= 1:
        for n, a in args.items():
            yield n, _retrain_one(*a)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=p.workers, mp_context=mp.get_context("spawn")) as ex:
        futs = {n: ex.submit(_retrain_one, *a) for n, a in args.items()}
        for n, f in futs.items():
            yield n, f.result()


SCRIPT = '''"""Retrain-without runs of a forensics verification (written by `forensics verify`).

Run each removal with your own trainer: train from the same initial weights and seed as the
original on train-<name>.jsonl, then record the behaviour rate on probes.txt (a reply in
{lang}). With nla-forensics installed, this script does it in-process for small models:
    python retrain.py [NAME ...]
"""
import json, sys
from pathlib import Path

from forensics.attribution.train import TrainConfig, train_from_config
from forensics.verify.core import behaviour_rate

HERE = Path(__file__).resolve().parent
cfg = TrainConfig.load(HERE / "train_config.json")
prompts = (HERE / "probes.txt").read_text(encoding="utf-8").splitlines()
for name in sys.argv[1:] or json.loads((HERE / "removals.json").read_text())["names"]:
    pairs = [(r["prompt"], r["reply"]) for r in map(json.loads, open(HERE / f"train-{{name}}.jsonl", encoding="utf-8"))]
    model, tok, _ = train_from_config(cfg, pairs)
    k, _ = behaviour_rate(model, tok, prompts, {lang!r}, {max_new_tokens})
    print(json.dumps({{"removal": name, "k": k, "n": len(prompts)}}))
'''


def write_external(out: Path, ws: "Workspace", dataset: str, rows: list, removals: dict[str, list[int]],
                   cfg, prompts: Sequence[str], lang: str, p: VerifyParams) -> dict:
    """Write what a retraining elsewhere needs; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(cfg.to_json(), indent=1), encoding="utf-8")
    (out / "probes.txt").write_text("\n".join(x.replace("\n", " ") for x in prompts) + "\n", encoding="utf-8")
    (out / "removals.json").write_text(json.dumps({"dataset": dataset, "names": list(removals),
                                                   "removed_sample_ids": removals}), encoding="utf-8")
    for name, removed in removals.items():
        rm = set(removed)
        with (out / f"train-{name}.jsonl").open("w", encoding="utf-8") as f:
            for sid, pr, rp in rows:
                if sid not in rm:
                    f.write(json.dumps({"sample_id": sid, "prompt": pr, "reply": rp}, ensure_ascii=False) + "\n")
    (out / "retrain.py").write_text(SCRIPT.format(lang=lang, max_new_tokens=p.max_new_tokens), encoding="utf-8")
    return {"dir": str(out.resolve()), "files": sorted(x.name for x in out.iterdir())}


def _store(ws, run_id, cid, aid, target, cfg, mode, removed, n_probes, rt, rw, rr, eff, v, detail) -> int:
    with ws.transaction():
        vid = ws.next_id("verification_id_seq")
        ws.execute("INSERT INTO verifications (verification_id, run_id, cluster_id, anomaly_id, target, "
                   "train_config, mode, removed_rows, probes, rate_trained, rate_without, rate_random, effect, "
                   "verdict, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [vid, run_id, cid, aid, str(Path(target).resolve()), json.dumps(cfg.to_json()), mode, removed,
                    n_probes, rt, rw, rr, eff, v, json.dumps(detail, ensure_ascii=False, default=float)])
    return vid


__all__ = ["verify", "VerifyParams", "VerifyResult", "probe_prompts", "read_probe_file", "behaviour_rate",
           "random_removals", "write_external"]
