"""NLA runtime, in process: sidecar contract, activation extraction, AV injection, AR scoring.

Real tiny checkpoints (Qwen2-, Llama- and Gemma-3-text-style) are built once per session with
``forensics.nla.tiny`` and loaded through the production loaders.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from forensics.nla import tiny
from forensics.nla.activations import extract_activations, load_causal_lm, parse_positions, resolve_positions
from forensics.nla.ar import AR, dataset_variance, score
from forensics.nla.av import AV, parse_explanation
from forensics.nla.meta import (NLAContractError, load_sidecar, load_tokenizer, parse_sidecar,
                                resolve_scale)

ARCHS = ("qwen2", "llama", "gemma3")
ITEMS = [("What is the capital of France?", "Paris is the capital of France."),
         ("hello", "yes"),
         ("Please help me with a long question about the history of the river and its city", ""),
         ("Wie geht es dir?", "Привет, как дела? Ответ на русском.")]


@pytest.fixture(scope="module", autouse=True)
def _quiet_one_thread():
    """Tiny models: one intra-op thread is far faster than two on a busy 2-core machine."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def nlas(tmp_path_factory) -> dict[str, tiny.TinyNLA]:
    root = tmp_path_factory.mktemp("tiny_nla")
    return {a: tiny.build_tiny_nla(root / a, a, hidden_size=64, num_layers=4, layer=2) for a in ARCHS}


@pytest.fixture(scope="module")
def loaded(nlas):
    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            n = nlas[arch]
            cache[arch] = (load_causal_lm(n.target), load_tokenizer(n.target), AV.load(n.av, max_new_tokens=8),
                           AR.load(n.ar))
        return cache[arch]

    return get


