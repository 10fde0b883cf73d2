"""A plain-torch forward pass for BERT sentence encoders with mean pooling (all-MiniLM-L6-v2).

Why this exists: importing ``sentence_transformers`` pulls in transformers, scikit-learn and
scipy, which costs 5-14 s per process on a 2-core machine (measured with ``python -X
importtime``: 14.4 s under load). Every CLI command that embeds (``index build``, ``triage``)
is a fresh process, so the import alone was a large share of ``make demo``. For the one model
family the tool ships by default the whole computation is small: WordPiece tokenisation (the
Rust ``tokenizers`` library reading the model's own ``tokenizer.json``), BERT's embedding sum,
N encoder layers, mean pooling over real tokens, L2 normalisation. Here it is written with
torch ops only and loaded from ``model.safetensors`` (no pickle, no remote code).

It is used only when :func:`unsupported_reason` finds nothing unusual in the directory
(``modules.json`` = Transformer + mean Pooling [+ Normalize], a ``bert`` config with absolute
positions and exact GELU, ``tokenizer.json``, ``model.safetensors``); anything else goes through
sentence-transformers. Agreement with sentence-transformers is measured, not assumed:
``bench/embed_cpu.py`` and tests/test_embed_batching.py compare the two on mixed-script text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def _read_json(p: Path) -> dict | list | None:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def unsupported_reason(path: Path) -> str | None:
    """None when ``path`` is a sentence-transformers directory this module computes exactly;
    otherwise why not (the caller then uses sentence-transformers)."""
    mods = _read_json(path / "modules.json")
    if not isinstance(mods, list):
        return "no modules.json"
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in mods]
    if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"modules {types}"
    if mods[0].get("path", "") not in ("", "."):
        return "transformer module in a subdirectory"
    pool = _read_json(path / mods[1].get("path", "1_Pooling") / "config.json")
    if not isinstance(pool, dict) or not pool.get("pooling_mode_mean_tokens") or any(
            v for k, v in pool.items() if k.startswith("pooling_mode") and k != "pooling_mode_mean_tokens"):
        return "pooling is not plain mean pooling"
    if pool.get("include_prompt") is False:
        return "pooling excludes a prompt"
    cfg = _read_json(path / "config.json")
    if not isinstance(cfg, dict) or cfg.get("model_type") != "bert":
        return "not a BERT config"
    if cfg.get("position_embedding_type", "absolute") != "absolute" or cfg.get("hidden_act") != "gelu":
        return "positions or activation differ from plain BERT"
    stc = _read_json(path / "sentence_bert_config.json") or {}
    if stc.get("do_lower_case"):
        return "sentence_bert_config lowercases"
    cst = _read_json(path / "config_sentence_transformers.json") or {}
    if cst.get("prompts") and any(cst["prompts"].values()) or cst.get("default_prompt_name"):
        return "model uses prompts"
    for f in ("tokenizer.json", "model.safetensors"):
        if not (path / f).is_file():
            return f"no {f}"
    return None


def length_order(ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Indices of ``ids`` longest first (stable): batches of similar token counts pad little."""
    return np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)),
                      kind="stable")


class MiniBert:
    """``MiniBert(path).encode(texts, batch_size) -> float32 [n, dim]``, L2-normalised."""

    def __init__(self, path: Path):
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.path = Path(path)
        cfg = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        stc = _read_json(self.path / "sentence_bert_config.json") or {}
        self.max_seq_length = int(min(stc.get("max_seq_length") or cfg["max_position_embeddings"],
                                      cfg["max_position_embeddings"]))
        self.dim = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.pad_id = int(cfg.get("pad_token_id") or 0)
        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.no_padding()  # the file may carry a fixed padding; we pad per batch ourselves
        tok.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer = tok
        w = load_file(str(self.path / "model.safetensors"))
        if any(k.startswith("bert.") for k in w):
            w = {k[5:]: v for k, v in w.items() if k.startswith("bert.")}
        self.w = {k: v.float().contiguous() for k, v in w.items()}
        self._torch = torch
        # optional hook ``(linear name, input) -> input`` run before each encoder Linear
        # (forensics.search.onnx_embed uses it to calibrate and apply SmoothQuant scales)
        self.act_scale = None

    # ---------------------------------------------------------------- tokens
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.token_ids(texts)
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    # ---------------------------------------------------------------- forward
    def pad(self, ids: list[list[int]]):
        """``(input_ids, mask)``: long ``[n, L]`` padded with the pad id, bool ``[n, L]``."""
        torch = self._torch
        n, L = len(ids), max(len(x) for x in ids)
        inp = torch.full((n, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, L), dtype=torch.bool)
        for i, x in enumerate(ids):
            inp[i, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, :len(x)] = True
        return inp, mask

    def _forward(self, ids: list[list[int]]):
        return self.forward_tensors(*self.pad(ids))

    def embeddings(self, inp):
        """The embedding layer on padded token ids: word + position + token-type embeddings,
        layer-normed ([n, L, dim])."""
        F = self._torch.nn.functional
        w = self.w
        x = (F.embedding(inp, w["embeddings.word_embeddings.weight"])
             + w["embeddings.position_embeddings.weight"][:inp.shape[1]].unsqueeze(0)
             + w["embeddings.token_type_embeddings.weight"][0])
        return F.layer_norm(x, (self.dim,), w["embeddings.LayerNorm.weight"],
                            w["embeddings.LayerNorm.bias"], self.eps)

    def forward_tensors(self, inp, mask, explicit_attention: bool = False):
        """The encoder on padded tensors (what forensics.search.onnx_embed exports).

        ``explicit_attention``: write attention as softmax(Q K^T / sqrt(d_head) + additive mask) V
        with plain matmuls (the same function) instead of ``scaled_dot_product_attention``: the
        form ONNX Runtime's BERT optimizer recognises and fuses into one ``Attention`` op."""
        torch = self._torch
        F = torch.nn.functional
        w = self.w
        n, L = inp.shape[0], inp.shape[1]
        d, h = self.dim, self.heads
        x = self.embeddings(inp)
        attn_mask = mask[:, None, None, :]          # keys that are real tokens
        if explicit_attention:   # 0 for real keys, a large negative number for pad keys
            add_mask = (1.0 - attn_mask.to(x.dtype)) * -10000.0
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."

            def lin(t, name):
                if self.act_scale is not None:   # SmoothQuant: record or divide by channel scales
                    t = self.act_scale(p + name, t)
                return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

            def split(t):
                return t.view(n, L, h, d // h).transpose(1, 2)

            q, k, v = (split(lin(x, f"attention.self.{s}")) for s in ("query", "key", "value"))
            if explicit_attention:
                s = torch.matmul(q, k.transpose(-1, -2)) / float(d // h) ** 0.5
                a = torch.matmul(torch.softmax(s + add_mask, dim=-1), v)
            else:
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            a = a.transpose(1, 2).reshape(n, L, d)
            x = F.layer_norm(lin(a, "attention.output.dense") + x, (d,),
                             w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], self.eps)
            y = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
            x = F.layer_norm(y + x, (d,), w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], self.eps)
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed in batches of similar token counts (little padding), output in input order."""
        torch = self._torch
        ids = self.token_ids(texts)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        order = length_order(ids)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                out[idx] = self._forward([ids[i] for i in idx]).numpy()
        return out


__all__ = ["MiniBert", "unsupported_reason"]
