"""The NLA checkpoint contract: ``nla_meta.yaml`` sidecars, loaded, checked and written.

Why a module of its own: the sidecar is the only thing that says how an AV or AR checkpoint
must be driven (injection character and slot, scales, templates, layer). Hard-coding any of it
silently produces garbage explanations (all-CJK output, shifted slots), so every field is read
from the sidecar and re-derived from the LIVE tokenizer at load time; a mismatch is an
:class:`NLAContractError` that names the field and what was found instead.

Sidecar variants read (see docs/nla.md): the released schema (``schema_version: 2``, the
extraction layer K as top-level ``extraction_layer_index`` and, on an AR, as
``critic.extraction_layer_index``), the spec's ``ar.num_hidden_layers`` and this project's
``extraction.layer`` (all that are present must agree), and pre-release sidecars that say
``role: actor``/``critic`` and ``prompt_templates.actor``/``critic``: accepted as av/ar, with a
warning recorded on the :class:`Sidecar` (``warnings``) and raised as a Python warning.

Longer than 500 lines because reading, checking and writing the sidecar are one contract: the
writers must derive every pinned id exactly the way the loader re-derives it, so they live
next to each other.

Writers (:func:`write_sidecar`, :func:`write_av`, :func:`write_ar`) produce the released layout
(an ordinary Hugging Face model directory + ``nla_meta.yaml``; for the AR also
``value_head.safetensors``) from ANY causal LM and tokenizer, so checkpoints trained here
(``forensics.nla.train``) load through exactly the same path as released ones.
"""

from __future__ import annotations

import math
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forensics.errors import InputError

SIDECAR = "nla_meta.yaml"
VALUE_HEAD = "value_head.safetensors"

#: Defaults used by the writers when the caller gives none (the released wording).
DEFAULT_AV_TEMPLATE = (
    "Explain what the model is thinking at the marked position. "
    "<concept>{injection_char}</concept>"
)
DEFAULT_AR_TEMPLATE = "Summary of the following text: <text>{explanation}</text> <summary>"
DEFAULT_INJECTION_CHAR = "\u320e"
#: How many trailing AR prompt ids the writer pins as ``critic_suffix_ids``.
CRITIC_SUFFIX_LEN = 3
#: The sidecar schema version the writers produce (the released one).
SCHEMA_VERSION = 2
#: Pre-release names -> released names (roles and ``prompt_templates`` keys).
PRE_RELEASE_ROLES = {"actor": "av", "critic": "ar"}
#: Where a sidecar may record the extraction layer K; all that are present must agree.
LAYER_FIELDS = ("extraction_layer_index", "critic.extraction_layer_index", "ar.num_hidden_layers",
                "extraction.layer")


class NLAContractError(InputError):
    """The checkpoint does not honour its own sidecar (or the sidecar is malformed).

    Exit code 2. The message names the sidecar file and field and says what was found.
    """


def _err(path: Path | str, fld: str, msg: str, hint: str | None = None) -> NLAContractError:
    return NLAContractError(
        f"{path}: {fld}: {msg}",
        hint=hint or "the checkpoint and its nla_meta.yaml disagree; use the tokenizer and "
                     "chat template the NLA was trained with, or re-export the sidecar",
    )


# ---------------------------------------------------------------------------------- dataclass


