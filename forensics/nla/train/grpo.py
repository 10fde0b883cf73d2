"""The RL stage: GRPO on the AV against the AR's reconstruction error."""

from __future__ import annotations

import copy
import random
import time
from typing import TYPE_CHECKING

from forensics.nla.train.config import TrainReport
from forensics.nla.train.positions import Pos, norm_to

if TYPE_CHECKING:
    from forensics.nla.train.trainer import NLATrainer


def run_grpo(tr: NLATrainer, train: list[Pos], rep: TrainReport) -> None:
    """Step 4: GRPO on the AV (reward = minus the AR's normalised MSE, group-normalised
    advantages, k3 KL to the warm-started copy); the AR regressed on the sampled explanations."""
    torch = tr.torch
    F = torch.nn.functional
    cfg = tr.cfg
    from forensics.nla.av import parse_explanation

    rng = random.Random(cfg.seed + 2)
    ref = copy.deepcopy(tr.av).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    opt_av = torch.optim.AdamW(tr.av.parameters(), lr=cfg.rl_lr, weight_decay=0.0)
    opt_ar = torch.optim.AdamW(list(tr.ar.parameters()) + list(tr.head.parameters()), lr=cfg.ar_lr * 0.25)
    stops = set(tr.close_ids[-1:]) | {tr.tok.eos_token_id}
    rewards: list[float] = []
    kls: list[float] = []
    n_expl = 0
    t_gen = 0.0
    t_rl = time.perf_counter()
    task = tr.progress.start("rl", cfg.rl_steps)
    G = cfg.rl_group
    for step in range(cfg.rl_steps):
        batch = [train[rng.randrange(len(train))] for _ in range(cfg.rl_batch)]
        v = torch.stack([p.vector for p in batch]).repeat_interleave(G, dim=0)
        # sample a group of explanations per vector
        t0 = time.perf_counter()
        tr.av.eval()
        with torch.no_grad():
            px = tr._prompt_embeds(v)
            gen = tr.av.generate(inputs_embeds=px, attention_mask=torch.ones(px.shape[:2], dtype=torch.long,
                                                                                 device=tr.device),
                                   do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                                   max_new_tokens=cfg.max_new_tokens, pad_token_id=tr.tok.pad_token_id,
                                   eos_token_id=sorted(stops))
        t_gen += time.perf_counter() - t0
        seqs = gen.tolist()
        toks, texts = [], []
        for row in seqs:
            cut = len(row)
            for k, t in enumerate(row):
                if t in stops:
                    cut = k + 1
                    break
            toks.append(row[:cut] or [tr.tok.eos_token_id])
            txt, _, _ = parse_explanation(tr.tok.decode(row[:cut], skip_special_tokens=True))
            texts.append(txt or "")
        n_expl += len(texts)
        # reward: minus the AR's normalised MSE (no gradient to the AV)
        tr.ar.eval()
        with torch.no_grad():
            pred, _ = tr._ar_forward(texts)
            g = norm_to(v.to(tr.device), tr.mse_scale)
            r = -((norm_to(pred, tr.mse_scale) - g) ** 2).mean(dim=-1)
        rg = r.view(-1, G)
        adv = ((rg - rg.mean(dim=1, keepdim=True)) / (rg.std(dim=1, keepdim=True) + 1e-4)).view(-1)
        rewards.append(float(r.mean()))
        # policy gradient with KL to the warm-started AV
        tr.av.train()
        L = px.shape[1]
        m = max(len(t) for t in toks)
        tid = torch.full((len(toks), m), tr.tok.pad_token_id, dtype=torch.long, device=tr.device)
        tmask = torch.zeros((len(toks), m), dtype=torch.float32, device=tr.device)
        for i, t in enumerate(toks):
            tid[i, :len(t)] = torch.tensor(t)
            tmask[i, :len(t)] = 1
        amask = torch.cat([torch.ones(px.shape[:2], device=tr.device), tmask], dim=1).long()

        def logp(model):
            x = torch.cat([px.to(model.dtype), model.get_input_embeddings()(tid)], dim=1)
            logits = model(inputs_embeds=x, attention_mask=amask).logits[:, L - 1:L - 1 + m].float()
            return torch.gather(F.log_softmax(logits, -1), 2, tid.unsqueeze(-1)).squeeze(-1)

        lp = logp(tr.av)
        with torch.no_grad():
            lr_ = logp(ref)
        d = lr_ - lp
        kl = (torch.exp(d) - d - 1) * tmask
        ntok = tmask.sum(dim=1).clamp_min(1)
        pg = -(adv.detach() * (lp * tmask).sum(dim=1) / ntok)
        loss = pg.mean() + cfg.kl_coef * (kl.sum(dim=1) / ntok).mean()
        opt_av.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.av.parameters(), 1.0)
        opt_av.step()
        kls.append(float((kl.sum(dim=1) / ntok).mean().detach()))
        # the AR regressed on the sampled explanations in the same step (detached text)
        tr.ar.train()
        loss_ar, _ = tr._ar_loss(texts, v)
        opt_ar.zero_grad()
        loss_ar.backward()
        opt_ar.step()
        if step % 5 == 0 or step == cfg.rl_steps - 1:
            tr.note("rl", {"step": step + 1, "of": cfg.rl_steps, "reward": rewards[-1], "kl": kls[-1]})
        tr.progress.advance(task)
    tr.progress.finish(task)
    tr.av.eval()
    tr.ar.eval()
    k = max(1, min(5, len(rewards) // 3))
    rep.rl_reward = [sum(rewards[:k]) / k, sum(rewards[-k:]) / k]
    rep.rl_kl = sum(kls[-k:]) / k
    rep.rl_explanations_per_s = n_expl / max(t_gen, 1e-9)
    rep.rl_steps_per_s = cfg.rl_steps / max(time.perf_counter() - t_rl, 1e-9)
