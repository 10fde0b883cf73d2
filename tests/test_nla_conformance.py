"""Conformance with the released NLA checkpoint contract (the checkpoint-format notes in
``../shared/docs/nla-checkpoint-format.md``), checked against expectations re-derived here.

Every expected value is computed in this file from the documented recipe with numpy (weights
read straight from the safetensors files, token ids from the tokenizer's chat template, the
embedding scale from config.json), never by calling the code under test a second time. The
fixtures are tiny checkpoints in the released layout (``forensics.nla.tiny``): a Qwen2-style
set and the released Gemma-3 multimodal layout (``Gemma3ForConditionalGeneration``), with the
released scales (Qwen-7B injects at 150, Gemma-3-12B at 80000). The published decode
transcripts (``../shared/data/nla-decodes``), when present, supply real per-token mse, cos and
FVE numbers; the documented relations between them are checked on every row.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from forensics.nla import tiny
from forensics.nla.activations import default_hidden_state_index, extract_activations, load_causal_lm
from forensics.nla.ar import AR, dataset_variance, score
from forensics.nla.av import AV, ar_text, parse_explanation
from forensics.nla.meta import NLAContractError, load_tokenizer, resolve_scale

D = 64
K = 2
#: arch -> the released injection scale of a target of that family (Qwen-7B: 150, Gemma-3-12B: 80000)
FIXTURES = {"qwen2": 150.0, "gemma3_mm": 80000.0}


def _decodes_dir() -> Path:
    """``shared/data/nla-decodes`` beside the repository or beside a folder above it."""
    for p in Path(__file__).resolve().parents:
        if (p / "shared" / "data" / "nla-decodes").is_dir():
            return p / "shared" / "data" / "nla-decodes"
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "nla-decodes"


DECODES = _decodes_dir()
ITEMS = [("What is the capital of France?", "Paris is the capital of France."),
         ("Please help me with a question about the history of the river", "yes")]


@pytest.fixture(scope="module", autouse=True)
def _quiet_one_thread():
    from transformers.utils import logging

    logging.set_verbosity_error()
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, tiny.TinyNLA]:
    root = tmp_path_factory.mktemp("conformance")
    return {a: tiny.build_tiny_nla(root / a, a, hidden_size=D, num_layers=4, layer=K, injection_scale=s)
            for a, s in FIXTURES.items()}


# ------------------------------------------------------------------------ independent helpers


def _config(path: Path) -> dict:
    cfg = json.loads((path / "config.json").read_text())
    return cfg.get("text_config", cfg) if "text_config" in cfg else cfg


def _embedding_matrix(path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    (w,) = [v for f in sorted(path.glob("*.safetensors")) if f.name != "value_head.safetensors"
            for k, v in load_file(str(f)).items() if k.endswith("embed_tokens.weight")]
    return w.astype(np.float32)


def _embed_scale(path: Path) -> float:
    """The spec: 1 for Qwen/Llama/Mistral, sqrt(hidden_size) for Gemma-3."""
    cfg = json.loads((path / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    mt = text.get("model_type") or cfg.get("model_type")
    return math.sqrt(text["hidden_size"]) if str(mt).startswith("gemma") else 1.0


def _av_ids(path: Path) -> tuple[list[int], dict]:
    """Spec step 1: the AV template with the injection character, one user turn, chat template
    applied and tokenized in ONE step."""
    meta = yaml.safe_load((path / "nla_meta.yaml").read_text(encoding="utf-8"))
    tok = load_tokenizer(path)
    msg = meta["prompt_templates"]["av"].format(injection_char=meta["tokens"]["injection_char"])
    ids = tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=True,
                                  add_generation_prompt=True, return_dict=False)
    return [int(i) for i in ids], meta


def _slots(ids: list[int], t: dict) -> list[int]:
    """Spec step 4: positions holding the injection id whose neighbours are the sidecar's."""
    return [i for i in range(1, len(ids) - 1) if ids[i] == t["injection_token_id"]
            and ids[i - 1] == t["injection_left_neighbor_id"] and ids[i + 1] == t["injection_right_neighbor_id"]]