@dataclass
class Sidecar:
    """A parsed, scale-resolved ``nla_meta.yaml``.

    ``injection_scale``/``mse_scale`` are resolved numbers (``sqrt_d_model`` -> sqrt(d_model));
    None means "do not rescale" (inject raw / score raw). The ``*_raw`` fields keep what the
    file said, for display and for re-writing.
    """

    path: Path
    kind: str
    role: str | None
    d_model: int
    injection_scale: float | None
    injection_scale_raw: Any
    mse_scale: float | None
    mse_scale_raw: Any
    injection_char: str | None
    injection_token_id: int | None
    left_neighbor_id: int | None
    right_neighbor_id: int | None
    critic_suffix_ids: list[int]
    av_template: str | None
    ar_template: str | None
    layer: int | None  # K, from any of LAYER_FIELDS
    raw: dict = field(default_factory=dict)
    schema_version: int | None = None
    warnings: list[str] = field(default_factory=list)  # pre-release names accepted
    layer_fields: list[str] = field(default_factory=list)  # the LAYER_FIELDS that hold K

    def to_json(self) -> dict:
        """JSON-friendly summary (stored in ``nlas.meta``)."""
        return {
            "path": str(self.path), "kind": self.kind, "role": self.role, "d_model": self.d_model,
            "injection_scale": self.injection_scale, "injection_scale_raw": self.injection_scale_raw,
            "mse_scale": self.mse_scale, "mse_scale_raw": self.mse_scale_raw,
            "injection_char": self.injection_char, "injection_token_id": self.injection_token_id,
            "injection_left_neighbor_id": self.left_neighbor_id,
            "injection_right_neighbor_id": self.right_neighbor_id,
            "critic_suffix_ids": self.critic_suffix_ids,
            "av_template": self.av_template, "ar_template": self.ar_template, "layer": self.layer,
            "schema_version": self.schema_version, "warnings": self.warnings,
        }


# ---------------------------------------------------------------------------------- parsing


