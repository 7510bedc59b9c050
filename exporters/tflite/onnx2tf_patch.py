"""Fixes to onnx2tf 1.29's op translators, in place only while edgepipe runs a conversion.

Each fix wraps one translator (`onnx2tf.ops.<Op>.make_node`, which onnx2tf looks up per node)
and changes what it is given, never what it computes; tests/e2e/test_own_models.py and
tests/exporters/test_computed_filter.py (Conv) and tests/exporters/test_mobilevitv2_patterns.py
(Resize) pin the resulting op histograms, so a later onnx2tf that changes its translators shows there.
"""

from __future__ import annotations

import contextlib
import functools
import importlib


@contextlib.contextmanager
def translator_fixes():
    """Install every fix for the duration of a conversion."""
    fixes = {
        "Conv": (_depthwise_after_onnx_layout, _computed_filter_in_tf_layout),
        "Resize": (_resize_sampling_grid_kept,),
    }
    modules = {op: importlib.import_module(f"onnx2tf.ops.{op}") for op in fixes}
    originals = {op: module.make_node for op, module in modules.items()}
    for op, wrappers in fixes.items():
        make_node = originals[op]
        for wrap in wrappers:
            make_node = wrap(make_node)
        modules[op].make_node = make_node
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
        return _with_transposed(make_node, entry, [0, 2, 3, 1], graph_node, tf_layers_dict, kwargs)

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


def _computed_filter_in_tf_layout(make_node):
    """A 2-D Conv whose filter is computed in the graph (timm's CondConv: each sample's filter is its
    routing weights times the experts') gets that filter in TensorFlow's layout.

    onnx2tf moves a constant filter from ONNX's [out, in, kh, kw] to TensorFlow's [kh, kw, in, out],
    but hands a computed one to tf.nn.convolution as it holds it: in ONNX's order, which fails
    ("Depth of input (16) is not a multiple of input depth of filter (3)") or, where the sizes
    allow, reads the wrong axes. Held in ONNX's order (and no other order of the same sizes), it is
    transposed first; the ledger judges the result either way.
    """

    @functools.wraps(make_node)
    def translate(*, graph_node, tf_layers_dict, **kwargs):
        weight = graph_node.inputs[1] if len(graph_node.inputs) > 1 else None
        entry = tf_layers_dict.get(getattr(weight, "name", None))
        if entry is None or hasattr(weight, "values") or not _held_in_onnx_order(weight.shape, entry["tf_node"]):
            return make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        return _with_transposed(make_node, entry, [2, 3, 1, 0], graph_node, tf_layers_dict, kwargs)

    return translate


def _with_transposed(make_node, entry: dict, perm: list[int], graph_node, tf_layers_dict, kwargs):
    """The translator's result with one input's TF tensor (entry) transposed by perm while it runs."""
    import tensorflow as tf

    held = entry["tf_node"]
    entry["tf_node"] = tf.transpose(held, perm)
    try:
        return make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
    finally:
        entry["tf_node"] = held


def _held_in_onnx_order(shape, held) -> bool:
    """A static 4-D filter shape [out, in, kh, kw] that the TF tensor has, and that no channels-last
    reading ([out, kh, kw, in]) would share."""
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape):
        return False
    out, inp, kh, kw = shape
    return list(getattr(held, "shape", ())) == list(shape) and [out, kh, kw, inp] != list(shape)


# Resize attributes that opset 18 added; a node that sets any of them away from its default is not
# one an opset-17 translation can read.
_OPSET_18_DEFAULTS = {"antialias": 0, "keep_aspect_ratio_policy": "stretch"}


def _resize_sampling_grid_kept(make_node):
    """A bilinear Resize with align_corners or asymmetric coordinates keeps them at opset 18 and later.

    onnx2tf's Resize honours coordinate_transformation_mode only for opset <= 17; from 18 on it
    falls through to tf.image.resize, which always samples at half-pixel centres. torch's exporter
    writes opset 18, so F.interpolate(..., "bilinear", align_corners=True) (MobileViTv2 at 224x224,
    7x7 maps stretched to 8x8) read the wrong pixels: 0.1 off on values of about 1. The opset-18
    Resize is the opset-17 one plus the attributes above, so given opset 17, the translator takes
    its own align_corners / asymmetric branch: one RESIZE_BILINEAR with the right flags.
    """

    @functools.wraps(make_node)
    def translate(*, graph_node, tf_layers_dict, **kwargs):
        if kwargs.get("opset", 0) >= 18 and _opset_17_resize(graph_node.attrs):
            kwargs = {**kwargs, "opset": 17}
        return make_node(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)

    return translate


def _opset_17_resize(attrs: dict) -> bool:
    """A linear Resize whose grid tf.image.resize does not reproduce, using nothing opset 18 added."""
    return (
        attrs.get("mode") == "linear"
        and attrs.get("coordinate_transformation_mode") in ("align_corners", "asymmetric")
        and "axes" not in attrs
        and all(attrs.get(name, default) == default for name, default in _OPSET_18_DEFAULTS.items())
    )
