"""ONNX Runtime backends for the plain-BERT sentence encoders (the packaged all-MiniLM-L6-v2).

``OnnxBert(path, quant="fp32"|"int8").encode(texts, batch_size) -> float32 [n, dim]``, L2-normalised,
the same contract as :class:`forensics.search.minibert.MiniBert`, whose torch graph is what gets
exported (``torch.onnx.export`` of :meth:`MiniBert.forward_tensors`, read from
``model.safetensors``; nothing is downloaded).

``int8`` is ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations
calibrated on real text): only the ops in :attr:`OnnxSettings.quant_ops` are quantised (the
weight MatMuls by default); LayerNorm, Softmax, GELU and the attention products stay float.
Agreement with the torch vectors is measured by bench/embed_onnx.py and tests/test_embed_onnx.py.

The exported / quantised files are built once per (model checksum, settings) under
``cache_dir`` (default :func:`default_cache_dir`) and reused; nothing happens at
import time. Files are written to a temporary name and renamed, so concurrent builders are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

QUANTS = ("fp32", "int8", "fused-fp32", "fused-int8")
# part of every cache key: bump when the export or quantisation code changes the files it writes
FORMAT = 4


@dataclass(frozen=True)
class OnnxSettings:
    """Knobs of the ONNX backend (all recorded in the cache key of the built files).

    ``opset``: ONNX opset of the export. ``quant_ops``: op types quantised for ``int8``.
    ``weights_only``: quantise only MatMuls with a constant (weight) input, keeping the attention
    products Q.K^T and P.V in float. ``float_linears``: regular expressions (full match) over
    the encoder's linear names (``encoder.layer.3.attention.self.query``,
    ``....attention.output.dense``, ``....intermediate.dense``, ``....output.dense``); matching
    linears stay float. Default: the first layer's feed-forward down-projection, the one linear
    whose int8 costs most agreement (measured per layer and group by
    bench/int8_sensitivity.py, docs/index.md). ``calib_texts``: how many calibration texts
    are used (even demo-corpus rows). ``calib_len``: word pieces kept per calibration text
    (each text is its own batch, so no padding enters the ranges). ``calib_method``: MinMax |
    Entropy | Percentile; ``calib_percentile``: the percentile for Percentile.
    ``smooth_alpha``: SmoothQuant migration strength (0 = off), see :func:`smoothed`.
    ``activations``: uint8 | int8 (the quantised activation type; weights are always int8);
    ``symmetric_activations``: zero point 0 for activations. ``reduce_range``: 7-bit weights
    (for CPUs without VNNI). ``quantise_outputs``: also quantise the MatMuls' outputs (off: the
    output stays float, ORT runs MatMulIntegerToFloat; on, the per-tensor output scale of the
    down-projections, whose outputs carry a few very large values, costs most of the agreement).
    ``intra_op_threads``: 0 = ONNX Runtime's default (one per core).
    ``graph_opt``: ORT graph optimisation level (all | extended | basic).
    The ``fused-*`` files (forensics.search.onnx_fused): ``fused_quant``: static | dynamic;
    ``fused_format``: QDQ | QOperator (static); ``fused_ops``: what is quantised (``MatMul``;
    ``Attention`` too = QAttention, dynamic only); ``per_channel``: per-output-channel weight scales;
    ``fused_attention``: fuse attention into ORT's Attention op (off: only the layer norms and GELU);
    ``fast_gelu``: tanh-approximated GELU (FastGelu) instead of the exact one.
    """

    opset: int = 17
    quant_ops: tuple[str, ...] = ("MatMul",)
    weights_only: bool = True
    float_linears: tuple[str, ...] = (r"encoder\.layer\.0\.output\.dense",)
    calib_texts: int = 256
    calib_method: str = "MinMax"
    calib_percentile: float = 99.999
    calib_len: int = 256
    smooth_alpha: float = 0.75
    activations: str = "uint8"
    symmetric_activations: bool = False
    reduce_range: bool = False
    quantise_outputs: bool = False
    intra_op_threads: int = 0
    graph_opt: str = "all"
    fused_quant: str = "dynamic"
    fused_format: str = "QDQ"
    fused_ops: tuple[str, ...] = ("MatMul", "Attention")
    per_channel: bool = True
    fused_attention: bool = True
    fast_gelu: bool = False


_FUSED_ONLY = ("fused_quant", "fused_format", "fused_ops", "per_channel", "fused_attention", "fast_gelu")
CACHE_ENV = "NLA_FORENSICS_ONNX_CACHE"


def default_cache_dir() -> Path:
    """``$NLA_FORENSICS_ONNX_CACHE`` when set, else ``$XDG_CACHE_HOME/nla-forensics/onnx``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nla-forensics" / "onnx"


