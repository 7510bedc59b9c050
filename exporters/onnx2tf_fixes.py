"""Fixes to onnx2tf 1.29's op translators, in place only while edgepipe runs a conversion.

Each fix wraps one translator (`onnx2tf.ops.<Op>.make_node`, which onnx2tf looks up per node)
and changes what it is given or how it spells the same values, never what it computes; tests/e2e/test_own_models.py pins
the resulting op histograms, so a later onnx2tf that changes its translators shows there.
"""

from __future__ import annotations

import contextlib
import functools
import importlib


@contextlib.contextmanager
def translator_fixes():
    """Install every fix for the duration of a conversion."""
    fixes = {"Conv": _depthwise_after_onnx_layout, "HardSwish": _hard_swish_as_tflite_matches_it}
    modules = {op: importlib.import_module(f"onnx2tf.ops.{op}") for op in fixes}
    originals = {op: module.make_node for op, module in modules.items()}
    for op, module in modules.items():
        module.make_node = fixes[op](originals[op])
    try:
        yield
    finally:
        for op, module in modules.items():
            module.make_node = originals[op]


def _depthwise_after_onnx_layout(make_node):
    """A depthwise Conv whose input onnx2tf holds in the ONNX layout stays a DEPTHWISE_CONV_2D.

    onnx2tf's Conv tests `group == channels` on its input's TF shape *before* its own workaround
    moves an input held as NCHW to NHWC, so after such a tensor (ConvNeXt's permute/LayerNorm/
    permute, a residual sum after a permute) the depthwise conv becomes a grouped CONV_2D, which
    runs slower. Making the same move first lets the test see the channels.
    """

    @functools.wraps(make_node)
    def translate(*, graph_node, tf_layers_dict, **kwargs):
        entry = tf_layers_dict.get(graph_node.inputs[0].name)
        if entry is None or not _held_as_onnx_depthwise_input(graph_node, entry["tf_node"]):
            return make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        import tensorflow as tf

        held = entry["tf_node"]
        entry["tf_node"] = tf.transpose(held, [0, 2, 3, 1])
        try:
            return make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        finally:
            entry["tf_node"] = held

    return translate


def _held_as_onnx_depthwise_input(node, held) -> bool:
    """The node is a 2-D depthwise Conv and its input's TF tensor has the ONNX (NCHW) shape,
    with dimensions that onnx2tf's workaround would read as channels-first (not all equal)."""
    shape = node.inputs[0].shape
    if node.attrs.get("group", 1) == 1 or shape is None or len(shape) != 4:
        return False
    if not all(isinstance(d, int) for d in shape) or len(set(shape[1:])) == 1:
        return False
    return list(getattr(held, "shape", ())) == list(shape) and node.attrs["group"] == shape[1]


def _hard_swish_as_tflite_matches_it(make_node):
    """A HardSwish stays one HARD_SWISH op, whatever produced its input.

    onnx2tf writes `(x * relu6(x + 3)) * (1/6)`, which TFLite's converter does not match as a
    hard swish; after a matmul it folds the `+ 3` into a second copy of that matmul instead
    (levit_128s: 11 extra FULLY_CONNECTED, 1.3x slower than litert-torch's file). The converter
    matches `x * (relu6(x + 3) * (1/6))`: the same values, grouped as it expects. (A reshape
    between the matmul and the HardSwish still defeats it: onnx_fixes.batchnorm_between_reshapes.)
    """

    @functools.wraps(make_node)
    def translate(*, graph_node, tf_layers_dict, **kwargs):
        result = make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        entry = tf_layers_dict.get(graph_node.inputs[0].name)
        out = tf_layers_dict[graph_node.outputs[0].name]
        x = entry["tf_node"] if entry is not None else None
        # only where onnx2tf translated it in place (edgepipe gives it no transposes to add)
        if x is not None and list(getattr(x, "shape", ())) == list(getattr(out["tf_node"], "shape", [None])):
            import tensorflow as tf

            out["tf_node"] = x * (tf.nn.relu6(x + 3.0) * 0.16666667)
        return result

    return translate
