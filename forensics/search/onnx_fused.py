"""ONNX Runtime's BERT graph fusions, and int8 on the fused graph (static or dynamic).

``build_fused(bert, root, stem, s, quant) -> Path``: the ``.onnx`` file for the backends
``onnx-fused`` (fp32) and ``onnx-fused-int8`` of :mod:`forensics.search.embed`, built from the
same MiniBert weights as :mod:`forensics.search.onnx_embed`:

1. export with attention written as plain matmuls (``MiniBert.forward_tensors(...,
   explicit_attention=True)``, the same function), the form that
   ``onnxruntime.transformers.optimizer`` (model type ``bert``) recognises;
2. fuse: one ``Attention`` op per layer (packed Q/K/V projection, softmax, context),
   ``SkipLayerNormalization`` (residual add + bias + LayerNorm), ``BiasGelu``; the build fails
   unless every layer's attention fused (an unfused graph would silently be the slow one);
3. int8 (``quant="int8"``, knobs in :class:`forensics.search.onnx_embed.OnnxSettings`):
   ``fused_quant="static"`` calibrates uint8 activation ranges on real text and writes QDQ
   around the weight MatMuls (outputs float: ORT runs ``MatMulIntegerToFloat``);
   ``"dynamic"`` quantises activations per batch at run time (``DynamicQuantizeMatMul``, and
   ``QAttention`` when ``"Attention"`` is in ``fused_ops``). SmoothQuant
   (``smooth_alpha``) is applied to the fused graph itself: each quantised op's weight rows are
   multiplied by the per-channel scale and a ``Mul`` by its inverse is put on that op's input
   only (BERT's LayerNorm output also feeds the residual, so the scale cannot be folded into
   the LayerNorm as in pre-LN models).

Measured by bench/embed_onnx.py (docs/index.md states the numbers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

LAYER = re.compile(r"encoder\.layer\.(\d+)\.")


def fuse(src: Path, dst: Path, heads: int, dim: int, layers: int,
         attention: bool = True, gelu_approximation: bool = False) -> dict[str, int]:
    """ORT's BERT optimizer on ``src`` (exported with explicit attention) into ``dst``, with
    symbolic shapes (quantisation needs the fused ops' output types). Returns the fused-op
    counts; raises unless ``layers`` Attention ops were fused (``attention`` False: attention
    is left as MatMul / Softmax ops, only SkipLayerNormalization and BiasGelu are fused;
    ``gelu_approximation``: BiasGelu becomes FastGelu, the tanh approximation of erf-GELU)."""
    import logging

    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(max(quiet, logging.ERROR))
    opts = FusionOptions("bert")
    opts.enable_attention = attention
    opts.enable_gelu_approximation = gelu_approximation
    try:
        m = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=dim,
                           optimization_options=opts, opt_level=0,
                           use_gpu=False)
    finally:
        logging.getLogger().setLevel(quiet)
    stats = {k: int(v) for k, v in m.get_fused_operator_statistics().items() if v}
    if stats.get("Attention", 0) != (layers if attention else 0) \
            or stats.get("SkipLayerNormalization", 0) != 2 * layers:
        raise RuntimeError(f"ORT's bert optimizer fused {stats.get('Attention', 0)} of {layers} "
                           f"attention blocks in {src} (fused: {stats})")
    import onnx

    if not any(o.domain == "com.microsoft" for o in m.model.opset_import):
        m.model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    model = SymbolicShapeInference.infer_shapes(m.model, auto_merge=True)

    onnx.save(model, str(dst))
    return stats


def attention_nodes(model) -> list:
    """The fused Attention nodes in graph (= layer) order."""
    return [n for n in model.graph.node if n.op_type == "Attention"]


def smooth_graph(src: Path, dst: Path, scales: dict[str, np.ndarray],
                 targets: Callable[[str], bool], group: Callable[[str], str]) -> int:
    """SmoothQuant on a fused graph: for each weight MatMul (named after its Linear) and each
    layer's Attention (group ``encoder.layer.i.attention.self.qkv``) whose name ``targets``
    accepts and whose ``group(name)`` has a scale (one Mul per input and group), multiply the weight's input rows by the scale and feed the op
    ``input * (1 / scale)``. Same function, outliers moved into the weights. Returns the count."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    ops: list[tuple[object, str]] = [(n, n.name) for n in m.graph.node
                                     if n.op_type == "MatMul" and n.input[1] in inits]
    ops += [(n, f"encoder.layer.{i}.attention.self.qkv") for i, n in enumerate(attention_nodes(m))]
    done = 0
    new_nodes = []
    shared: dict[tuple[str, str], str] = {}   # (input, group) -> its smoothed tensor
    for node, name in ops:
        g = group(name)
        if g not in scales or not targets(name):
            continue
        s = np.asarray(scales[g], dtype=np.float32)
        w = inits[node.input[1]]
        a = numpy_helper.to_array(w).astype(np.float32)
        if a.shape[0] != s.shape[0]:
            raise RuntimeError(f"{name}: weight {a.shape} vs scale {s.shape}")
        w.CopyFrom(numpy_helper.from_array((a * s[:, None]).astype(np.float32), w.name))
        done += 1
        if (node.input[0], g) in shared:
            node.input[0] = shared[node.input[0], g]
            continue
        inv = numpy_helper.from_array((1.0 / s).astype(np.float32), f"{g}.smooth_inv")
        m.graph.initializer.append(inv)
        out = shared[node.input[0], g] = f"{g}.smoothed_input"
        new_nodes.append((node, helper.make_node("Mul", [node.input[0], inv.name], [out],
                                                 name=f"{g}.smooth")))
        node.input[0] = out
    for node, mul in new_nodes:   # keep topological order: each Mul right before its op
        idx = list(m.graph.node).index(node)
        m.graph.node.insert(idx, mul)
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    onnx.save(SymbolicShapeInference.infer_shapes(m, auto_merge=True), str(dst))
    return done