def model_checksum(path: Path) -> str:
    """sha256 (16 hex) of the weights and tokenizer/config files the export reads."""
    h = hashlib.sha256()
    for f in ("config.json", "tokenizer.json", "sentence_bert_config.json", "model.safetensors"):
        p = Path(path) / f
        if p.is_file():
            h.update(f.encode())
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def calibration_texts(n: int) -> list[str]:
    """Real text for calibration: the packaged demo corpus (prompts and replies, mixed
    languages) -- every other row, so the other half stays held apart for checks."""
    out: list[str] = []
    p = Path(__file__).resolve().parents[2] / "examples" / "data" / "demo_corpus.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"calibration corpus {p} not found (int8 needs a source checkout)")
    with open(p, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i % 2:
                continue
            row = json.loads(line)
            out += [t for t in (row.get("prompt"), row.get("reply")) if t]
            if len(out) >= n:
                break
    return out[:n]


def _export(bert, out: Path, opset: int, explicit_attention: bool = False) -> None:
    import torch

    class _Wrap(torch.nn.Module):
        def forward(self, input_ids, attention_mask):  # noqa: D401
            return bert.forward_tensors(input_ids, attention_mask.bool(), explicit_attention)

    inp, mask = bert.pad([[101, 7592, 2088, 102], [101, 102]])
    import warnings

    kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    tmp = out.with_suffix(".raw.onnx")
    with warnings.catch_warnings():   # the TorchScript exporter warns that it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_Wrap(), (inp, mask.long()), str(tmp), opset_version=opset,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "n", 1: "L"},
                                        "attention_mask": {0: "n", 1: "L"}, "embedding": {0: "n"}},
                          **kw)
    _constants_to_initializers(tmp, out, _linear_names(bert))
    tmp.unlink()


def _linear_names(bert) -> dict[bytes, str]:
    """sha256 of each encoder Linear's weight as exported (transposed, float32) -> its name."""
    out = {}
    for k, v in bert.w.items():
        if k.startswith("encoder.") and k.endswith(".weight") and v.dim() == 2:
            t = np.ascontiguousarray(v.detach().numpy().T, dtype=np.float32)
            out[hashlib.sha256(t.tobytes() + str(t.shape).encode()).digest()] = k[:-len(".weight")]
    return out