def _copy_with_sidecar(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    p = dst / "nla_meta.yaml"
    meta = yaml.safe_load(p.read_text(encoding="utf-8"))
    edit(meta)
    p.write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
    return dst


# ------------------------------------------------------------------------------------ sidecars


def test_sidecars_written_by_the_writer_load_and_check(nlas):
    for arch, n in nlas.items():
        av = load_sidecar(n.av, load_tokenizer(n.av), role="av")
        ar = load_sidecar(n.ar, load_tokenizer(n.ar), role="ar")
        assert av.role == "av" and ar.role == "ar"
        assert av.d_model == ar.d_model == 64
        assert av.injection_scale == pytest.approx(8.0)  # sqrt_d_model resolved
        assert ar.mse_scale == pytest.approx(8.0)
        assert ar.layer == 2
        assert len(ar.critic_suffix_ids) == 3


def test_resolve_scale_forms_and_errors():
    assert resolve_scale("sqrt_d_model", 3584) == pytest.approx(59.866, abs=1e-3)
    assert resolve_scale(150, 3584) == 150.0
    assert resolve_scale("80000", 3840) == 80000.0
    assert resolve_scale(None, 10) is None
    for bad in ("sqrt", -1, 0, True, [1]):
        with pytest.raises(NLAContractError, match="extraction.injection_scale"):
            resolve_scale(bad, 10, "extraction.injection_scale")


@pytest.mark.parametrize("field,bump,found_word", [
    ("injection_left_neighbor_id", 1, "left of the slot"),
    ("injection_right_neighbor_id", 1, "right of the slot"),
    ("injection_token_id", 1, "encodes"),
])
def test_wrong_pinned_ids_are_refused_with_the_field_named(nlas, tmp_path, field, bump, found_word):
    n = nlas["qwen2"]
    good = parse_sidecar(n.av)
    dst = _copy_with_sidecar(n.av, tmp_path / "av", lambda m: m["tokens"].__setitem__(field, m["tokens"][field] + bump))
    with pytest.raises(NLAContractError) as ei:
        AV.load(dst)
    msg = ei.value.message
    assert f"tokens.{field}" in msg and found_word in msg
    # the message says what the sidecar claims AND what the live tokenizer has
    wrong = getattr(good, {"injection_left_neighbor_id": "left_neighbor_id",
                           "injection_right_neighbor_id": "right_neighbor_id",
                           "injection_token_id": "injection_token_id"}[field]) + bump
    assert str(wrong) in msg


def test_av_template_drift_is_refused(nlas, tmp_path):
    n = nlas["llama"]
    # someone "tidied" the template: a space before the injection character moves the slot
    dst = _copy_with_sidecar(n.av, tmp_path / "av", lambda m: m["prompt_templates"].__setitem__(
        "av", m["prompt_templates"]["av"].replace("<concept>{injection_char}", "<concept> {injection_char}")))
    with pytest.raises(NLAContractError, match="tokens.injection_left_neighbor_id"):
        AV.load(dst)


def test_chat_template_drift_is_refused(nlas, tmp_path):
    """The tokenizer's chat template changed under an unchanged sidecar: refused at load."""
    import json

    n = nlas["qwen2"]
    dst = tmp_path / "av"
    shutil.copytree(n.av, dst)
    cfgp = dst / "tokenizer_config.json"
    cfg = json.loads(cfgp.read_text())
    drift = "{{ m['content'] | replace('<concept>', '<concept>:') }}"
    if cfg.get("chat_template") is None:  # transformers 5 keeps it in chat_template.jinja
        jp = dst / "chat_template.jinja"
        jp.write_text(jp.read_text().replace("{{ m['content'] }}", drift))
    else:
        cfg["chat_template"] = cfg["chat_template"].replace("{{ m['content'] }}", drift)
        cfgp.write_text(json.dumps(cfg))
    with pytest.raises(NLAContractError, match="tokens.injection_left_neighbor_id"):
        AV.load(dst)


def test_critic_suffix_and_ar_layer_drift_refused(nlas, tmp_path):
    n = nlas["gemma3"]
    dst = _copy_with_sidecar(n.ar, tmp_path / "ar1", lambda m: m["tokens"].__setitem__(
        "critic_suffix_ids", [1, 2, 3]))
    with pytest.raises(NLAContractError, match=r"tokens.critic_suffix_ids.*\[1, 2, 3\]"):
        AR.load(dst)
    dst2 = _copy_with_sidecar(n.ar, tmp_path / "ar2", lambda m: m["ar"].__setitem__("num_hidden_layers", 3))
    with pytest.raises(NLAContractError, match="ar.num_hidden_layers"):
        AR.load(dst2)


def test_role_swap_and_missing_fields(nlas, tmp_path):
    with pytest.raises(NLAContractError, match="role"):
        AV.load(nlas["qwen2"].ar)
    dst = _copy_with_sidecar(nlas["qwen2"].av, tmp_path / "av", lambda m: m.pop("d_model"))
    with pytest.raises(NLAContractError, match="d_model: required"):
        AV.load(dst)


# ------------------------------------------------------------------------------------ activations


def test_positions_parse_and_resolve():
    assert parse_positions("last_prompt,first_reply") == ["last_prompt", "first_reply"]
    assert parse_positions(["every_reply", "token:-1"]) == ["every_reply", "token:-1"]
    with pytest.raises(Exception, match="unknown position"):
        parse_positions("middle")
    r = resolve_positions(["last_prompt", "first_reply", "every_reply", "token:0", "token:-1", "token:99"], 8, 5)
    assert ("last_prompt", 4) in r and ("first_reply", 5) in r and ("token:-1", 7) in r
    assert [x for x in r if x[0].startswith("reply:")] == [("reply:0", 5), ("reply:1", 6), ("reply:2", 7)]
    assert not any(lbl == "token:99" for lbl, _ in r)
    assert resolve_positions(["first_reply"], 5, 5) == []  # no reply, no first_reply


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_single_with_left_and_right_padding(loaded, arch):
    model, tok, _, _ = loaded(arch)
    pos = ["last_prompt", "first_reply", "every_reply", "token:3"]
    single = [extract_activations(model, tok, [it], pos, 2, batch_size=1) for it in ITEMS]
    single = [a for i, acts in enumerate(single) for a in acts]
    for side in ("right", "left"):
        batch = extract_activations(model, tok, ITEMS, pos, 2, batch_size=4, padding_side=side)
        assert len(batch) == len(single)
        by_key = {(a.item, a.position): a for a in batch}
        for i, it in enumerate(ITEMS):
            for a in extract_activations(model, tok, [it], pos, 2, batch_size=1):
                b = by_key[(i, a.position)]
                assert b.token_index == a.token_index and b.flags == a.flags
                assert torch.allclose(a.vector, b.vector, atol=1e-4), (side, i, a.position)


def test_hidden_state_index_convention(loaded):
    model, tok, _, _ = loaded("qwen2")
    from forensics.nla.activations import encode_item

    ids, plen = encode_item(tok, ITEMS[0])
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    a = extract_activations(model, tok, [ITEMS[0]], ["last_prompt"], 2)[0]
    assert a.hidden_state_index == 3 and a.token_index == plen - 1
    assert torch.allclose(a.vector, hs[3][0, plen - 1], atol=1e-5)  # default K+1 = output of block K
    b = extract_activations(model, tok, [ITEMS[0]], ["last_prompt"], 2, hidden_state_index=2)[0]
    assert torch.allclose(b.vector, hs[2][0, plen - 1], atol=1e-5)
    assert not torch.allclose(a.vector, b.vector)
    c = extract_activations(model, tok, [ITEMS[0]], ["last_prompt"], 2, hidden_state_index=4)[0]
    # the last entry of HF's hidden_states has the final norm applied: index 4 is read raw instead
    assert not torch.allclose(c.vector, hs[4][0, plen - 1], atol=1e-3)
    # early positions are flagged
    early = extract_activations(model, tok, [ITEMS[0]], ["token:2", "last_prompt"], 2)
    assert "early_position" in early[0].flags and "early_position" not in early[1].flags


def test_norm_outlier_and_nan_flagged(nlas, tmp_path):
    model = load_causal_lm(nlas["llama"].target)
    tok = load_tokenizer(nlas["llama"].target)
    from forensics.nla.activations import encode_item

    ids, plen = encode_item(tok, ITEMS[0])
    hot = ids[plen - 1]  # the last prompt token gets a huge embedding: a massive-activation position
    with torch.no_grad():
        model.get_input_embeddings().weight[hot] *= 1000.0
    a = extract_activations(model, tok, [ITEMS[0]], ["last_prompt", "first_reply"], 2)
    assert "norm_outlier" in a[0].flags and "norm_outlier" not in a[1].flags
    with torch.no_grad():
        model.get_input_embeddings().weight[hot] = float("nan")
    a = extract_activations(model, tok, [ITEMS[0]], ["last_prompt"], 2)
    assert a[0].vector is None and "non_finite" in a[0].flags


# ------------------------------------------------------------------------------------ AV


@pytest.mark.parametrize("arch", ARCHS)
def test_injection_lands_exactly_at_the_slot(loaded, arch):
    _, _, av, _ = loaded(arch)
    model = av.backend.model
    ids = torch.tensor([av.prompt_ids])
    assert av.prompt_ids[av.slot] == av.sidecar.injection_token_id
    assert av.prompt_ids[av.slot - 1] == av.sidecar.left_neighbor_id
    assert av.prompt_ids[av.slot + 1] == av.sidecar.right_neighbor_id
    torch.manual_seed(1)
    v1, v2 = torch.randn(64) * 37.0, torch.randn(64) * 0.01
    x = av.build_embeds([v1, v2])
    # the slot holds the vector rescaled to injection_scale; every other position = the model's own embeddings
    assert float(x[0, av.slot].norm()) == pytest.approx(av.sidecar.injection_scale, rel=1e-5)
    assert torch.allclose(x[0, av.slot] / x[0, av.slot].norm(), v1 / v1.norm(), atol=1e-6)
    own = model.get_input_embeddings()(ids)[0].float()  # includes Gemma's internal scaling
    mask = torch.ones(len(av.prompt_ids), dtype=torch.bool)
    mask[av.slot] = False
    assert torch.allclose(x[0][mask], own[mask], atol=1e-5)
    assert torch.equal(x[0][mask], x[1][mask])
    # run the AV: hidden states before the slot are untouched, at the slot they change
    with torch.no_grad():
        h = model(inputs_embeds=x, output_hidden_states=True).hidden_states
    for layer_h in h[1:]:
        assert torch.allclose(layer_h[0, :av.slot], layer_h[1, :av.slot], atol=1e-5)
        assert not torch.allclose(layer_h[0, av.slot], layer_h[1, av.slot], atol=1e-3)


def test_gemma_embed_scale_applied(loaded):
    scales = {a: loaded(a)[2].embed_scale for a in ARCHS}
    assert scales["gemma3"] == pytest.approx(math.sqrt(64)) and scales["qwen2"] == scales["llama"] == 1.0
    _, _, av, _ = loaded("gemma3")
    w = av.backend.model.get_input_embeddings().weight
    raw = w[torch.tensor(av.prompt_ids)].float()
    x = av.build_embeds([torch.ones(64)])[0]
    assert torch.allclose(x[0], raw[0] * 8.0, atol=1e-5)
    # the HTTP path computes the scale from config alone and agrees
    from transformers import AutoConfig

    from forensics.nla.av import embed_scale_for

    assert embed_scale_for(AutoConfig.from_pretrained(str(av.path))) == pytest.approx(8.0)


def test_av_refuses_bad_vectors(loaded):
    _, _, av, _ = loaded("qwen2")
    with pytest.raises(Exception, match="NaN"):
        av.build_embeds([torch.full((64,), float("nan"))])
    with pytest.raises(Exception, match="zero vector"):
        av.build_embeds([torch.zeros(64)])
    with pytest.raises(Exception, match="width"):
        av.build_embeds([torch.ones(32)])


def test_explain_batch_equals_single_and_keeps_raw(loaded):
    _, _, av, _ = loaded("qwen2")
    torch.manual_seed(3)
    vs = [torch.randn(64) for _ in range(4)]
    a = av.explain(vs, batch_size=1)
    b = av.explain(vs, batch_size=4)
    assert [e.raw_output for e in a] == [e.raw_output for e in b]
    assert len({e.raw_output for e in a}) > 1  # output depends on the injected vector
    for e in a:
        assert e.truncated  # random weights never close the tag
        assert 0 < e.n_tokens <= 8


def test_parse_explanation():
    assert parse_explanation("<explanation> A user writes Russian. </explanation>tail") == (
        "A user writes Russian.", False, [])
    t, trunc, fl = parse_explanation("<explanation>cut off here")
    assert t == "cut off here" and trunc and fl == []
    t, trunc, fl = parse_explanation("no tags at all")
    assert t == "no tags at all" and trunc and "no_open_tag" in fl
    assert "cjk_output" in parse_explanation("<explanation>中文中文中文 字</explanation>")[2]
    assert "empty" in parse_explanation("<explanation>  </explanation>")[2]


# ------------------------------------------------------------------------------------ AR


def test_ar_mse_equals_two_one_minus_cos():
    torch.manual_seed(0)
    p, g = torch.randn(50, 64) * 5, torch.randn(50, 64) * 100
    g[0] = p[0] * 3  # identical direction
    g[1] = -p[1]  # opposite
    mse, cos, fve = score(p, g, math.sqrt(64))
    assert torch.allclose(mse, 2 * (1 - cos), atol=1e-5)
    assert float(mse[0]) == pytest.approx(0.0, abs=1e-6) and float(mse[1]) == pytest.approx(4.0, abs=1e-5)
    assert fve is None
    v = dataset_variance(list(g), math.sqrt(64))
    _, _, fve = score(p, g, math.sqrt(64), v)
    assert torch.allclose(fve, 1 - mse / v)
    # predicting the dataset mean direction scores FVE ~ 0 on average
    gn = g / g.norm(dim=-1, keepdim=True) * 8.0
    mean = gn.mean(0, keepdim=True).expand_as(gn)
    m2 = ((gn - mean) ** 2).mean(-1)
    assert float(m2.mean()) == pytest.approx(v, rel=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_ar_is_truncated_target_plus_value_head(loaded, arch):
    """The tiny AR is the target cut to K+1 blocks: its prediction must equal value_head(
    target hidden_states[K+1] at the last template token) - checks truncation, identity norm,
    special tokens and last-token pooling at once."""
    model, tok, _, ar = loaded(arch)
    texts = ["The user seems Russian.", "A short one", "A question about rivers and the capital city of France"]
    pred = ar.predict(texts, batch_size=3)
    assert pred.shape == (3, 64)
    for i, t in enumerate(texts):
        ids = ar.prompt_ids(t)
        assert ids[-3:] == ar.sidecar.critic_suffix_ids
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[3][0, -1]
            exp = ar.value_head(h.float())
        assert torch.allclose(pred[i], exp, atol=1e-4)
    assert torch.allclose(ar.predict(texts[:1], batch_size=1)[0], pred[0], atol=1e-5)
    mse, cos, _ = score(pred, torch.randn(3, 64), ar.mse_scale)
    assert torch.allclose(mse, 2 * (1 - cos), atol=1e-5)


def test_nla_without_ar_stores_unscored_explanations(nlas, tmp_path):
    """An AV-only NLA is usable: explanations are stored with NULL mse/cos/fve, and the layer
    comes from the AV sidecar's extraction.layer."""
    import forensics
    from forensics.nla import Explainer, explain_anomaly, register_nla

    n = nlas["llama"]
    with forensics.init(tmp_path / "ws") as ws:
        rec, status = register_nla(ws, "av-only", n.av, n.target)
        assert status == "added" and rec.ar_path is None and rec.layer == 2 and rec.hidden_state_index == 3
        aid = ws.next_id("anomaly_id_seq")
        ws.execute("INSERT INTO anomalies (anomaly_id, title, prompt, reply) VALUES (?, 't', 'Hello there?', 'Hi.')",
                   [aid])
        res = explain_anomaly(ws, aid, "av-only", ["last_prompt"], explainer=Explainer(rec, max_new_tokens=4))
        assert res["stored"] == 1 and res["variance"] is None
        row = ws.one("SELECT mse, cos, fve, layer, hidden_state_index, nla_id FROM explanations WHERE anomaly_id = ?",
                     [aid])
        assert row == (None, None, None, 2, 3, "av-only")


def test_explain_anomaly_generates_without_the_workspace(nlas, tmp_path):
    """The model runs with the workspace released: another process opens it read-write while
    the explainer generates; the explanations are then stored."""
    import subprocess
    import sys

    import forensics
    from forensics.nla import Explainer, explain_anomaly, register_nla

    # the connection lingers lock.linger_seconds after the read (a timer closes it), so the
    # probe tries for up to 10 s, as a waiting command does; were the workspace held through
    # generation, the probe (run inside generation) could never get in
    probe = ("import duckdb, sys, time\n"
             "for _ in range(100):\n"
             "    try:\n"
             "        con = duckdb.connect(sys.argv[1]); break\n"
             "    except duckdb.IOException:\n"
             "        time.sleep(0.1)\n"
             "con.execute(\"INSERT INTO datasets (name) VALUES ('written-meanwhile')\")")
    seen = []

    class Probing(Explainer):
        def run(self, *a, **k):
            seen.append(subprocess.run([sys.executable, "-c", probe, str(ws.db_path)],
                                       capture_output=True, timeout=60).returncode)
            return super().run(*a, **k)

    n = nlas["llama"]
    with forensics.init(tmp_path / "ws") as ws:
        rec, _ = register_nla(ws, "av-only", n.av, n.target)
        aid = ws.next_id("anomaly_id_seq")
        ws.execute("INSERT INTO anomalies (anomaly_id, title, prompt, reply) VALUES (?, 't', 'Hello there?', 'Hi.')",
                   [aid])
        res = explain_anomaly(ws, aid, "av-only", ["last_prompt"], explainer=Probing(rec, max_new_tokens=4))
        assert seen == [0] and res["stored"] == 1
        assert ws.one("SELECT count(*) FROM datasets WHERE name = 'written-meanwhile'") == (1,)


# ------------------------------------------------------------------------------------ K = last block


def _block_output(model, layers, ids, block: int):
    """Reference: the raw output of ``layers[block]`` from a forward hook on the block."""
    got = {}

    def hook(_m, _i, out):
        got["h"] = (out[0] if isinstance(out, tuple) else out).detach()

    h = layers[block].register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]))
    finally:
        h.remove()
    return got["h"][0]


