"""Residual-stream activations of a target causal LM at layer K, at chosen token positions.

Conventions (recorded on every :class:`Activation` and every stored explanation):

- ``hidden_state_index``: which entry of HF ``output_hidden_states`` is "layer K". Default
  ``K + 1`` (= the output of block K), the convention of the released worked transcripts
  ("layer 20 residual stream = HF hidden_states[21]"). The quick-start snippet of the same
  release indexes ``hidden_states[K]``; pass ``hidden_state_index=K`` for that one.
  ``hidden_state_index = h >= 1`` is read as the RAW output of block ``h - 1`` (a forward hook
  on ``layers[h - 1]``), never from ``output_hidden_states``: HF returns its last entry after
  the final norm, so for K = the last block ``hidden_states[K + 1]`` is not the residual stream
  the reference extracts.
- A (prompt, reply) pair is the prompt through the chat template (one step, generation
  prompt added) followed by the reply's tokens, i.e. exactly what the model saw while
  replying. A plain string is tokenized as is (with special tokens).
- Positions: ``token:N`` (index into the full sequence; negative counts from the end),
  ``last_prompt``, ``first_reply``, ``every_reply`` (expands to ``reply:0``, ``reply:1`` ...).

Why batching is careful: with left padding, HF forward() numbers positions from the first
(pad) column, so real tokens get shifted rotary positions; we pass explicit ``position_ids``
derived from the attention mask, so batch results equal single-sequence results whichever
side is padded (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from forensics.errors import InputError

POSITION_KINDS = ("last_prompt", "first_reply", "every_reply", "token:N")
EARLY_TOKENS = 10
OUTLIER_FACTOR = 4.0


@dataclass
class Activation:
    """One vector: which item, which position, the vector (fp32, CPU) and diagnostics.

    ``vector`` is None when the hidden state was NaN/Inf (flag ``non_finite``); such
    activations must not be explained.
    """

    item: int
    position: str
    token_index: int
    token: str
    vector: "object | None"  # torch.FloatTensor [d]
    norm: float
    flags: list[str] = field(default_factory=list)
    layer: int = 0
    hidden_state_index: int = 0

    @property
    def ok(self) -> bool:
        return self.vector is not None


def parse_positions(spec: str | Sequence[str] | None) -> list[str]:
    """Normalise ``--position`` values ('last_prompt,first_reply' or a list)."""
    if spec is None:
        return ["last_prompt"]
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for s in items:
        for p in str(s).split(","):
            p = p.strip()
            if not p:
                continue
            if p in ("last_prompt", "first_reply", "every_reply"):
                out.append(p)
            elif p.startswith("token:"):
                try:
                    int(p[6:])
                except ValueError:
                    raise InputError(f"--position: {p!r}: token:N needs an integer N") from None
                out.append(p)
            elif p.startswith("reply:"):
                try:
                    int(p[6:])
                except ValueError:
                    raise InputError(f"--position: {p!r}: reply:N needs an integer N") from None
                out.append(p)
            else:
                raise InputError(f"--position: unknown position {p!r}",
                                 hint="use last_prompt, first_reply, every_reply, reply:N or token:N")
    return list(dict.fromkeys(out)) or ["last_prompt"]


def encode_item(tokenizer, item) -> tuple[list[int], int]:
    """Token ids for one item and the prompt length (= index of the first reply token).

    ``item`` is a string (no reply: prompt length = whole sequence) or a (prompt, reply) pair.
    Pairs use the chat template when the tokenizer has one, else plain concatenation.
    """
    if isinstance(item, str):
        ids = tokenizer(item, add_special_tokens=True)["input_ids"]
        return [int(i) for i in ids], len(ids)
    prompt, reply = item
    prompt = prompt or ""
    reply = reply or ""
    if getattr(tokenizer, "chat_template", None):
        from forensics.nla.meta import chat_prompt_ids

        p_ids = chat_prompt_ids(tokenizer, prompt)
    else:
        p_ids = [int(i) for i in tokenizer(prompt, add_special_tokens=True)["input_ids"]]
    r_ids = [int(i) for i in tokenizer(reply, add_special_tokens=False)["input_ids"]] if reply else []
    return p_ids + r_ids, len(p_ids)


def resolve_positions(positions: Sequence[str], n_tokens: int, prompt_len: int) -> list[tuple[str, int]]:
    """(label, index) pairs for one sequence; positions that do not exist are skipped.

    ``first_reply``/``reply:N`` need a reply; ``token:N`` out of range is skipped (a short
    sample has no token 500) rather than failing the batch.
    """
    out: list[tuple[str, int]] = []
    n_reply = n_tokens - prompt_len
    for p in positions:
        if p == "last_prompt":
            if prompt_len > 0:
                out.append((p, prompt_len - 1))
        elif p == "first_reply":
            if n_reply > 0:
                out.append((p, prompt_len))
        elif p == "every_reply":
            out.extend((f"reply:{j}", prompt_len + j) for j in range(n_reply))
        elif p.startswith("reply:"):
            j = int(p[6:])
            if 0 <= j < n_reply:
                out.append((p, prompt_len + j))
        elif p.startswith("token:"):
            j = int(p[6:])
            idx = j if j >= 0 else n_tokens + j
            if 0 <= idx < n_tokens:
                out.append((p, idx))
    seen: set[tuple[str, int]] = set()
    return [x for x in out if not (x in seen or seen.add(x))]


def default_hidden_state_index(layer: int) -> int:
    """The transcripts' convention: layer K = ``hidden_states[K + 1]`` (output of block K)."""
    return layer + 1