def _constants_to_initializers(src: Path, dst: Path, linears: dict[bytes, str]) -> None:
    """Move Constant nodes' tensors into the graph's initializers, and name each weight MatMul
    after the Linear it computes (``encoder.layer.3.intermediate.dense``; matched by weight
    value). Why: the weights (plain tensors, not module parameters) are exported as Constant
    nodes, and ``quantize_static`` quantises only initializers as weights (per channel, int8);
    Constants would be quantised like activations (per tensor, calibrated). The names are what
    :attr:`OnnxSettings.float_linears` matches."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    keep = []
    digests: dict[str, str] = {}
    for n in m.graph.node:
        val = [a.t for a in n.attribute if a.name == "value"] if n.op_type == "Constant" else []
        if val:
            t = onnx.TensorProto()
            t.CopyFrom(val[0])
            t.name = n.output[0]
            m.graph.initializer.append(t)
            if len(t.dims) == 2:
                a = np.ascontiguousarray(numpy_helper.to_array(t), dtype=np.float32)
                name = linears.get(hashlib.sha256(a.tobytes() + str(a.shape).encode()).digest())
                if name:
                    digests[t.name] = name
        else:
            keep.append(n)
    named = 0
    for n in keep:
        if n.op_type == "MatMul" and n.input[1] in digests:
            n.name = digests[n.input[1]]
            named += 1
    if named != len(linears):
        raise RuntimeError(f"export of {src}: named {named} of {len(linears)} encoder linears")
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(dst))


def _weight_matmuls(model_path: Path, float_linears: Sequence[str]) -> list[str]:
    """Names of MatMul nodes whose second input is a weight (an initializer), less those whose
    name fully matches one of the ``float_linears`` regular expressions."""
    import re

    import onnx

    m = onnx.load(str(model_path))
    inits = {i.name for i in m.graph.initializer}
    pats = [re.compile(p) for p in float_linears]
    return [n.name for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits
            and not any(p.fullmatch(n.name) for p in pats)]


def _group(name: str) -> str:
    """Linears that read the same activation share one SmoothQuant scale (query/key/value)."""
    for k in ("query", "key", "value"):
        if name.endswith("attention.self." + k):
            return name[: -len(k)] + "qkv"
    return name


def smooth_scales(bert, texts: Sequence[str], alpha: float) -> dict:
    """Per-channel SmoothQuant scales ``s = max|X|^alpha / max|W|^(1 - alpha)`` by linear group
    (q/k/v share ``encoder.layer.i.attention.self.qkv``), maxima over ``texts``."""
    return _smoothing(bert, texts, alpha)[0]


def smoothed(bert, texts: Sequence[str], alpha: float):
    """A copy of ``bert`` computing the same function with outlier channels moved from the
    activations into the weights (SmoothQuant, Xiao et al. 2023): before each encoder Linear
    the input is divided per channel by ``s = max|X|^alpha / max|W|^(1 - alpha)`` (max over
    ``texts``) and the weight's columns multiplied by ``s``. Why: BERT's LayerNorm outputs have
    a few channels tens of times larger than the rest, so one per-tensor uint8 scale flattens
    the others (measured: cosine 0.91 to fp32 without it)."""
    scale, out = _smoothing(bert, texts, alpha)
    return out


def _smoothing(bert, texts: Sequence[str], alpha: float):
    import copy

    import torch

    amax: dict[str, torch.Tensor] = {}

    def rec(name, t):
        m = t.detach().abs().reshape(-1, t.shape[-1]).amax(0)
        g = _group(name)
        amax[g] = torch.maximum(amax[g], m) if g in amax else m
        return t

    bert.act_scale = rec
    try:
        bert.encode(list(texts), batch_size=16)
    finally:
        bert.act_scale = None
    out = copy.copy(bert)
    w = dict(bert.w)
    wmax: dict[str, torch.Tensor] = {}
    lin_names = [k[:-len(".weight")] for k in w if _group(k[:-len(".weight")]) in amax]
    for n in lin_names:
        g = _group(n)
        m = w[n + ".weight"].abs().amax(0)
        wmax[g] = torch.maximum(wmax[g], m) if g in wmax else m
    scale = {g: (amax[g].clamp(min=1e-5) ** alpha / wmax[g].clamp(min=1e-5) ** (1 - alpha))
             for g in amax}
    for n in lin_names:
        w[n + ".weight"] = (w[n + ".weight"] * scale[_group(n)][None, :]).contiguous()
    inv = {g: (1.0 / v) for g, v in scale.items()}
    out.w = w
    out.act_scale = lambda name, t: t * inv[_group(name)]
    return scale, out


def calibration_reader(bert, texts: Sequence[str], max_len: int):
    """ORT calibration data: one text per batch, cut to ``max_len`` word pieces, no padding
    (pad positions would widen the ranges with activations no output reads). It has
    ``__len__`` / ``set_range`` so ORT can collect batch by batch (the histogram calibrators
    cannot stack batches of different lengths)."""
    from onnxruntime.quantization import CalibrationDataReader

    ids = [x[:max_len] for x in bert.token_ids(list(texts))]

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.set_range(0, len(ids))

        def __len__(self):
            return len(ids)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(range(start_index, min(end_index, len(ids))))

        def get_next(self):
            i = next(self._it, None)
            if i is None:
                return None
            return {"input_ids": np.array([ids[i]], dtype=np.int64),
                    "attention_mask": np.ones((1, len(ids[i])), dtype=np.int64)}

    return _Reader()


def _quantise(bert, fp32: Path, out: Path, s: OnnxSettings, nodes: Sequence[str] | None = None,
              calibration_cache: Path | None = None) -> None:
    """``quantize_static`` of ``fp32`` into ``out`` under ``s``. ``nodes`` overrides the chosen
    MatMuls and ``calibration_cache`` keeps ORT's tensor ranges between calls (both for
    bench/int8_sensitivity.py, which quantises one group at a time on one calibration)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if s.calib_method not in ("MinMax", "Entropy", "Percentile"):
        raise ValueError(f"unknown calib_method {s.calib_method!r}")
    if nodes is None:
        if s.weights_only:
            nodes = _weight_matmuls(fp32, s.float_linears)
        else:
            m = onnx.load(str(fp32))
            nodes = [n.name for n in m.graph.node if n.op_type in s.quant_ops]
    if not nodes:   # an empty list would mean "every node" to quantize_static
        raise RuntimeError(f"no MatMul left to quantise in {fp32} (OnnxSettings.float_linears)")
    reader = None
    if calibration_cache is None or not Path(calibration_cache).is_file():
        reader = calibration_reader(bert, calibration_texts(s.calib_texts), s.calib_len)
    extra = {"CalibStridedMinMax": 1, "ActivationSymmetric": s.symmetric_activations}
    if not s.quantise_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = list(s.quant_ops)
    if s.calib_method == "Percentile":
        extra["CalibPercentile"] = s.calib_percentile
    import logging
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(max(quiet, logging.ERROR))   # "consider pre-processing" notes
    try:
        quantize_static(str(fp32), str(out), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(s.quant_ops), nodes_to_quantize=list(nodes),
                        per_channel=True, reduce_range=s.reduce_range,
                        activation_type=(QuantType.QUInt8 if s.activations == "uint8"
                                         else QuantType.QInt8),
                        weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, s.calib_method),
                        calibration_cache_path=(str(calibration_cache) if calibration_cache
                                                else None),
                        extra_options=extra)
    finally:
        logging.getLogger().setLevel(quiet)