@pytest.mark.parametrize("arch", ["qwen2", "gemma3_mm"])
def test_last_block_is_read_raw_from_the_block(tmp_path, arch):
    """K = the target's last block: the vector is the block's raw output (hook reference), not
    HF's hidden_states[n_layers], which comes after the final norm."""
    n = tiny.build_tiny_nla(tmp_path / arch, arch, hidden_size=64, num_layers=3, layer=2)
    model, tok = load_causal_lm(n.target), load_tokenizer(n.target)
    from forensics.nla.activations import _decoder_layers, encode_item

    layers = _decoder_layers(model)
    assert len(layers) == 3
    ids, plen = encode_item(tok, ITEMS[0])
    ref = _block_output(model, layers, ids, 2)
    acts = extract_activations(model, tok, [ITEMS[0], ITEMS[1]], ["last_prompt", "first_reply"], 2)
    a = acts[0]
    assert a.hidden_state_index == 3 and a.token_index == plen - 1
    assert torch.allclose(a.vector, ref[plen - 1].float(), atol=2e-3)
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    assert len(hs) == 4
    assert float((hs[3][0, plen - 1] - a.vector).abs().max()) > 0.1  # the normed entry differs
    # an inner layer still equals HF's hidden_states[K + 1]
    b = extract_activations(model, tok, [ITEMS[0]], ["last_prompt"], 1)[0]
    assert torch.allclose(b.vector, hs[2][0, plen - 1].float(), atol=2e-3)


