"""Fixes to onnx2tf 1.29's op translators, in place only while edgepipe runs a conversion.

Each fix wraps one translator (`onnx2tf.ops.<Op>.make_node`, which onnx2tf looks up per node)
and changes what it is given, never what it computes; tests/e2e/test_own_models.py pins
the resulting op histograms, so a later onnx2tf that changes its translators shows there.
"""

from __future__ import annotations

import contextlib
import functools
import importlib


@contextlib.contextmanager
def translator_fixes():
    """Install every fix for the duration of a conversion."""
    conv = importlib.import_module("onnx2tf.ops.Conv")
    original = conv.make_node
    conv.make_node = _depthwise_after_onnx_layout(original)
    try:
        yield
    finally:
        conv.make_node = original


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
