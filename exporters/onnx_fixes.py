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
    scalars.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                    if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
                    and int(np.prod(n.attribute[0].t.dims)) == 1})
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

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
        x = (scale.input[0] if scale.op_type == "Div" and is_scalar(scale.input[1], _SQRT2)
             else other(scale, _HALF_SQRT2) if scale.op_type == "Mul" else None)
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
            onnx.helper.make_node("Constant", [], [sqrt2], name=f"{stem}__sqrt2",
                                  value=numpy_helper.from_array(consts[sqrt2])),
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
    if half is not None and half.op_type == "Mul" and other(half, 0.5) == x \
            and len(consumers.get(half.output[0], [])) == 1:
        return [half, first]
    return None