# ------------------------------------------------------------------------------------ Gemma-3 multimodal AV


def test_gemma3_conditional_generation_av_generates_from_embeddings(tmp_path):
    """Released Gemma-3 AVs load as Gemma3ForConditionalGeneration; local generation from
    inputs_embeds goes through its language model (same weights), and the whole NLA runs."""
    import json

    from transformers import Gemma3ForConditionalGeneration

    n = tiny.build_tiny_nla(tmp_path / "g3mm", "gemma3_mm", hidden_size=64, num_layers=3, layer=1)
    cfg = json.loads((n.av / "config.json").read_text())
    assert cfg["architectures"] == ["Gemma3ForConditionalGeneration"] and "vision_config" in cfg
    assert not list(n.av.glob("*.py"))  # nothing to execute: loading never needs remote code
    full = load_causal_lm(n.av)
    assert isinstance(full, Gemma3ForConditionalGeneration)
    with pytest.raises(ValueError, match="inputs_embeds"):  # why the text view exists
        full.generate(inputs_embeds=torch.zeros(1, 4, 64), max_new_tokens=2)
    av = AV.load(n.av, max_new_tokens=6)
    assert av.embed_scale == pytest.approx(8.0)
    lm = av.backend.model
    assert type(lm).__name__ == "Gemma3ForCausalLM"
    assert torch.equal(lm.model.embed_tokens.weight, full.model.language_model.embed_tokens.weight)
    torch.manual_seed(5)
    vs = [torch.randn(64) for _ in range(3)]
    exps = av.explain(vs, batch_size=3)
    assert len(exps) == 3 and all(e.n_tokens > 0 for e in exps)
    # the text view computes the multimodal model's logits from the injected embeddings,
    # and they depend on the injected vector
    x = av.build_embeds(vs)
    with torch.no_grad():
        a, b = lm(inputs_embeds=x).logits, full(inputs_embeds=x).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a[0, -1], a[1, -1], atol=1e-3)
    # target (also multimodal) -> AV -> AR end to end
    target, ttok = load_causal_lm(n.target), load_tokenizer(n.target)
    acts = extract_activations(target, ttok, ITEMS[:2], ["last_prompt"], 1)
    ar = AR.load(n.ar)
    out = av.explain([a.vector for a in acts])
    pred = ar.predict([e.text for e in out])
    assert pred.shape == (2, 64) and torch.isfinite(pred).all()


