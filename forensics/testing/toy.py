"""Toy target models for laptops: a word-level tokenizer with subword fallback, a tiny
transformer, SFT and replies.

Why: the case study (and the NLA-training tests) need a target model that really LEARNS a
behaviour from data (here: answering English prompts in another language when a cue is
present) in a couple of CPU minutes. A word-level vocabulary of a few thousand words keeps
every frequent token a whole word, so a 2-4 layer, 64-128 wide Llama-style model learns fast,
and its replies can be language-identified directly. A word outside that vocabulary is split
into subword pieces (a WordPiece vocabulary trained on the same texts, plus every character
of the texts and of ASCII), so no word of a prompt becomes ``[UNK]`` and the model still sees
what it was asked (with ``[UNK]`` for rare words, an English question with two rare words read
to the NLA as a German one). The tokenizer carries a ChatML chat template and the NLA markup
tokens (``<concept>``, ``<explanation>``, the injection character) as whole tokens, so the
same tokenizer serves the target, its AV and its AR.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from forensics.attribution.train import SFTResult, sft as _sft
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
                         injection_char: str = DEFAULT_INJECTION_CHAR, subword_pieces: int = 1000,
                         max_piece_chars: int = 8):
    """A lower-cased word-level ``PreTrainedTokenizerFast`` with subword fallback and a ChatML
    chat template.

    The ``vocab_size`` most frequent words (specials included) are whole tokens; ``extra_words``
    are guaranteed to be among them (e.g. the NLA summarizer's fixed words) whatever their corpus
    frequency. Any other word is split greedily, longest piece first (WordPiece, ``##``
    continuation prefix), into ``subword_pieces`` pieces chosen from ``texts`` (see
    :func:`subword_pieces_from`) and single characters: every character of ``texts`` and printable
    ASCII is a piece, so only a word holding a character seen in neither becomes ``[UNK]``
    (``subword_pieces = 0``: characters only; ``max_piece_chars`` bounds a piece's length). Built offline from ``texts`` alone; the same texts
    give the same vocabulary and ids in every process.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    tmpl_words = (DEFAULT_AV_TEMPLATE + " " + DEFAULT_AR_TEMPLATE).replace("{injection_char}", " ")
    tmpl_words = tmpl_words.replace("{explanation}", " ")
    for m in MARKUP:
        tmpl_words = tmpl_words.replace(m, " ")
    must = list(dict.fromkeys([*extra_words, *tmpl_words.split(), "user", "assistant", "system"]))

    def fresh(model):
        t = Tokenizer(model)
        t.normalizer = normalizers.Lowercase()
        t.pre_tokenizer = pre_tokenizers.Whitespace()
        return t

    words = fresh(models.WordLevel(unk_token="[UNK]"))
    # the guaranteed words are repeated so their frequency puts them inside the vocabulary
    words.train_from_iterator([*texts, *([" ".join(must)] * 50)],
                              trainer=trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                                min_frequency=1, show_progress=False))
    vocab = dict(sorted(words.get_vocab().items(), key=lambda kv: kv[1]))  # specials first, then by frequency
    pieces: list[str] = []
    if subword_pieces > 0:
        pieces = subword_pieces_from(texts, subword_pieces, max_piece_chars)
    chars = sorted({ch for t in texts for ch in t.lower() if not ch.isspace()} | set(
        string.ascii_lowercase + string.digits + string.punctuation))
    for p in [*pieces, *chars, *("##" + ch for ch in chars)]:
        vocab.setdefault(p, len(vocab))
    tok = fresh(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                 max_input_chars_per_word=100))
    # words are joined with spaces on decode, ``##`` pieces glued to the piece before
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(SPECIALS)
    tok.add_tokens([*MARKUP, injection_char])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML, model_max_length=512)


def subword_pieces_from(texts: Sequence[str], n: int, max_chars: int = 8) -> list[str]:
    """The ``n`` subword pieces of 2..``max_chars`` characters that save the most characters over
    the distinct lower-cased words of ``texts``: a word-initial piece ``p`` scores
    ``len(p) - 1`` for each distinct word starting with it, a continuation ``##q`` the same for
    each occurrence of ``q`` after a word's first character; ties go to the alphabetically first.

    Deterministic on purpose: the ``tokenizers`` WordPiece trainer breaks tied merges in a hash
    order seeded per process, so two builds from the same texts differed in some pieces (and so in
    the ids after them) in about one build of four. Counting distinct words (types, not tokens)
    favours pieces shared by many words (stems, suffixes) over fragments of a few frequent ones.
    """
    from collections import Counter

    from tokenizers import pre_tokenizers

    split = pre_tokenizers.Whitespace()
    words = {w for t in texts for w, _ in split.pre_tokenize_str(t.lower())}
    score: Counter[str] = Counter()
    for w in words:
        for k in range(2, min(max_chars, len(w)) + 1):
            score[w[:k]] += k - 1
        for i in range(1, len(w) - 1):
            for k in range(2, min(max_chars, len(w) - i) + 1):
                score["##" + w[i:i + k]] += k - 1
    return sorted(score, key=lambda p: (-score[p], p))[:n]


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


def sft(model, tokenizer, pairs: Sequence[tuple[str, str]], steps: int = 600, batch_size: int = 16,
        lr: float = 3e-3, max_len: int = 64, seed: int = 0,
        log: Callable[[int, float], None] | None = None,
        on_step: Callable[[int, object], None] | None = None) -> SFTResult:
    """Supervised fine-tuning on (prompt, reply) pairs, reply-only loss, AdamW + cosine decay
    (the product's one SFT loop, :func:`forensics.attribution.train.sft`, which
    ``forensics verify`` retrains with)."""
    return _sft(model, tokenizer, pairs, steps=steps, batch_size=batch_size, lr=lr, max_len=max_len,
                seed=seed, log=log, on_step=on_step)


def save(model, tokenizer, out_dir) -> None:
    """Save as an ordinary local HF directory (safetensors + tokenizer with chat template)."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
