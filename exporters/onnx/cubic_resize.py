"""Bicubic Resize as two matrix products, which TFLite runs with builtin ops.

onnx2tf translates a cubic Resize into TensorFlow's ResizeBicubic, which TFLite has no builtin for:
only Select-TF (FlexResizeBicubic) runs it, and a phone's stock runtime cannot (timm's crossvit
models resize their input from 240 to 224 so). A cubic resize of a fixed size is linear and
separable: each output row is a fixed mix of at most four input rows, each output column of four
input columns. With A_h (out_h x in_h) and A_w (out_w x in_w) built from ONNX's own definition of
the op (coordinate transformation, cubic coefficient, edge clamping or exclude_outside), the resize
is A_h @ x @ A_w^T on the last two axes: two MatMuls with constant matrices.
"""

from __future__ import annotations

import numpy as np

# How each mode maps an output coordinate to the input's (ONNX Resize), given the lengths and the scale.
_COORDINATES = {
    "half_pixel": lambda i, n_in, n_out, scale: (i + 0.5) / scale - 0.5,
    "pytorch_half_pixel": lambda i, n_in, n_out, scale: (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i),
    "align_corners": lambda i, n_in, n_out, scale: i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(i),
    "asymmetric": lambda i, n_in, n_out, scale: i / scale,
}


def cubic_matrix(n_in: int, n_out: int, scale: float, mode: str, a: float, exclude_outside: bool) -> np.ndarray:
    """The (n_out, n_in) matrix of a 1-D cubic resize as ONNX defines it, in float64."""
    x = _COORDINATES[mode](np.arange(n_out, dtype=np.float64), n_in, n_out, scale)
    base = np.floor(x)
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    taps = [(base + k, _cubic(x - (base + k), a)) for k in (-1, 0, 1, 2)]
    if exclude_outside:  # taps outside the input get no weight, and the others share it
        inside = [(index, np.where((index >= 0) & (index < n_in), w, 0.0)) for index, w in taps]
        total = sum(w for _, w in inside)
        taps = [(index, w / total) for index, w in inside]
    for index, weight in taps:
        np.add.at(matrix, (rows, np.clip(index, 0, n_in - 1).astype(np.int64)), weight)
    return matrix


def _cubic(distance: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient a."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def cubic_resizes_as_matmuls(model) -> int:
    """Rewrite every cubic Resize of a float32 4-D tensor with a known shape that resizes only its last two
    axes, to fixed sizes or scales, as two MatMuls; returns how many were rewritten."""
    import onnx.helper
    from onnx import numpy_helper

    from edgepipe.exporters.onnx.fixes import constant_values, drop_unused_initializers, elem_types, static_shapes

    graph = model.graph
    cubic = [n for n in graph.node if _is_cubic(n)]
    if not cubic:
        return 0
    shapes, types = static_shapes(model), elem_types(model)
    constants = constant_values(graph, {name for n in cubic for name in n.input[1:]})
    nodes, count = [], 0
    for node in graph.node:
        sizes = _resized(node, shapes, types, constants) if _is_cubic(node) else None
        if sizes is None:
            nodes.append(node)
            continue
        (n_in_h, n_in_w), (n_out_h, n_out_w), (scale_h, scale_w) = sizes
        mode = _attribute(node, "coordinate_transformation_mode", b"half_pixel").decode()
        a = float(_attribute(node, "cubic_coeff_a", -0.75))
        exclude = bool(_attribute(node, "exclude_outside", 0))
        rows = cubic_matrix(n_in_h, n_out_h, scale_h, mode, a, exclude).astype(np.float32)
        cols = cubic_matrix(n_in_w, n_out_w, scale_w, mode, a, exclude).T.astype(np.float32)
        prefix = node.name or node.output[0]
        graph.initializer.extend(
            [numpy_helper.from_array(rows, f"{prefix}__rows"), numpy_helper.from_array(cols, f"{prefix}__columns")]
        )
        across = f"{prefix}__columns_resized"
        nodes += [
            onnx.helper.make_node("MatMul", [node.input[0], f"{prefix}__columns"], [across], name=f"{prefix}__w"),
            onnx.helper.make_node("MatMul", [f"{prefix}__rows", across], list(node.output), name=f"{prefix}__h"),
        ]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        drop_unused_initializers(graph)
    return count


def _is_cubic(node) -> bool:
    return node.op_type == "Resize" and _attribute(node, "mode", b"nearest") == b"cubic"


def _resized(node, shapes: dict, types: dict, constants: dict):
    """((in_h, in_w), (out_h, out_w), (scale_h, scale_w)) when the pass can rewrite this Resize, else None."""
    from onnx import TensorProto

    x = node.input[0]
    shape = shapes.get(x)
    if shape is None or len(shape) != 4 or types.get(x) != TensorProto.FLOAT:
        return None
    if _attribute(node, "antialias", 0) or _attribute(node, "axes", None) is not None:
        return None
    if _attribute(node, "keep_aspect_ratio_policy", b"stretch") != b"stretch":
        return None
    if _attribute(node, "coordinate_transformation_mode", b"half_pixel").decode() not in _COORDINATES:
        return None
    inputs = list(node.input) + [""] * (4 - len(node.input))
    roi, scales_name, sizes_name = inputs[1:4]
    if roi and (roi not in constants or constants[roi].size):  # a region of interest: tf_crop_and_resize only
        return None
    if sizes_name:
        if sizes_name not in constants:
            return None
        out = tuple(int(s) for s in constants[sizes_name])
        scales = tuple(o / i for o, i in zip(out, shape))
    elif scales_name in constants and constants[scales_name].size == 4:
        scales = tuple(float(s) for s in constants[scales_name])
        out = tuple(int(np.floor(i * s)) for i, s in zip(shape, scales))
    else:
        return None
    if len(out) != 4 or out[:2] != shape[:2] or min(out) < 1:
        return None
    return shape[2:], out[2:], scales[2:]


def _attribute(node, name: str, default):
    """A node attribute's value, or default when it is absent."""
    import onnx.helper

    found = [a for a in node.attribute if a.name == name]
    return onnx.helper.get_attribute_value(found[0]) if found else default
