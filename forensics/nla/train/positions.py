"""Step 1 of training: activations at the last prompt token and random positions of each
text, and the text context around each position (the summarizer's input)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from forensics.nla.train.config import TrainConfig
from forensics.nla.train.summarize import PositionContext


def norm_to(x, scale: float):
    return x * (scale / x.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def ensure_injection_char(tokenizer, model, char: str) -> None:
    """Add the injection character as one token when the tokenizer splits it (resizing the AV)."""
    ids = tokenizer.encode(char, add_special_tokens=False)
    if len(ids) != 1:
        tokenizer.add_tokens([char])
        model.resize_token_embeddings(len(tokenizer))


def position_contexts(tokenizer, item: tuple[str, str], ids: list[int], plen: int, pos: int,
                       langs: tuple[str | None, str | None]) -> PositionContext:
    """Text before/after token ``pos``, within its part (prompt or reply)."""
    prompt, reply = item
    in_reply = pos >= plen
    if in_reply:
        part = ids[plen:]
        k = pos - plen + 1
    else:
        # prompt content tokens only: drop the chat-template lead-in by locating the content
        part = ids[:plen]
        k = pos + 1
    before = tokenizer.decode(part[:k], skip_special_tokens=True)
    after = tokenizer.decode(part[k:], skip_special_tokens=True)
    if not in_reply:
        before = re.sub(r"^\s*(user|system)\b", "", before.strip(), count=1)
        # the generation prompt's role word is template, not text (it showed up as a "salient term")
        before = re.sub(r"\bassistant\s*$", "", before.strip())
        after = re.sub(r"\bassistant\s*$", "", after.strip())
    return PositionContext(prompt=prompt, reply=reply, in_reply=in_reply, prefix=before.strip(),
                           following=after.strip(), prompt_lang=langs[0], reply_lang=langs[1])


@dataclass
class Pos:
    item: int
    token_index: int
    label: str
    vector: object
    summary: str = ""


def collect_positions(model, tokenizer, items: Sequence[tuple[str, str]], cfg: TrainConfig,
                      langs: Sequence[tuple[str | None, str | None]], batch_size: int = 16) -> list[Pos]:
    """Step 1: activations at the last prompt token + random positions past ``skip_tokens``."""
    from forensics.nla.activations import encode_item, extract_activations

    rng = random.Random(cfg.seed)
    out: list[Pos] = []
    for s in range(0, len(items), 64):
        chunk = list(items[s:s + 64])
        enc = [encode_item(tokenizer, it) for it in chunk]
        maxlen = max(len(e[0]) for e in enc)
        acts = extract_activations(model, tokenizer, chunk, [f"token:{i}" for i in range(maxlen)],
                                   cfg.layer, cfg.hidden_state_index, batch_size=batch_size,
                                   early_tokens=cfg.skip_tokens)
        by = {(a.item, a.token_index): a for a in acts if a.ok}
        for j, (ids, plen) in enumerate(enc):
            want = {plen - 1} if plen - 1 >= cfg.skip_tokens else set()
            cand = [i for i in range(cfg.skip_tokens, len(ids)) if i != plen - 1]
            want.update(rng.sample(cand, min(cfg.positions_per_text, len(cand))))
            for t in sorted(want):
                a = by.get((j, t))
                if a is None:
                    continue
                label = "last_prompt" if t == plen - 1 else (f"reply:{t - plen}" if t >= plen else f"token:{t}")
                out.append(Pos(item=s + j, token_index=t, label=label, vector=a.vector))
        for p in out:
            if p.item >= s and not p.summary:
                p.summary = ""  # filled below
    return out


def expected_tokens(model, tokenizer, items: Sequence[tuple[str, str]], pos: Sequence[Pos], k: int,
                    batch_size: int = 16) -> list[tuple[str, ...]]:
    """The target's ``k`` most likely next tokens at each position (greedy top-k of its own
    logits), as words; what the vector is on its way to predict. ``k = 0``: empty tuples."""
    import torch

    from forensics.nla.activations import encode_item

    if k <= 0:
        return [() for _ in pos]
    want: dict[int, list[int]] = {}
    for i, p in enumerate(pos):
        want.setdefault(p.item, []).append(i)
    out: list[tuple[str, ...]] = [()] * len(pos)
    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    special = set(tokenizer.all_special_ids)
    keys = sorted(want)
    for s in range(0, len(keys), batch_size):
        chunk = keys[s:s + batch_size]
        seqs = []
        for it in chunk:
            ids, _ = encode_item(tokenizer, items[it])
            seqs.append(ids[:max(pos[i].token_index for i in want[it]) + 1])
        m = max(len(x) for x in seqs)
        ids_t = torch.full((len(seqs), m), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), m), dtype=torch.long)
        for r, x in enumerate(seqs):
            ids_t[r, :len(x)] = torch.tensor(x)
            mask[r, :len(x)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids_t.to(dev), attention_mask=mask.to(dev)).logits
        for r, it in enumerate(chunk):
            for i in want[it]:
                top = logits[r, pos[i].token_index].float().topk(k + len(special)).indices.tolist()
                words = [tokenizer.decode([t]).strip().lower() for t in top if t not in special][:k]
                out[i] = tuple(w for w in words if w) or ("end",)
    return out


def detect_langs(items: Sequence[tuple[str, str]]) -> list[tuple[str | None, str | None]]:
    from forensics.language.detect import detect

    pl = detect([p for p, _ in items])
    rl = detect([r or "" for _, r in items])
    return [(a.lang, b.lang) for a, b in zip(pl, rl)]
