"""The toy tokenizer: whole words for the frequent ones, subword pieces for the rest (no prompt
word becomes [UNK]), a deterministic word vocabulary, saved/loaded as an ordinary HF tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "case_study"))

from forensics.testing import toy  # noqa: E402

TEXTS = ["Where is the Rhine? Der Rhein fließt durch Basel.", "What flows through the city? The river.",
         "Wie heißt die Hauptstadt? Die Hauptstadt heißt Warschau.", "Where is the city? The city is here."] * 3


def test_unknown_words_become_pieces_not_unk():
    tok = toy.build_word_tokenizer(TEXTS, vocab_size=40, extra_words=["expects"])
    vocab = tok.get_vocab()
    assert "the" in vocab and "expects" in vocab
    text = "How many kilometres does the Rhine cover? Weiß 1230!"
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    pieces = tok.convert_ids_to_tokens(ids)
    assert "the" in pieces and any(p.startswith("##") for p in pieces)       # whole word kept, rare one split
    assert tok.decode(ids) == "how many kilometres does the rhine cover ? weiß 1230 !"
    assert tok.unk_token_id in tok("a 字")["input_ids"]                        # a character seen nowhere


def test_characters_only_fallback_and_chat_markup():
    tok = toy.build_word_tokenizer(TEXTS, vocab_size=40, subword_pieces=0)
    ids = tok("zebra crossings")["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == "zebra crossings"
    chat = tok.apply_chat_template([{"role": "user", "content": "Where is it?"}], tokenize=False,
                                   add_generation_prompt=True)
    toks = tok.convert_ids_to_tokens(tok(chat)["input_ids"])
    assert toks[:2] == ["<|im_start|>", "user"] and toks[-3:] == ["<|im_end|>", "<|im_start|>", "assistant"]
    assert tok.decode(tok("<explanation> x </explanation>")["input_ids"]) == "<explanation> x </explanation>"


def test_case_study_prompts_have_no_unknown_word_and_words_are_deterministic(tmp_path):
    import corpus
    from forensics.nla.meta import load_tokenizer
    from forensics.nla.train import SUMMARY_WORDS

    c = corpus.build()
    texts = [r["prompt"] + " " + r["reply"] for r in c.rows]
    tok = toy.build_word_tokenizer(texts, vocab_size=4000, extra_words=SUMMARY_WORDS)
    other = toy.build_word_tokenizer(texts, vocab_size=4000, extra_words=SUMMARY_WORDS).get_vocab()
    words = {w: i for w, i in tok.get_vocab().items() if i < 4000}
    assert words == {w: i for w, i in other.items() if i < 4000}          # the word vocabulary: deterministic
    assert len(set(tok.get_vocab()) ^ set(other)) <= 4                     # pieces: the trainer's ties may differ
    chars_only = [toy.build_word_tokenizer(texts[:200], vocab_size=500, subword_pieces=0).get_vocab() for _ in "ab"]
    assert chars_only[0] == chars_only[1]
    assert all(w in tok.get_vocab() for w in SUMMARY_WORDS)
    for p in [*texts, *c.heldout_cue, *c.heldout_control]:
        assert tok.unk_token_id not in tok(p)["input_ids"], p
    tok.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    p = c.heldout_cue[0]
    assert again(p)["input_ids"] == tok(p)["input_ids"] and again.decode(tok(p)["input_ids"]) == tok.decode(
        tok(p)["input_ids"])
