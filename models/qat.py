"""Quantization-aware fine-tuning of any module torch.export can capture.

The module is captured as a graph, and fake int8 goes where TFLite's int8 file holds an int8
tensor, read from the graph rather than from a list of module types:
- the model's inputs, and the output of every op that writes a tensor of its own, after the fusions
  TFLite makes (BatchNorm folded into the convolution or fully-connected layer before it; ReLU,
  ReLU6 and clamps fused into the op before them): a convolution followed by BatchNorm and ReLU is
  rounded once, after the ReLU; a residual sum is rounded; so are pooling means, concatenations,
  attention products and every activation function;
- no rounding after ops that keep their input's grid (reshapes, transposes, max pooling, slicing),
  nor of a tensor that only goes into a concatenation (TFLite writes it on the concatenation's grid);
- weights of convolutions and fully-connected layers rounded per output channel, symmetric, as
  TFLite stores them (a per-channel grid commutes with BatchNorm's per-channel scale, so rounding
  the unfolded weight is rounding the folded one);
- other constants that an addition, subtraction or multiplication reads (a gain, an offset) rounded
  per tensor, as TFLite stores those operands in int8 too; but a constant that multiplies a
  convolution's or fully-connected layer's own output is folded into its weights (neither is rounded).
Activation ranges are not learnt from training batches: they are what the export's calibration will
give, the min and max over the same samples (`calibrate`, with the converter's widening of in-place
operands), set again before every validation, so that early stopping judges each epoch by what its
int8 file would do. Measured on digits models, the simulation then reads as the file does: every
output within one int8 step, the same accuracy. The captured graph keeps BatchNorm's
running statistics frozen while it trains. Afterwards the activation rounding is removed and the
weights and constants stay on their int8 grid.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch import fx, nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver

from edgepipe.models.programs import ProgramModule, capture
from edgepipe.models.registry import DatasetSplits, ModelSpec
from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.training import Learning, TrainResult, TrainSettings, train_as

# aten ops whose output TFLite keeps on its input's int8 grid
_SAME_GRID = {
    "view", "reshape", "_unsafe_view", "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze", "clone",
    "contiguous", "max_pool1d", "max_pool2d", "adaptive_max_pool2d", "dropout", "alias", "expand", "slice",
    "select", "split", "split_with_sizes", "chunk", "unbind", "getitem", "detach", "pad", "constant_pad_nd",
    "_to_copy", "to", "channel_shuffle", "pixel_shuffle",
}  # fmt: skip
# ops TFLite fuses into the op before them, and the ops they fuse into
_FOLDED = {"batch_norm", "_native_batch_norm_legit_no_training"}
_FUSED_ACTIVATIONS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp"}
_FUSES_ACTIVATION = {"conv1d", "conv2d", "convolution", "linear", "add", "sub", "mul", *_FOLDED}
_WEIGHTED = {"conv1d", "conv2d", "convolution", "linear"}
# ops whose inputs TFLite's int8 spec holds on their output's scale and zero point
_CONCATENATIONS = {"cat", "concat", "concatenate", "stack"}


class Int8Weight(nn.Module):
    """Per-output-channel symmetric int8 rounding of a weight, straight-through for its gradient."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = int8_step(weight)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def int8_step(weight: torch.Tensor) -> torch.Tensor:
    """Each output channel's int8 step: max |w| / 127."""
    return weight.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / 127


class Int8Constant(nn.Module):
    """Per-tensor asymmetric int8 rounding of a constant operand, over its own range with 0 in it (as the
    converter quantizes a non-weight constant), straight-through for its gradient."""

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        low, high = value.detach().min().clamp(max=0), value.detach().max().clamp(min=0)
        scale = ((high - low) / 255).clamp_min(1e-8)
        zero = (-128 - torch.round(low / scale)).clamp(-128, 127).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(value, scale.float(), zero, -128, 127)


class FakeInt8Program(ProgramModule):
    """A captured module with fake int8 inserted; its activation ranges change only in calibrate().
    in_place: (operand's rounding, result's rounding) of each op TFLite runs in its operand's buffer."""

    def __init__(self, program: fx.GraphModule, in_place: tuple[tuple[str, str], ...] = ()):
        super().__init__(program)
        self.in_place = in_place


def calibrate(program: FakeInt8Program, samples: dict[str, np.ndarray], input_names: list[str], batch: int = 64):
    """Set every activation range to the min and max over the samples, and keep it there.

    This is what TFLite's converter does with the export's representative samples: it runs the float
    model (here with its weights and constants on their int8 grid, activations not rounded) and keeps
    each tensor's min and max over all of them. A running average over training batches gave other
    ranges (797 where the file calibrated 838 on one coarse tensor), so QAT trained for a grid the file
    did not have.
    """
    quantizers = [m for m in program.program.modules() if isinstance(m, FakeQuantize)]
    for quantizer in quantizers:
        quantizer.activation_post_process.reset_min_max_vals()
        quantizer.enable_observer()
        quantizer.disable_fake_quant()
    try:
        with torch.no_grad():
            for start in range(0, len(samples[input_names[0]]), batch):
                chunk = [np.ascontiguousarray(samples[n][start : start + batch]) for n in input_names]
                program(*[torch.from_numpy(x) for x in chunk])
    finally:
        for quantizer in quantizers:
            quantizer.disable_observer()
            quantizer.enable_fake_quant()
    _widen_in_place_operands(program)