def num_layers(model) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(cfg.num_hidden_layers)


def extract_activations(model, tokenizer, items: Sequence, positions: Sequence[str] | str, layer: int,
                        hidden_state_index: int | None = None, batch_size: int = 8,
                        padding_side: str = "right", early_tokens: int = EARLY_TOKENS,
                        outlier_factor: float = OUTLIER_FACTOR, device=None) -> list[Activation]:
    """Run the target on ``items`` and return one :class:`Activation` per (item, position).

    ``items``: strings or (prompt, reply) pairs. ``positions``: see :func:`parse_positions`.
    ``hidden_state_index`` defaults to ``layer + 1``. Vectors are fp32 on CPU; norms are
    computed in fp32. Flags: ``early_position`` (index < ``early_tokens``), ``norm_outlier``
    (norm > ``outlier_factor`` x the median token norm of the same sequence at that layer),
    ``non_finite`` (NaN/Inf: vector None). Sequences are processed in batches of
    ``batch_size``, padded on ``padding_side``; results do not depend on either.
    """
    import torch

    positions = parse_positions(positions)
    L = num_layers(model)
    if not 0 <= layer < L:
        raise InputError(f"--layer {layer}: the target has {L} blocks (0..{L - 1})")
    hsi = default_hidden_state_index(layer) if hidden_state_index is None else int(hidden_state_index)
    if not 0 <= hsi <= L:
        raise InputError(f"--hidden-state-index {hsi}: the target has hidden_states[0..{L}]")
    if padding_side not in ("left", "right"):
        raise ValueError("padding_side must be 'left' or 'right'")
    dev = device or next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Causality makes two savings exact: a sequence is cut after its last requested position
    # (for last_prompt the reply is never run), and the forward stops after block hsi-1.
    work = []
    for i, it in enumerate(items):
        ids, plen = encode_item(tokenizer, it)
        want = resolve_positions(positions, len(ids), plen)
        if want:
            work.append((i, ids[:max(j for _, j in want) + 1], want))
    out: list[Activation] = []
    for start in range(0, len(work), max(1, batch_size)):
        chunk = work[start:start + batch_size]
        maxlen = max(len(ids) for _, ids, _ in chunk)
        input_ids = torch.full((len(chunk), maxlen), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), maxlen), dtype=torch.long)
        offsets = []
        for r, (_, ids, _) in enumerate(chunk):
            off = maxlen - len(ids) if padding_side == "left" else 0
            offsets.append(off)
            input_ids[r, off:off + len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[r, off:off + len(ids)] = 1
        pos_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        hs = _hidden_states(model, input_ids.to(dev), mask.to(dev), pos_ids.to(dev), hsi, L)
        hs = hs.to(torch.float32).cpu()
        for r, (item, ids, want) in enumerate(chunk):
            off = offsets[r]
            seq = hs[r, off:off + len(ids)]
            norms = seq.norm(dim=-1)
            for label, idx in want:
                v = seq[idx].clone()
                flags: list[str] = []
                finite = bool(torch.isfinite(v).all())
                nrm = float(v.norm()) if finite else float("nan")
                if not finite:
                    flags.append("non_finite")
                if idx < early_tokens:
                    flags.append("early_position")
                if finite:
                    # median over the causal prefix: independent of what else was requested
                    prefix = norms[:idx + 1]
                    prefix = prefix[torch.isfinite(prefix)]
                    median = float(prefix.median()) if prefix.numel() else float("nan")
                    if math.isfinite(median) and median > 0 and nrm > outlier_factor * median:
                        flags.append("norm_outlier")
                out.append(Activation(
                    item=item, position=label, token_index=idx,
                    token=tokenizer.convert_ids_to_tokens(ids[idx]),
                    vector=v if finite else None, norm=nrm, flags=flags, layer=layer,
                    hidden_state_index=hsi))
    return out


class _Stop(Exception):
    pass


def _decoder_layers(model):
    """The decoder blocks: ``model.model.layers`` (causal LMs), ``model.layers`` (base models)
    or ``model.model.language_model.layers`` (multimodal layouts such as Gemma-3's)."""
    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None) if inner is not None else None
    for cand in (inner, model, lm, getattr(lm, "model", None)):
        layers = getattr(cand, "layers", None) if cand is not None else None
        if layers is not None and hasattr(layers, "__len__"):
            return layers
    return None


