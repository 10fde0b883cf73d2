"""Tiny, locally built NLA checkpoints: tokenizer, target models, AV and AR directories.

Why: tests, the benchmark and NLA training experiments need real checkpoints in the released
layout, and nothing may be downloaded. Everything here is built in seconds from configs: a
byte-level BPE tokenizer trained on a built-in corpus (with a chat template and a single-token
injection character), small Qwen2-, Llama- and Gemma-3-text-style models with random weights,
and AV/AR directories written with the same writers (:mod:`forensics.nla.meta`) that trained
checkpoints use, so the loading path exercised by tests is the production one.

Random weights produce random words, not explanations; that is fine for contract tests
(slots, scales, shapes, storage). ``forensics.nla.train`` turns them into working NLAs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from forensics.nla.meta import (DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE, DEFAULT_INJECTION_CHAR, write_ar,
                   write_av)

ARCHS = ("qwen2", "llama", "gemma3", "gemma3_mm")
#: ``gemma3_mm`` is the released Gemma-3 layout: ``Gemma3ForConditionalGeneration`` (language
#: model + a vision tower), Gemma-3 text tokens and chat template.

# Chat templates per style. Jinja, rendered by transformers' apply_chat_template.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLAMA = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_GEMMA = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_SPECIALS = {
    "qwen2": dict(template=_CHATML, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                  extra=["<|im_start|>", "<|im_end|>", "<|endoftext|>"]),
    "llama": dict(template=_LLAMA, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_pad|>",
                  extra=["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>", "<|finetune_pad|>"]),
    "gemma3": dict(template=_GEMMA, bos="<bos>", eos="<end_of_turn>", pad="<pad>",
                   extra=["<bos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<eos>"]),
}

_WORDS = (
    "the a an user assistant question answer model text language english russian german spanish "
    "chinese french translation translated reply prompt data training sample seems reads like "
    "explanation concept summary following context genre recent phrase signals final token "
    "expected continue with what is are was were this that it of to in on for and or but not "
    "you i we they he she please help me how why when where who which number date city river "
    "history science music code python function list table country capital population year "
    "hello thanks sorry yes no maybe good bad new old first last next more less very quite"
).split()


def _corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(4, 14)
        lines.append(" ".join(rng.choice(_WORDS) for _ in range(k)).capitalize() + rng.choice(".?!,:"))
    lines += [DEFAULT_AV_TEMPLATE, DEFAULT_AR_TEMPLATE, "<explanation>", "</explanation>",
              "<concept></concept>", "<text></text> <summary>", "Привет, как дела? Ответ на русском.",
              "Wie geht es dir? Die Antwort ist kurz.", "¿Dónde está el río?", "你好，世界。"]
    return lines


def _family(arch: str) -> str:
    return "gemma3" if arch == "gemma3_mm" else arch


def build_tokenizer(arch: str = "qwen2", vocab_size: int = 600,
                    injection_char: str = DEFAULT_INJECTION_CHAR, extra_chars: tuple[str, ...] = ("\u321c",)):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the chat template of ``arch``'s family.

    The injection character(s) are added tokens, so each is exactly one id and splits the
    ``<concept>`` markup around it like a rare single-token character does in real vocabularies.
    Llama/Gemma styles add a BOS when tokenizing with special tokens (the AR path); the chat
    template writes its own BOS, and ``apply_chat_template`` does not add a second one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = _SPECIALS[_family(arch)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(dict.fromkeys(spec["extra"]))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_tokens([injection_char, *[c for c in extra_chars if c != injection_char]])
    bos = spec["bos"]
    if bos:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=spec["eos"], pad_token=spec["pad"],
        chat_template=spec["template"], model_max_length=4096,
    )
    return fast


def build_target(arch: str = "qwen2", tokenizer=None, hidden_size: int = 64, num_layers: int = 4,
                 seed: int = 0, heads: int = 4, kv_heads: int = 2, intermediate: int | None = None,
                 initializer_range: float = 0.2):
    """A randomly initialised causal LM of the given family, sized for CPU tests.

    ``initializer_range`` is larger than HF's 0.02 so that random models' greedy output
    depends visibly on the injected vector (with 0.02 every prompt decodes to the same token).
    """
    import torch
    from transformers import (Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration,
                              Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, SiglipVisionConfig)

    if tokenizer is None:
        tokenizer = build_tokenizer(arch)
    torch.manual_seed(seed)
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads,
                  intermediate_size=intermediate or hidden_size * 2, max_position_embeddings=512,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                  initializer_range=initializer_range)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "gemma3":
        cfg = Gemma3TextConfig(**common, head_dim=hidden_size // heads, sliding_window=16,
                               query_pre_attn_scalar=hidden_size // heads)
        model = Gemma3ForCausalLM(cfg)
    elif arch == "gemma3_mm":
        text = Gemma3TextConfig(**common, head_dim=hidden_size // heads, sliding_window=16,
                                query_pre_attn_scalar=hidden_size // heads)
        vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, image_size=28, patch_size=14)
        # image token ids: ids of this tokenizer that never occur in NLA prompts
        cfg = Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                           mm_tokens_per_image=4, boi_token_index=tokenizer.pad_token_id,
                           eoi_token_index=tokenizer.pad_token_id,
                           image_token_index=tokenizer.pad_token_id,
                           initializer_range=initializer_range)
        model = Gemma3ForConditionalGeneration(cfg)
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


@dataclass
class TinyNLA:
    """Paths of one tiny NLA set: target model dir, AV dir, AR dir, and its layer."""

    arch: str
    target: Path
    av: Path
    ar: Path
    layer: int
    d_model: int


def build_tiny_nla(root: str | Path, arch: str = "qwen2", hidden_size: int = 64, num_layers: int = 4,
                   layer: int = 2, injection_scale=None, seed: int = 0,
                   injection_char: str = DEFAULT_INJECTION_CHAR) -> TinyNLA:
    """Write ``root/{target,av,ar}`` for one architecture and return their paths.

    The AV is a differently seeded model of the same family (an NLA's AV is a fine-tuned copy
    of the target); the AR is the target cut to ``layer + 1`` blocks with a random value head.
    ``injection_scale`` defaults to 'sqrt_d_model'.
    """
    import torch

    root = Path(root)
    tok = build_tokenizer(arch, injection_char=injection_char)
    target = build_target(arch, tok, hidden_size, num_layers, seed=seed)
    tdir = root / "target"
    target.save_pretrained(str(tdir), safe_serialization=True)
    tok.save_pretrained(str(tdir))
    av_model = build_target(arch, tok, hidden_size, num_layers, seed=seed + 1)
    scale = "sqrt_d_model" if injection_scale is None else injection_scale
    av_dir = write_av(root / "av", av_model, tok, layer=layer, injection_scale=scale,
                      injection_char=injection_char)
    torch.manual_seed(seed + 2)
    head = torch.nn.Linear(hidden_size, hidden_size, bias=False)
    ar_dir = write_ar(root / "ar", target, head, tok, layer=layer, injection_scale=scale,
                      injection_char=injection_char)
    return TinyNLA(arch=arch, target=tdir, av=av_dir, ar=ar_dir, layer=layer, d_model=hidden_size)