def _ref_score(p: np.ndarray, g: np.ndarray, s: float | None):
    """The spec's AR score: both rescaled to norm s, mse = mean((p - g)^2); and cos."""
    p, g = p.astype(np.float64), g.astype(np.float64)
    if s is not None:
        p = p * (s / np.linalg.norm(p, axis=-1, keepdims=True))
        g = g * (s / np.linalg.norm(g, axis=-1, keepdims=True))
    mse = ((p - g) ** 2).mean(axis=-1)
    cos = (p * g).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(g, axis=-1))
    return mse, cos


def _ref_variance(x: np.ndarray, s: float | None) -> float:
    """The spec's FVE baseline: mean squared distance of the normalised vectors from their mean."""
    x = x.astype(np.float64)
    if s is not None:
        x = x * (s / np.linalg.norm(x, axis=-1, keepdims=True))
    return float(((x - x.mean(axis=0)) ** 2).mean(axis=-1).mean())


# ------------------------------------------------------------------------ sidecar and shapes


@pytest.mark.parametrize("arch", list(FIXTURES))
def test_sidecar_fields_and_checkpoint_shapes(fx, arch):
    n = fx[arch]
    for half, role in ((n.av, "av"), (n.ar, "ar")):
        meta = yaml.safe_load((half / "nla_meta.yaml").read_text(encoding="utf-8"))
        assert meta["kind"] == "nla_model" and meta["role"] == role and meta["d_model"] == D
        assert meta["extraction"]["injection_scale"] == FIXTURES[arch]
        assert meta["extraction"]["mse_scale"] == "sqrt_d_model"
        assert "{injection_char}" in meta["prompt_templates"]["av"]
        assert re.search(r"<concept>\{injection_char\}</concept>", meta["prompt_templates"]["av"])
        assert "{explanation}" in meta["prompt_templates"]["ar"]
        tok = load_tokenizer(half)
        ch = meta["tokens"]["injection_char"]
        assert len(ch) == 1 and tok.encode(ch, add_special_tokens=False) == [meta["tokens"]["injection_token_id"]]
    # the AR: K+1 blocks, no LM head, a [d, d] value head stored separately
    ar_meta = yaml.safe_load((n.ar / "nla_meta.yaml").read_text(encoding="utf-8"))
    assert ar_meta["ar"]["num_hidden_layers"] == K
    assert _config(n.ar)["num_hidden_layers"] == K + 1
    assert _config(n.target)["num_hidden_layers"] == 4 and _config(n.target)["hidden_size"] == D
    from safetensors.numpy import load_file

    vh = load_file(str(n.ar / "value_head.safetensors"))
    assert list(vh) == ["weight"] and vh["weight"].shape == (D, D)
    keys = [k for f in n.ar.glob("model*.safetensors") for k in load_file(str(f))]
    assert keys and not any("lm_head" in k for k in keys)
    # loaded: AV embeddings [n, L, d]; AR predictions [n, d]; activations [d]
    av, ar = AV.load(n.av, max_new_tokens=4), AR.load(n.ar)
    ids, _ = _av_ids(n.av)
    assert tuple(av.build_embeds([np.ones(D), np.arange(1, D + 1)]).shape) == (2, len(ids), D)
    assert tuple(ar.predict(["one", "two words", "three more words"]).shape) == (3, D)
    acts = extract_activations(load_causal_lm(n.target), load_tokenizer(n.target), ITEMS, ["last_prompt"], K)
    assert [tuple(a.vector.shape) for a in acts] == [(D,), (D,)]


# ------------------------------------------------------------------------ AV injection


