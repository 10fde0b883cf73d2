"""The trainer: target, AV, reference AV, AR backbone and value head held together; ``fit``
runs the recipe (activations, summaries, SFT, GRPO, evaluation, writing the checkpoints)."""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path
from typing import Sequence

from forensics.errors import InputError
from forensics.nla.meta import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE
from forensics.nla.train.config import StageEval, TrainConfig, TrainReport
from forensics.nla.train.grpo import run_grpo
from forensics.nla.train.positions import (Pos, collect_positions, detect_langs, ensure_injection_char,
                                           expected_tokens, norm_to, position_contexts)
from forensics.nla.train.sft import run_sft
from forensics.nla.train.summarize import BuiltinSummarizer
from forensics.progress import Progress, resolve


# ---------------------------------------------------------------------------- the trainer


class NLATrainer:
    """Holds target, AV, reference AV, AR backbone and value head during training.

    Notebook use::

        tr = NLATrainer("toy-target", TrainConfig(layer=2))
        report = tr.fit(pairs, "out/nla")          # pairs: [(prompt, reply), ...]
    """

    def __init__(self, target: str | Path, cfg: TrainConfig, summarizer=None,
                 progress: Progress | None = None):
        import torch

        from forensics.nla.activations import load_causal_lm, pick_device
        from forensics.nla.meta import load_tokenizer

        self.torch = torch
        self.cfg = cfg
        self.target_path = Path(target)
        self.device = pick_device(cfg.device)
        self.tok = load_tokenizer(self.target_path)
        if not getattr(self.tok, "chat_template", None):
            raise InputError(f"{target}: the tokenizer has no chat template",
                             hint="the AV prompt is one chat turn; give the tokenizer a chat template")
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.target = load_causal_lm(self.target_path, device=self.device)
        self.summarizer = summarizer
        self.progress = resolve(progress)
        torch.manual_seed(cfg.seed)
        self.av = copy.deepcopy(self.target).to(self.device)
        ensure_injection_char(self.tok, self.av, cfg.injection_char)
        base = self.target.model if hasattr(self.target, "model") else self.target
        self.ar = copy.deepcopy(base)
        n_keep = cfg.layer + 1
        self.ar.layers = torch.nn.ModuleList(list(self.ar.layers)[:n_keep])
        self.ar.config.num_hidden_layers = n_keep
        if isinstance(getattr(self.ar.config, "layer_types", None), list):
            self.ar.config.layer_types = self.ar.config.layer_types[:n_keep]
        self._ar_norm = self.ar.norm
        self.ar.norm = torch.nn.Identity()  # the contract: final norm replaced by identity
        d = int(base.config.hidden_size)
        self.d = d
        self.head = torch.nn.Linear(d, d, bias=False).to(self.device)
        torch.nn.init.eye_(self.head.weight)
        self.ar.to(self.device)
        self.mse_scale = math.sqrt(d)
        self.close_ids = self.tok.encode("</explanation>", add_special_tokens=False)

    # -------------------------------------------------------------- AV pieces
    def note(self, stage: str, info: dict) -> None:
        """One progress note: ``stage k=v ...`` (floats to 4 significant digits)."""
        txt = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        self.progress.note(f"{stage} {txt}")

    def _av_prompt(self):
        from forensics.nla.meta import chat_prompt_ids

        ids = chat_prompt_ids(self.tok, DEFAULT_AV_TEMPLATE.format(injection_char=self.cfg.injection_char))
        tid = self.tok.encode(self.cfg.injection_char, add_special_tokens=False)[0]
        return ids, ids.index(tid)

    def _embed_scale(self) -> float:
        from forensics.nla.av import embed_scale_for

        return embed_scale_for(self.av.config, self.av.get_input_embeddings())

    def _prompt_embeds(self, vectors):
        """[n, L, d] AV prompt embeddings with the vectors (rescaled) injected at the slot."""
        torch = self.torch
        ids, slot = self._av_prompt()
        emb = self.av.get_input_embeddings()
        base = emb(torch.tensor(ids, device=self.device)) * (self._embed_scale() if not hasattr(emb, "embed_scale") else 1.0)
        v = norm_to(vectors.to(self.device, torch.float32), self.injection_scale)
        x = base.unsqueeze(0).repeat(v.shape[0], 1, 1).clone()
        x[:, slot, :] = v.to(x.dtype)
        return x

    def _target_ids(self, text: str) -> list[int]:
        t = self.tok.encode(f"<explanation> {text} </explanation>", add_special_tokens=False)
        return t + [self.tok.eos_token_id]

    def _av_loss(self, model, vectors, targets: list[list[int]]):
        """Next-token loss on explanation tokens; returns (mean loss, n tokens)."""
        torch = self.torch
        px = self._prompt_embeds(vectors)
        L = px.shape[1]
        m = max(len(t) for t in targets)
        pad = self.tok.pad_token_id
        tid = torch.full((len(targets), m), pad, dtype=torch.long, device=self.device)
        lab = torch.full((len(targets), L + m), -100, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(targets), L + m), dtype=torch.long, device=self.device)
        for r, t in enumerate(targets):
            tid[r, :len(t)] = torch.tensor(t)
            lab[r, L:L + len(t)] = torch.tensor(t)
            mask[r, :L + len(t)] = 1
        tx = model.get_input_embeddings()(tid)
        x = torch.cat([px.to(tx.dtype), tx], dim=1)
        out = model(inputs_embeds=x, attention_mask=mask, labels=lab)
        return out.loss, int((lab != -100).sum())

    # -------------------------------------------------------------- AR pieces
    def _ar_forward(self, texts: Sequence[str]):
        torch = self.torch
        from forensics.nla.meta import ar_prompt_ids

        enc = [ar_prompt_ids(self._ar_sidecar, self.tok, t) for t in texts]
        m = max(len(e) for e in enc)
        ids = torch.full((len(enc), m), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(enc), m), dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, :len(e)] = torch.tensor(e)
            mask[r, :len(e)] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        h = self.ar(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    position_ids=pos.to(self.device), use_cache=False).last_hidden_state
        last = torch.tensor([len(e) - 1 for e in enc], device=self.device)
        return self.head(h[torch.arange(len(enc), device=self.device), last].float()), sum(len(e) for e in enc)

    def _ar_loss(self, texts, vectors):
        pred, n = self._ar_forward(texts)
        g = norm_to(vectors.to(self.device, self.torch.float32), self.mse_scale)
        return ((norm_to(pred, self.mse_scale) - g) ** 2).mean(), n

    # -------------------------------------------------------------- evaluation with the runtime
    def _runtime_pair(self):
        """The runtime's own AV/AR classes around the in-memory models (no copy)."""
        from forensics.nla.ar import AR
        from forensics.nla.av import AV, embed_scale_for
        from forensics.nla.backends import make_backend
        from forensics.nla.meta import parse_sidecar

        emb = self.av.get_input_embeddings()
        av = AV(self.av_dir, parse_sidecar(self.av_dir, role="av"), self.tok, emb.weight.detach(),
                embed_scale_for(self.av.config, emb), make_backend("local", model=self.av, tokenizer=self.tok),
                self.av.config, self.cfg.max_new_tokens)
        ar = AR(self.ar_dir, self._ar_sidecar, self.tok, self.ar, self.head)
        return av, ar

    def evaluate(self, heldout: list[Pos]) -> StageEval:
        torch = self.torch
        from forensics.nla.ar import score

        self.av.eval()
        self.ar.eval()
        av, ar = self._runtime_pair()
        vecs = torch.stack([p.vector for p in heldout])
        exps = av.explain(list(vecs), batch_size=32)
        texts = [e.text for e in exps]
        pred = ar.predict(texts, batch_size=32)
        mse, cos, fve = score(pred, vecs, self.mse_scale, self.variance)
        shuf = list(range(1, len(texts))) + [0]  # every vector gets another vector's explanation
        _, _, fve_s = score(pred[shuf], vecs, self.mse_scale, self.variance)
        _, _, fve_g = score(ar.predict([p.summary for p in heldout], batch_size=32), vecs, self.mse_scale,
                            self.variance)
        ex = [{"position": p.label, "summary": p.summary, "explanation": t, "fve": float(f)}
              for p, t, f in list(zip(heldout, texts, fve))[:8]]
        return StageEval(fve=float(fve.mean()), mse=float(mse.mean()), cos=float(cos.mean()),
                         fve_shuffled=float(fve_s.mean()), fve_summaries=float(fve_g.mean()), examples=ex)

    # -------------------------------------------------------------- stages
    def fit(self, items: Sequence[tuple[str, str]], out_dir: str | Path,
            langs: Sequence[tuple[str | None, str | None]] | None = None) -> TrainReport:
        torch = self.torch
        from forensics.nla.activations import default_hidden_state_index, encode_item
        from forensics.nla.ar import dataset_variance
        from forensics.nla.meta import parse_sidecar, write_ar, write_av, write_sidecar

        cfg = self.cfg
        t_all = time.perf_counter()
        secs: dict[str, float] = {}
        items = [(p or "", r or "") for p, r in items]
        if len(items) < 4:
            raise InputError(f"need at least 4 (prompt, reply) texts to train an NLA, got {len(items)}")
        out = Path(out_dir)
        self.av_dir, self.ar_dir = out / "av", out / "ar"
        # 1. activations
        t0 = time.perf_counter()
        self.note("activations", {"texts": len(items)})
        langs = list(langs) if langs is not None else detect_langs(items)
        pos = collect_positions(self.target, self.tok, items, cfg, langs)
        if len(pos) < 8:
            raise InputError(f"only {len(pos)} usable positions (texts too short for --skip-tokens "
                             f"{cfg.skip_tokens}?)")
        secs["activations"] = time.perf_counter() - t0
        # 2. summaries
        t0 = time.perf_counter()
        if self.summarizer is None:
            self.summarizer = BuiltinSummarizer([p + " " + r for p, r in items], n_before=cfg.summary_before)
        encs = {}
        ctxs = []
        expected = expected_tokens(self.target, self.tok, items, pos, cfg.summary_expected)
        for p, exp in zip(pos, expected):
            if p.item not in encs:
                encs[p.item] = encode_item(self.tok, items[p.item])
            ids, plen = encs[p.item]
            ctx = position_contexts(self.tok, items[p.item], ids, plen, p.token_index, langs[p.item])
            ctx.expected = exp
            ctxs.append(ctx)
        self.note("summaries", {"positions": len(pos), "summarizer": self.summarizer.name})
        for p, s in zip(pos, self.summarizer.summarize_many(ctxs)):
            p.summary = s
        secs["summaries"] = time.perf_counter() - t0
        # split by text, so held-out positions come from texts never trained on
        rng = random.Random(cfg.seed)
        texts_ids = sorted({p.item for p in pos})
        rng.shuffle(texts_ids)
        n_held = max(2, int(len(texts_ids) * cfg.heldout_frac))
        held_items = set(texts_ids[:n_held])
        train = [p for p in pos if p.item not in held_items]
        heldout = [p for p in pos if p.item in held_items][:cfg.max_heldout]
        vecs = torch.stack([p.vector for p in train])
        self.variance = dataset_variance(list(vecs), self.mse_scale)
        self.injection_scale = float(vecs.norm(dim=-1).median())
        hsi = default_hidden_state_index(cfg.layer) if cfg.hidden_state_index is None else cfg.hidden_state_index
        # sidecars first: the runtime classes used for evaluation read them
        extra = {"training": {"recipe": "forensics.nla.train (SFT + GRPO)", "target": str(self.target_path),
                              "hidden_state_index": hsi, "summarizer": self.summarizer.name}}
        write_sidecar(self.av_dir, role="av", tokenizer=self.tok, d_model=self.d,
                      injection_scale=self.injection_scale, mse_scale="sqrt_d_model", layer=cfg.layer,
                      injection_char=cfg.injection_char, av_template=DEFAULT_AV_TEMPLATE,
                      ar_template=DEFAULT_AR_TEMPLATE, extra=extra)
        write_sidecar(self.ar_dir, role="ar", tokenizer=self.tok, d_model=self.d,
                      injection_scale=self.injection_scale, mse_scale="sqrt_d_model", layer=cfg.layer,
                      injection_char=cfg.injection_char, av_template=DEFAULT_AV_TEMPLATE,
                      ar_template=DEFAULT_AR_TEMPLATE, extra=extra)
        self._ar_sidecar = parse_sidecar(self.ar_dir, role="ar")
        rep = TrainReport(target=str(self.target_path), av_dir=str(self.av_dir), ar_dir=str(self.ar_dir),
                          layer=cfg.layer, hidden_state_index=hsi, d_model=self.d, n_texts=len(items),
                          n_train_positions=len(train), n_heldout_positions=len(heldout),
                          variance=self.variance, injection_scale=self.injection_scale,
                          summarizer=self.summarizer.name, device=self.device)
        # 3. supervised warm start
        t0 = time.perf_counter()
        run_sft(self, train, rep)
        secs["sft"] = time.perf_counter() - t0
        rep.sft = self.evaluate(heldout)
        self.note("eval", {"stage": "sft", "fve": rep.sft.fve, "fve_shuffled": rep.sft.fve_shuffled})
        # 4. GRPO
        if cfg.rl_steps > 0:
            t0 = time.perf_counter()
            run_grpo(self, train, rep)
            secs["rl"] = time.perf_counter() - t0
            rep.rl = self.evaluate(heldout)
            self.note("eval", {"stage": "rl", "fve": rep.rl.fve, "fve_shuffled": rep.rl.fve_shuffled})
        # 5. write
        t0 = time.perf_counter()
        extra["training"].update({"fve_sft": rep.sft.fve, "fve_rl": rep.rl.fve if rep.rl else None,
                                  "fve_shuffled": (rep.rl or rep.sft).fve_shuffled,
                                  "variance": self.variance})
        self.av.eval()
        write_av(self.av_dir, self.av, self.tok, layer=cfg.layer, injection_scale=self.injection_scale,
                 injection_char=cfg.injection_char, extra=extra)
        self.ar.norm = self._ar_norm  # saved with its norm; the runtime replaces it by identity at load
        try:
            write_ar(self.ar_dir, self.ar, self.head, self.tok, layer=cfg.layer,
                     injection_scale=self.injection_scale, injection_char=cfg.injection_char, extra=extra)
        finally:
            self.ar.norm = torch.nn.Identity()
        secs["write"] = time.perf_counter() - t0
        secs["total"] = time.perf_counter() - t_all
        rep.seconds = secs
        return rep


