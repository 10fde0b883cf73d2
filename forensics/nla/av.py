"""The activation verbalizer (AV): one residual-stream vector in, one explanation out.

The recipe is the checkpoint contract (``nla_meta.yaml``), step by step:

1. AV template with the injection character, as ONE user turn, through the chat template in
   one step (``return_dict=False``; no second BOS).
2. Token embeddings times the architecture's embedding scale (Gemma: sqrt(hidden_size),
   applied inside its embedding forward, which ``inputs_embeds`` bypasses; others 1).
3. The vector rescaled to ``injection_scale`` (fp32 norm; null = inject raw).
4. Written over the ONE position holding the injection id between the verified neighbours.
5. Generation from embeddings only (local / SGLang / vLLM backend), greedy unless a
   :class:`~forensics.nla.backends.Sampling` asks for samples.
6. Text between ``<explanation>`` and ``</explanation>``; no closing tag = truncated.

A custom AV prompt (``av_prompt``) is a user message holding the marker ``<INJECT>`` where
the vector goes, as in the reference client; the marker becomes the injection character and
the slot must still sit between the sidecar's neighbour ids (one match, else an error).

What the AR reads (:func:`ar_text`): ``raw`` (the default, the reference's behaviour) is the
text between the tags when both are present and the whole raw output otherwise (untagged or
truncated output is scored as generated); ``stripped`` is the tag-stripped text that is stored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from forensics.errors import InputError
from forensics.nla.backends import STOP, Backend, Generation, Sampling, make_backend
from forensics.nla.meta import (NLAContractError, Sidecar, av_prompt_ids, chat_prompt_ids, check_av_sidecar,
                                find_injection_slot, load_tokenizer, parse_sidecar)

OPEN = "<explanation>"
CLOSE = "</explanation>"
INJECT_MARKER = "<INJECT>"
AR_INPUTS = ("raw", "stripped")
_TAGGED = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u3200-\u32ff]")
_LETTER = re.compile(r"\w", re.UNICODE)


@dataclass
class Explanation:
    """One AV decode. ``text`` is the part between the tags (stripped); ``raw_output`` all
    generated text; ``truncated`` = no closing tag; ``flags`` e.g. ``cjk_output``
    (usually a failed injection), ``no_open_tag``, ``empty``."""

    text: str
    raw_output: str
    truncated: bool
    n_tokens: int
    finish_reason: str
    flags: list[str] = field(default_factory=list)
    sample_index: int = 0


def ar_text(raw_output: str, text: str, mode: str = "raw") -> str:
    """What the AR scores for one decode: ``raw`` = the text between the first complete tag
    pair (stripped) or, without one, the raw output as generated (the reference client's
    rule); ``stripped`` = ``text``, the tag-stripped explanation that is stored."""
    if mode == "stripped":
        return text
    if mode != "raw":
        raise InputError(f"--ar-input {mode!r}: choose one of {', '.join(AR_INPUTS)}")
    m = _TAGGED.search(raw_output)
    return m.group(1).strip() if m else raw_output


def parse_explanation(raw: str) -> tuple[str, bool, list[str]]:
    """(text, truncated, flags) from raw AV output. Pure function, tested directly."""
    flags: list[str] = []
    i = raw.find(OPEN)
    if i >= 0:
        body = raw[i + len(OPEN):]
    else:
        body = raw
        flags.append("no_open_tag")
    j = body.find(CLOSE)
    truncated = j < 0
    text = (body if truncated else body[:j]).strip()
    if not text:
        flags.append("empty")
    else:
        letters = len(_LETTER.findall(text))
        if letters and len(_CJK.findall(text)) / letters > 0.5:
            flags.append("cjk_output")
    return text, truncated, flags


def embed_scale_for(config, embedding=None) -> float:
    """The factor the architecture applies to token embeddings inside its forward.

    Prefers the embedding module's own ``embed_scale`` (Gemma's scaled embedding) when a
    model is loaded; otherwise decides from ``model_type`` (gemma* -> sqrt(hidden_size)),
    rounded to the weight dtype the way Gemma's forward does it.
    """
    import torch

    if embedding is not None and getattr(embedding, "embed_scale", None) is not None:
        s = embedding.embed_scale
        if isinstance(s, torch.Tensor):
            return float(s.to(embedding.weight.dtype))
        return float(s)
    tc = config.get_text_config() if hasattr(config, "get_text_config") else config
    mt = str(getattr(tc, "model_type", "") or getattr(config, "model_type", ""))
    if mt.startswith("gemma"):
        dt = getattr(tc, "dtype", None) or getattr(tc, "torch_dtype", None) or torch.float32
        if isinstance(dt, str):
            dt = getattr(torch, dt, torch.float32)
        return float(torch.tensor(math.sqrt(tc.hidden_size)).to(dt))
    return 1.0


def load_embedding_matrix(path: str | Path):
    """The input embedding matrix from a checkpoint's safetensors, without building the model
    (HTTP backends need only this locally)."""
    import json as _json

    from safetensors import safe_open

    p = Path(path)
    files = sorted(p.glob("*.safetensors"))
    idx = p / "model.safetensors.index.json"
    cands = ("model.embed_tokens.weight", "embed_tokens.weight",
             "model.language_model.embed_tokens.weight", "language_model.model.embed_tokens.weight")
    if idx.exists():
        wm = _json.loads(idx.read_text())["weight_map"]
        for k in cands:
            if k in wm:
                with safe_open(str(p / wm[k]), framework="pt") as f:
                    return f.get_tensor(k)
    for fp in files:
        if fp.name == "value_head.safetensors":
            continue
        with safe_open(str(fp), framework="pt") as f:
            keys = set(f.keys())
            for k in cands:
                if k in keys:
                    return f.get_tensor(k)
    raise NLAContractError(f"{p}: no input embedding matrix (embed_tokens.weight) in the safetensors files")


class AV:
    """A loaded, contract-checked activation verbalizer.

    Create with :meth:`AV.load`; call :meth:`explain` with a list of vectors. Notebook use::

        av = AV.load("ckpt/av")                       # local transformers, CPU or CUDA
        av = AV.load("ckpt/av", backend="sglang", server="http://127.0.0.1:30000")
        exps = av.explain([v1, v2])                   # -> list[Explanation]
    """

    def __init__(self, path: Path, sidecar: Sidecar, tokenizer, embed_weight, embed_scale: float,
                 backend: Backend, config, max_new_tokens: int = 200, av_prompt: str | None = None):
        import torch

        self.path = Path(path)
        self.sidecar = sidecar
        self.tokenizer = tokenizer
        self.embed_weight = embed_weight
        self.embed_scale = float(embed_scale)
        self.backend = backend
        self.config = config
        self.max_new_tokens = max_new_tokens
        self.av_prompt = av_prompt
        self.slot = check_av_sidecar(sidecar, tokenizer)
        if av_prompt is None:
            self.prompt_ids = av_prompt_ids(sidecar, tokenizer)
        else:
            if av_prompt.count(INJECT_MARKER) != 1:
                raise InputError(f"--av-prompt must contain the marker {INJECT_MARKER} exactly once "
                                 f"(found {av_prompt.count(INJECT_MARKER)})",
                                 hint="e.g. 'What is: <concept><INJECT></concept>?'")
            self.prompt_ids = chat_prompt_ids(
                tokenizer, av_prompt.replace(INJECT_MARKER, sidecar.injection_char))
            try:
                self.slot = find_injection_slot(self.prompt_ids, sidecar.injection_token_id,
                                                sidecar.left_neighbor_id, sidecar.right_neighbor_id,
                                                "--av-prompt")
            except NLAContractError as e:
                raise InputError(f"{e}", hint="keep the marker inside the markup the AV was trained "
                                               "with, e.g. <concept><INJECT></concept>") from None
        ids = torch.tensor(self.prompt_ids, dtype=torch.long, device=embed_weight.device)
        # embeddings in fp32 for the injection; cast to the model dtype at generation
        base = embed_weight[ids].to(torch.float32)
        self._prompt_embeds = base * torch.tensor(self.embed_scale, dtype=embed_weight.dtype).float()
        d = embed_weight.shape[1]
        if d != sidecar.d_model:
            raise NLAContractError(f"{sidecar.path}: d_model: sidecar says {sidecar.d_model}, the AV's "
                                   f"embedding width is {d}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: str | Path, backend: str = "local", server: str | None = None,
             device: str | None = None, dtype: str | None = None, server_model: str | None = None,
             max_new_tokens: int = 200, av_prompt: str | None = None) -> "AV":
        """Load sidecar + tokenizer (checked), and the model (local) or only its embedding
        matrix (sglang/vllm)."""
        from transformers import AutoConfig

        from forensics.nla.activations import load_causal_lm, pick_device

        path = Path(path)
        tok = load_tokenizer(path)
        sc = parse_sidecar(path, role="av")
        check_av_sidecar(sc, tok)
        if backend == "local":
            model = load_causal_lm(path, device=pick_device(device), dtype=dtype)
            emb = model.get_input_embeddings()
            be = make_backend("local", model=model, tokenizer=tok)
            return cls(path, sc, tok, emb.weight.detach(), embed_scale_for(model.config, emb), be,
                       model.config, max_new_tokens, av_prompt)
        cfg = AutoConfig.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
        w = load_embedding_matrix(path)
        be = make_backend(backend, server=server, server_model=server_model)
        return cls(path, sc, tok, w, embed_scale_for(cfg), be, cfg, max_new_tokens, av_prompt)

    # ------------------------------------------------------------------ the recipe
    def build_embeds(self, vectors: Sequence) -> "object":
        """[n, L, d] fp32 prompt embeddings with each vector injected at the slot."""
        import torch

        vs = torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(-1).cpu() for v in vectors])
        if vs.shape[1] != self.sidecar.d_model:
            raise InputError(f"vector width {vs.shape[1]} != d_model {self.sidecar.d_model} "
                             f"({self.sidecar.path})")
        if not torch.isfinite(vs).all():
            raise InputError("refusing to inject a vector with NaN/Inf")
        scale = self.sidecar.injection_scale
        if scale is not None:
            norms = vs.norm(dim=-1, keepdim=True)
            if (norms == 0).any():
                raise InputError("refusing to inject a zero vector (cannot rescale)")
            vs = vs * (scale / norms)
        base = self._prompt_embeds.cpu()
        x = base.unsqueeze(0).repeat(vs.shape[0], 1, 1)
        x[:, self.slot, :] = vs
        return x

    def explain(self, vectors: Sequence, batch_size: int = 16, max_new_tokens: int | None = None,
                sampling: Sampling | None = None) -> list[Explanation]:
        """Explain each vector (any width-d array/tensor): ``sampling.n`` explanations per
        vector (greedy: one), vector-major, each with its ``sample_index``."""
        out: list[Explanation] = []
        mnt = max_new_tokens or self.max_new_tokens
        sp = sampling or Sampling()
        for s in range(0, len(vectors), max(1, batch_size)):
            x = self.build_embeds(vectors[s:s + batch_size])
            gens = self.backend.generate(x, mnt, stop=(STOP,), sampling=sp)
            if len(gens) != x.shape[0] * sp.n:
                raise NLAContractError(f"{self.backend.name}: {len(gens)} generations for "
                                       f"{x.shape[0]} prompts x {sp.n} samples")
            out.extend(self._to_explanation(g, i % sp.n) for i, g in enumerate(gens))
        return out

    def _to_explanation(self, g: Generation, sample_index: int = 0) -> Explanation:
        text, truncated, flags = parse_explanation(g.text)
        n = g.n_tokens or (len(self.tokenizer.encode(g.text, add_special_tokens=False)) if g.text else 0)
        return Explanation(text=text, raw_output=g.text, truncated=truncated, n_tokens=n,
                           finish_reason=g.finish_reason, flags=flags, sample_index=sample_index)
