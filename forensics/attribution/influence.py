"""Influence of each training row on one observed reply, for targets small enough to
differentiate here.

The measurement is the negative log-probability of the observed reply given its prompt (the
anomaly's reply under the target's chat template); a training row's score is
``grad(measurement)^T H^-1 grad(train loss of the row)``, with H approximated by EK-FAC
(``kronfluence``; or KFAC, diagonal, identity) over the target's linear layers, so a positive
score means the row pushes the model towards that reply. With several queries (prompts answered
with the same behaviour), :func:`combine_queries` makes one score per row; the default ranks
by magnitude (rows that move the behaviour's measurement strongly in either direction).
:class:`KronfluencePass` fits the factors once and scores many scoring-time variants on them.
``method="gradcos"`` is an alternative measured beside it: the cosine of the two gradients at the
final checkpoint (``dattri``'s TracIn attributor with one checkpoint and normalised, randomly
projected gradients).

Results are cached per (target fingerprint, dataset, dataset version, query, method, knobs)
in ``influence_runs`` / ``influence_scores`` (:func:`cached_scores`, :func:`store_scores`).
Model loading is local only (safetensors, no remote code).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from forensics.errors import InputError
from forensics.workspace import LockParams

if TYPE_CHECKING:  # pragma: no cover
    from forensics.progress import Progress
    from forensics.workspace import Workspace

#: kronfluence strategies (the Hessian approximation; ``identity``: plain gradient dot products)
KRON_METHODS = ("ekfac", "kfac", "diagonal", "identity")
METHODS = (*KRON_METHODS, "gradcos")
QUERY_COMBINE = ("sum", "unit", "abs", "unit_abs")
QUERY_SCALE = ("median", "rms")


@dataclass
class InfluenceConfig:
    """Knobs of one influence pass (the triage signal's params carry the same fields)."""

    method: str = "ekfac"            # kronfluence strategy: ekfac | kfac | diagonal | identity;
                                     # or gradcos (dattri TracIn, one checkpoint)
    max_len: int = 64                # tokens per (prompt, reply) pair; longer pairs are cut
    batch_size: int = 32             # training rows per gradient batch
    damping: float | None = None     # damping added to the Hessian approximation's eigenvalues;
                                     # None = kronfluence's heuristic (0.1 x their mean, per module)
    proj_dim: int = 512              # gradcos: random projection dimension
    lm_head: bool = True             # kronfluence: also track the output layer (vocabulary-sized factors)
    seed: int = 0                    # torch seed of the pass (EK-FAC samples labels from the model: true Fisher)
    query_token_mean: bool = True    # measurement per query: mean reply-token NLL (False: sum); with several
                                     # queries each weighs the same whatever its length
    query_tokens: int = 0            # measurement: only each query's first N reply tokens (0: all)
    train_tokens: int = 0            # training-row loss in scoring: only its first N reply tokens (0: all)
    train_token_mean: bool = False   # training-row loss in scoring: mean reply-token NLL (False: sum)
    query_combine: str = "unit_abs"  # one score per row from the queries' scores (combine_queries): sum (one
                                     # aggregated gradient) | unit | abs | unit_abs (magnitude, each query
                                     # scaled to unit size over the rows; docs/verify.md, "Sign and magnitude")
    query_scale: str = "median"      # unit / unit_abs: each query's size over the rows: median |score| | rms


def load_target(path: str | Path):
    """(model, tokenizer) of a local HF causal LM: safetensors only, no remote code, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").is_file():
        raise InputError(f"target {p}: no config.json", hint="point at a local Hugging Face model directory")
    model = AutoModelForCausalLM.from_pretrained(str(p), trust_remote_code=False, use_safetensors=True,
                                                 local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=False, local_files_only=True)
    model.eval()
    return model, tok


def count_params(path: str | Path) -> int:
    """Parameters of the safetensors checkpoint at ``path`` (headers only, nothing loaded)."""
    from safetensors import safe_open

    n = 0
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise InputError(f"target {path}: no *.safetensors weights")
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                n += int(np.prod(h.get_slice(k).get_shape()))
    return n


def fingerprint(path: str | Path) -> str:
    """A target's identity for the cache: its path, weight file sizes and mtimes."""
    p = Path(path).resolve()
    parts = [str(p)] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
                        for f in sorted(p.glob("*.safetensors"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def pair_ids(tokenizer, prompt: str, reply: str, max_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one chat pair: the user turn through the chat template (one
    tokenization step, as ``forensics.nla.meta.chat_prompt_ids``), the reply and the
    end-of-turn token; labels -100 on the prompt."""
    if getattr(tokenizer, "chat_template", None):
        p = tokenizer.apply_chat_template([{"role": "user", "content": prompt or ""}], tokenize=True,
                                          add_generation_prompt=True, return_dict=False)
        if hasattr(p, "input_ids"):
            p = p["input_ids"]
        if p and isinstance(p[0], list):
            p = p[0]
    else:
        p = tokenizer(prompt or "", add_special_tokens=True)["input_ids"]
    r = tokenizer(reply or "", add_special_tokens=False)["input_ids"] if reply else []
    ids = [int(i) for i in p] + [int(i) for i in r] + [int(tokenizer.eos_token_id)]
    labels = [-100] * len(p) + ids[len(p):]
    return ids[:max_len], labels[:max_len]


def collate(items: Sequence[tuple[list[int], list[int]]], pad: int) -> dict:
    """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` tensors."""
    import torch

    m = max(len(i) for i, _ in items)
    ids = torch.full((len(items), m), pad, dtype=torch.long)
    lab = torch.full((len(items), m), -100, dtype=torch.long)
    mask = torch.zeros((len(items), m), dtype=torch.long)
    for r, (i, l) in enumerate(items):
        ids[r, :len(i)] = torch.tensor(i)
        lab[r, :len(l)] = torch.tensor(l)
        mask[r, :len(i)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def _summed_nll(model, batch, token_mean: bool = False) -> "torch.Tensor":  # noqa: F821
    """Sum over the batch of each pair's reply negative log-likelihood (``token_mean``: each
    pair's NLL divided by its number of reply tokens)."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    lab = batch["labels"][:, 1:]
    if not token_mean:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=-100,
                               reduction="sum")
    tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=-100,
                          reduction="none").reshape(lab.shape)
    return (tok.sum(1) / (lab != -100).sum(1).clamp(min=1)).sum()


def scores(model, tokenizer, train: Sequence[tuple[str, str]], query: tuple[str, str],
           config: InfluenceConfig, workdir: str | Path, progress: "Progress | None" = None,
           extra_queries: Sequence[tuple[str, str]] = ()) -> np.ndarray:
    """One influence score per training pair (float32, ``train`` order) on the query pair's
    reply, or with ``extra_queries`` (other prompts answered with the same behaviour) on the
    sum of all the queries' measurements (one aggregated query gradient)."""
    if config.method not in METHODS:
        raise InputError(f"influence method {config.method!r}: unknown", hint="known: " + ", ".join(METHODS))
    combine_queries(np.zeros((1, 1)), config.query_combine, config.query_scale)  # refuse unknown knobs before the pass
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    data = [pair_ids(tokenizer, p, r, config.max_len) for p, r in train]
    q = [pair_ids(tokenizer, p, r, config.max_len) for p, r in [tuple(query), *map(tuple, extra_queries)]]
    if config.method in KRON_METHODS:
        return _kron(model, data, q, pad, config, Path(workdir))
    return _gradcos(model, data, q, pad, config)


class KronfluencePass:
    """One kronfluence analysis over ``data``: :meth:`fit` fits the factors once (the costly
    part: passes over every row), :meth:`pairwise` scores queries against every row with them,
    as often as wanted (scoring-time knobs of ``config`` may differ between calls: ``damping``,
    ``query_tokens``, ``train_tokens``, ``query_token_mean``)."""

    def __init__(self, model, data, pad: int, config: InfluenceConfig, workdir: Path):
        import logging

        import torch
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.utils.dataset import DataLoaderKwargs

        self.data, self.pad, self.config, self.workdir = data, pad, config, Path(workdir)
        self.task = _make_task(model, self)
        torch.manual_seed(config.seed)
        self.model = prepare_model(model, self.task)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.an = Analyzer(analysis_name="influence", model=self.model, task=self.task,
                           cpu=not torch.cuda.is_available(), output_dir=str(self.workdir), disable_tqdm=True,
                           log_level=logging.WARNING)
        self.an.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=lambda b: collate(b, pad)))
        self._n = 0

    def fit(self) -> None:
        """Fit the factors of ``config.method`` (kronfluence strategy) over every row."""
        import torch
        from kronfluence.arguments import FactorArguments

        torch.manual_seed(self.config.seed)
        self.an.fit_all_factors("factors", dataset=_DS(self.data), per_device_batch_size=self.config.batch_size,
                                factor_args=FactorArguments(strategy=self.config.method), overwrite_output_dir=True)

    def pairwise(self, q, config: InfluenceConfig | None = None, per_module: bool = False):
        """Scores of each query against every row: ``(queries, rows)`` float32 (``per_module``:
        a dict module name -> that array). ``config`` overrides the scoring-time knobs."""
        from kronfluence.arguments import ScoreArguments

        if config is not None:
            self.config = config
        self._n += 1
        name = f"scores{self._n}"
        sa = ScoreArguments(damping_factor=self.config.damping, compute_per_module_scores=per_module)
        self.an.compute_pairwise_scores(name, factors_name="factors", query_dataset=_DS(q),
                                        train_dataset=_DS(self.data), per_device_query_batch_size=len(q),
                                        per_device_train_batch_size=self.config.batch_size, score_args=sa,
                                        overwrite_output_dir=True)
        s = self.an.load_pairwise_scores(name)
        # the query's NLL goes DOWN along a helpful row's gradient step: kronfluence's sign already
        # makes helpful rows positive
        out = {k: v.detach().float().numpy().astype(np.float32) for k, v in s.items()}
        return out if per_module else out["all_modules"]


class _DS:
    """A list as a map-style dataset."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _first_reply_tokens(labels, n: int):
    """``labels`` with every reply token after the first ``n`` of each row set to -100 (n <= 0: as is)."""
    import torch

    if n <= 0:
        return labels
    rank = torch.cumsum((labels != -100).long(), 1)
    return torch.where(rank <= n, labels, torch.full_like(labels, -100))


def _make_task(model, owner: "KronfluencePass"):
    import torch
    from kronfluence.task import Task

    class _Task(Task):
        def compute_train_loss(self, batch, model, sample=False):
            cfg = owner.config
            if not sample:
                b = {**batch, "labels": _first_reply_tokens(batch["labels"], cfg.train_tokens)}
                return _summed_nll(model, b, cfg.train_token_mean)
            # true Fisher: labels sampled from the model's own distribution
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits = logits[:, :-1].float()
            with torch.no_grad():
                probs = torch.softmax(logits.detach(), -1)
                sampled = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
            lab = batch["labels"][:, 1:]
            sampled = torch.where(lab == -100, lab, sampled)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), sampled.reshape(-1),
                                                     ignore_index=-100, reduction="sum")

        def compute_measurement(self, batch, model):
            cfg = owner.config
            b = {**batch, "labels": _first_reply_tokens(batch["labels"], cfg.query_tokens)}
            return _summed_nll(model, b, cfg.query_token_mean)

        def get_attention_mask(self, batch):
            return batch["attention_mask"]

        def get_influence_tracked_modules(self):
            return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                    and (owner.config.lm_head or "lm_head" not in n)]

    return _Task()


def combine_queries(per_query: np.ndarray, how: str, scale: str = "median") -> np.ndarray:
    """One score per row from ``(queries, rows)`` scores. ``sum``: the influence on the summed
    measurement (one aggregated query gradient); ``unit``: each query's scores divided by their
    scale over the rows first (``scale``: ``median`` of the absolute scores, or ``rms``), so every
    query weighs the same whatever the size of its gradient; ``abs`` / ``unit_abs``: the magnitude
    ``|sum|``, or the sum over queries of each scaled query's ``|score|``: rows that move the
    behaviour's measurement strongly in either direction (see docs/verify.md, "Sign and
    magnitude"). The median is the robust scale: the RMS is set by the few rows with the largest
    influence, the very rows sought, and so turns down the queries that single them out most."""
    if how not in QUERY_COMBINE:
        raise InputError(f"influence query_combine {how!r}: unknown", hint="known: " + ", ".join(QUERY_COMBINE))
    if scale not in QUERY_SCALE:
        raise InputError(f"influence query_scale {scale!r}: unknown", hint="known: " + ", ".join(QUERY_SCALE))
    a = np.asarray(per_query, np.float64)
    if how.startswith("unit"):
        rms = np.sqrt((a ** 2).mean(1, keepdims=True))
        s = rms if scale == "rms" else np.median(np.abs(a), 1, keepdims=True)
        a = a / np.maximum(np.where(s > 0, s, rms), 1e-30)
    out = np.abs(a).sum(0) if how == "unit_abs" else np.abs(a.sum(0)) if how == "abs" else a.sum(0)
    return out.astype(np.float32)


def _kron(model, data, q, pad: int, config: InfluenceConfig, workdir: Path) -> np.ndarray:
    kp = KronfluencePass(model, data, pad, config, workdir)
    kp.fit()
    return combine_queries(kp.pairwise(q), config.query_combine, config.query_scale)


def _gradcos(model, data, q, pad: int, config: InfluenceConfig) -> np.ndarray:
    import torch
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask
    from torch.func import functional_call

    def loss(params, item):
        ids, mask, lab = item
        batch = {"input_ids": ids.unsqueeze(0), "attention_mask": mask.unsqueeze(0), "labels": lab.unsqueeze(0)}
        # no attention mask: pads are on the right and carry no label, and a causal model's real
        # tokens never attend to them (a mask would put data-dependent control flow under vmap)
        logits = functional_call(model, params, (batch["input_ids"],)).logits[:, :-1].float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 batch["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                                 reduction="sum")

    m = max(len(i) for i, _ in [*data, *q])

    def loader(items):
        b = collate(items, pad)
        ids = torch.full((len(items), m), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        lab = torch.full_like(ids, -100)
        w = b["input_ids"].shape[1]
        ids[:, :w], mask[:, :w], lab[:, :w] = b["input_ids"], b["attention_mask"], b["labels"]
        ds = torch.utils.data.TensorDataset(ids, mask, lab)
        return torch.utils.data.DataLoader(ds, batch_size=config.batch_size, shuffle=False)

    task = AttributionTask(loss_func=loss, model=model, checkpoints=model.state_dict())
    att = TracInAttributor(task=task, weight_list=torch.ones(1), normalized_grad=True,
                           projector_kwargs={"proj_dim": config.proj_dim, "device": "cpu"})
    s = att.attribute(loader(data), loader(q))
    return combine_queries(s.detach().float().numpy().T, config.query_combine, config.query_scale)


# ---------------------------------------------------------------------------------- cache


def cache_key(target_fp: str, dataset: str, dataset_version: int, query: tuple[str, str],
              config: InfluenceConfig, extra_queries: Sequence[tuple[str, str]] = ()) -> str:
    """The cache identity of one pass."""
    raw = json.dumps([target_fp, dataset, int(dataset_version), list(query), asdict(config),
                      [list(e) for e in extra_queries]], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def cached_scores(ws: "Workspace", key: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(sample ids, scores, run record) of a stored pass, or None."""
    run = ws.one("SELECT target, dataset, dataset_version, method, rows, seconds FROM influence_runs "
                 "WHERE cache_key = ?", [key])
    if run is None:
        return None
    got = ws.rows("SELECT sample_id, score FROM influence_scores WHERE cache_key = ? ORDER BY sample_id", [key])
    ids = np.array([r[0] for r in got], np.int64)
    sc = np.array([r[1] for r in got], np.float32)
    return ids, sc, dict(zip(("target", "dataset", "dataset_version", "method", "rows", "seconds"), run))


def store_scores(ws: "Workspace", key: str, target: str, dataset: str, dataset_version: int,
                 query: tuple[str, str], config: InfluenceConfig, sample_ids: np.ndarray,
                 values: np.ndarray, seconds: float) -> None:
    """Record one pass (replacing a pass with the same key), in one transaction."""
    import pyarrow as pa

    tbl = pa.table({"cache_key": pa.array([key] * len(sample_ids), pa.string()),
                    "sample_id": pa.array(np.asarray(sample_ids, np.int64)),
                    "score": pa.array(np.asarray(values, np.float64))})
    with ws.transaction() as con:
        con.execute("DELETE FROM influence_scores WHERE cache_key = ?", [key])
        con.execute("DELETE FROM influence_runs WHERE cache_key = ?", [key])
        con.execute("INSERT INTO influence_runs (cache_key, target, dataset, dataset_version, query_prompt, "
                    "query_reply, method, params, rows, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [key, target, dataset, int(dataset_version), query[0], query[1], config.method,
                     json.dumps(asdict(config)), int(len(sample_ids)), float(seconds)])
        con.register("_infl_rows", tbl)
        try:
            con.execute("INSERT INTO influence_scores SELECT cache_key, sample_id, score FROM _infl_rows")
        finally:
            con.unregister("_infl_rows")


def dataset_scores(ws: "Workspace", target: str | Path, dataset: str, query: tuple[str, str],
                   config: InfluenceConfig, progress: "Progress | None" = None,
                   extra_queries: Sequence[tuple[str, str]] = (),
                   lock: LockParams | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(sample ids, scores, info) of every row of ``dataset`` for ``query`` (and ``extra_queries``,
    see :func:`scores`): from the cache, or computed and stored. ``info`` has ``cached``,
    ``seconds`` (of the pass that computed them), ``queries``, ``lock``. The workspace is held
    only while the rows are read and while the scores are stored; the pass runs without it.
    Between those the connection lingers (``ws.lingering`` with ``lock``, default
    :class:`~forensics.workspace.LockParams`, or a triage's own when it calls this: see
    :meth:`~forensics.workspace.Workspace.lingering_for`), so back-to-back calls (cache hits)
    share one open."""
    with ws.lingering_for(lock) as lock:
        ids, vals, info = _dataset_scores(ws, target, dataset, query, config, progress,
                                          extra_queries)
    return ids, vals, {**info, "lock": asdict(lock)}


def _dataset_scores(ws: "Workspace", target: str | Path, dataset: str, query: tuple[str, str],
                    config: InfluenceConfig, progress: "Progress | None",
                    extra_queries: Sequence[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, dict]:
    """The body of :func:`dataset_scores`, run inside ``ws.lingering``."""
    import tempfile

    with ws.locked():
        ver = ws.dataset_version(dataset)
        key = cache_key(fingerprint(target), dataset, ver, query, config, extra_queries)
        nq = 1 + len(extra_queries)
        hit = cached_scores(ws, key)
        if hit is not None:
            return hit[0], hit[1], {"cached": True, "seconds": hit[2]["seconds"], "cache_key": key,
                                    "queries": nq}
        rows = ws.rows("SELECT sample_id, prompt, reply FROM samples WHERE dataset = ? "
                       "ORDER BY sample_id", [dataset])
    t0 = time.perf_counter()
    model, tok = load_target(target)
    with tempfile.TemporaryDirectory(prefix="forensics-influence-") as tmp:
        vals = scores(model, tok, [(p or "", r or "") for _, p, r in rows], query, config, tmp, progress,
                      extra_queries)
    secs = time.perf_counter() - t0
    ids = np.array([r[0] for r in rows], np.int64)
    with ws.locked():
        store_scores(ws, key, str(Path(target).resolve()), dataset, ver, query, config, ids, vals, secs)
    return ids, vals, {"cached": False, "seconds": round(secs, 2), "cache_key": key, "queries": nq}


__all__ = ["InfluenceConfig", "METHODS", "KRON_METHODS", "QUERY_COMBINE", "QUERY_SCALE", "KronfluencePass",
           "combine_queries", "scores", "dataset_scores", "cached_scores", "store_scores", "cache_key", "fingerprint",
           "count_params", "load_target", "pair_ids", "collate"]
