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


# onnx2tf turns exactly this chain into one tf.nn.gelu (TFLite GELU); any other spelling of exact
# GELU reaches TFLite as Erf, which only Select-TF (FlexErf) runs:
#   Div(x, 1.4142135) -> Erf -> Add(., 1.0) -> Mul(x, .) -> Mul(., 0.5)
_SQRT2, _HALF_SQRT2 = 1.4142135, 0.70710677


def canonical_gelu(model) -> int:
    """Respell every exact GELU (x * 0.5 * (1 + erf(x / sqrt 2)), in any order of its multiplications)
    as the chain onnx2tf fuses into TFLite's GELU; returns how many were respelt.

    torch's exporter writes Mul(x, Mul(0.5, Add(Erf(..), 1))), which onnx2tf does not recognise.
    """
    import numpy as np
    import onnx.helper
    from onnx import numpy_helper

    graph = model.graph
    scalars = {i.name: numpy_helper.to_array(i) for i in graph.initializer if int(np.prod(i.dims)) == 1}
    scalars.update(
        {
            n.output[0]: numpy_helper.to_array(n.attribute[0].t)
            for n in graph.node
            if n.op_type == "Constant"
            and n.attribute
            and n.attribute[0].name == "value"
            and int(np.prod(n.attribute[0].t.dims)) == 1
        }
    )
    producer, consumers = links(graph)

    def is_scalar(name: str, value: float) -> bool:
        return name in scalars and abs(float(scalars[name].ravel()[0]) - value) < 1e-6

    def other(node, value: float) -> str | None:
        """node's input beside the scalar constant `value`, if it has one."""
        if len(node.input) != 2:
            return None
        a, b = node.input
        for const, rest in ((b, a), (a, b)):
            if is_scalar(const, value):
                return rest
        return None

    def only_user(name: str, op: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op and name not in graph_outputs else None

    graph_outputs = {o.name for o in graph.output}
    replaced: dict[int, list] = {}  # id(first old node) -> new nodes; old nodes to drop
    dropped: set[int] = set()
    for erf in [n for n in graph.node if n.op_type == "Erf"]:
        scale = producer.get(erf.input[0])
        if scale is None or len(consumers.get(scale.output[0], [])) != 1:
            continue
        x = (
            scale.input[0]
            if scale.op_type == "Div" and is_scalar(scale.input[1], _SQRT2)
            else other(scale, _HALF_SQRT2)
            if scale.op_type == "Mul"
            else None
        )
        add = only_user(erf.output[0], "Add")
        if x is None or add is None or other(add, 1.0) != erf.output[0]:
            continue
        chain = _gelu_tail(add, x, other, only_user, producer, consumers)
        if chain is None:
            continue
        old, out = [scale, erf, add, *chain], chain[-1].output[0]
        if any(id(n) in dropped for n in old):
            continue
        dtype = scalars[next(i for i in scale.input if i in scalars)].dtype
        stem = erf.name or out
        consts = {f"{stem}__{k}": np.array(v, dtype) for k, v in (("sqrt2", [_SQRT2]), ("one", 1.0), ("half", 0.5))}
        sqrt2, one, half = consts
        # onnx2tf's matcher reads the divisor as a TF tensor (a Constant node's output) and compares
        # it with 1.4142135 as numpy 1.x does, which holds for a float32 of shape (1,) but not (); it
        # reads the 1.0 and the 0.5 as initializers.
        graph.initializer.extend(numpy_helper.from_array(consts[name], name) for name in (one, half))
        t = [f"{stem}__gelu_{i}" for i in range(4)]
        replaced[id(scale)] = [
            onnx.helper.make_node(
                "Constant", [], [sqrt2], name=f"{stem}__sqrt2", value=numpy_helper.from_array(consts[sqrt2])
            ),
            onnx.helper.make_node("Div", [x, sqrt2], [t[0]], name=f"{stem}__div"),
            onnx.helper.make_node("Erf", [t[0]], [t[1]], name=f"{stem}__erf"),
            onnx.helper.make_node("Add", [t[1], one], [t[2]], name=f"{stem}__add"),
            onnx.helper.make_node("Mul", [x, t[2]], [t[3]], name=f"{stem}__mul_x"),
            onnx.helper.make_node("Mul", [t[3], half], [out], name=f"{stem}__mul_half"),
        ]
        dropped.update(id(n) for n in old)
    if replaced:
        nodes = [new for node in graph.node for new in replaced.get(id(node), [] if id(node) in dropped else [node])]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(replaced)


def _gelu_tail(add, x: str, other, only_user, producer, consumers) -> list | None:
    """The Mul nodes that make x * 0.5 * add, in one of the three orders; None if add is not used so."""
    first = only_user(add.output[0], "Mul")
    if first is None:
        return None
    rest = [i for i in first.input if i != add.output[0]]
    if len(rest) != 1:
        return None
    if rest[0] == x:  # Mul(x, add) then Mul(., 0.5)
        second = only_user(first.output[0], "Mul")
        return [first, second] if second is not None and other(second, 0.5) == first.output[0] else None
    if other(first, 0.5) == add.output[0]:  # Mul(0.5, add) then Mul(x, .)
        second = only_user(first.output[0], "Mul")
        return [first, second] if second is not None and sorted(second.input) == sorted([first.output[0], x]) else None
    half = producer.get(rest[0])  # Mul(Mul(x, 0.5), add)
    if (
        half is not None
        and half.op_type == "Mul"
        and other(half, 0.5) == x
        and len(consumers.get(half.output[0], [])) == 1
    ):
        return [half, first]
    return None


def batchnorm_between_reshapes(model) -> int:
    """Reshape(y -> (N, C)) -> BatchNormalization -> Reshape(-> y's shape), with C y's last axis,
    becomes y * scale + shift on y itself; returns how many were rewritten.

    timm's LinearNorm (LeViT) flattens a (B, N, C) tensor to run BatchNorm1d. The same affine on
    the last axis folds into the matmul before it, and the reshapes go: levit_128s's file loses 31
    RESHAPE, and the HardSwish after such a block can stay one op (spelt_hard_swish).
    """
    import numpy as np
    import onnx
    import onnx.helper
    from onnx import numpy_helper

    graph = model.graph
    if not any(node.op_type == "BatchNormalization" for node in graph.node):
        return 0
    inits = {i.name: i for i in graph.initializer}
    shapes = static_shapes(model)
    producer, consumers = links(graph)
    graph_outputs = {o.name for o in graph.output}
    replaced: dict[int, list] = {}  # id(node) -> the nodes that take its place (none: removed)
    for bn in (node for node in graph.node if node.op_type == "BatchNormalization"):
        merge = producer.get(bn.input[0])
        after = consumers.get(bn.output[0], [])
        if (
            len(bn.output) != 1
            or merge is None
            or merge.op_type != "Reshape"
            or len(after) != 1
            or after[0].op_type != "Reshape"
            or not all(n in inits for n in bn.input[1:])
        ):
            continue
        split, y = after[0], merge.input[0]
        y_shape, merged, out_shape = shapes.get(y), shapes.get(bn.input[0]), shapes.get(split.output[0])
        if (
            not y_shape
            or not merged
            or len(merged) != 2
            or out_shape != y_shape
            or merged[1] != y_shape[-1]
            or len(consumers.get(merge.output[0], [])) != 1
            or {merge.output[0], bn.output[0]} & graph_outputs
        ):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        dtype = numpy_helper.to_array(inits[bn.input[1]]).dtype
        names = (f"{bn.name or bn.output[0]}__scale", f"{bn.name or bn.output[0]}__shift")
        graph.initializer.extend(
            [
                numpy_helper.from_array(scale.astype(dtype), names[0]),
                numpy_helper.from_array((beta - mean * scale).astype(dtype), names[1]),
            ]
        )
        scaled = f"{split.output[0]}__scaled"
        replaced[id(merge)], replaced[id(split)] = [], []
        replaced[id(bn)] = [
            onnx.helper.make_node("Mul", [y, names[0]], [scaled], name=f"{names[0]}_mul"),
            onnx.helper.make_node("Add", [scaled, names[1]], [split.output[0]], name=f"{names[1]}_add"),
        ]
    if replaced:
        nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
        del graph.node[:]
        graph.node.extend(nodes)
        drop_unused_initializers(graph)
    return len(replaced) // 3


def static_shapes(model) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape where ONNX shape inference knows all of it."""
    shapes = {}
    for info in _inferred_tensors(model):
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


def elem_types(model) -> dict[str, int]:
    """Every tensor's ONNX element type where shape inference knows it."""
    return {i.name: i.type.tensor_type.elem_type for i in _inferred_tensors(model) if i.type.tensor_type.elem_type}


def _inferred_tensors(model) -> list:
    """The value infos of every tensor after ONNX shape inference: intermediates, inputs and outputs."""
    from edgepipe.exporters.onnx.files import inferred_graph

    graph = inferred_graph(model)
    return [*graph.value_info, *graph.input, *graph.output]


def constant_values(graph, names: set[str]) -> dict:
    """The values of those of names that are initializers or Constant nodes' outputs, by name (only those:
    a model's weights are not copied out to read a few small constants)."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name in names}
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and node.output[0] in names
            and node.attribute
            and node.attribute[0].name == "value"
        ):
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def drop_unused_initializers(graph) -> None:
    """Initializers no node reads any more (one that is also a graph input stays: dropping it would
    make it a required input)."""
    used = {name for node in graph.node for name in node.input} | {i.name for i in graph.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def spelt_hard_swish(model) -> int:
    """HardSwish(x) -> Mul(x, Mul(Clip(Add(x, 3), 0, 6), 1/6)); returns how many were respelt.

    onnx2tf translates HardSwish as `(x * relu6(x + 3)) * (1/6)`, which TFLite's converter does not
    match as a hard swish: after a matmul it folds the `+ 3` into a second copy of the matmul
    (levit_128s: 11 extra FULLY_CONNECTED, 1.3x slower than litert-torch's file). Each op of this
    chain translates on its own, into `x * (relu6(x + 3) * (1/6))`, which TFLite makes one HARD_SWISH.
    """
    import numpy as np
    import onnx.helper
    from onnx import numpy_helper

    graph = model.graph
    swishes = [n for n in graph.node if n.op_type == "HardSwish"]
    if not swishes:
        return 0
    types = elem_types(model)
    stem, replaced, made = "edgepipe__hard_swish", {}, set()
    for i, node in enumerate(swishes):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types.get(node.input[0], onnx.TensorProto.FLOAT))
        c = {k: f"{stem}_{k}_{dtype.name}" for k in ("three", "zero", "six", "sixth")}  # constants in x's dtype
        if dtype.name not in made:
            values = {"three": 3.0, "zero": 0.0, "six": 6.0, "sixth": 1.0 / 6.0}
            graph.initializer.extend(numpy_helper.from_array(np.array(values[k], dtype), c[k]) for k in c)
            made.add(dtype.name)
        x, out, t = node.input[0], node.output[0], [f"{node.output[0]}__hs{j}" for j in range(3)]
        replaced[id(node)] = [
            onnx.helper.make_node("Add", [x, c["three"]], [t[0]], name=f"{stem}{i}_add"),
            onnx.helper.make_node("Clip", [t[0], c["zero"], c["six"]], [t[1]], name=f"{stem}{i}_clip"),
            onnx.helper.make_node("Mul", [t[1], c["sixth"]], [t[2]], name=f"{stem}{i}_scale"),
            onnx.helper.make_node("Mul", [x, t[2]], [out], name=f"{stem}{i}_mul"),
        ]
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(swishes)


# Ops whose outputs are never negative: a max over them never needs a padding below zero.
_NON_NEGATIVE = {"Relu", "Sigmoid", "HardSigmoid", "Softplus", "Softmax", "Abs", "Exp"}


def padded_max_pools(model) -> int:
    """MaxPool(pads) -> Pad + MaxPool without pads, with the same maxima; returns how many were rewritten.

    onnx2tf pads a MaxPool's input with float32's lowest value. int8 calibration then takes that
    value into the tensor's range (resnet18's stem: scale 1.3e36), and TFLite's int8 ADD that reads
    it aborts the whole process in its Prepare. Zeros pad an input that cannot be negative (after a
    ReLU); any other input is padded with its edge values. Either way every window still holds at
    least one real element (pads never exceed half the kernel) that is at least as large as its
    padding, so each maximum is unchanged.
    """
    import numpy as np
    import onnx.helper
    from onnx import numpy_helper

    graph = model.graph
    candidates = [node for node in graph.node if _explicitly_padded_pool(node)]
    if not candidates:
        return 0
    producer = {out: node for node in graph.node for out in node.output}
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shapes = static_shapes(model)
    replaced = {}
    for node in candidates:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel, pads = list(attrs["kernel_shape"]), list(attrs["pads"])
        if _tf_same_pads(shapes.get(node.input[0]), kernel, list(attrs.get("strides", [1] * len(kernel)))) == pads:
            continue  # onnx2tf writes these as one SAME pooling, which pads with nothing
        spatial = len(kernel)
        source = producer.get(node.input[0])
        non_negative = source is not None and (
            source.op_type in _NON_NEGATIVE
            or (
                source.op_type == "Clip"
                and len(source.input) > 1
                and source.input[1] in constants
                and float(constants[source.input[1]]) >= 0
            )
        )
        name = f"{node.name or node.output[0]}__pads"
        # ONNX Pad: begins then ends of every axis; batch and channels are not padded.
        widths = [0, 0, *pads[:spatial], 0, 0, *pads[spatial:]]
        graph.initializer.append(numpy_helper.from_array(np.array(widths, np.int64), name))
        padded = f"{node.output[0]}__padded"
        pad = onnx.helper.make_node(
            "Pad", [node.input[0], name], [padded], name=f"{name}_pad", mode="constant" if non_negative else "edge"
        )
        pool = onnx.helper.make_node("MaxPool", [padded], list(node.output), name=node.name)
        pool.attribute.extend(a for a in node.attribute if a.name != "pads")
        replaced[id(node)] = [pad, pool]
    if replaced:
        nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(replaced)


def _explicitly_padded_pool(node) -> bool:
    """A single-output MaxPool with explicit pads of at most half its kernel and no dilation."""
    import onnx.helper

    if node.op_type != "MaxPool" or len(node.output) != 1:
        return False
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    kernel, pads = list(attrs.get("kernel_shape", [])), list(attrs.get("pads", []))
    return (
        attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and any(pads)
        and all(d == 1 for d in attrs.get("dilations", []))
        and all(p <= k // 2 for p, k in zip(pads, kernel + kernel))
    )


def _tf_same_pads(shape: tuple | None, kernel: list[int], strides: list[int]) -> list[int] | None:
    """The begins and ends TensorFlow's SAME padding gives a pooling of an NC... input; None if unknown."""
    if shape is None or len(shape) != len(kernel) + 2:
        return None
    totals = [max((-(-size // s) - 1) * s + k - size, 0) for size, k, s in zip(shape[2:], kernel, strides)]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


def links(graph) -> tuple[dict, dict[str, list]]:
    """(tensor name -> the node writing it, tensor name -> the nodes reading it) of one graph."""
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producer, consumers
