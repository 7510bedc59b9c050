"""Channels-last blocks between two transposes, rewritten at the ONNX level to act channels-first.

ConvNeXt-style blocks (PyTorch's permute to NHWC, LayerNorm and Linear on the last axis, permute
back) make onnx2tf lose track of which tensors it holds channels-last. It then picks layouts by
trial inference of the whole graph so far at every binary op (minutes for convnext_tiny), and
leaves the depthwise convolutions after such a block grouped. Per pixel, the same block reads:
LayerNormalization over channels as its reductions over axis 1 and a 1x1 depthwise Conv for its
scale and shift, MatMul by a constant (and its bias Add) as a 1x1 Conv, scalar and unary ops as
they are. Then both transposes go, and onnx2tf sees a plain channels-first CNN.
"""

from __future__ import annotations

import numpy as np

from edgepipe.exporters.onnx.files import inferred_graph
from edgepipe.exporters.onnx.fixes import drop_unused_initializers, links

TO_LAST, TO_FIRST = [0, 2, 3, 1], [0, 3, 1, 2]
_SCALAR_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}  # with scalar constants or block tensors
_UNARY = {
    "Erf",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Abs",
    "Neg",
    "Exp",
    "Sqrt",
    "Reciprocal",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Elu",
    "Softplus",
    "Identity",
}


