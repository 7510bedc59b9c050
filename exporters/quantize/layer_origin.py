"""Which PyTorch module a TFLite layer comes from, told by its weights or, for weightless ops, its place.

onnx2tf names TFLite tensors after TensorFlow calls ("model/tf.nn.convolution_1/convolution"),
not after the ONNX nodes, so the link is rebuilt from facts both files hold: a layer with
weights holds the same values as one ONNX initializer (only their order differs), and
torch.onnx names that initializer after the module ("features.0.conv.weight"). A weightless
op (ADD, MEAN, ...) is matched to the n-th ONNX node of its kind when both graphs hold the
same number of them and the element counts agree. A layer matched by neither has no origin.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import numpy as np

# TFLite builtin -> the ONNX ops it is translated from, for ops without weights.
_WEIGHTLESS = {
    "ADD": ("Add",),
    "SUB": ("Sub",),
    "MUL": ("Mul",),
    "MEAN": ("ReduceMean", "GlobalAveragePool"),
    "AVERAGE_POOL_2D": ("AveragePool", "GlobalAveragePool"),
    "MAX_POOL_2D": ("MaxPool",),
    "SOFTMAX": ("Softmax",),
    "HARD_SWISH": ("HardSwish",),
    "LOGISTIC": ("Sigmoid",),
    "RELU_0_TO_1": ("HardSigmoid",),
    "RELU": ("Relu",),
    "PAD": ("Pad",),
    "CONCATENATION": ("Concat",),
    "BATCH_MATMUL": ("MatMul",),
}
_REL_TOL = 1e-5  # the same float32 values summed in another order agree far closer than this


def torch_origins(tflite_model: bytes, layer_names: list[str], onnx_path: Path) -> dict[str, str]:
    """Layer (output tensor name) -> its module path ("features.0.conv") or ONNX node; unmatched layers are left out."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    layers = _tflite_layers(tflite_model, set(layer_names))
    origins = _by_weights(layers, model)
    origins.update(_convs_by_place(layers, model, origins))
    origins.update(_by_place({k: v for k, v in layers.items() if k not in origins}, model))
    return origins


def _tflite_layers(tflite_model: bytes, names: set[str]) -> dict[str, tuple[str, np.ndarray | None, int, int]]:
    """name -> (op, its largest float constant input or None, element count of its output, its place in the graph)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No delegate: XNNPACK would fold the ops it takes into one DELEGATE op.
    interpreter = Interpreter(
        model_content=tflite_model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the graph's wiring; the interpreter has no public accessor
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    layers = {}
    for place, op in enumerate(ops):
        name = tensors[op["outputs"][0]]["name"] if op["outputs"] else None
        if name not in names:
            continue
        constants = [interpreter.get_tensor(i) for i in op["inputs"] if i >= 0 and i not in produced]
        floats = [c for c in constants if c.dtype.kind == "f" and c.size > 1]
        weights = max(floats, key=lambda c: c.size) if floats else None
        elements = int(np.prod(tensors[op["outputs"][0]]["shape"]))
        layers[name] = (op["op_name"], weights, elements, place)
    return layers


def _fingerprint(values: np.ndarray) -> tuple[int, float, float]:
    """What survives any reordering of the values: count, sum of magnitudes, sum of squares."""
    flat = values.astype(np.float64).ravel()
    return flat.size, float(np.abs(flat).sum()), float((flat**2).sum())


def _same(a: tuple[int, float, float], b: tuple[int, float, float]) -> bool:
    return a[0] == b[0] and all(abs(x - y) <= _REL_TOL * max(abs(x), abs(y), 1e-30) for x, y in zip(a[1:], b[1:]))


def _by_weights(layers: dict, model) -> dict[str, str]:
    """Layers whose weights equal exactly one ONNX initializer read by a node: named after that initializer."""
    from onnx import numpy_helper

    read = {name for node in model.graph.node for name in node.input}
    initializers = [
        (init.name, _fingerprint(numpy_helper.to_array(init)))
        for init in model.graph.initializer
        if init.name in read and init.data_type in (1, 10, 11) and np.prod(init.dims) > 1  # float, float16, double
    ]
    origins = {}
    for name, (_op, weights, _elements, _place) in layers.items():
        if weights is None:
            continue
        key = _fingerprint(weights)
        matches = [init for init, print_ in initializers if _same(key, print_)]
        if len(matches) == 1:  # two initializers with equal values (fresh zeros, say) cannot be told apart
            origins[name] = matches[0].removesuffix(".weight")
    return origins


def _convs_by_place(layers: dict, model, known: dict[str, str]) -> dict[str, str]:
    """Convolutions whose weights onnx2tf changed (a following scale folded in): the n-th TFLite convolution is
    the n-th ONNX Conv, when both graphs hold as many, sizes agree and every one matched by weights sits there."""
    sizes = _element_counts(model)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    found = sorted(
        ((name, info) for name, info in layers.items() if info[0] in ("CONV_2D", "DEPTHWISE_CONV_2D")),
        key=lambda item: item[1][3],
    )
    if len(convs) != len(found):
        return {}
    labels = [node.input[1].removesuffix(".weight") for node in convs]
    for node, label, (name, info) in zip(convs, labels, found):
        if sizes.get(node.output[0]) != info[2] or known.get(name, label) != label:
            return {}
    return {name: label for label, (name, _) in zip(labels, found) if name not in known}


def _by_place(layers: dict, model) -> dict[str, str]:
    """Weightless layers: the n-th TFLite op of a kind is the n-th ONNX node of that kind, if counts and sizes agree."""
    sizes = _element_counts(model)
    nodes_by_kind = defaultdict(list)
    for node in model.graph.node:
        nodes_by_kind[node.op_type].append(node)
    layers_by_kind = defaultdict(list)
    for name, (op, weights, elements, place) in sorted(layers.items(), key=lambda item: item[1][3]):
        if weights is None and op in _WEIGHTLESS:
            layers_by_kind[op].append((name, elements))
    origins = {}
    for op, found in layers_by_kind.items():
        candidates = [n for kind in _WEIGHTLESS[op] for n in nodes_by_kind[kind]]
        if len(candidates) != len(found) or len({kind for kind in _WEIGHTLESS[op] if nodes_by_kind[kind]}) > 1:
            continue  # onnx2tf added or merged ops of this kind, or two ONNX kinds interleave: no certain order
        if all(sizes.get(node.output[0]) == elements for node, (_, elements) in zip(candidates, found)):
            origins.update({name: _node_label(node) for node, (name, _) in zip(candidates, found)})
    return origins


def _element_counts(model) -> dict[str, int]:
    """Element count of every value whose shape shape inference knows in full."""
    counts = {}
    for value in [*model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            counts[value.name] = int(np.prod([d.dim_value for d in dims]))
    return counts


def _node_label(node) -> str:
    """'block.1 (mean)': the module the call ran in and the call, from torch.onnx's metadata; else the node name."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
    except (KeyError, ValueError, SyntaxError):
        return f"ONNX node {node.name}" if node.name else f"ONNX {node.op_type}"
    module = scopes[-2] if len(scopes) >= 2 and scopes[-2] else "forward"
    return f"{module} ({scopes[-1]})"
