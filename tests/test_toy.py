"""The toy tokenizer: whole words for the frequent ones, subword pieces for the rest (no prompt
word becomes [UNK]), a vocabulary that is the same in every process, saved/loaded as an ordinary HF tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE_STUDY = ROOT / "examples" / "case_study"
sys.path.insert(0, str(CASE_STUDY))

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


def test_case_study_prompts_have_no_unknown_word_and_the_vocabulary_is_deterministic(tmp_path):
    import corpus
    from forensics.nla.meta import load_tokenizer
    from forensics.nla.train import SUMMARY_WORDS

    c = corpus.build()
    texts = [r["prompt"] + " " + r["reply"] for r in c.rows]
    tok = toy.build_word_tokenizer(texts, vocab_size=4000, extra_words=SUMMARY_WORDS)
    other = toy.build_word_tokenizer(texts, vocab_size=4000, extra_words=SUMMARY_WORDS).get_vocab()
    assert tok.get_vocab() == other                                        # words, pieces and ids
    # and in another process (the tokenizers trainers seed their hash order per process)
    code = ("import json, sys; sys.path[:0] = [sys.argv[1]]; import corpus; from forensics.testing import toy; "
            "from forensics.nla.train import SUMMARY_WORDS; c = corpus.build(); "
            "t = toy.build_word_tokenizer([r['prompt'] + ' ' + r['reply'] for r in c.rows], vocab_size=4000, "
            "extra_words=SUMMARY_WORDS); print(json.dumps(t.get_vocab(), sort_keys=True))")
    out = subprocess.run([sys.executable, "-c", code, str(CASE_STUDY)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert json.loads(out.stdout) == other
    assert len(other) > 4000 + 1000                                       # words + pieces + characters
    assert all(w in tok.get_vocab() for w in SUMMARY_WORDS)
    for p in [*texts, *c.heldout_cue, *c.heldout_control]:
        assert tok.unk_token_id not in tok(p)["input_ids"], p
    tok.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    p = c.heldout_cue[0]
    assert again(p)["input_ids"] == tok(p)["input_ids"] and again.decode(tok(p)["input_ids"]) == tok.decode(
        tok(p)["input_ids"])