# ------------------------------------------------------------------------------------ sampling


def test_sampling_settings_are_checked_and_keyed():
    from forensics.errors import InputError
    from forensics.nla.backends import Sampling

    assert Sampling().greedy and Sampling().key() == ""
    assert Sampling(temperature=0.7, top_p=0.9, n=4, seed=3).key() == "t0.7|p0.9|seed3|n4"
    assert Sampling(skip_special_tokens=False).key() == "special"
    for bad in (dict(temperature=-1), dict(temperature=float("nan")), dict(top_p=0), dict(top_p=1.5),
                dict(n=0), dict(n=2), dict(temperature=1.0, n=True)):
        with pytest.raises(InputError):
            Sampling(**bad)


def test_local_sampling_n_per_vector_seeded(loaded):
    from forensics.nla.backends import Sampling

    _, _, av, _ = loaded("qwen2")
    torch.manual_seed(3)
    vs = [torch.randn(64) for _ in range(3)]
    greedy = av.explain(vs, batch_size=3)
    assert [e.raw_output for e in av.explain(vs, batch_size=3, sampling=Sampling())] == \
        [e.raw_output for e in greedy]  # greedy stays the default
    s = Sampling(temperature=1.5, top_p=0.95, n=3, seed=11)
    a = av.explain(vs, batch_size=3, sampling=s)
    assert len(a) == 9 and [e.sample_index for e in a] == [0, 1, 2] * 3
    assert len({e.raw_output for e in a}) > 3  # samples of one vector differ
    state = torch.get_rng_state()
    b = av.explain(vs, batch_size=3, sampling=s)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    assert [e.raw_output for e in a] == [e.raw_output for e in b]  # same seed, same samples
    c = av.explain(vs, batch_size=3, sampling=Sampling(temperature=1.5, top_p=0.95, n=3, seed=12))
    assert [e.raw_output for e in c] != [e.raw_output for e in a]