def channels_first_blocks(model) -> int:
    """Rewrite every such block in place; returns how many were rewritten."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    count = 0
    for entry in [n for n in graph.node if is_transpose(n, TO_LAST)]:
        _, consumers = links(graph)  # again for every block: the last rewrite changed the graph
        block = _block(entry, consumers, constants, {o.name for o in graph.output})
        if block is None:
            continue
        inner, exits = block
        written: list = []
        replacements = _channels_first(inner, consumers, constants, written, opset)
        renames = {entry.output[0]: entry.input[0], **{t.output[0]: t.input[0] for t in exits}}
        dropped = {id(entry), *(id(t) for t in exits)}
        nodes = []
        for node in graph.node:
            if id(node) in dropped:
                continue
            for new in replacements.get(id(node), [node]):
                for i, name in enumerate(new.input):
                    new.input[i] = renames.get(name, name)
                nodes.append(new)
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(written)
        constants.update({i.name: numpy_helper.to_array(i) for i in written})
        count += 1
    if count:
        drop_unused_initializers(graph)
        # The blocks' tensors keep their names but are channels-first now: recorded shapes are stale.
        del graph.value_info[:]
        graph.value_info.extend(inferred_graph(model).value_info)
    return count


def is_transpose(node, perm: list[int]) -> bool:
    """node is a Transpose with this perm."""
    return node.op_type == "Transpose" and any(a.name == "perm" and list(a.ints) == perm for a in node.attribute)


def _block(entry, consumers: dict, constants: dict, graph_outputs: set) -> tuple | None:
    """(inner nodes, exit transposes) of the per-pixel ops fed by entry, which end only in
    Transpose(0,3,1,2); None when anything else reads the block's tensors or an op does not fit."""
    inner, exits, seen, frontier = [], [], set(), [entry.output[0]]
    while frontier:
        tensor = frontier.pop()
        if tensor in graph_outputs:
            return None
        for node in consumers.get(tensor, []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if is_transpose(node, TO_FIRST):
                if node.output[0] in graph_outputs:
                    return None
                exits.append(node)
                continue
            if not _per_pixel(node, constants, consumers) or any(consumers.get(o) for o in node.output[1:]):
                return None  # (LayerNormalization's mean and inverse std read elsewhere)
            inner.append(node)
            frontier.append(node.output[0])
    own = {entry.output[0], *(n.output[0] for n in inner)}
    if (
        not inner
        or not exits
        or any(name and name not in own and name not in constants for node in inner for name in node.input)
    ):
        return None
    if any(_bias_of(n, constants) and _folded_into(n, inner, consumers, constants) is None for n in inner):
        return None  # a vector Add that no MatMul takes as its bias would read the wrong axis
    return inner, exits


def _per_pixel(node, constants: dict, consumers: dict) -> bool:
    """node is an op this rewrite can turn channels-first."""
    if node.op_type in _UNARY:
        return True
    if node.op_type in _SCALAR_OPS:
        return (
            all(name not in constants or constants[name].size == 1 for name in node.input)
            or _bias_of(node, constants) is not None
        )
    if node.op_type == "LayerNormalization":
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        return axis in (-1, 3) and len(node.input) >= 2 and all(n in constants for n in node.input[1:] if n)
    if node.op_type == "MatMul":
        return node.input[1] in constants and constants[node.input[1]].ndim == 2 and node.input[0] not in constants
    return False


def _bias_of(node, constants: dict) -> str | None:
    """For Add(x, b) with b a constant vector: b's name (it is folded into the MatMul before it)."""
    if node.op_type != "Add":
        return None
    vectors = [n for n in node.input if n in constants and constants[n].ndim == 1 and constants[n].size > 1]
    return vectors[0] if len(vectors) == 1 and len(node.input) == 2 else None


def _folded_into(add, inner: list, consumers: dict, constants: dict):
    """The block's MatMul whose bias this Add is (its only reader, bias of its output width), or None."""
    source = next(n for n in add.input if n not in constants)
    matmul = next((n for n in inner if n.op_type == "MatMul" and n.output[0] == source), None)
    if matmul is None or len(consumers.get(source, [])) != 1:
        return None
    width = constants[matmul.input[1]].shape[1]
    return matmul if constants[_bias_of(add, constants)].shape == (width,) else None


def _channels_first(inner: list, consumers: dict, constants: dict, written: list, opset: int) -> dict:
    """{id(old node): its channels-first nodes}; new initializers go to written."""
    import onnx.helper
    from onnx import numpy_helper

    def constant(name: str, value) -> str:
        name = f"{name}__{len(written)}"  # unique even where node names are empty
        written.append(numpy_helper.from_array(np.array(value), name))
        return name

    replacements: dict = {}
    for node in inner:
        if node.op_type == "MatMul":
            weight = constants[node.input[1]]
            users = consumers.get(node.output[0], [])
            inputs, out = [node.input[0], constant(f"{node.name}_1x1", weight.T[:, :, None, None])], node.output[0]
            if (
                len(users) == 1
                and _bias_of(users[0], constants)
                and _folded_into(users[0], inner, consumers, constants)
            ):
                inputs.append(_bias_of(users[0], constants))
                out = users[0].output[0]
                replacements[id(users[0])] = []
            replacements[id(node)] = [
                onnx.helper.make_node("Conv", inputs, [out], name=f"{node.name}__1x1", kernel_shape=[1, 1])
            ]
        elif node.op_type == "LayerNormalization":
            replacements[id(node)] = _layer_norm(node, constants, constant, opset)
    return replacements


def _layer_norm(node, constants: dict, constant, opset: int) -> list:
    """LayerNormalization over channels, on the channels-first tensor."""
    import onnx.helper

    x, out, stem = node.input[0], node.output[0], node.name or node.output[0]
    epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    scale = constants[node.input[1]]
    bias = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
    axes = constant(f"{stem}_axes", np.array([1], np.int64))
    t = {k: f"{stem}__{k}" for k in ("mean", "centred", "square", "var", "var_eps", "std", "normed")}

    def mean(src: str, dst: str):
        if opset >= 18:
            return onnx.helper.make_node("ReduceMean", [src, axes], [dst], name=dst, keepdims=1)
        return onnx.helper.make_node("ReduceMean", [src], [dst], name=dst, axes=[1], keepdims=1)

    channels = scale.size
    return [
        mean(x, t["mean"]),
        onnx.helper.make_node("Sub", [x, t["mean"]], [t["centred"]], name=t["centred"]),
        onnx.helper.make_node("Mul", [t["centred"], t["centred"]], [t["square"]], name=t["square"]),
        mean(t["square"], t["var"]),
        onnx.helper.make_node(
            "Add",
            [t["var"], constant(f"{stem}_eps", np.array(epsilon, scale.dtype))],
            [t["var_eps"]],
            name=t["var_eps"],
        ),
        onnx.helper.make_node("Sqrt", [t["var_eps"]], [t["std"]], name=t["std"]),
        onnx.helper.make_node("Div", [t["centred"], t["std"]], [t["normed"]], name=t["normed"]),
        # scale and shift per channel: a 1x1 depthwise Conv (an Add of a (1, C, 1, 1) constant
        # is one onnx2tf 1.29 moves back to channels-first)
        onnx.helper.make_node(
            "Conv",
            [
                t["normed"],
                constant(f"{stem}_scale", scale.reshape(channels, 1, 1, 1)),
                constant(f"{stem}_shift", bias.reshape(channels)),
            ],
            [out],
            name=f"{stem}__affine",
            kernel_shape=[1, 1],
            group=channels,
        ),
    ]