def _widen_in_place_operands(program: FakeInt8Program) -> None:
    """Give each in-place op's first operand the range of its result as well, as the converter's
    calibration does: TFLite runs an addition or multiplication in its first operand's buffer when
    nothing else reads it, and the calibrator logs that operand after the op ran (measured: the
    operand's range in the file is the union of its own and the result's)."""
    observed = {
        name: (q.activation_post_process.min_val.clone(), q.activation_post_process.max_val.clone())
        for name, q in program.program.named_modules()
        if isinstance(q, FakeQuantize)
    }
    for operand, result in program.in_place:
        quantizer = program.program.get_submodule(operand)
        observer = quantizer.activation_post_process
        observer.min_val.copy_(torch.minimum(observer.min_val, observed[result][0]))
        observer.max_val.copy_(torch.maximum(observer.max_val, observed[result][1]))
        scale, zero_point = quantizer.calculate_qparams()
        quantizer.scale.copy_(scale)
        quantizer.zero_point.copy_(zero_point)


def fake_int8(module: nn.Module, examples: tuple[torch.Tensor, ...]) -> FakeInt8Program:
    """The module captured with fake int8 at every point TFLite's int8 file holds an int8 tensor; its
    activation ranges are unset until calibrate()."""
    program, any_batch = capture(module.eval(), examples)
    if not any_batch:
        raise ConfigError(
            "compress.qat: the model only runs at its example's batch size, and training feeds batches; "
            "make its forward take any batch (no reshape to a fixed batch) to fine-tune it"
        )
    graph_module = program.module()
    graph = graph_module.graph
    points = [n for n in graph.nodes if _rounded(n)]
    for index, node in enumerate(points):
        name = f"int8_activation_{index}"
        quantizer = FakeQuantize(MinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8)
        quantizer.disable_observer()  # ranges come from calibrate() only
        graph_module.add_submodule(name, quantizer)
        _insert_after(graph, node, name)
    for index, node in enumerate(n for n in list(graph.nodes) if _op(n) in _WEIGHTED):
        weight = node.args[1]
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            name = f"int8_weight_{index}"
            graph_module.add_submodule(name, Int8Weight())
            with graph.inserting_after(weight):
                rounded = graph.call_module(name, (weight,))
            node.replace_input_with(weight, rounded)
    _round_constants(graph_module)
    graph.lint()
    graph_module.recompile()
    return FakeInt8Program(graph_module, _in_place_pairs(graph_module))


def without_fake_int8(program: FakeInt8Program) -> ProgramModule:
    """The trained program with its weights left on the int8 grid and no rounding of activations."""
    graph_module = program.program
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        layer = graph_module.get_submodule(node.target)
        source = node.args[0]
        if isinstance(layer, (Int8Weight, Int8Constant)):
            value = _attribute(graph_module, source.target)
            with torch.no_grad():
                value.copy_(layer(value))
        node.replace_all_uses_with(source)
        graph.erase_node(node)
        graph_module.delete_submodule(node.target)
    graph.lint()
    graph_module.recompile()
    return ProgramModule(graph_module)


def quantization_aware_finetune(
    module: nn.Module,
    examples: tuple[torch.Tensor, ...],
    spec: ModelSpec | Learning,
    data: DatasetSplits,
    settings: TrainSettings,
    calibration: dict[str, np.ndarray],
) -> tuple[ProgramModule, TrainResult]:
    """Fine-tune under fake int8 with the ranges the export will calibrate on `calibration` (its own
    samples); returns the program with int8-grid weights, and what training did.

    The ranges are set again before every validation, the starting weights' included, so early stopping
    compares what each epoch's int8 file would score, and keeps the starting weights when no epoch beats
    them: QAT then never hands back a model whose int8 judges worse than post-training int8's.
    """
    program = fake_int8(module, examples)
    names = spec.input_names
    result = train_as(program, data, settings, spec, before_validation=lambda m: calibrate(m, calibration, names))
    return without_fake_int8(program), result


def _op(node: fx.Node) -> str:
    """An aten op's short name ('conv2d' for aten.conv2d.default), 'getitem', else ''."""
    if node.op != "call_function":
        return ""
    if node.target is operator.getitem:
        return "getitem"
    return getattr(node.target, "__name__", "").split(".")[0]