def resolve_scale(value: Any, d_model: int, where: str = "scale") -> float | None:
    """``sqrt_d_model`` -> sqrt(d_model); a positive number -> itself; null, ``raw`` or ``none``
    -> None (no rescaling), as the reference reads them."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("raw", "none")):
        return None
    if isinstance(value, bool):
        raise _err("nla_meta.yaml", where, f"expected a number, 'sqrt_d_model' or null, found {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise _err("nla_meta.yaml", where, f"must be a positive finite number, found {value!r}")
        return float(value)
    if isinstance(value, str):
        v = value.strip()
        if v == "sqrt_d_model":
            return math.sqrt(d_model)
        try:
            f = float(v)
        except ValueError:
            raise _err("nla_meta.yaml", where,
                       f"expected a number, 'sqrt_d_model' or null, found {value!r}") from None
        return resolve_scale(f, d_model, where)
    raise _err("nla_meta.yaml", where, f"expected a number, 'sqrt_d_model' or null, found {value!r}")


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    return p / SIDECAR if p.is_dir() else p


def parse_sidecar(path: str | Path, role: str | None = None) -> Sidecar:
    """Parse and type-check a sidecar WITHOUT a tokenizer (see :func:`check_sidecar`).

    ``role`` ('av' or 'ar') is what the caller intends to use it as; a sidecar that says
    otherwise is refused, one that says nothing (older AV sidecars) is accepted.
    """
    p = sidecar_path(path)
    if not p.exists():
        raise NLAContractError(
            f"{p}: missing: an NLA checkpoint directory must contain {SIDECAR}",
            hint="point --av/--ar at the checkpoint directory that holds nla_meta.yaml",
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise _err(p, "yaml", f"not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise _err(p, "(top level)", f"expected a mapping, found {type(data).__name__}")

    def get(dotted: str, default: Any = None) -> Any:
        cur: Any = data
        for part in dotted.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return default
            cur = cur[part]
        return cur

    def need_int(dotted: str, required: bool) -> int | None:
        v = get(dotted)
        if v is None:
            if required:
                raise _err(p, dotted, "required field is missing")
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise _err(p, dotted, f"expected an integer, found {v!r}")
        return v

    notes: list[str] = []

    def pre_release(msg: str) -> None:
        notes.append(msg)
        _warnings.warn(f"{p}: {msg}", UserWarning, stacklevel=3)

    kind = get("kind")
    if kind != "nla_model":
        raise _err(p, "kind", f"expected 'nla_model', found {kind!r}")
    schema = need_int("schema_version", False)
    file_role = get("role")
    if file_role in PRE_RELEASE_ROLES:
        pre_release(f"role: {file_role!r} is the pre-release name of {PRE_RELEASE_ROLES[file_role]!r}; "
                    "read as such")
        file_role = PRE_RELEASE_ROLES[file_role]
    if file_role is not None and file_role not in ("av", "ar"):
        raise _err(p, "role", f"expected 'av' or 'ar' (pre-release: 'actor' or 'critic'), found {file_role!r}")
    if role is not None and file_role is not None and file_role != role:
        raise _err(p, "role", f"this directory is used as the {role.upper()} but its sidecar says "
                              f"role: {file_role}", hint="swap --av and --ar?")
    eff_role = file_role or role
    d_model = need_int("d_model", True)
    if d_model <= 0:
        raise _err(p, "d_model", f"must be positive, found {d_model}")
    inj_raw = get("extraction.injection_scale")
    mse_raw = get("extraction.mse_scale", "sqrt_d_model")
    inj = resolve_scale(inj_raw, d_model, "extraction.injection_scale")
    mse = resolve_scale(mse_raw, d_model, "extraction.mse_scale")

    is_av = eff_role == "av"
    is_ar = eff_role == "ar"
    char = get("tokens.injection_char")
    if is_av:
        if not isinstance(char, str) or not char:
            raise _err(p, "tokens.injection_char", f"required single character, found {char!r}")
    tok_id = need_int("tokens.injection_token_id", is_av)
    left = need_int("tokens.injection_left_neighbor_id", is_av)
    right = need_int("tokens.injection_right_neighbor_id", is_av)
    suffix = get("tokens.critic_suffix_ids") or []
    if not isinstance(suffix, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in suffix):
        raise _err(p, "tokens.critic_suffix_ids", f"expected a list of integers, found {suffix!r}")
    if is_ar and not suffix:
        raise _err(p, "tokens.critic_suffix_ids", "required for an AR sidecar, missing or empty")
    av_t = get("prompt_templates.av")
    ar_t = get("prompt_templates.ar")
    for old, new in PRE_RELEASE_ROLES.items():
        if get(f"prompt_templates.{new}") is None and get(f"prompt_templates.{old}") is not None:
            pre_release(f"prompt_templates.{old} is the pre-release name of prompt_templates.{new}; "
                        "read as such")
            if new == "av":
                av_t = get(f"prompt_templates.{old}")
            else:
                ar_t = get(f"prompt_templates.{old}")
    if is_av:
        if not isinstance(av_t, str) or "{injection_char}" not in av_t:
            raise _err(p, "prompt_templates.av", f"must be a string containing '{{injection_char}}', found {av_t!r}")
    if is_ar:
        if not isinstance(ar_t, str) or "{explanation}" not in ar_t:
            raise _err(p, "prompt_templates.ar", f"must be a string containing '{{explanation}}', found {ar_t!r}")
    layers = [(f, v) for f in LAYER_FIELDS if (v := need_int(f, False)) is not None]
    if is_ar and not layers:
        raise _err(p, "extraction_layer_index", "required for an AR sidecar (the extraction layer K; "
                                                "or ar.num_hidden_layers), missing")
    for f, v in layers:
        if v < 0:
            raise _err(p, f, f"must be >= 0, found {v}")
        if v != layers[0][1]:
            raise _err(p, f, f"says K={v}, {layers[0][0]} says K={layers[0][1]}")
    layer = layers[0][1] if layers else None
    return Sidecar(path=p, kind=kind, role=eff_role, d_model=d_model, injection_scale=inj,
                   injection_scale_raw=inj_raw, mse_scale=mse, mse_scale_raw=mse_raw,
                   injection_char=char, injection_token_id=tok_id, left_neighbor_id=left,
                   right_neighbor_id=right, critic_suffix_ids=list(suffix), av_template=av_t,
                   ar_template=ar_t, layer=layer, raw=data, schema_version=schema, warnings=notes,
                   layer_fields=[f for f, _ in layers])


# ---------------------------------------------------------------------------------- tokenizer checks


def chat_prompt_ids(tokenizer, user_message: str) -> list[int]:
    """One user turn through the chat template, tokenized in ONE step.

    ``return_dict=False``: transformers 5 otherwise returns a BatchEncoding, and code that
    iterates it finds no injection slot. Tokenizing the rendered string a second time would
    add a second BOS and shift every position by one, hence one step.
    """
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], tokenize=True,
        add_generation_prompt=True, return_dict=False,
    )
    if hasattr(ids, "input_ids"):  # defensive: some versions still hand back an encoding
        ids = ids["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def av_prompt_ids(sc: Sidecar, tokenizer) -> list[int]:
    """The canonical AV prompt ids for this sidecar and tokenizer."""
    return chat_prompt_ids(tokenizer, sc.av_template.format(injection_char=sc.injection_char))


def find_injection_slot(ids: list[int], token_id: int, left: int, right: int,
                        where: Path | str = "nla_meta.yaml") -> int:
    """Index of the ONE position holding ``token_id`` between the two neighbour ids.

    Zero or several matches is an error naming the field that disagrees: a template or chat
    template drift moves the slot and the vector would be injected next to the concept.
    """
    hits = [i for i, t in enumerate(ids) if t == token_id]
    if not hits:
        raise _err(where, "tokens.injection_token_id",
                   f"id {token_id} does not occur in the tokenized AV prompt ({len(ids)} tokens)")
    ok = [i for i in hits if 0 < i < len(ids) - 1 and ids[i - 1] == left and ids[i + 1] == right]
    if len(ok) == 1:
        return ok[0]
    if not ok:
        i = hits[0]
        found_l = ids[i - 1] if i > 0 else None
        found_r = ids[i + 1] if i + 1 < len(ids) else None
        if found_l != left:
            raise _err(where, "tokens.injection_left_neighbor_id",
                       f"sidecar says {left}, the live tokenizer puts {found_l} left of the slot "
                       f"(position {i})")
        raise _err(where, "tokens.injection_right_neighbor_id",
                   f"sidecar says {right}, the live tokenizer puts {found_r} right of the slot "
                   f"(position {i})")
    raise _err(where, "tokens.injection_token_id",
               f"{len(ok)} positions match the injection id and both neighbours ({ok}); "
               "exactly one is required")


def _single_token_id(tokenizer, char: str) -> int | None:
    ids = tokenizer.encode(char, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def check_av_sidecar(sc: Sidecar, tokenizer) -> int:
    """Check an AV sidecar against the live tokenizer; return the verified slot index."""
    where = sc.path
    tid = _single_token_id(tokenizer, sc.injection_char)
    if tid is None:
        n = len(tokenizer.encode(sc.injection_char, add_special_tokens=False))
        raise _err(where, "tokens.injection_char",
                   f"{sc.injection_char!r} (U+{ord(sc.injection_char[0]):04X}) is {n} tokens in the "
                   "live tokenizer; it must be exactly one")
    if tid != sc.injection_token_id:
        raise _err(where, "tokens.injection_token_id",
                   f"sidecar says {sc.injection_token_id}, the live tokenizer encodes "
                   f"{sc.injection_char!r} as {tid}")
    ids = av_prompt_ids(sc, tokenizer)
    return find_injection_slot(ids, sc.injection_token_id, sc.left_neighbor_id,
                               sc.right_neighbor_id, where)


def ar_prompt_ids(sc: Sidecar, tokenizer, explanation: str) -> list[int]:
    """The AR input for one explanation: template filled, tokenized WITH special tokens."""
    return [int(i) for i in tokenizer(sc.ar_template.format(explanation=explanation),
                                      add_special_tokens=True)["input_ids"]]


def check_ar_sidecar(sc: Sidecar, tokenizer) -> None:
    """Every AR prompt must end with ``critic_suffix_ids``; check with a probe explanation."""
    ids = ar_prompt_ids(sc, tokenizer, "The text is a probe.")
    n = len(sc.critic_suffix_ids)
    if ids[-n:] != sc.critic_suffix_ids:
        raise _err(sc.path, "tokens.critic_suffix_ids",
                   f"sidecar says {sc.critic_suffix_ids}, the live tokenizer ends the AR prompt "
                   f"with {ids[-n:]}")


def load_sidecar(path: str | Path, tokenizer=None, role: str | None = None) -> Sidecar:
    """Parse a sidecar and, when a tokenizer is given, check it against that tokenizer."""
    sc = parse_sidecar(path, role)
    if tokenizer is not None:
        if sc.role == "av" or (sc.role is None and sc.injection_char):
            check_av_sidecar(sc, tokenizer)
        if sc.role == "ar":
            check_ar_sidecar(sc, tokenizer)
    return sc


def load_tokenizer(path: str | Path):
    """Load a checkpoint's tokenizer from disk (never from a hub)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many types
        raise NLAContractError(f"{path}: tokenizer: cannot load ({type(e).__name__}: {e})",
                               hint="the directory must hold tokenizer files (tokenizer.json ...)") from None


