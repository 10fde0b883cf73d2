"""Where the AV generates: in-process transformers, an SGLang server, or a vLLM server.

All three take the SAME input — prompt embeddings already built and injected by
:class:`forensics.nla.av.AV` — and return the same :class:`Generation` objects, so the AV
code and everything downstream are backend-agnostic. Servers receive embeddings only, never
token ids (the injected slot has no token id; sending ids alongside would let the server
re-embed them and silently drop the injection).

- SGLang: ``POST {server}/generate`` with ``input_embeds`` (a list per request of [L][d]
  floats) and ``sampling_params``; launch the server with ``--disable-radix-cache`` (prefix
  caching keys on token ids, which embeddings do not have).
- vLLM: ``POST {server}/v1/completions`` with ``prompt_embeds`` = base64 of ``torch.save``
  of a [L, d] tensor; launch with ``--enable-prompt-embeds``.

Decoding is one :class:`Sampling` for all three: greedy by default; with ``temperature > 0``
each prompt gets ``n`` samples (results are prompt-major: prompt 0's n samples, then prompt
1's ...). Seeds: local seeds a forked torch RNG with ``seed`` for every ``generate`` call
(reproducible for the same batches); SGLang sends each copy of a prompt as its own request
with ``sampling_seed = seed + j`` (sample j); vLLM sends ``n`` and ``seed`` per request.
"""

from __future__ import annotations

import base64
import io
import json
import math
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Protocol, Sequence

from forensics.errors import BackendError, InputError

STOP = "</explanation>"


@dataclass
class Generation:
    """One generated continuation: decoded text, tokens generated, why it stopped."""

    text: str
    n_tokens: int
    finish_reason: str  # stop | length


