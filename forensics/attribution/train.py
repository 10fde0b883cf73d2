"""Supervised fine-tuning of a small causal LM on (prompt, reply) pairs, and the training
config a verification retrains with.

:func:`sft` is the one SFT loop (the case study's toy target is trained with it, via
``forensics.testing.toy.sft``): reply-only loss, AdamW, linear warm-up + cosine decay, batches
drawn with ``random.Random(seed)``. Given the same initial weights, pairs, config and one
torch thread, it is deterministic on CPU, so "retrain without rows R" differs from the
original training only by R.

:class:`TrainConfig` is the file a user gives ``forensics verify --train-config`` (JSON or
TOML): where the initial weights are and the loop's knobs.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

from forensics.errors import InputError


@dataclass
class TrainConfig:
    """How the target was trained (``--train-config``): ``init`` is a local HF model directory
    holding the weights before training (relative paths are relative to the config file)."""

    init: str
    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-3
    max_len: int = 64
    seed: int = 0
    weight_decay: float = 0.01
    warmup_steps: int = 30
    torch_threads: int = 1           # intra-op threads during retraining (determinism, shared CPUs)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read and check a config file; errors name the file and the field."""
        p = Path(path)
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"--train-config {p}: cannot read ({e.strerror or e})") from None
        try:
            if p.suffix.lower() == ".toml":
                import tomllib

                d = tomllib.loads(raw)
            else:
                d = json.loads(raw)
        except ValueError as e:
            raise InputError(f"--train-config {p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} ({e})") from None
        if not isinstance(d, dict):
            raise InputError(f"--train-config {p}: must hold a mapping of fields")
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in d if k not in known]
        if unknown:
            raise InputError(f"--train-config {p}: unknown field {unknown[0]!r}", hint="known: " + ", ".join(known))
        if "init" not in d:
            raise InputError(f"--train-config {p}: field 'init' is required",
                             hint="the directory of the model's weights before training")
        for k, v in d.items():
            want = known[k].type
            ok = (isinstance(v, str) if want == "str" else
                  isinstance(v, int) and not isinstance(v, bool) if want == "int" else
                  isinstance(v, (int, float)) and not isinstance(v, bool))
            if not ok:
                raise InputError(f"--train-config {p}: field {k!r} must be {want}, got {v!r}")
        cfg = cls(**d)
        if cfg.steps <= 0 or cfg.batch_size <= 0 or cfg.lr <= 0 or cfg.max_len <= 1:
            raise InputError(f"--train-config {p}: steps, batch_size, lr must be > 0 and max_len > 1")
        init = Path(cfg.init)
        if not init.is_absolute():
            init = (p.parent / init)
        if not (init / "config.json").is_file():
            raise InputError(f"--train-config {p}: field 'init': {init} is not a model directory (no config.json)")
        cfg.init = str(init.resolve())
        return cfg

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SFTResult:
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    tokens_per_s: float


def sft(model, tokenizer, pairs: Sequence[tuple[str, str]], steps: int = 600, batch_size: int = 16,
        lr: float = 3e-3, max_len: int = 64, seed: int = 0, weight_decay: float = 0.01,
        warmup_steps: int = 30, log: Callable[[int, float], None] | None = None,
        on_step: Callable[[int, object], None] | None = None) -> SFTResult:
    """Supervised fine-tuning on (prompt, reply) pairs, reply-only loss, AdamW + cosine decay.
    ``on_step(steps_done, model)`` runs after each optimizer step (e.g. to save checkpoints for
    TracIn-style influence); it must not change the model."""
    import torch

    from forensics.attribution.influence import collate, pair_ids

    rng = random.Random(seed)
    data = [pair_ids(tokenizer, p, r, max_len) for p, r in pairs]
    if not data:
        raise InputError("nothing to train on: no (prompt, reply) pairs")
    pad = tokenizer.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    t0 = time.perf_counter()
    first = last = float("nan")
    ema = None
    n_tok = 0
    for step in range(steps):
        b = collate([data[rng.randrange(len(data))] for _ in range(batch_size)], pad)
        n_tok += int(b["attention_mask"].sum())
        loss = model(**b).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        v = float(loss.detach())
        ema = v if ema is None else 0.9 * ema + 0.1 * v
        if step == 0:
            first = v
        last = ema
        if log and (step % 50 == 0 or step == steps - 1):
            log(step, ema)
        if on_step is not None:
            on_step(step + 1, model)
    model.eval()
    secs = time.perf_counter() - t0
    return SFTResult(steps, first, last, secs, n_tok / max(secs, 1e-9))


def train_from_config(cfg: TrainConfig, pairs: Sequence[tuple[str, str]],
                      log: Callable[[int, float], None] | None = None):
    """(model, tokenizer, SFTResult): the model at ``cfg.init`` trained on ``pairs``."""
    import torch

    from forensics.attribution.influence import load_target

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.torch_threads))
    try:
        model, tok = load_target(cfg.init)
        res = sft(model, tok, pairs, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, max_len=cfg.max_len,
                  seed=cfg.seed, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps, log=log)
    finally:
        torch.set_num_threads(old)
    return model, tok, res


__all__ = ["TrainConfig", "SFTResult", "sft", "train_from_config"]