def build_model(path: Path, quant: str, settings: OnnxSettings | None = None,
                cache_dir: Path | None = None, bert=None) -> Path:
    """The ``.onnx`` file for ``path`` at ``quant``: built once under ``cache_dir``, then reused."""
    if quant not in QUANTS:
        raise ValueError(f"unknown quantisation {quant!r}; one of {QUANTS}")
    s = settings or OnnxSettings()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key_s = {k: v for k, v in asdict(s).items() if k not in ("intra_op_threads", "graph_opt")}
    ver = _versions()
    fp_key = hashlib.sha256(json.dumps([model_checksum(path), s.opset, ver, FORMAT]).encode()).hexdigest()[:16]
    fp32 = root / f"{Path(path).name}-{fp_key}-fp32.onnx"
    if bert is None:
        from forensics.search.minibert import MiniBert

        bert = MiniBert(Path(path))
    root.mkdir(parents=True, exist_ok=True)
    if quant.startswith("fused-"):
        return _build_fused(bert, root, f"{Path(path).name}-{fp_key}", s, quant, key_s)
    if not fp32.is_file():
        _atomic(fp32, lambda tmp: _export(bert, tmp, s.opset))
    if quant == "fp32":
        return fp32
    plain = {k: v for k, v in key_s.items() if k not in _FUSED_ONLY}   # unchanged by fused knobs
    q_key = hashlib.sha256(json.dumps([fp_key, plain], sort_keys=True).encode()).hexdigest()[:16]
    q = root / f"{Path(path).name}-{q_key}-int8.onnx"
    if not q.is_file():
        src = fp32
        if s.smooth_alpha > 0:
            src = root / f"{Path(path).name}-{q_key}-smooth-fp32.onnx"
            sm = smoothed(bert, calibration_texts(s.calib_texts), s.smooth_alpha)
            _atomic(src, lambda tmp: _export(sm, tmp, s.opset))
        try:
            _atomic(q, lambda tmp: _quantise(bert, src, tmp, s))
        finally:
            if src != fp32:
                src.unlink(missing_ok=True)
    return q


