"""The supervised warm start of the AV and AR."""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING

from forensics.nla.train.config import TrainReport
from forensics.nla.train.positions import Pos

if TYPE_CHECKING:
    from forensics.nla.train.trainer import NLATrainer


def run_sft(tr: NLATrainer, train: list[Pos], rep: TrainReport) -> None:
    """Step 3: the AR regresses the normalised activation from the summary; the AV learns to
    write ``<explanation>summary</explanation>`` with the vector injected (next-token loss)."""
    torch = tr.torch
    cfg = tr.cfg
    rng = random.Random(cfg.seed + 1)
    tr.av.train()
    tr.ar.train()
    opt_av = torch.optim.AdamW(tr.av.parameters(), lr=cfg.av_lr, weight_decay=0.0)
    opt_ar = torch.optim.AdamW(list(tr.ar.parameters()) + list(tr.head.parameters()), lr=cfg.ar_lr)
    steps = max(1, cfg.sft_steps)
    task = tr.progress.start("sft", steps)
    lr_f = lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps))  # noqa: E731
    s_av = torch.optim.lr_scheduler.LambdaLR(opt_av, lr_f)
    s_ar = torch.optim.lr_scheduler.LambdaLR(opt_ar, lr_f)
    ema_av = ema_ar = None
    first_av = first_ar = None
    t_av = t_ar = 0.0
    n_av = n_ar = 0
    for step in range(steps):
        batch = [train[rng.randrange(len(train))] for _ in range(cfg.batch_size)]
        v = torch.stack([p.vector for p in batch])
        t0 = time.perf_counter()
        loss_ar, n = tr._ar_loss([p.summary for p in batch], v)
        opt_ar.zero_grad()
        loss_ar.backward()
        torch.nn.utils.clip_grad_norm_(list(tr.ar.parameters()) + list(tr.head.parameters()), 1.0)
        opt_ar.step()
        s_ar.step()
        b = float(loss_ar.detach())  # also a device sync, so the timings split correctly on CUDA
        t_ar += time.perf_counter() - t0
        n_ar += n
        t0 = time.perf_counter()
        loss_av, n = tr._av_loss(tr.av, v, [tr._target_ids(p.summary) for p in batch])
        opt_av.zero_grad()
        loss_av.backward()
        torch.nn.utils.clip_grad_norm_(tr.av.parameters(), 1.0)
        opt_av.step()
        s_av.step()
        a = float(loss_av.detach())
        t_av += time.perf_counter() - t0
        n_av += n
        first_av = a if first_av is None else first_av
        first_ar = b if first_ar is None else first_ar
        ema_av = a if ema_av is None else 0.9 * ema_av + 0.1 * a
        ema_ar = b if ema_ar is None else 0.9 * ema_ar + 0.1 * b
        if step % 25 == 0 or step == steps - 1:
            tr.note("sft", {"step": step + 1, "of": steps, "av_loss": ema_av, "ar_mse": ema_ar})
        tr.progress.advance(task)
    tr.progress.finish(task)
    rep.av_loss = [first_av, ema_av]
    rep.ar_loss = [first_ar, ema_ar]
    rep.av_tokens_per_s = n_av / max(t_av, 1e-9)
    rep.ar_tokens_per_s = n_ar / max(t_ar, 1e-9)
    rep.av_positions_per_s = steps * cfg.batch_size / max(t_av, 1e-9)
    rep.ar_positions_per_s = steps * cfg.batch_size / max(t_ar, 1e-9)
