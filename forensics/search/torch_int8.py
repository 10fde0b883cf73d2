"""Static int8 MiniLM in plain torch: SmoothQuant scales and calibrated activation ranges from
real text, per-channel int8 weights on oneDNN's int8 matmul, attention and LayerNorm in float.

``TorchInt8Bert(path, settings).encode(texts, batch_size) -> float32 [n, dim]``, L2-normalised:
the contract of :class:`forensics.search.minibert.MiniBert`, whose tokenizer, padding and
batching it reuses. What changes is the encoder's linears:

1. calibration (once, at construction): the fp32 model runs over ``calib_texts`` real texts
   (:func:`forensics.search.onnx_embed.calibration_texts`, the even rows of the demo corpus;
   one text per batch, so no padding enters the ranges) and records, per linear input, the
   per-channel minimum and maximum;
2. SmoothQuant (``smooth_alpha``): per input channel ``s = max|X|^alpha / max|W|^(1-alpha)``;
   the weight's columns are multiplied by ``s`` and the activation divided by it. The division
   costs nothing here: it is folded into the per-channel multiplier of the quantisation step
   (``q = round(x * (1 / (s * scale))) + zero_point``), so no extra op runs;
3. static activation quantisation: one uint8 scale / zero point per linear input (MinMax over
   the calibration of the smoothed input), weights int8 symmetric per output channel, packed
   once for oneDNN (``torch.ops.onednn.qlinear_prepack``); the matmul
   (``torch.ops.onednn.qlinear_pointwise``, VNNI / AMX where the CPU has them) writes float
   output with the bias added, and GELU fused into the FFN up-projection. Query, key and value
   are one packed matmul (they read the same input). Linears named in ``float_linears`` stay
   float (default: layer 0's FFN down-projection, whose input carries the largest outliers);
4. the float steps between the matmuls: the quantisation of each linear's input is fused with
   the residual add and LayerNorm before it (``compile``: ``torch.compile``, inductor, dynamic
   shapes, compiled on first use in each process); attention
   (``scaled_dot_product_attention``) runs in bfloat16 (``attention_bf16``: the Q/K/V matmul
   writes bfloat16, so the attention kernel uses the CPU's bf16 matrix units where it has them)
   and the FFN up-projection writes its GELU output in bfloat16 (``up_bf16``), which halves
   the memory the largest activation takes before it is quantised again.

LayerNorm, residual sums, the embeddings and pooling stay float32, as in MiniBert. Needs a
torch built with oneDNN (``torch.backends.mkldnn.is_available()``).
Agreement and speed against the fp32 path: bench/embed_torch_int8.py, docs/index.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from forensics.search.minibert import MiniBert

_GROUPS = (("qkv", ("attention.self.query", "attention.self.key", "attention.self.value")),
           ("out", ("attention.output.dense",)),
           ("up", ("intermediate.dense",)),
           ("down", ("output.dense",)))


@dataclass(frozen=True)
class TorchInt8Settings:
    """Knobs of the torch int8 backend (all part of its model id's key).

    ``smooth_alpha``: SmoothQuant migration strength (0 = off). ``calib_texts``: calibration
    texts (even demo-corpus rows). ``calib_len``: word pieces kept per calibration text.
    ``float_linears``: regular expressions (full match) over encoder linear names
    (``encoder.layer.3.intermediate.dense``); a matching linear stays float (q/k/v: if any of
    the three matches). ``fuse_gelu``: GELU as the up-projection's oneDNN post-op (off: applied
    after it in torch). ``compile``: fuse the quantisation with the residual add and LayerNorm
    (``torch.compile``, inductor; off: the same steps as separate torch ops).
    ``attention_bf16``: Q/K/V and attention in bfloat16 (off: float32). ``up_bf16``: the FFN
    up-projection's output (GELU applied) in bfloat16 (off: float32)."""

    smooth_alpha: float = 0.75
    calib_texts: int = 256
    calib_len: int = 256
    float_linears: tuple[str, ...] = (r"encoder\.layer\.0\.output\.dense",)
    fuse_gelu: bool = True
    compile: bool = True
    attention_bf16: bool = True
    up_bf16: bool = True