def test_ar_input_raw_follows_the_reference_rule():
    from forensics.nla.av import ar_text

    closed = "<explanation>\n  Genre: a question.\n</explanation> trailing"
    assert ar_text(closed, "Genre: a question.") == "Genre: a question."
    cut = "<explanation>\nGenre: a quest"
    text, truncated, _ = parse_explanation(cut)
    assert truncated and text == "Genre: a quest"
    assert ar_text(cut, text) == cut  # no complete pair: scored as generated
    assert ar_text(cut, text, "stripped") == "Genre: a quest"
    assert ar_text("no tags at all ", "no tags at all") == "no tags at all "
    with pytest.raises(Exception, match="ar-input"):
        ar_text(cut, text, "both")


def test_custom_av_prompt_with_inject_marker(nlas):
    from forensics.errors import InputError

    n = nlas["qwen2"]
    av = AV.load(n.av, max_new_tokens=4,
                 av_prompt="What is the concept here? <concept><INJECT></concept> Explain it.")
    assert av.prompt_ids[av.slot] == av.sidecar.injection_token_id
    default = AV.load(n.av, max_new_tokens=4)
    assert av.prompt_ids != default.prompt_ids and av.slot != default.slot
    x = av.build_embeds([torch.ones(64)])
    assert float(x[0, av.slot].norm()) == pytest.approx(av.sidecar.injection_scale, rel=1e-5)
    with pytest.raises(InputError, match="INJECT"):
        AV.load(n.av, av_prompt="no marker here")
    with pytest.raises(InputError, match="neighbor"):  # the slot must keep the trained markup
        AV.load(n.av, av_prompt="Explain <INJECT> please")