def _is_float(node: fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _rounded(node: fx.Node) -> bool:
    """True where TFLite's int8 file holds this node's output as an int8 tensor of its own."""
    if _onto_concatenation_grid(node):
        return False
    if node.op == "placeholder":
        return _is_float(node)
    if node.op != "call_function" or not _is_float(node):
        return False
    op = _op(node)
    if op == "getitem":  # an item of a tuple: BatchNorm's output is its op's; a split's pieces keep the grid
        op = _op(node.args[0]) if _op(node.args[0]) in _FOLDED else "getitem"
    if op in _SAME_GRID:
        return False
    users = _readers(node)
    if len(users) == 1:
        follower = _op(users[0])
        if follower in _FOLDED and op in _WEIGHTED:
            return False
        if follower in _FUSED_ACTIVATIONS and op in _FUSES_ACTIVATION:
            return False
        if op in _WEIGHTED and _folded_multiplication(users[0]):
            return False
    return True


def _folded_multiplication(node: fx.Node) -> bool:
    """True for a multiplication by a constant of the output of a convolution or fully-connected layer
    that nothing else reads: TFLite folds the constant into the layer's weights, so neither the
    constant nor the layer's own output is an int8 tensor of the file."""
    if _op(node) != "mul":
        return False
    first, second = node.args[:2]
    for layer, factor in ((first, second), (second, first)):
        constant = not isinstance(factor, fx.Node) or factor.op == "get_attr"
        if constant and isinstance(layer, fx.Node) and _op(layer) in _WEIGHTED and len(_readers(layer)) == 1:
            return True
    return False


def _in_place_pairs(graph_module: fx.GraphModule) -> tuple[tuple[str, str], ...]:
    """(operand's rounding, result's rounding) of every addition, subtraction or multiplication whose
    first tensor operand TFLite may overwrite with the result: a rounded activation that only this op
    reads, not a model input, of the result's shape (no broadcast)."""
    pairs = []
    for node in graph_module.graph.nodes:
        if _op(node) not in _ARITHMETIC:
            continue
        tensors = [a for a in node.args[:2] if isinstance(a, fx.Node) and _quantizer(graph_module, a)]
        if not tensors or len(_readers(tensors[0])) != 1 or tensors[0].args[0].op == "placeholder":
            continue
        operand = tensors[0]
        result = _result_rounding(graph_module, node)
        same_shape = _shape(operand.args[0]) is not None and _shape(operand.args[0]) == _shape(node)
        if result is not None and same_shape:
            pairs.append((operand.target, result.target))
    return tuple(pairs)


def _result_rounding(graph_module: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The rounding of an op's result, past an activation TFLite fuses into the op; None if not rounded."""
    while len(_readers(node)) == 1:
        node = _readers(node)[0]
        if _quantizer(graph_module, node):
            return node
        if _op(node) not in _FUSED_ACTIVATIONS:
            return None
    return None


def _quantizer(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    """True for a node that rounds an activation."""
    return node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), FakeQuantize)


def _shape(node: fx.Node) -> tuple[str, ...] | None:
    """The node's shape, symbolic sizes by name (the batch is one)."""
    value = node.meta.get("val")
    return tuple(str(size) for size in value.shape) if isinstance(value, torch.Tensor) else None


def _readers(node: fx.Node) -> list[fx.Node]:
    """The nodes that read this one's value, leaving out the input-guard check torch.export adds."""
    return [u for u in node.users if not (u.op == "call_module" and u.target == "_guards_fn")]


def _onto_concatenation_grid(node: fx.Node) -> bool:
    """True when the tensor goes on only into a concatenation (through ops that keep its grid): TFLite
    holds a concatenation's inputs on its output's grid, so the tensor is written straight onto that
    one. Rounding it on a grid of its own first would also clip it to its own, narrower range."""
    while len(_readers(node)) == 1:
        node = _readers(node)[0]
        if _op(node) in _CONCATENATIONS:
            return True
        if _op(node) not in _SAME_GRID:
            return False
    return False


def _insert_after(graph: fx.Graph, node: fx.Node, module_name: str) -> None:
    with graph.inserting_after(node):
        rounded = graph.call_module(module_name, (node,))
    node.replace_all_uses_with(rounded, delete_user_cb=lambda user: user is not rounded)


_ARITHMETIC = {"add", "sub", "mul"}  # TFLite stores a constant operand of these in int8


def _round_constants(graph_module: fx.GraphModule) -> None:
    """Round the float constants (not weights or biases) that an addition, subtraction or multiplication
    reads as an int8 operand; a single value is on its own grid already."""
    graph = graph_module.graph
    for index, node in enumerate([n for n in graph.nodes if n.op == "get_attr" and _int8_operand_of(n)]):
        value = _attribute(graph_module, node.target)
        if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 1):
            continue
        name = f"int8_constant_{index}"
        graph_module.add_submodule(name, Int8Constant())
        with graph.inserting_after(node):
            rounded = graph.call_module(name, (node,))
        for user in _int8_operand_of(node):
            user.replace_input_with(node, rounded)


def _int8_operand_of(node: fx.Node) -> list[fx.Node]:
    """The ops that read this constant as an int8 operand (not those that fold it into a layer's weights)."""
    return [u for u in node.users if _op(u) in _ARITHMETIC and not _folded_multiplication(u)]


def _attribute(graph_module: fx.GraphModule, target: str):
    """The tensor a get_attr node reads (a parameter, a buffer or a captured constant)."""
    owner, _, name = target.rpartition(".")
    return getattr(graph_module.get_submodule(owner) if owner else graph_module, name)