def available() -> str | None:
    """None when this torch can run the int8 linears here; otherwise why not."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN"
    if not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return "this torch has no onednn.qlinear_pointwise"
    return None


class TorchInt8Bert(MiniBert):
    """MiniBert with static int8 encoder linears (see the module docstring)."""

    def __init__(self, path: Path, settings: TorchInt8Settings | None = None,
                 cache_dir: Path | None = None):
        super().__init__(path)
        why = available()
        if why:
            from forensics.errors import BackendError
            raise BackendError(f"torch int8 backend unavailable: {why}",
                               hint="use the default backend (auto)")
        self.settings = s = settings or TorchInt8Settings()
        self.ranges_file: Path | None = None
        from forensics.search.onnx_embed import calibration_texts, model_checksum

        checksum = model_checksum(self.path)
        ranges = self._ranges(cache_dir, checksum,
                              lambda: self._calibrate(calibration_texts(s.calib_texts),
                                                      s.calib_len))
        self.layers = [self._build_layer(i, ranges) for i in range(self.n_layers)]
        self._k = kernels(s.compile)
        if s.compile:   # compile now (two texts: batch and length stay dynamic), or say why not
            try:
                self.encode(["a short warm-up text", "and a second, longer warm-up text here"])
            except Exception as e:
                from forensics.errors import BackendError
                raise BackendError(f"torch.compile of the int8 steps failed: {e}",
                                   hint="inductor needs a C++ compiler (gcc or clang) on PATH; "
                                        "TorchInt8Settings(compile=False) runs without it, "
                                        "slower") from e
        key = json.dumps([checksum, asdict(s), self._torch.__version__],
                         sort_keys=True)
        # the model id's key: model files, settings, torch version
        self.model_key = hashlib.sha256(key.encode()).hexdigest()[:12]

    # ------------------------------------------------------------ calibration
    def _ranges(self, cache_dir: Path | None, checksum: str, calibrate) -> dict:
        """The calibrated ranges, kept in ``cache_dir`` (default: the ONNX backends' cache
        folder) under a name keyed by the model files, the calibration settings and the torch
        version; computed by ``calibrate()`` and written (atomically) when absent."""
        import os
        import tempfile

        from safetensors.torch import load_file, save_file

        from forensics.search.onnx_embed import default_cache_dir

        s = self.settings
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        key = hashlib.sha256(json.dumps([checksum, s.calib_texts, s.calib_len,
                                         self._torch.__version__, 1]).encode()).hexdigest()[:16]
        f = self.ranges_file = root / f"{self.path.name}-{key}-torch-int8-ranges.safetensors"
        if f.is_file():
            try:
                t = load_file(str(f))
                return {k[:-3]: (t[k], t[k[:-3] + ".hi"]) for k in t if k.endswith(".lo")}
            except Exception as e:   # cut short or damaged: refused with its path
                from forensics.errors import BackendError
                raise BackendError(f"cached calibration {f} does not load: {e}",
                                   hint="delete it; the next run calibrates again") from e
        rng = calibrate()
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=f.stem, suffix=".tmp")
        os.close(fd)
        try:
            save_file({f"{k}.{e}": v.contiguous() for k, (lo, hi) in rng.items()
                       for e, v in (("lo", lo), ("hi", hi))}, tmp)
            os.replace(tmp, f)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return rng

    def _calibrate(self, texts: list[str], max_len: int) -> dict:
        """Per-channel (min, max) of each encoder linear's input over ``texts``, one per batch."""
        torch = self._torch
        rng: dict[str, tuple] = {}

        def rec(name, t):
            flat = t.detach().reshape(-1, t.shape[-1])
            lo, hi = flat.amin(0), flat.amax(0)
            if name in rng:
                lo, hi = torch.minimum(rng[name][0], lo), torch.maximum(rng[name][1], hi)
            rng[name] = (lo, hi)
            return t

        self.act_scale = rec
        try:
            with torch.inference_mode():
                for ids in self.token_ids(texts):
                    MiniBert.forward_tensors(self, *self.pad([ids[:max_len]]))
        finally:
            self.act_scale = None
        return rng

    def _build_layer(self, i: int, ranges: dict) -> dict:
        torch = self._torch
        s = self.settings
        pats = [re.compile(p) for p in s.float_linears]
        p = f"encoder.layer.{i}."
        out = {}
        for g, names in _GROUPS:
            full = [p + n for n in names]
            w = torch.cat([self.w[n + ".weight"] for n in full], 0)
            b = torch.cat([self.w[n + ".bias"] for n in full], 0).contiguous()
            if any(pt.fullmatch(n) for pt in pats for n in full):
                out[g] = {"float": True, "w": w.contiguous(), "b": b}
                continue
            lo, hi = ranges[full[0]]
            if s.smooth_alpha > 0:
                amax = torch.maximum(lo.abs(), hi.abs()).clamp(min=1e-5)
                wmax = w.abs().amax(0).clamp(min=1e-5)
                sc = amax ** s.smooth_alpha / wmax ** (1 - s.smooth_alpha)
            else:
                sc = torch.ones_like(lo)
            ws = w * sc[None, :]
            w_scale = (ws.abs().amax(1) / 127.0).clamp(min=1e-12)
            qw = torch.round(ws / w_scale[:, None]).clamp(-128, 127).to(torch.int8)
            a_lo = float((lo / sc).min().clamp(max=0.0))
            a_hi = float((hi / sc).max().clamp(min=0.0))
            a = max((a_hi - a_lo) / 255.0, 1e-8)
            zp = int(min(255, max(0, round(-a_lo / a))))
            out[g] = {"float": False, "packed": torch.ops.onednn.qlinear_prepack(qw, None),
                      "w_scale": w_scale.float().contiguous(),
                      "w_zp": torch.zeros(w.shape[0], dtype=torch.int32),
                      "b": b, "a": a, "zp": zp,
                      "mul": (1.0 / (sc * a)).float().contiguous()}
        return out

    # ------------------------------------------------------------ forward
    def _qlinear(self, q, g: dict, gelu: bool = False, dtype=None):
        """uint8 ``q [m, k]`` (quantised with ``g``'s scale) -> float ``[m, n]``, bias added,
        exact GELU after it when ``gelu``."""
        torch = self._torch
        post = "gelu" if gelu and self.settings.fuse_gelu else "none"
        y = torch.ops.onednn.qlinear_pointwise(
            q, g["a"], g["zp"], g["packed"], g["w_scale"], g["w_zp"], g["b"], 1.0, 0,
            dtype or torch.float32, post, [], "none" if post == "gelu" else "")
        return torch.nn.functional.gelu(y) if gelu and post == "none" else y

    def _linear(self, x, g: dict, gelu: bool = False, q=None, dtype=None):
        """float ``x [m, k]`` -> float ``[m, n]``: int8 unless ``g`` is float; ``q``: ``x``
        already quantised for ``g`` (by a fused LayerNorm step)."""
        F = self._torch.nn.functional
        if g["float"]:
            y = F.linear(x, g["w"], g["b"])
            return F.gelu(y) if gelu else y
        return self._qlinear(self._k["quant"](x, g["mul"], g["zp"]) if q is None else q, g, gelu,
                             dtype)

    def forward_tensors(self, inp, mask, explicit_attention: bool = False):
        """The encoder on padded tensors with the int8 linears (``explicit_attention`` is
        ignored: attention is always ``scaled_dot_product_attention``)."""
        torch = self._torch
        F = torch.nn.functional
        w = self.w
        k = self._k
        n, L = inp.shape[0], inp.shape[1]
        d, h = self.dim, self.heads
        x = self.embeddings(inp).reshape(n * L, d)
        attn_mask = mask[:, None, None, :]
        qx = None
        for i, lay in enumerate(self.layers):
            p = f"encoder.layer.{i}."
            nxt = self.layers[i + 1]["qkv"] if i + 1 < len(self.layers) else None
            st = self.settings
            qkv = self._linear(x, lay["qkv"], q=qx, dtype=torch.bfloat16 if st.attention_bf16 else None)
            qkv = qkv.view(n, L, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
            a = a.transpose(1, 2).reshape(n * L, d)
            x, qx = k["add_ln"](self._linear(a, lay["out"]), x,
                                w[p + "attention.output.LayerNorm.weight"],
                                w[p + "attention.output.LayerNorm.bias"], self.eps,
                                *_qargs(lay["up"]))
            u = self._linear(x, lay["up"], gelu=True, q=qx,
                             dtype=torch.bfloat16 if st.up_bf16 and not lay["down"]["float"] else None)
            y = self._linear(u, lay["down"])
            x, qx = k["add_ln"](y, x, w[p + "output.LayerNorm.weight"],
                                w[p + "output.LayerNorm.bias"], self.eps, *_qargs(nxt))
        x = x.view(n, L, d)
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


def _qargs(g: dict | None) -> tuple:
    """(multiplier, zero point) of an int8 linear group; (None, 0) when none is quantised."""
    return (None, 0) if g is None or g["float"] else (g["mul"], g["zp"])


def _quant(x, mul, zp: int):
    """Static uint8 quantisation with a per-channel multiplier (SmoothQuant folded in)."""
    import torch

    return torch.clamp(torch.round(x * mul) + zp, 0, 255).to(torch.uint8)


def _add_ln(y, res, weight, bias, eps: float, mul, zp: int):
    """``LayerNorm(y + res)`` and, when ``mul`` is given, its uint8 quantisation (one pass)."""
    import torch

    x = torch.nn.functional.layer_norm(y + res, (y.shape[-1],), weight, bias, eps)
    return x, (None if mul is None else _quant(x, mul, zp))


@functools.lru_cache(maxsize=None)
def kernels(compile: bool) -> dict:
    """The elementwise steps around the int8 matmuls: plain torch, or fused by inductor
    (``torch.compile``, dynamic shapes; compiled on first use, once per process and shared by
    every model of the process)."""
    if not compile:
        return {"quant": _quant, "add_ln": _add_ln}
    import torch

    return {"quant": torch.compile(_quant, dynamic=True),
            "add_ln": torch.compile(_add_ln, dynamic=True)}


__all__ = ["TorchInt8Bert", "TorchInt8Settings", "available", "kernels"]