# ---------------------------------------------------------------------------------- writers


def write_sidecar(out_dir: str | Path, *, role: str, tokenizer, d_model: int,
                  injection_scale: Any = "sqrt_d_model", mse_scale: Any = "sqrt_d_model",
                  layer: int | None = None, injection_char: str = DEFAULT_INJECTION_CHAR,
                  av_template: str = DEFAULT_AV_TEMPLATE, ar_template: str = DEFAULT_AR_TEMPLATE,
                  extra: dict | None = None) -> Path:
    """Write ``nla_meta.yaml`` for ANY tokenizer, deriving every pinned id from it.

    The ids are computed here, from the tokenizer that ships with the checkpoint, exactly the
    way :func:`load_sidecar` re-derives them, so a written checkpoint always loads. ``role``
    'ar' needs ``layer`` (K; the AR keeps K+1 blocks).
    """
    if role not in ("av", "ar"):
        raise ValueError("role must be 'av' or 'ar'")
    tid = _single_token_id(tokenizer, injection_char)
    if tid is None:
        raise NLAContractError(
            f"tokens.injection_char: {injection_char!r} is not a single token in this tokenizer",
            hint="pick a rare character the tokenizer keeps whole (Qwen: U+320E, Gemma: U+321C) "
                 "or add it as a token")
    prompt = chat_prompt_ids(tokenizer, av_template.format(injection_char=injection_char))
    hits = [i for i, t in enumerate(prompt) if t == tid]
    if len(hits) != 1 or hits[0] == 0 or hits[0] == len(prompt) - 1:
        raise NLAContractError(f"prompt_templates.av: the injection character occurs {len(hits)} "
                               "times (or at an edge) in the tokenized AV prompt; need exactly one inside")
    slot = hits[0]
    probe = tokenizer(ar_template.format(explanation="The text is a probe."),
                      add_special_tokens=True)["input_ids"]
    meta: dict[str, Any] = {
        "kind": "nla_model",
        "schema_version": SCHEMA_VERSION,
        "role": role,
        "d_model": int(d_model),
        "extraction": {"injection_scale": injection_scale, "mse_scale": mse_scale},
        "tokens": {
            "injection_char": injection_char,
            "injection_token_id": tid,
            "injection_left_neighbor_id": int(prompt[slot - 1]),
            "injection_right_neighbor_id": int(prompt[slot + 1]),
            "critic_suffix_ids": [int(i) for i in probe[-CRITIC_SUFFIX_LEN:]],
        },
        "prompt_templates": {"av": av_template, "ar": ar_template},
    }
    if layer is not None:
        meta["extraction_layer_index"] = int(layer)
        meta["extraction"]["layer"] = int(layer)
        if role == "ar":
            meta["ar"] = {"num_hidden_layers": int(layer)}
            meta["critic"] = {"extraction_layer_index": int(layer)}
    elif role == "ar":
        raise ValueError("an AR sidecar needs layer=K")
    if extra:
        meta.update(extra)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = out / SIDECAR
    p.write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


