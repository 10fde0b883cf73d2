"""Toy target models for laptops: a word-level tokenizer, a tiny transformer, SFT and replies.

Why: the case study (and the NLA-training tests) need a target model that really LEARNS a
behaviour from data (here: answering English prompts in another language when a cue is
present) in a couple of CPU minutes. A word-level vocabulary of a few thousand words keeps
every token a whole word, so a 2-4 layer, 64-128 wide Qwen2-style model learns fast, and
its replies can be language-identified directly. The tokenizer carries a ChatML chat template
and the NLA markup tokens (``<concept>``, ``<explanation>``, the injection character) as
whole tokens, so the same tokenizer serves the target, its AV and its AR.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from forensics.nla.meta import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE, DEFAULT_INJECTION_CHAR

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "[UNK]", "<|im_start|>", "<|im_end|>"]
#: Markup kept as whole (non-special) tokens: decoded with skip_special_tokens=True they survive,
#: which the AV's ``<explanation>`` parsing needs.
MARKUP = ["<explanation>", "</explanation>", "<concept>", "</concept>", "<text>", "</text>", "<summary>"]


def build_word_tokenizer(texts: Iterable[str], vocab_size: int = 4000, extra_words: Sequence[str] = (),
                         injection_char: str = DEFAULT_INJECTION_CHAR):
    """A lower-cased word-level ``PreTrainedTokenizerFast`` with a ChatML chat template.

    ``extra_words`` are guaranteed to be in the vocabulary (e.g. the NLA summarizer's fixed
    words) whatever their corpus frequency. Words outside the vocabulary become ``[UNK]``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # words are joined with spaces on decode (WordLevel has no decoder of its own)
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tmpl_words = (DEFAULT_AV_TEMPLATE + " " + DEFAULT_AR_TEMPLATE).replace("{injection_char}", " ")
    tmpl_words = tmpl_words.replace("{explanation}", " ")
    for m in MARKUP:
        tmpl_words = tmpl_words.replace(m, " ")
    must = list(dict.fromkeys([*extra_words, *tmpl_words.split(), "user", "assistant", "system"]))
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1,
                                        show_progress=False)
    # the guaranteed words are repeated so their frequency puts them inside the vocabulary
    tok.train_from_iterator([*texts, *([" ".join(must)] * 50)], trainer=trainer)
    tok.add_tokens([*MARKUP, injection_char])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML, model_max_length=512)


def build_model(tokenizer, hidden_size: int = 128, num_layers: int = 4, heads: int = 4, kv_heads: int = 2,
                seed: int = 0):
    """A randomly initialised tiny Llama-style causal LM for ``tokenizer``.

    Llama, not Qwen2: transformers 5 maps model_type qwen2 to Qwen2Tokenizer, which rebuilds a
    word-level tokenizer.json as character BPE; llama loads tokenizer.json as saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads,
                      intermediate_size=hidden_size * 3, max_position_embeddings=512,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=None, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def _pair_ids(tokenizer, prompt: str, reply: str, max_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) for one chat pair: loss only on the reply and its end-of-turn."""
    from forensics.nla.activations import encode_item

    ids, plen = encode_item(tokenizer, (prompt, reply))
    ids = ids + [tokenizer.eos_token_id]
    labels = [-100] * plen + ids[plen:]
    return ids[:max_len], labels[:max_len]


@dataclass
class SFTResult:
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    tokens_per_s: float


def sft(model, tokenizer, pairs: Sequence[tuple[str, str]], steps: int = 600, batch_size: int = 16,
        lr: float = 3e-3, max_len: int = 64, seed: int = 0,
        log: Callable[[int, float], None] | None = None) -> SFTResult:
    """Supervised fine-tuning on (prompt, reply) pairs, reply-only loss, AdamW + cosine decay."""
    import torch

    rng = random.Random(seed)
    data = [_pair_ids(tokenizer, p, r, max_len) for p, r in pairs]
    pad = tokenizer.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 30) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    t0 = time.perf_counter()
    first = last = float("nan")
    ema = None
    n_tok = 0
    for step in range(steps):
        batch = [data[rng.randrange(len(data))] for _ in range(batch_size)]
        m = max(len(i) for i, _ in batch)
        ids = torch.full((len(batch), m), pad, dtype=torch.long)
        lab = torch.full((len(batch), m), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), m), dtype=torch.long)
        for r, (i, l) in enumerate(batch):
            ids[r, :len(i)] = torch.tensor(i)
            lab[r, :len(l)] = torch.tensor(l)
            mask[r, :len(i)] = 1
        n_tok += int(mask.sum())
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
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
    model.eval()
    secs = time.perf_counter() - t0
    return SFTResult(steps, first, last, secs, n_tok / max(secs, 1e-9))


def save(model, tokenizer, out_dir) -> None:
    """Save as an ordinary local HF directory (safetensors + tokenizer with chat template)."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
