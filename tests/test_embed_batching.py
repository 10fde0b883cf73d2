"""Embedder.encode batches texts by TOKEN count (not characters) and computes the packaged
MiniLM with forensics.minibert (no sentence-transformers import): neither speed-up may change
which vector a text gets, nor the order of the output. The reference is sentence-transformers
itself, one text at a time (no padding at all)."""

from __future__ import annotations

import numpy as np
import pytest

from forensics.search import embed


@pytest.fixture(scope="module")
def minilm():
    return embed.Embedder(batch_size=4)


def _mixed_texts() -> list[str]:
    # scripts whose characters-per-token differ widely, so char order != token order
    base = ["short English line.",
            "Μια ηλεκτρονική ψηφοφορία στην ιστοσελίδα του Κοινοβουλίου με πάνω από 5.100 ονόματα.",
            "这是一个关于议会网站上电子投票的较长中文句子，用来测试分词长度。",
            "A much longer English paragraph about parliaments, committees and private bills "
            "that keeps going for a while so that it has many word pieces in it.",
            "Kısa Türkçe cümle.", "", "x", "Die Mannschaft gewann das Spiel im Pokal deutlich."]
    return [f"{t} #{i}" if t else t for i, t in enumerate(base * 3)]


def test_token_sorted_batches_give_the_per_text_vectors_in_input_order(minilm):
    assert minilm.kind == "torch" and minilm._bert is not None  # the fast path is what runs
    texts = _mixed_texts()
    lengths = minilm._token_lengths(texts)
    chars = np.array([len(t) for t in texts])
    # the premise of the optimisation holds on this input: the two orders differ
    assert not np.array_equal(np.argsort(-lengths, kind="stable"), np.argsort(-chars, kind="stable"))
    batched = minilm.encode(texts)
    single = np.vstack([minilm._model.encode([t], convert_to_numpy=True, normalize_embeddings=True)
                        for t in texts])
    assert batched.shape == (len(texts), minilm.dim) and batched.dtype == np.float32
    cos = (batched * single).sum(1)
    assert cos.min() > 0.9999, cos
    # a vector in the wrong row would match another text far worse than itself
    sims = batched @ single.T
    assert (sims.argmax(1) == np.arange(len(texts)))[[i for i, t in enumerate(texts) if t]].all()


def test_token_lengths_are_capped_at_max_seq_length(minilm):
    long = "word " * 2000
    n = minilm._token_lengths([long, "hi"])
    assert n[0] == minilm._model.max_seq_length == 256 and 2 < n[1] < 10


def test_sentence_transformers_backend_gives_the_same_vectors(minilm):
    texts = _mixed_texts()[:8]
    st = embed.Embedder(backend="sentence-transformers", batch_size=3)
    assert st.kind == "sentence-transformers" and st.model_id == minilm.model_id
    assert np.abs(st.encode(texts) - minilm.encode(texts)).max() < 1e-5


def test_non_bert_directory_is_not_taken_by_the_torch_path(tmp_path):
    from forensics.search.minibert import unsupported_reason

    assert unsupported_reason(embed.default_model_path()) is None
    (tmp_path / "modules.json").write_text('[{"type": "sentence_transformers.models.StaticEmbedding"}]')
    assert "modules" in unsupported_reason(tmp_path)
    assert unsupported_reason(tmp_path / "missing") == "no modules.json"


def test_embed_texts_accepts_a_duck_typed_embedder(ws, minilm):
    """triage hands embed_texts a lazy stand-in with only model_id / dim / encode."""

    class Lazy:
        model_id, dim = minilm.model_id, minilm.dim

        def encode(self, texts, show_progress=False):
            return minilm.encode(texts)

    texts = ["a lazy embedder", "zweiter Text", "a lazy embedder"]
    v, st = embed.embed_texts_stats(ws, texts, Lazy())
    assert (st.unique, st.embedded) == (2, 2) and np.allclose(v[0], v[2])
    assert np.allclose(v, minilm.encode(texts), atol=1e-6)