# ------------------------------------------------------------------------------------ sidecar variants


def _strip_layers(m: dict) -> None:
    for k in ("extraction_layer_index", "critic", "ar"):
        m.pop(k, None)
    m.get("extraction", {}).pop("layer", None)


def test_released_layer_keys_are_read(nlas, tmp_path):
    """The release writes K as top-level extraction_layer_index (and critic.extraction_layer_index
    on an AR): an AV alone registers without --layer; disagreeing keys are refused."""
    import forensics
    from forensics.nla.registry import register_nla

    n = nlas["llama"]
    meta = yaml.safe_load((n.av / "nla_meta.yaml").read_text(encoding="utf-8"))
    assert meta["schema_version"] == 2 and meta["extraction_layer_index"] == 2  # what the writer writes
    av = _copy_with_sidecar(n.av, tmp_path / "av", lambda m: (_strip_layers(m), m.__setitem__(
        "extraction_layer_index", 1)))
    ar = _copy_with_sidecar(n.ar, tmp_path / "ar", lambda m: (_strip_layers(m), m.__setitem__(
        "critic", {"extraction_layer_index": 2})))
    assert parse_sidecar(av).layer == 1 and parse_sidecar(ar, role="ar").layer == 2
    ws = forensics.init(tmp_path / "ws")
    try:
        rec, status = register_nla(ws, "av-only", av, n.target)
        assert status == "added" and rec.layer == 1 and rec.hidden_state_index == 2 and rec.ar_path is None
        with pytest.raises(NLAContractError, match="extraction layer"):  # AV says 1, AR says 2
            register_nla(ws, "both", av, n.target, ar)
    finally:
        ws.close()
    AR.load(ar)  # the critic key alone is enough for an AR
    bad = _copy_with_sidecar(n.ar, tmp_path / "ar_bad", lambda m: m.__setitem__("extraction_layer_index", 1))
    with pytest.raises(NLAContractError, match="extraction_layer_index: says K=2, extraction_layer_index says K=1"):
        parse_sidecar(bad, role="ar")
    none = _copy_with_sidecar(n.ar, tmp_path / "ar_none", _strip_layers)
    with pytest.raises(NLAContractError, match="extraction_layer_index: required"):
        parse_sidecar(none, role="ar")
    assert resolve_scale("raw", 64) is None and resolve_scale("none", 64) is None


