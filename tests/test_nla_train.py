"""forensics.nla.train at toy size: losses fall, FVE beats the shuffled baseline, the checkpoint
round-trips through the runtime (its loader and `forensics nla register`), the summarizer is
deterministic and says what follows."""

from __future__ import annotations

import json
import random

import pytest

torch = pytest.importorskip("torch")

from forensics.testing import toy  # noqa: E402
from forensics.nla.train import (SUMMARY_WORDS, BuiltinSummarizer, HTTPSummarizer,  # noqa: E402
                                 PositionContext, TrainConfig, train_nla)

EN = ["river", "city", "castle", "music", "engine", "forest", "king", "bridge", "school", "garden"]
DE = ["fluss", "stadt", "burg", "musik", "motor", "wald", "könig", "brücke", "schule", "garten"]


def _items(n: int = 48, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randrange(len(EN))
        if i % 2:
            out.append((f"What is the old {EN[k]} called ?", f"Der alte {DE[k]} heißt {DE[(k + 1) % 10]} ."))
        else:
            out.append((f"What is the old {EN[k]} called ?", f"The old {EN[k]} is called {EN[(k + 1) % 10]} ."))
    return out


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("target")
    items = _items()
    tok = toy.build_word_tokenizer([p + " " + r for p, r in items], vocab_size=400, extra_words=SUMMARY_WORDS)
    model = toy.build_model(tok, hidden_size=32, num_layers=2, heads=2, kv_heads=1)
    toy.sft(model, tok, items, steps=40, batch_size=8, lr=5e-3)
    toy.save(model, tok, d)
    return d, items


@pytest.fixture(scope="module")
def trained(tiny_target, tmp_path_factory):
    target, items = tiny_target
    out = tmp_path_factory.mktemp("nla")
    langs = [("en", "de" if i % 2 else "en") for i in range(len(items))]
    cfg = TrainConfig(layer=1, sft_steps=200, rl_steps=4, batch_size=16, rl_batch=2, rl_group=3, positions_per_text=2,
                      max_heldout=32,
                      max_new_tokens=24, av_lr=5e-3, ar_lr=5e-3, heldout_frac=0.25, seed=0)
    from forensics.progress import Recorder

    progress = Recorder()
    rep = train_nla(target, items, out, cfg, langs=langs, progress=progress)
    return target, out, rep, progress


def test_summarizer_deterministic_and_describes_what_follows():
    s = BuiltinSummarizer(["What is the Rhine ?", "Where is Warsaw ?", "the the the"])
    c = PositionContext(prompt="What is the Rhine Gorge known for?", reply="Das Rheintal ist bekannt.",
                        in_reply=False, prefix="What is the Rhine", following="Gorge known for?",
                        prompt_lang="en", reply_lang="de")
    a, b = s.summarize(c), s.summarize(c)
    assert a == b
    assert a.startswith("english question latin script . reply in german .")
    assert "rhine" in a and "next : gorge known for" in a
    # the current word is named last (right before the AR's readout), the two before it too
    assert a.endswith("before : is the . word : rhine")
    end = PositionContext(prompt="What is the Rhine?", reply="Das Rheintal ist bekannt.", in_reply=False,
                          prefix="What is the Rhine?", following="", prompt_lang="en", reply_lang="de")
    e = s.summarize(end)  # the last prompt token: what follows is the reply
    assert e.endswith("prompt ends : is the rhine? . reply starts : das rheintal ist")
    t = PositionContext(prompt="Translate into German: hello", reply="Hallo", in_reply=False,
                        prefix="Translate into German: hello", following="", prompt_lang="en", reply_lang="de")
    assert "translation request to german" in s.summarize(t)
    r = PositionContext(prompt="Q?", reply="Das Rheintal", in_reply=True, prefix="Das", following="Rheintal",
                        prompt_lang="en", reply_lang="de")
    assert s.summarize(r).startswith("german answer to english prompt")


def test_http_summarizer_unreachable_is_a_clear_error():
    from forensics.errors import BackendError

    h = HTTPSummarizer("http://127.0.0.1:9", timeout=2)
    assert h.url.endswith("/v1/chat/completions")
    with pytest.raises(BackendError, match="127.0.0.1:9"):
        h.summarize(PositionContext("p", "r", False, "p", "", "en", "en"))


@pytest.mark.slow
def test_losses_fall_and_fve_beats_shuffled(trained):
    _, _, rep, _ = trained
    assert rep.av_loss[1] < rep.av_loss[0] * 0.5
    assert rep.ar_loss[1] < rep.ar_loss[0]
    assert rep.n_heldout_positions >= 8
    assert rep.sft.fve > rep.sft.fve_shuffled, rep.summary()
    assert rep.rl is not None and len(rep.rl_reward) == 2
    assert rep.av_positions_per_s > 0 and rep.ar_positions_per_s > 0 and rep.rl_steps_per_s > 0
    ex = rep.sft.examples[0]
    assert ex["summary"] and "explanation" in ex


@pytest.mark.slow
def test_checkpoint_roundtrips_through_runtime(trained, ws_path, cli):
    from forensics.nla.ar import AR
    from forensics.nla.av import AV
    from forensics.nla.meta import parse_sidecar

    target, out, rep, _ = trained
    av_sc = parse_sidecar(out / "av", role="av")
    ar_sc = parse_sidecar(out / "ar", role="ar")
    assert av_sc.layer == 1 and ar_sc.layer == 1 and av_sc.d_model == 32
    assert av_sc.raw["training"]["fve_sft"] == pytest.approx(rep.sft.fve)
    av = AV.load(out / "av", max_new_tokens=24)
    ar = AR.load(out / "ar")
    e = av.explain([torch.randn(32)])[0]
    assert e.raw_output  # generates through the runtime's own injection path
    assert ar.predict(["english question latin script ."]).shape == (1, 32)
    r = cli("nla", "register", "toy", "--av", out / "av", "--ar", out / "ar", "--target", target, "--json",
            workspace=ws_path)
    doc = r.json()
    assert doc["name"] == "toy" or doc.get("nla", {}).get("name") == "toy" or "toy" in json.dumps(doc)


def test_position_context_drops_chat_template_words(tiny_target):
    from forensics.nla.activations import encode_item
    from forensics.nla.meta import load_tokenizer
    from forensics.nla.train.positions import position_contexts

    target, items = tiny_target
    tok = load_tokenizer(target)
    ids, plen = encode_item(tok, items[1])
    last = position_contexts(tok, items[1], ids, plen, plen - 1, ("en", "de"))
    assert not last.in_reply and "assistant" not in last.prefix and last.prefix.endswith("?")
    # the template's role word must not become a "salient term" of the last prompt token
    summ = BuiltinSummarizer([p + " " + r for p, r in items]).summarize(last)
    assert "assistant" not in summ and "user" not in summ.split()
    assert "reply starts : der" in summ
    first = position_contexts(tok, items[1], ids, plen, plen, ("en", "de"))
    assert first.in_reply and first.prefix == "der"


@pytest.mark.slow
def test_training_reports_progress_through_the_protocol(trained):
    """One task per stage (sft, rl) with its step count, every step advanced, notes per phase."""
    *_, progress = trained
    starts = {e[2]: e for e in progress.events if e[0] == "start"}
    assert starts["sft"][3] == 200 and starts["rl"][3] == 4
    for label, total in (("sft", 200), ("rl", 4)):
        task = starts[label][1]
        assert sum(e[2] for e in progress.events if e[0] == "advance" and e[1] == task) == total
        assert ("finish", task) in progress.events
    notes = progress.notes
    assert notes[0].startswith("activations texts=") and any(n.startswith("summaries positions=") for n in notes)
    assert any(n.startswith("sft step=200 of=200 av_loss=") for n in notes)
    assert any(n.startswith("eval stage=rl fve=") for n in notes)


def test_expected_tokens_are_the_targets_own_top_predictions(tiny_target):
    """``expects :`` names the target's top-k next tokens at the position (its own logits), and
    the summary quotes ``n_before`` words before the current one."""
    from forensics.nla.activations import encode_item, load_causal_lm
    from forensics.nla.meta import load_tokenizer
    from forensics.nla.train.positions import Pos, expected_tokens, position_contexts

    target, items = tiny_target
    tok, model = load_tokenizer(target), load_causal_lm(target)
    ids, plen = encode_item(tok, items[1])
    pos = [Pos(item=1, token_index=plen - 1, label="last_prompt", vector=None),
           Pos(item=1, token_index=plen + 1, label="reply:1", vector=None)]
    got = expected_tokens(model, tok, items, pos, 3)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    special = set(tok.all_special_ids)
    for p, words in zip(pos, got):
        top = [t for t in logits[p.token_index].topk(10).indices.tolist() if t not in special][:3]
        assert list(words) == [tok.decode([t]).strip().lower() for t in top]
    assert expected_tokens(model, tok, items, pos, 0) == [(), ()]
    c = position_contexts(tok, items[1], ids, plen, plen + 1, ("en", "de"))
    c.expected = got[1]
    s = BuiltinSummarizer([p + " " + r for p, r in items], n_before=1).summarize(c)
    assert f"expects : {' '.join(got[1])} . before : " in s and s.endswith(f"before : der . word : {c.prefix.split()[-1]}")