def _hidden_states(model, input_ids, mask, pos_ids, hsi: int, n_layers: int):
    """The raw output of block ``hsi - 1`` (``hsi >= 1``): a forward hook on that block captures
    it and aborts the rest of the pass. ``hsi = 0`` (the embeddings) is ``hidden_states[0]``
    of a full pass. The last block is hooked too: HF's last ``hidden_states`` entry has the
    final norm applied, which is not the residual stream."""
    import torch

    layers = _decoder_layers(model)
    if hsi >= 1 and (layers is None or len(layers) != n_layers):
        from forensics.errors import BackendError

        raise BackendError(f"{type(model).__name__}: cannot find its {n_layers} decoder blocks to "
                           "hook; the raw block output cannot be read",
                           hint="an unsupported architecture layout")
    if hsi >= 1:
        got: dict = {}

        def hook(_mod, _inp, output):
            got["h"] = output[0] if isinstance(output, tuple) else output
            raise _Stop

        handle = layers[hsi - 1].register_forward_hook(hook)
        try:
            with torch.no_grad():
                model(input_ids=input_ids, attention_mask=mask, position_ids=pos_ids, use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        return got["h"]
    with torch.no_grad():
        res = model(input_ids=input_ids, attention_mask=mask, position_ids=pos_ids,
                    output_hidden_states=True, use_cache=False)
    return res.hidden_states[hsi]


def text_causal_lm(model):
    """The text-only causal LM inside a multimodal checkpoint, sharing its weights.

    Released Gemma-3 checkpoints load as ``Gemma3ForConditionalGeneration`` (language model +
    vision tower), whose ``generate`` refuses ``inputs_embeds``. The AV only needs the
    language model: this builds the text family's causal-LM class (``Gemma3ForCausalLM`` for
    a ``gemma3_text`` config) around the SAME decoder and LM head modules (no copy, no new
    weights). Any other model is returned unchanged.
    """
    import torch
    from transformers import AutoModelForCausalLM

    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None) if inner is not None else None
    head = getattr(model, "lm_head", None)
    if lm is None or head is None or not hasattr(model.config, "get_text_config"):
        return model
    tcfg = model.config.get_text_config()
    if tcfg is model.config:
        return model
    cls = AutoModelForCausalLM._model_mapping.get(type(tcfg), None)  # the text family's causal LM
    if cls is None:
        from forensics.errors import BackendError

        raise BackendError(f"{type(model).__name__}: no text-only causal LM class for "
                           f"{type(tcfg).__name__}; cannot generate from embeddings")
    with torch.device("meta"):
        text = cls(tcfg)
    text.model = lm
    text.lm_head = head
    left = [n for n, p in text.named_parameters() if p.is_meta]
    if left:
        from forensics.errors import BackendError

        raise BackendError(f"{type(model).__name__}: text-only view left parameters unset: {left[:3]}")
    text.generation_config = model.generation_config
    text.eval()
    return text


def load_causal_lm(path, device: str | None = None, dtype: str | None = None):
    """Load a local HF causal LM safely: safetensors only, no remote code, no downloads."""
    import torch
    from transformers import AutoModelForCausalLM

    from forensics.errors import BackendError

    kw = {}
    if dtype:
        kw["dtype"] = getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), trust_remote_code=False,
                                                     use_safetensors=True, local_files_only=True, **kw)
    except Exception as e:  # noqa: BLE001
        raise BackendError(f"{path}: cannot load the model ({type(e).__name__}: {e})",
                           hint="a local Hugging Face directory with config.json and *.safetensors") from None
    model.eval()
    if device:
        model.to(device)
    return model


def pick_device(device: str | None = None) -> str:
    """Explicit device, else CUDA when present, else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