def _build_fused(bert, root: Path, stem: str, s: OnnxSettings, quant: str, key_s: dict) -> Path:
    """``fused-fp32`` / ``fused-int8`` (forensics.search.onnx_fused), cached like the others."""
    from forensics.search import onnx_fused as of
    kind = ("" if s.fused_attention else "-noatt") + ("-fastgelu" if s.fast_gelu else "")
    fused = root / f"{stem}-fused{kind}-fp32.onnx"
    if not fused.is_file():
        def write(tmp: Path) -> None:
            raw = tmp.with_suffix(".exp.onnx")
            try:
                _export(bert, raw, s.opset, explicit_attention=True)
                of.fuse(raw, tmp, bert.heads, bert.dim, bert.n_layers, s.fused_attention,
                        s.fast_gelu)
            finally:
                raw.unlink(missing_ok=True)
        _atomic(fused, write)
    if quant == "fused-fp32":
        return fused
    q_key = hashlib.sha256(json.dumps([stem, key_s], sort_keys=True).encode()).hexdigest()[:16]
    q = root / f"{stem}-{q_key}-fused-int8.onnx"
    if q.is_file():
        return q
    texts = calibration_texts(s.calib_texts)

    def write_q(tmp: Path) -> None:
        src = fused
        if s.smooth_alpha > 0:
            src = tmp.with_suffix(".smooth.onnx")
            scales = {k: v.numpy() for k, v in smooth_scales(bert, texts, s.smooth_alpha).items()}
            of.smooth_graph(fused, src, scales, of.quantised(s), _group)
        try:
            of.quantise_fused(src, tmp, s, lambda: calibration_reader(bert, texts, s.calib_len))
        finally:
            if src != fused:
                src.unlink(missing_ok=True)
    _atomic(q, write_q)
    return q


def _versions() -> list[str]:
    import onnxruntime
    import torch
    return [torch.__version__, onnxruntime.__version__]


def _atomic(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp.onnx")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        for extra in (tmp, tmp + ".data"):
            if os.path.exists(extra):
                os.unlink(extra)


class OnnxBert:
    """``OnnxBert(path, quant).encode(texts, batch_size)``: MiniBert's contract on ONNX Runtime."""

    def __init__(self, path: Path, quant: str = "fp32", settings: OnnxSettings | None = None,
                 cache_dir: Path | None = None):
        import onnxruntime as ort

        from forensics.search.minibert import MiniBert

        self.settings = s = settings or OnnxSettings()
        self._bert = MiniBert(Path(path))        # tokenizer + config (and the export source)
        self.dim = self._bert.dim
        self.quant = quant
        self.model_file = build_model(Path(path), quant, s, cache_dir, bert=self._bert)
        # the file's key (names carry it): model checksum, opset, versions, settings
        self.model_key = hashlib.sha256(self.model_file.name.encode()).hexdigest()[:12]
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[s.graph_opt]
        if s.intra_op_threads:
            so.intra_op_num_threads = s.intra_op_threads
        try:   # a damaged cached file is refused, never half-used
            self.session = ort.InferenceSession(str(self.model_file), so,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:
            from forensics.errors import BackendError
            raise BackendError(f"cached ONNX file {self.model_file} does not load: {e}",
                               hint="delete it; the next run rebuilds it") from e

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self._bert.token_ids(texts)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        return self._bert.token_lengths(texts)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed in batches of similar token counts, output in input order."""
        ids = self.token_ids(texts)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        from forensics.search.minibert import length_order
        order = length_order(ids)
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            inp, mask = self._bert.pad([ids[i] for i in idx])
            out[idx] = self.session.run(None, {"input_ids": inp.numpy(),
                                               "attention_mask": mask.long().numpy()})[0]
        return out


__all__ = ["OnnxBert", "OnnxSettings", "build_model", "calibration_reader", "calibration_texts", "default_cache_dir",
           "model_checksum", "QUANTS"]
