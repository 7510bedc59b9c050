"""Which values a graph input may take, read from the ops it feeds, so that seeded random inputs stay in
each op's domain: an index within the axis it indexes, a slice bound within its axis, a positive scale."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepipe.models.shared.errors import InputFileError


@dataclass(frozen=True)
class Domain:
    """Random values of one input are drawn from [low, high) (exactly low when they are equal)."""

    low: float
    high: float
    why: str  # the op and operand that bound it, for messages


# (op type, operand index) whose integer values index an axis of operand 0, and which axis attribute says where
_INDICES = {("Gather", 1), ("GatherElements", 1), ("ScatterElements", 1), ("GatherND", 1), ("ScatterND", 1)}
# operands whose values set an output's shape: no random value can stand for the real one
_SHAPES = {
    ("Reshape", 1),
    ("Expand", 1),
    ("Tile", 1),
    ("ConstantOfShape", 0),
    ("Range", 2),
    ("OneHot", 1),
    ("Resize", 3),
}


def input_domains(path: Path) -> dict[str, Domain]:
    """The domain of each graph input that feeds an index, a slice bound or a resize scale or size.

    Raises InputFileError for an input that sets a shape (a Reshape's shape, an Expand's, a Tile's
    repeats...): random values cannot stand for it, and the user's own values are needed.
    """
    import onnx

    from edgepipe.exporters.onnx.files import inferred_graph

    model = onnx.load(str(path))
    try:
        graph = inferred_graph(model)
    except Exception:  # without inferred shapes, only constant bounds and rules by op apply
        graph = model.graph
    inputs = {v.name for v in graph.input} - {i.name for i in graph.initializer}
    dims = _static_dims(graph)
    domains: dict[str, Domain] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name not in inputs:
                continue
            where = f"{node.op_type} {node.name or '(unnamed)'} operand {index}"
            if (node.op_type, index) in _SHAPES:
                raise InputFileError(
                    f"{path.name}: input {name!r} sets a shape ({where}), so random values cannot stand for it; "
                    f"give real values with --inputs FILE.npz (an array named {name!r})"
                )
            domain = _domain(node, index, dims, where)
            if domain is not None:
                domains[name] = _narrower(domains.get(name), domain)
    return domains


def _domain(node, index: int, dims: dict[str, tuple], where: str) -> Domain | None:
    """The values operand `index` of node may take, or None when any value will do."""
    data = dims.get(node.input[0]) if node.input else None
    if (node.op_type, index) in _INDICES:
        if data is None:
            return Domain(0, 1, where)  # index 0 exists along any non-empty axis
        if node.op_type in ("GatherND", "ScatterND"):
            return Domain(0, max(1, min(data)), where)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        return Domain(0, max(1, data[axis % len(data)]), where) if data else Domain(0, 1, where)
    if node.op_type == "Slice" and index in (1, 2):
        # starts in the first half of the smallest axis, ends in the second: never empty, always in bounds
        smallest = min(data) if data else 1
        half = max(1, smallest // 2)
        return Domain(0, half, where) if index == 1 else Domain(half, max(half, smallest) + 1, where)
    if node.op_type == "Slice" and index == 4:
        return Domain(1, 2, where)  # a step of 1
    if node.op_type == "Resize" and index == 2:
        # scales: positive; exactly 1, because which axes a mode may scale differs by runtime
        return Domain(1.0, 1.0, where)
    return None


def _narrower(a: Domain | None, b: Domain) -> Domain:
    """The intersection of two domains of one input (an index used twice fits both axes)."""
    if a is None:
        return b
    low, high = max(a.low, b.low), min(a.high, b.high)
    return Domain(low, max(high, low + 1), f"{a.why}; {b.why}")


def _static_dims(graph) -> dict[str, tuple]:
    """Every value's shape where all its dimensions are known."""
    dims = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        shape = value.type.tensor_type.shape
        found = tuple(d.dim_value for d in shape.dim)
        if shape.dim and all(d.HasField("dim_value") and d.dim_value > 0 for d in shape.dim):
            dims[value.name] = found
    for init in graph.initializer:
        dims[init.name] = tuple(init.dims)
    return dims