def train_nla(target: str | Path, items: Sequence[tuple[str, str]], out_dir: str | Path, cfg: TrainConfig,
              summarizer=None, langs=None, progress=None) -> TrainReport:
    """Train an AV + AR for ``target`` at ``cfg.layer`` on (prompt, reply) items; write to ``out_dir``."""
    return NLATrainer(target, cfg, summarizer=summarizer, progress=progress).fit(items, out_dir, langs=langs)


def train_from_dataset(ws, dataset: str, target: str | Path, out_dir: str | Path, cfg: TrainConfig,
                       limit: int | None = None, summarizer=None, progress=None) -> TrainReport:
    """Workspace entry point: the dataset's samples (prompt, reply, detected languages) as texts.
    The workspace is held only while they are read; training runs with it released."""
    q = ("SELECT prompt, reply, prompt_lang, reply_lang FROM samples WHERE dataset = ? "
         "ORDER BY sample_id")
    with ws.locked():
        ws.require_dataset(dataset)
        rows = ws.rows(q + (" LIMIT ?" if limit else ""), [dataset, limit] if limit else [dataset])
    if not rows:
        raise InputError(f"dataset {dataset!r} has no samples")
    items = [(r[0] or "", r[1] or "") for r in rows]
    langs = [(r[2], r[3]) for r in rows]
    if any(a is None and b is None for a, b in langs):
        langs = None
    return train_nla(target, items, out_dir, cfg, summarizer=summarizer, langs=langs, progress=progress)