def test_pre_release_sidecars_are_read_with_a_warning(nlas, loaded, tmp_path):
    n = nlas["qwen2"]

    def old_names(m, role):
        m["role"] = role
        m["prompt_templates"] = {"actor": m["prompt_templates"]["av"], "critic": m["prompt_templates"]["ar"]}

    av_dir = _copy_with_sidecar(n.av, tmp_path / "av", lambda m: old_names(m, "actor"))
    ar_dir = _copy_with_sidecar(n.ar, tmp_path / "ar", lambda m: old_names(m, "critic"))
    with pytest.warns(UserWarning, match="pre-release") as got:
        sc = parse_sidecar(av_dir, role="av")
    assert len(got) == 3
    assert sc.role == "av" and "{injection_char}" in sc.av_template and len(sc.warnings) == 3
    with pytest.warns(UserWarning) as got:
        ar = AR.load(ar_dir)
    assert any("role: 'critic'" in str(w.message) for w in got)
    with pytest.warns(UserWarning):
        av = AV.load(av_dir, max_new_tokens=8)
    _, _, av0, ar0 = loaded("qwen2")
    torch.manual_seed(9)
    vs = [torch.randn(64) for _ in range(2)]
    assert [e.raw_output for e in av.explain(vs)] == [e.raw_output for e in av0.explain(vs)]
    assert torch.allclose(ar.predict(["a text"]), ar0.predict(["a text"]), atol=1e-6)
    with pytest.raises(NLAContractError, match="role"):  # a role swap is still refused
        with pytest.warns(UserWarning):
            AV.load(ar_dir)
