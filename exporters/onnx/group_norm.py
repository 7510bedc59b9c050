"""GroupNorm with one group, as torch exports it, rewritten as reductions over every non-batch axis.

torch writes GroupNorm(G, C) as Reshape(x -> (N, G, -1)), InstanceNormalization (scale ones, bias
zeros), Reshape back to x's shape, then Mul and Add by the per-channel weight and bias. onnx2tf's
fast translation of InstanceNormalization takes its input as channels-last, (N, L, G), and takes
the moments over axis 1; the Reshape's output is held as ONNX has it, (N, G, L). With several
groups the (G,) scale does not broadcast against L, and onnx2tf's fallback for that moves G last,
which is right. With one group it broadcasts, nothing moves, and the moments are taken over the
size-1 axis: every value becomes the bias. timm's GroupNorm1 (MobileViTv2's "LayerNorm2d", 21 of
them in mobilevitv2_050) made that model's fast file wrong by 0.3 to 0.4 on logits no larger than
0.4; edgepipe then fell back to the strict translation, which finds the axes by trial and adds
transposes.

With one group the statistics are taken over all of C, H and W, and that set of axes is the same
in NCHW and NHWC: ReduceMean over axes 1..rank-1 of x itself reads right in whatever layout onnx2tf
holds x, and both reshapes go. GroupNorm with several groups is left as it is.
"""

from __future__ import annotations

import numpy as np

from edgepipe.exporters.onnx.fixes import drop_unused_initializers, links, static_shapes


def single_group_norms(model) -> int:
    """Rewrite every one-group GroupNorm in place; returns how many were rewritten."""
    from onnx import numpy_helper

    graph = model.graph
    if not any(node.op_type == "InstanceNormalization" for node in graph.node):
        return 0
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shapes = static_shapes(model)
    producer, consumers = links(graph)
    graph_outputs = {o.name for o in graph.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    written: list = []
    replaced: dict[int, list] = {}  # id(node) -> the nodes that take its place (none: removed)
    for norm in (n for n in graph.node if n.op_type == "InstanceNormalization"):
        merge = producer.get(norm.input[0])
        after = consumers.get(norm.output[0], [])
        split = after[0] if len(after) == 1 else None
        if not _is_single_group(merge, norm, split, shapes, constants, consumers, graph_outputs):
            continue
        x, rank = merge.input[0], len(shapes[merge.input[0]])
        replaced[id(merge)], replaced[id(split)] = [], []
        replaced[id(norm)] = _normalised(norm, x, split.output[0], rank, constants, written, opset)
    if replaced:
        nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(written)
        drop_unused_initializers(graph)
    return len(replaced) // 3


def _is_single_group(merge, norm, split, shapes: dict, constants: dict, consumers: dict, outputs: set) -> bool:
    """merge -> norm -> split is GroupNorm(1, C): x flattened to (N, 1, C*H*W...), normalised with a
    constant scalar scale and bias, reshaped back to x's own shape, its inner tensors read nowhere else."""
    if merge is None or split is None or merge.op_type != "Reshape" or split.op_type != "Reshape":
        return False
    x_shape, flat = shapes.get(merge.input[0]), shapes.get(merge.output[0])
    if not x_shape or len(x_shape) < 3 or flat != (x_shape[0], 1, int(np.prod(x_shape[1:]))):
        return False
    return (
        shapes.get(split.output[0]) == x_shape
        and len(norm.input) == 3
        and all(name in constants and constants[name].size == 1 for name in norm.input[1:])
        and len(consumers.get(merge.output[0], [])) == 1
        and not {merge.output[0], norm.output[0]} & outputs
    )


def _normalised(norm, x: str, out: str, rank: int, constants: dict, written: list, opset: int) -> list:
    """(x - mean) * (1 / sqrt(var + eps)) * scale + bias, mean and var over axes 1..rank-1 of x."""
    import onnx.helper
    from onnx import numpy_helper

    stem = norm.name or norm.output[0]
    dtype = constants[norm.input[1]].dtype
    scale, bias = (float(constants[name].ravel()[0]) for name in norm.input[1:])
    epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)

    def constant(key: str, value) -> str:
        written.append(numpy_helper.from_array(np.asarray(value), f"{stem}__{key}"))
        return written[-1].name

    axes = list(range(1, rank))
    t = {k: f"{stem}__{k}" for k in ("mean", "centred", "square", "var", "var_eps", "std", "inv_std", "normed")}

    def mean(src: str, dst: str):
        if opset >= 18:
            return onnx.helper.make_node("ReduceMean", [src, axes_name], [dst], name=dst, keepdims=1)
        return onnx.helper.make_node("ReduceMean", [src], [dst], name=dst, axes=axes, keepdims=1)

    axes_name = constant("axes", np.array(axes, np.int64)) if opset >= 18 else ""
    # The reciprocal is of one value per sample; the full tensor is multiplied, not divided.
    nodes = [
        mean(x, t["mean"]),
        onnx.helper.make_node("Sub", [x, t["mean"]], [t["centred"]], name=t["centred"]),
        onnx.helper.make_node("Mul", [t["centred"], t["centred"]], [t["square"]], name=t["square"]),
        mean(t["square"], t["var"]),
        onnx.helper.make_node(
            "Add", [t["var"], constant("eps", np.array(epsilon, dtype))], [t["var_eps"]], name=t["var_eps"]
        ),
        onnx.helper.make_node("Sqrt", [t["var_eps"]], [t["std"]], name=t["std"]),
        onnx.helper.make_node("Reciprocal", [t["std"]], [t["inv_std"]], name=t["inv_std"]),
    ]
    # torch's export gives scale 1 and bias 0 (the per-channel affine follows the second Reshape):
    # multiplying by them would be two more ops for nothing.
    if scale == 1.0 and bias == 0.0:
        return [*nodes, onnx.helper.make_node("Mul", [t["centred"], t["inv_std"]], [out], name=out)]
    factor = f"{stem}__factor"
    nodes.append(
        onnx.helper.make_node("Mul", [t["inv_std"], constant("scale", np.array(scale, dtype))], [factor], name=factor)
    )
    return [
        *nodes,
        onnx.helper.make_node("Mul", [t["centred"], factor], [t["normed"]], name=t["normed"]),
        onnx.helper.make_node("Add", [t["normed"], constant("bias", np.array(bias, dtype))], [out], name=out),
    ]
