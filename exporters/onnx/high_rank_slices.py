"""Slices of tensors above five dimensions, taken at five or fewer.

TFLite's builtin STRIDED_SLICE takes at most five dimensions: onnx2tf translates a Slice of a
six-dimensional tensor into one that only Select-TF runs (FlexStridedSlice), which a phone's stock
runtime cannot. timm's NesT splits its [3, batch, heads, blocks, tokens, dim] attention input so. The
axes a Slice leaves whole can be merged with their whole neighbours without moving a value: Reshape
to the merged shape, the same Slice on the merged axes, Reshape back.
"""

from __future__ import annotations

import numpy as np

MAX_RANK = 5  # what TFLite's STRIDED_SLICE takes


def slices_at_most_5d(model) -> int:
    """Rewrite every Slice of a tensor of known shape above MAX_RANK dimensions, with constant starts, ends,
    axes and steps, whose whole axes merge to MAX_RANK or fewer; returns how many were rewritten."""
    import onnx.helper
    from onnx import numpy_helper

    from edgepipe.exporters.onnx.fixes import constant_values, static_shapes

    graph = model.graph
    if not any(n.op_type == "Slice" for n in graph.node):
        return 0
    shapes = static_shapes(model)
    high = [n for n in graph.node if n.op_type == "Slice" and len(shapes.get(n.input[0], ())) > MAX_RANK]
    if not high:
        return 0
    constants = constant_values(graph, {name for n in high for name in n.input[1:]})
    nodes, count = [], 0
    for node in graph.node:
        plan = _merged(node, shapes, constants) if node.op_type == "Slice" else None
        if plan is None:
            nodes.append(node)
            continue
        merged_in, axes = plan
        prefix = node.name or node.output[0]
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(merged_in, np.int64), f"{prefix}__merged_shape"),
                numpy_helper.from_array(np.array(axes, np.int64), f"{prefix}__merged_axes"),
                numpy_helper.from_array(np.array(shapes[node.output[0]], np.int64), f"{prefix}__shape"),
            ]
        )
        starts, ends = node.input[1], node.input[2]
        steps = [node.input[4]] if len(node.input) > 4 and node.input[4] else []
        merged, sliced = f"{prefix}__merged", f"{prefix}__merged_sliced"
        nodes += [
            onnx.helper.make_node(
                "Reshape", [node.input[0], f"{prefix}__merged_shape"], [merged], name=f"{prefix}__in"
            ),
            onnx.helper.make_node(
                "Slice", [merged, starts, ends, f"{prefix}__merged_axes", *steps], [sliced], name=f"{prefix}__slice"
            ),
            onnx.helper.make_node("Reshape", [sliced, f"{prefix}__shape"], list(node.output), name=f"{prefix}__out"),
        ]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def _merged(node, shapes: dict, constants: dict):
    """(the input's shape with its whole axes merged, the sliced axes' indices in it), or None."""
    shape, out = shapes.get(node.input[0]), shapes.get(node.output[0])
    if shape is None or out is None or len(shape) <= MAX_RANK or len(out) != len(shape):
        return None
    names = list(node.input) + [""] * (5 - len(node.input))
    if any(name not in constants for name in names[1:3]) or any(n and n not in constants for n in names[3:5]):
        return None
    count = len(constants[names[1]])
    axes = [int(a) % len(shape) for a in constants[names[3]]] if names[3] else list(range(count))
    groups: list[list[int]] = []  # each sliced axis alone, each run of whole axes together
    for axis in range(len(shape)):
        if axis in axes or not groups or groups[-1][-1] in axes:
            groups.append([axis])
        else:
            groups[-1].append(axis)
    if len(groups) > MAX_RANK:
        return None
    where = {group[0]: index for index, group in enumerate(groups)}
    return [int(np.prod([shape[a] for a in group])) for group in groups], [where[a] for a in axes]
