"""forensics.search.torch_int8 / Embedder(backend="torch-int8"): the real MiniLM, calibrated on
the even demo rows, compared with the torch fp32 vectors on odd rows and XQuAD text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forensics.search import embed, index
from forensics.search.torch_int8 import available
from conftest import XQUAD, held_texts
from test_index import add_samples, corpus

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def xquad(lang: str, n: int = 10) -> list[str]:
    """The first ``n`` XQuAD questions in ``lang`` (the shared copy beside the checkout)."""
    p = XQUAD / f"xquad.{lang}.json"
    if not p.is_file():
        pytest.skip(f"shared XQuAD data not found at {p}")
    data = json.loads(p.read_text(encoding="utf-8"))["data"]
    return [qa["question"] for a in data for para in a["paragraphs"] for qa in para["qas"]][:n]


@pytest.fixture(scope="module")
def torch_emb():
    return embed.Embedder(backend="torch")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("int8-cache")


@pytest.fixture(scope="module")
def int8_emb(cache_dir):
    return embed.Embedder(backend="torch-int8", onnx_cache_dir=cache_dir)


def test_int8_agrees_with_fp32_and_runs_int8(torch_emb, int8_emb):
    """cos >= 0.99 to fp32 on held-apart text; the linears really are int8 (packed oneDNN
    weights, not float), except the one the default keeps float; vectors differ from fp32."""
    texts = held_texts(40) + xquad("de") + xquad("zh")
    cos = (torch_emb.encode(texts) * int8_emb.encode(texts)).sum(1)
    assert cos.min() >= 0.99, (cos.min(), cos.mean())
    assert cos.max() < 0.999999   # not the fp32 path under another name
    layers = int8_emb._bert.layers
    assert [lay["down"]["float"] for lay in layers] == [True] + [False] * 5
    assert all(not lay[g]["float"] for lay in layers for g in ("qkv", "out", "up"))
    again = int8_emb.encode(texts[:5])
    assert np.array_equal(again, int8_emb.encode(texts[:5]))   # deterministic


def test_fused_steps_compute_what_the_plain_torch_steps_do(int8_emb):
    """The inductor-fused quantisation / add / LayerNorm steps and the same steps as separate
    torch ops give the same vectors (up to float rounding flipping a few int8 codes: measured
    0.99974 at worst on these texts, most above 0.99999)."""
    import copy

    from forensics.search.torch_int8 import kernels

    texts = held_texts(12)
    eager = copy.copy(int8_emb._bert)
    eager._k = kernels(False)
    assert eager._k["quant"] is not int8_emb._bert._k["quant"]
    cos = (eager.encode(texts) * int8_emb.encode(texts)).sum(1)
    assert cos.min() >= 0.999 and np.median(cos) >= 0.99999, cos


def test_calibration_is_kept_and_a_damaged_file_is_refused(int8_emb, cache_dir):
    """The calibrated ranges are written once under the cache folder and read back by the next
    process (same layers, same vectors); settings that do not touch calibration share the file,
    and get another model key; a file cut short is refused with its path."""
    from dataclasses import replace

    from forensics.errors import BackendError
    from forensics.search.torch_int8 import TorchInt8Bert, TorchInt8Settings

    f = int8_emb._bert.ranges_file
    assert f is not None and f.parent == cache_dir and f.is_file()
    mtime = f.stat().st_mtime_ns
    other = TorchInt8Bert(embed.default_model_path(),
                          replace(TorchInt8Settings(), smooth_alpha=0.5, compile=False), cache_dir)
    assert other.ranges_file == f and f.stat().st_mtime_ns == mtime
    assert other.model_key != int8_emb._bert.model_key
    lay, lay2 = int8_emb._bert.layers[3]["up"], other.layers[3]["up"]
    assert lay["zp"] != lay2["zp"] or lay["a"] != lay2["a"]   # other smoothing, same ranges
    f2 = cache_dir / "cut" / f.name
    f2.parent.mkdir()
    f2.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(BackendError, match="cut"):
        TorchInt8Bert(embed.default_model_path(), TorchInt8Settings(compile=False), f2.parent)


def test_model_id_keys_settings_and_index_records_backend(ws, torch_emb, int8_emb, cache_dir,
                                                           monkeypatch):
    key = int8_emb._bert.model_key
    assert int8_emb.model_id == f"all-MiniLM-L6-v2+torch-int8@{key}"
    assert int8_emb.spec == "torch-int8:"
    add_samples(ws, "d", corpus(12))
    m = index.build(ws, "d", "pair", embedder=int8_emb)
    assert (m.model_id, m.model_spec) == (int8_emb.model_id, "torch-int8:")
    assert ws.rows("SELECT DISTINCT model_id FROM embedding_cache") == [(int8_emb.model_id,)]
    oi = index.open_index(ws, "d", "pair")
    assert not oi.share_embedder(torch_emb)      # fp32 vectors are not mixed with int8 ones
    from forensics.search.onnx_embed import CACHE_ENV
    monkeypatch.setenv(CACHE_ENV, str(cache_dir))
    assert oi.embedder().model_id == int8_emb.model_id   # rebuilt from the manifest's spec
    hits = index.search(ws, "d", ["how do I cook spaghetti"], k=1)
    assert "pasta" in hits[0][0].prompt


def test_int8_backend_refuses_gpu():
    from forensics.errors import UsageError

    with pytest.raises(UsageError, match="CPU only"):
        embed.Embedder(backend="torch-int8", device="mps")


def test_cli_build_with_torch_int8_records_it(tmp_path, cli, int8_emb, cache_dir):
    """``index build --backend torch-int8 --onnx-cache-dir DIR`` in a fresh process: reads the
    calibration already in DIR (not rewritten), records the backend and its keyed model id."""
    import forensics

    ws_path = tmp_path / "ws"
    cli("init", workspace=ws_path)
    with forensics.open(ws_path) as ws:
        add_samples(ws, "d", corpus(10))
    f = int8_emb._bert.ranges_file
    mtime = f.stat().st_mtime_ns
    cli("index", "build", "--dataset", "d", "--backend", "torch-int8", "--onnx-cache-dir",
        str(cache_dir), "--json", workspace=ws_path)
    assert f.stat().st_mtime_ns == mtime
    with forensics.open(ws_path) as ws:
        m = index.open_index(ws, "d", "pair").manifest
    assert (m.model_id, m.model_spec) == (int8_emb.model_id, "torch-int8:")