@dataclass(frozen=True)
class Sampling:
    """How the AV decodes; recorded with every explanation.

    ``temperature`` 0 is greedy (the default: reproducible); above 0 the AV samples with
    nucleus ``top_p`` (1 = off), ``n`` samples per activation, from ``seed``.
    ``skip_special_tokens`` drops special tokens from the decoded text (the reference client
    keeps them; the tags are plain text either way).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        t, p = self.temperature, self.top_p
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise InputError(f"--temperature {t!r}: must be a finite number >= 0 (0 = greedy)")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise InputError(f"--top-p {p!r}: must be in (0, 1]")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise InputError(f"--samples {self.n!r}: must be an integer >= 1")
        if self.n > 1 and t == 0:
            raise InputError(f"--samples {self.n} with --temperature 0: greedy samples are identical",
                             hint="give --temperature > 0 (e.g. 0.7) to sample")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"--sampling-seed {self.seed!r}: must be an integer")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> str:
        """'' for the default decoding; otherwise a stable label of these settings, part of
        every explanation key and progress row (runs with other settings are stored apart)."""
        parts = [] if self.greedy else [f"t{self.temperature:g}", f"p{self.top_p:g}",
                                        f"seed{self.seed}", f"n{self.n}"]
        if not self.skip_special_tokens:
            parts.append("special")
        return "|".join(parts)

    def to_json(self) -> dict:
        return asdict(self)


class Backend(Protocol):
    name: str

    def generate(self, embeds, max_new_tokens: int, stop: Sequence[str] = (STOP,),
                 sampling: Sampling = Sampling()) -> list[Generation]:
        """``embeds``: float tensor [b, L, d] (all prompts the same length); returns
        ``b * sampling.n`` generations, prompt-major."""


# ----------------------------------------------------------------------------- local


class _StopOnString:
    """Stopping criterion: a row is done once its decoded tail contains a stop string."""

    def __init__(self, tokenizer, stops: Sequence[str], tail: int = 12):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.tail = tail

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = []
        for row in input_ids:
            txt = self.tokenizer.decode(row[-self.tail:], skip_special_tokens=False)
            done.append(any(s in txt for s in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class LocalBackend:
    """Greedy generation with transformers ``generate(inputs_embeds=...)`` (CPU or CUDA)."""

    name = "local"

    def __init__(self, model, tokenizer):
        from forensics.nla.activations import text_causal_lm

        self.model = text_causal_lm(model)  # multimodal layouts generate through their LM
        self.tokenizer = tokenizer

    def generate(self, embeds, max_new_tokens: int, stop: Sequence[str] = (STOP,),
                 sampling: Sampling = Sampling()) -> list[Generation]:
        import torch
        from transformers import StoppingCriteriaList

        model = self.model
        dev = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        x = embeds.to(device=dev, dtype=dtype)
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=dev)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
        if sampling.greedy:
            decode = dict(do_sample=False)
        else:  # top_k 0: no top-k cut (as the servers' defaults), whatever generation_config says
            decode = dict(do_sample=True, temperature=float(sampling.temperature),
                          top_p=float(sampling.top_p), top_k=0, num_return_sequences=sampling.n)
        devices = [dev] if dev.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(sampling.seed)
            out = model.generate(
                inputs_embeds=x, attention_mask=mask, max_new_tokens=max_new_tokens,
                num_beams=1, pad_token_id=pad, eos_token_id=list(eos_ids) or None,
                stopping_criteria=StoppingCriteriaList([_StopOnString(self.tokenizer, stop)]),
                **decode,
            )
        # decoder-only + inputs_embeds only: generate returns just the new tokens
        res = []
        for row in out.tolist():
            toks: list[int] = []
            reason = "length"
            for t in row:
                if t in eos_ids:
                    reason = "stop"
                    break
                toks.append(t)
            text = self.tokenizer.decode(toks, skip_special_tokens=sampling.skip_special_tokens)
            for s in stop:
                k = text.find(s) if s else -1
                if k >= 0:
                    text = text[:k + len(s)]
                    reason = "stop"
                    break
            # n_tokens: generated tokens up to (not counting) padding after the stop
            n = len(toks)
            if reason == "stop" and n and toks[-1] == pad and pad not in eos_ids:
                while n and toks[n - 1] == pad:
                    n -= 1
            res.append(Generation(text=text, n_tokens=n, finish_reason=reason))
        return res


# ----------------------------------------------------------------------------- HTTP


def _post(url: str, payload: dict, timeout: float) -> object:
    data = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        body = e.read()[:500].decode("utf-8", "replace")
        raise BackendError(f"{url}: HTTP {e.code}: {body}",
                           hint="check the server log; SGLang needs --disable-radix-cache, vLLM "
                                "--enable-prompt-embeds") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise BackendError(f"{url}: cannot reach the server ({e})",
                           hint="start the server or fix --server URL") from None
    except json.JSONDecodeError as e:
        raise BackendError(f"{url}: the reply is not JSON ({e})") from None


def _get(url: str, timeout: float) -> object:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise BackendError(f"{url}: cannot reach the server ({e})", hint="start the server or fix --server URL") from None
    except json.JSONDecodeError as e:
        raise BackendError(f"{url}: the reply is not JSON ({e})") from None


class SGLangBackend:
    """SGLang ``/generate`` with ``input_embeds`` only (one batched request per call)."""

    name = "sglang"

    def __init__(self, server: str, timeout: float = 600.0):
        self.url = server.rstrip("/") + "/generate"
        self.timeout = timeout

    def generate(self, embeds, max_new_tokens: int, stop: Sequence[str] = (STOP,),
                 sampling: Sampling = Sampling()) -> list[Generation]:
        import torch

        x = embeds.detach().to(torch.float32).cpu()
        base = {"max_new_tokens": int(max_new_tokens), "temperature": float(sampling.temperature),
                "stop": [s for s in stop if s], "no_stop_trim": True,
                "skip_special_tokens": bool(sampling.skip_special_tokens)}
        if sampling.greedy:
            sp: object = base
        else:  # one request per (prompt, sample), prompt-major, each with its own seed
            x = x.repeat_interleave(sampling.n, dim=0)
            sp = [{**base, "top_p": float(sampling.top_p), "sampling_seed": sampling.seed + j}
                  for _ in range(embeds.shape[0]) for j in range(sampling.n)]
        payload = {"input_embeds": x.tolist(), "sampling_params": sp}
        out = _post(self.url, payload, self.timeout)
        if isinstance(out, dict):
            out = [out]
        if not isinstance(out, list) or len(out) != x.shape[0]:
            raise BackendError(f"{self.url}: expected {x.shape[0]} results, got {type(out).__name__}"
                               f"{'' if not isinstance(out, list) else ' of ' + str(len(out))}")
        res = []
        for o in out:
            meta = o.get("meta_info", {}) if isinstance(o, dict) else {}
            fr = meta.get("finish_reason")
            reason = fr.get("type") if isinstance(fr, dict) else (fr or "stop")
            res.append(Generation(text=str(o.get("text", "")), n_tokens=int(meta.get("completion_tokens", 0)),
                                  finish_reason="length" if reason == "length" else "stop"))
        return res


def encode_prompt_embeds(t) -> str:
    """vLLM's wire format for one prompt: base64 of ``torch.save`` of a [L, d] tensor."""
    import torch

    buf = io.BytesIO()
    torch.save(t.detach().cpu().contiguous(), buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_prompt_embeds(s: str):
    """Inverse of :func:`encode_prompt_embeds` (used by servers; never unpickles code)."""
    import torch

    return torch.load(io.BytesIO(base64.b64decode(s)), weights_only=True)


class VLLMBackend:
    """vLLM OpenAI-compatible ``/v1/completions`` with ``prompt_embeds``."""

    name = "vllm"

    def __init__(self, server: str, model: str | None = None, timeout: float = 600.0):
        self.base = server.rstrip("/")
        self.timeout = timeout
        self.model = model

    def _model(self) -> str:
        if self.model is None:
            out = _get(self.base + "/v1/models", self.timeout)
            try:
                self.model = out["data"][0]["id"]
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"{self.base}/v1/models: no model listed") from None
        return self.model

    def generate(self, embeds, max_new_tokens: int, stop: Sequence[str] = (STOP,),
                 sampling: Sampling = Sampling()) -> list[Generation]:
        import torch

        x = embeds.detach().to(torch.float32).cpu()
        payload = {
            "model": self._model(),
            "prompt_embeds": [encode_prompt_embeds(x[i]) for i in range(x.shape[0])],
            "max_tokens": int(max_new_tokens), "temperature": float(sampling.temperature),
            "stop": [s for s in stop if s], "include_stop_str_in_output": True,
            "skip_special_tokens": bool(sampling.skip_special_tokens),
        }
        if not sampling.greedy:  # choices come back prompt-major: index = prompt * n + sample
            payload.update(n=sampling.n, top_p=float(sampling.top_p), seed=sampling.seed)
        want = x.shape[0] * sampling.n
        out = _post(self.base + "/v1/completions", payload, self.timeout)
        try:
            choices = sorted(out["choices"], key=lambda c: c.get("index", 0))
        except (KeyError, TypeError):
            raise BackendError(f"{self.base}/v1/completions: reply has no choices") from None
        if len(choices) != want:
            raise BackendError(f"{self.base}/v1/completions: expected {want} choices, got {len(choices)}")
        per = out.get("usage", {}).get("completion_tokens_per_choice")
        res = []
        for i, c in enumerate(choices):
            n = int(per[i]) if isinstance(per, list) else int(c.get("completion_tokens", 0) or 0)
            res.append(Generation(text=str(c.get("text", "")), n_tokens=n,
                                  finish_reason="length" if c.get("finish_reason") == "length" else "stop"))
        return res


def make_backend(kind: str, *, model=None, tokenizer=None, server: str | None = None,
                 server_model: str | None = None) -> Backend:
    """Backend by name; HTTP kinds need ``server``."""
    if kind == "local":
        if model is None:
            raise ValueError("the local backend needs a loaded model")
        return LocalBackend(model, tokenizer)
    if kind in ("sglang", "vllm"):
        if not server:
            raise InputError(f"--backend {kind} needs --server URL")
        return SGLangBackend(server) if kind == "sglang" else VLLMBackend(server, server_model)
    raise InputError(f"--backend {kind!r}: choose local, sglang or vllm")
