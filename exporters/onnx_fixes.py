"""ONNX-level rewrites of ops onnx2tf cannot translate into ops it can, with the same numbers."""
from __future__ import annotations


def decompose_reduce_l2(model) -> int:
    """ReduceL2(x) -> Sqrt(ReduceSumSquare(x)) with the same axes and keepdims; returns how many were rewritten.

    onnx2tf stops at ReduceL2 (torch.linalg.vector_norm, e.g. timm's EdgeNeXt); both halves
    convert to TFLite builtins (SUM of MUL, SQRT).
    """
    import onnx.helper

    graph, count, nodes = model.graph, 0, []
    for node in graph.node:
        if node.op_type != "ReduceL2":
            nodes.append(node)
            continue
        squared = f"{node.output[0]}__sum_of_squares"
        reduce = onnx.helper.make_node("ReduceSumSquare", list(node.input), [squared], name=f"{node.name}__sum_sq")
        reduce.attribute.extend(node.attribute)  # keepdims, noop_with_empty_axes (and axes before opset 18)
        nodes += [reduce, onnx.helper.make_node("Sqrt", [squared], list(node.output), name=f"{node.name}__sqrt")]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count