def quantised(s) -> Callable[[str], bool]:
    """Whether settings ``s`` quantise the linear (group) ``name``: the fused Attention's
    ``...qkv`` when ``Attention`` is in ``s.fused_ops``, other linears unless in ``float_linears``."""
    pats = [re.compile(p) for p in s.float_linears]

    def f(name: str) -> bool:
        if name.endswith(".qkv"):
            return "Attention" in s.fused_ops
        return not any(p.fullmatch(name) for p in pats)
    return f


def quantise_fused(src: Path, dst: Path, s, reader_factory) -> None:
    """int8 of the fused graph ``src`` into ``dst`` under settings ``s``
    (:class:`forensics.search.onnx_embed.OnnxSettings`): static (calibrated by the reader
    ``reader_factory()`` returns) or dynamic; weight MatMuls less ``s.float_linears``, plus
    Attention when listed in ``s.fused_ops`` (dynamic only: ORT has no static QAttention)."""
    import logging

    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    if s.fused_quant not in ("static", "dynamic"):
        raise ValueError(f"unknown fused_quant {s.fused_quant!r} (static | dynamic)")
    if "Attention" in s.fused_ops and s.fused_quant != "dynamic":
        raise ValueError("Attention is quantised only by fused_quant='dynamic' (QAttention)")
    m = onnx.load(str(src))
    inits = {i.name for i in m.graph.initializer}
    pats = [re.compile(p) for p in s.float_linears]
    nodes = [n.name for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits
             and not any(p.fullmatch(n.name) for p in pats)]
    ops = ["MatMul"]
    if "Attention" in s.fused_ops:
        nodes += [n.name for n in attention_nodes(m)]
        ops.append("Attention")
    if not nodes:
        raise RuntimeError(f"nothing left to quantise in {src} (OnnxSettings.float_linears)")
    act = QuantType.QUInt8 if s.activations == "uint8" else QuantType.QInt8
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(max(quiet, logging.ERROR))
    try:
        if s.fused_quant == "dynamic":
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=ops,
                             nodes_to_quantize=nodes, per_channel=s.per_channel,
                             reduce_range=s.reduce_range, weight_type=QuantType.QInt8,
                             extra_options=extra)
        else:
            extra.update({"CalibStridedMinMax": 1, "ActivationSymmetric": s.symmetric_activations})
            if not s.quantise_outputs:
                extra["OpTypesToExcludeOutputQuantization"] = ["MatMul"]
            if s.calib_method == "Percentile":
                extra["CalibPercentile"] = s.calib_percentile
            fmt = QuantFormat.QDQ if s.fused_format == "QDQ" else QuantFormat.QOperator
            quantize_static(str(src), str(dst), reader_factory(), quant_format=fmt,
                            op_types_to_quantize=ops, nodes_to_quantize=nodes,
                            per_channel=s.per_channel, reduce_range=s.reduce_range,
                            activation_type=act, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, s.calib_method),
                            extra_options=extra)
    finally:
        logging.getLogger().setLevel(quiet)


__all__ = ["attention_nodes", "fuse", "quantise_fused", "quantised", "smooth_graph"]