def write_av(out_dir: str | Path, model, tokenizer, *, layer: int | None = None,
             injection_scale: Any = "sqrt_d_model", mse_scale: Any = "sqrt_d_model",
             injection_char: str = DEFAULT_INJECTION_CHAR, av_template: str = DEFAULT_AV_TEMPLATE,
             ar_template: str = DEFAULT_AR_TEMPLATE, extra: dict | None = None) -> Path:
    """Save an AV (any HF causal LM + its tokenizer) in the released layout.

    Writes safetensors weights, config, tokenizer files and ``nla_meta.yaml`` (role av).
    ``model.config.hidden_size`` is recorded as ``d_model``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    write_sidecar(out, role="av", tokenizer=tokenizer, d_model=_hidden_size(model.config),
                  injection_scale=injection_scale, mse_scale=mse_scale, layer=layer,
                  injection_char=injection_char, av_template=av_template,
                  ar_template=ar_template, extra=extra)
    return out


def write_ar(out_dir: str | Path, model, value_head, tokenizer, *, layer: int,
             mse_scale: Any = "sqrt_d_model", injection_scale: Any = "sqrt_d_model",
             injection_char: str = DEFAULT_INJECTION_CHAR, av_template: str = DEFAULT_AV_TEMPLATE,
             ar_template: str = DEFAULT_AR_TEMPLATE, extra: dict | None = None) -> Path:
    """Save an AR in the released layout: first K+1 blocks, value head, sidecar.

    ``model`` may be a full causal LM or base model with any number of blocks >= K+1; it is
    cut to its first ``layer + 1`` blocks here (config ``num_hidden_layers = K+1``) and saved
    as a base model (no LM head). ``value_head`` is an ``nn.Linear(d, d, bias=False)`` or a
    [d, d] weight tensor, stored as ``value_head.safetensors`` key ``weight``.
    """
    import copy

    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = getattr(model, "model", None) if hasattr(model, "lm_head") else model
    base = getattr(base, "language_model", base)  # multimodal layouts: the text decoder
    if base is None or not hasattr(base, "layers"):
        raise ValueError("write_ar needs a decoder model with .layers (or a CausalLM wrapping one)")
    n_keep = layer + 1
    if len(base.layers) < n_keep:
        raise ValueError(f"model has {len(base.layers)} blocks; the AR needs K+1 = {n_keep}")
    trunc = copy.deepcopy(base)
    trunc.layers = torch.nn.ModuleList(list(trunc.layers)[:n_keep])
    trunc.config.num_hidden_layers = n_keep
    for attr in ("layer_types",):  # per-layer lists must match the block count
        v = getattr(trunc.config, attr, None)
        if isinstance(v, list):
            setattr(trunc.config, attr, v[:n_keep])
    trunc.save_pretrained(str(out), safe_serialization=True)
    w = value_head.weight if hasattr(value_head, "weight") else value_head
    w = w.detach().to(torch.float32).contiguous().cpu()
    d = _hidden_size(trunc.config)
    if tuple(w.shape) != (d, d):
        raise ValueError(f"value head must be [{d}, {d}], got {tuple(w.shape)}")
    save_file({"weight": w}, str(out / VALUE_HEAD))
    tokenizer.save_pretrained(str(out))
    write_sidecar(out, role="ar", tokenizer=tokenizer, d_model=d, injection_scale=injection_scale,
                  mse_scale=mse_scale, layer=layer, injection_char=injection_char,
                  av_template=av_template, ar_template=ar_template, extra=extra)
    return out


def _hidden_size(config) -> int:
    tc = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(tc.hidden_size)