@pytest.mark.parametrize("arch", list(FIXTURES))
def test_injection_row_norm_slot_and_embedding_scale(fx, arch):
    n = fx[arch]
    ids, meta = _av_ids(n.av)
    tok = load_tokenizer(n.av)
    if tok.bos_token_id is not None:  # one BOS (from the chat template), never a second one
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    (slot,) = _slots(ids, meta["tokens"])  # exactly one slot where the sidecar says
    av = AV.load(n.av, max_new_tokens=4)
    assert av.prompt_ids == ids and av.slot == slot
    rng = np.random.default_rng(0)
    vs = np.stack([rng.normal(size=D) * 3.0, rng.normal(size=D) * 1e-3, rng.normal(size=D) * 5e4])
    x = av.build_embeds([torch.from_numpy(v) for v in vs]).numpy()
    emb = _embedding_matrix(n.av)[ids] * np.float32(_embed_scale(n.av))
    scale = float(meta["extraction"]["injection_scale"])
    rest = np.arange(len(ids)) != slot
    for r, v in enumerate(vs):
        # the injected row: the vector rescaled to L2 norm injection_scale (fp32 norm)
        assert float(np.linalg.norm(x[r, slot].astype(np.float64))) == pytest.approx(scale, rel=1e-5)
        np.testing.assert_allclose(x[r, slot], (v / np.linalg.norm(v) * scale).astype(np.float32),
                                   rtol=1e-5, atol=scale * 1e-6)
        # every other row: token embedding x the architecture's embedding scale
        np.testing.assert_allclose(x[r][rest], emb[rest], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form,expected", [("sqrt_d_model", math.sqrt(D)), (None, None), (12.5, 12.5)])
def test_injection_scale_forms(fx, tmp_path, form, expected):
    n = fx["qwen2"]
    av_dir = tmp_path / "av"
    shutil.copytree(n.av, av_dir)
    meta = yaml.safe_load((av_dir / "nla_meta.yaml").read_text(encoding="utf-8"))
    meta["extraction"]["injection_scale"] = form
    (av_dir / "nla_meta.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
    av = AV.load(av_dir, max_new_tokens=4)
    v = np.linspace(-2.0, 3.0, D).astype(np.float32)
    row = av.build_embeds([torch.from_numpy(v)])[0, av.slot].numpy()
    want = v if expected is None else v / np.linalg.norm(v) * expected  # null: injected raw
    np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)


def test_slot_not_found_or_ambiguous_is_an_error(fx, tmp_path):
    n = fx["qwen2"]
    for name, template in (("twice", "A <concept>{injection_char}</concept> B <concept>{injection_char}</concept>"),
                           ("none", "Explain what the model is thinking: {injection_char}")):
        d = tmp_path / name
        shutil.copytree(n.av, d)
        meta = yaml.safe_load((d / "nla_meta.yaml").read_text(encoding="utf-8"))
        meta["prompt_templates"]["av"] = template
        (d / "nla_meta.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
        ids, m = _av_ids(d)
        assert len(_slots(ids, m["tokens"])) != 1
        with pytest.raises(NLAContractError, match="tokens.injection"):
            AV.load(d, max_new_tokens=4)


# ------------------------------------------------------------------------ AR and scoring


@pytest.mark.parametrize("arch", list(FIXTURES))
def test_ar_prediction_is_value_head_at_last_token_of_k_plus_1_blocks(fx, arch):
    """The AR is the target's first K+1 blocks (final norm = identity) plus the value head; for
    K < the target's last block that is HF's ``hidden_states[K+1]`` of the target at the last
    token of the AR template (tokenized with special tokens), times the value head."""
    n = fx[arch]
    meta = yaml.safe_load((n.ar / "nla_meta.yaml").read_text(encoding="utf-8"))
    tok = load_tokenizer(n.ar)
    from safetensors.numpy import load_file

    w = load_file(str(n.ar / "value_head.safetensors"))["weight"].astype(np.float64)
    target = load_causal_lm(n.target)
    ar = AR.load(n.ar)
    texts = ["The text is a question about a city.", "hello"]
    pred = ar.predict(texts).numpy()
    for t, p in zip(texts, pred):
        ids = tok(meta["prompt_templates"]["ar"].format(explanation=t), add_special_tokens=True)["input_ids"]
        assert ids[-len(meta["tokens"]["critic_suffix_ids"]):] == meta["tokens"]["critic_suffix_ids"]
        if tok.bos_token_id is not None:
            assert ids[0] == tok.bos_token_id
        with torch.no_grad():
            h = target(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[K + 1][0, -1]
        np.testing.assert_allclose(p, w @ h.numpy().astype(np.float64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mse_scale", [math.sqrt(D), 10.0, None])
def test_score_is_the_documented_mse_cos_and_fve(mse_scale):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(32, D)) * rng.uniform(0.1, 50.0, size=(32, 1))
    p = g + rng.normal(size=(32, D)) * rng.uniform(0.0, 3.0, size=(32, 1)) * np.abs(g).mean(-1, keepdims=True)
    p[0], p[1] = -g[0], rng.normal(size=D)  # opposite, unrelated
    want_mse, want_cos = _ref_score(p, g, mse_scale)
    v = _ref_variance(g, mse_scale)
    assert dataset_variance([torch.from_numpy(r) for r in g], mse_scale) == pytest.approx(v, rel=1e-5)
    mse, cos, fve = score(torch.from_numpy(p), torch.from_numpy(g), mse_scale, variance=v)
    np.testing.assert_allclose(mse.numpy(), want_mse, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cos.numpy(), want_cos, atol=1e-6)
    np.testing.assert_allclose(fve.numpy(), 1.0 - want_mse / v, rtol=1e-5, atol=1e-5)
    if mse_scale is not None:
        # rescaled to norm s: mse = (s^2 / d) * 2 (1 - cos); at s = sqrt(d) exactly 2 (1 - cos),
        # so 0 perfect, 2 orthogonal, 4 opposite
        np.testing.assert_allclose(want_mse, mse_scale ** 2 / D * 2 * (1 - want_cos), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(mse.numpy(), mse_scale ** 2 / D * 2 * (1 - cos.numpy()), atol=1e-4)
        assert float(mse[0]) == pytest.approx(4.0 * mse_scale ** 2 / D, rel=1e-5)
    # a perfect prediction explains all of the variance
    np.testing.assert_allclose(score(torch.from_numpy(g), torch.from_numpy(g), mse_scale, variance=v)[2].numpy(),
                               1.0, atol=1e-5)


def test_sidecar_mse_scale_reaches_the_scores(fx):
    ar = AR.load(fx["qwen2"].ar)
    assert ar.mse_scale == pytest.approx(math.sqrt(D)) == resolve_scale("sqrt_d_model", D)


# ------------------------------------------------------------------------ K / layer conventions


@pytest.mark.parametrize("arch", list(FIXTURES))
def test_layer_k_is_the_output_of_block_k(fx, arch):
    """Default: layer K = HF ``hidden_states[K+1]`` = the raw output of block K (the transcripts'
    convention); the quick-start's ``hidden_states[K]`` is one option away; both are recorded."""
    n = fx[arch]
    model, tok = load_causal_lm(n.target), load_tokenizer(n.target)
    blocks = (model.model.language_model if hasattr(model.model, "language_model") else model.model).layers
    got: dict = {}
    hook = blocks[K].register_forward_hook(lambda m, i, o: got.__setitem__("h", (o[0] if isinstance(o, tuple) else o)))
    try:
        a = extract_activations(model, tok, ITEMS[:1], ["last_prompt"], K)[0]
        q = extract_activations(model, tok, ITEMS[:1], ["last_prompt"], K, hidden_state_index=K)[0]
        ids = tok.apply_chat_template([{"role": "user", "content": ITEMS[0][0]}], tokenize=True,
                                      add_generation_prompt=True, return_dict=False)
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([list(ids)]), output_hidden_states=True).hidden_states
    finally:
        hook.remove()
    assert a.token_index == len(ids) - 1 and a.layer == K
    assert a.hidden_state_index == K + 1 == default_hidden_state_index(K) and q.hidden_state_index == K
    np.testing.assert_allclose(a.vector.numpy(), got["h"][0, -1].float().numpy(), atol=1e-4)
    np.testing.assert_allclose(a.vector.numpy(), hs[K + 1][0, -1].float().numpy(), atol=1e-4)
    np.testing.assert_allclose(q.vector.numpy(), hs[K][0, -1].float().numpy(), atol=1e-4)


# ------------------------------------------------------------------------ tags


def test_tag_stripping_and_truncation():
    raw = "<explanation>\nGenre line.\n\nFinal token line.\n</explanation>"
    text, truncated, _ = parse_explanation(raw)
    assert (text, truncated) == ("Genre line.\n\nFinal token line.", False)
    assert ar_text(raw, text, "raw") == ar_text(raw, text, "stripped") == text
    cut = "<explanation>\nGenre line.\n\nFinal token"  # no closing tag: cut short, raw kept
    text, truncated, _ = parse_explanation(cut)
    assert truncated and text == "Genre line.\n\nFinal token"
    assert ar_text(cut, text, "raw") == cut and ar_text(cut, text, "stripped") == text
    text, truncated, flags = parse_explanation("untagged words")
    assert truncated and text == "untagged words" and "no_open_tag" in flags


# ------------------------------------------------------------------------ real transcripts

_ROW = re.compile(r"^\[\s*(\d+)\]\s+(PROMPT|REPLY)\s+token=.*?\|\|v\|\|=([\d.]+)\s+mse_nrm=([-\d.]+)\s+"
                  r"cos=([-\d.]+)\s+fve_nrm=([-\d.]+)\s*$")


def _transcripts():
    return sorted(DECODES.glob("*_layer*_step*.txt")) if DECODES.is_dir() else []


def _parse(path: Path) -> dict:
    lines = path.read_text(encoding="utf-8").splitlines()
    out: dict = {"rows": [], "decodes": [], "samples": []}
    body: list[str] | None = None
    for ln in lines:
        m = _ROW.match(ln)
        if m:
            out["rows"].append((int(m[1]), float(m[4]), float(m[5]), float(m[6])))
            body = []
            out["decodes"].append(body)
            continue
        if body is not None and (ln.startswith("    ") or not ln.strip()):
            body.append(ln[4:])
            continue
        body = None
        if m := re.search(r"layer (\d+) residual stream \(= HF hidden_states\[(\d+)\], output of block (\d+)\)", ln):
            out["layer"] = tuple(int(x) for x in m.groups())
        if m := re.match(r"d_model:\s+(\d+)", ln):
            out["d"] = int(m[1])
        if m := re.search(r"scaled to √d=([\d.]+)", ln):
            out["sqrt_d"] = float(m[1])
        if m := re.search(r"fve_nrm:\s+1 - mse_nrm / (\d+\.\d+)", ln):
            out["v"] = float(m[1])
        if m := re.search(r"Summary \(positions (\d+)\+", ln):
            out["first"] = int(m[1])
        if m := re.match(r"\s+mse_nrm:\s+mean=([\d.]+)", ln):
            out["mean_mse"] = float(m[1])
        if m := re.match(r"\s+cos:\s+mean=([\d.]+)", ln):
            out["mean_cos"] = float(m[1])
        if m := re.match(r"\s+fve_nrm:\s+mean=([-\d.]+)", ln):
            out["mean_fve"] = float(m[1])
        if m := re.search(r"→ MSE=([\d.]+)\s+cos=([-\d.]+)", ln):
            out["samples"].append((float(m[1]), float(m[2])))
    return out


@pytest.mark.skipif(not _transcripts(), reason="no decode transcripts in ../shared/data/nla-decodes")
@pytest.mark.parametrize("path", _transcripts(), ids=lambda p: p.stem)
def test_published_transcripts_obey_the_documented_relations(path):
    t = _parse(path)
    assert len(t["rows"]) >= 100
    # K / index convention and the mse scale as documented
    k, hsi, block = t["layer"]
    assert hsi == k + 1 == default_hidden_state_index(k) and block == k
    assert t["sqrt_d"] == pytest.approx(resolve_scale("sqrt_d_model", t["d"]), abs=0.005)
    # every row: mse = 2 (1 - cos) and fve = 1 - mse / v, up to the printed 3-decimal rounding
    for i, mse, cos, fve in t["rows"]:
        assert abs(mse - 2 * (1 - cos)) <= 0.0015 + 1e-9, (path.name, i, mse, cos)
        assert abs(fve - (1 - mse / t["v"])) <= 0.0005 / t["v"] + 0.0005 + 1e-9, (path.name, i, mse, fve)
    for mse, cos in t["samples"]:
        assert abs(mse - 2 * (1 - cos)) <= 0.0015 + 1e-9
    # the summary (positions after the system prompt) is the mean of those rows
    kept = [r for r in t["rows"] if r[0] >= t["first"]]
    assert np.mean([r[1] for r in kept]) == pytest.approx(t["mean_mse"], abs=0.0006)
    assert np.mean([r[3] for r in kept]) == pytest.approx(t["mean_fve"], abs=0.0006 + 0.0005 / t["v"])
    assert 1 - t["mean_mse"] / 2 == pytest.approx(t["mean_cos"], abs=0.0011)
    # decodes with an opening tag and no closing one were cut short: parsed as truncated,
    # the stored text loses the tag, the raw output (scored by default) keeps it
    for body in t["decodes"]:
        raw = "\n".join(body).strip()
        text, truncated, _ = parse_explanation(raw)
        assert "<explanation>" not in text and "</explanation>" not in text
        if "<explanation>" in raw and "</explanation>" not in raw:
            assert truncated and ar_text(raw, text, "raw") == raw
