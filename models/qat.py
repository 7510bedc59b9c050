"""Quantization-aware fine-tuning of any module torch.export can capture.

The module is captured as a graph, and fake int8 goes where TFLite's int8 file holds an int8
tensor, read from the graph rather than from a list of module types:
- the model's inputs, and the output of every op that writes a tensor of its own, after the fusions
  TFLite makes (BatchNorm folded into the convolution or fully-connected layer before it; ReLU,
  ReLU6 and clamps fused into the op before them): a convolution followed by BatchNorm and ReLU is
  rounded once, after the ReLU; a residual sum is rounded; so are pooling means, concatenations,
  attention products and every activation function;
- no rounding after ops that keep their input's grid (reshapes, transposes, max pooling, slicing);
- weights of convolutions and fully-connected layers rounded per output channel, symmetric, as
  TFLite stores them (a per-channel grid commutes with BatchNorm's per-channel scale, so rounding
  the unfolded weight is rounding the folded one).
The captured graph keeps BatchNorm's running statistics frozen while it trains. Afterwards the
activation rounding is removed and the weights stay on their int8 grid.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

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


class Int8Weight(nn.Module):
    """Per-output-channel symmetric int8 rounding of a weight, straight-through for its gradient."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = int8_step(weight)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def int8_step(weight: torch.Tensor) -> torch.Tensor:
    """Each output channel's int8 step: max |w| / 127."""
    return weight.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / 127


class FakeInt8Program(ProgramModule):
    """A captured module with fake int8 inserted; observers learn ranges only while training."""

    def train(self, mode: bool = True):
        self.training = mode
        for quantizer in self.program.modules():
            if isinstance(quantizer, FakeQuantize):
                quantizer.enable_observer(mode)
        return self


def fake_int8(module: nn.Module, examples: tuple[torch.Tensor, ...]) -> FakeInt8Program:
    """The module captured with fake int8 at every point TFLite's int8 file holds an int8 tensor."""
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
        graph_module.add_submodule(
            name, FakeQuantize(MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8)
        )
        _insert_after(graph, node, name)
    for index, node in enumerate(n for n in list(graph.nodes) if _op(n) in _WEIGHTED):
        weight = node.args[1]
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            name = f"int8_weight_{index}"
            graph_module.add_submodule(name, Int8Weight())
            with graph.inserting_after(weight):
                rounded = graph.call_module(name, (weight,))
            node.replace_input_with(weight, rounded)
    graph.lint()
    graph_module.recompile()
    return FakeInt8Program(graph_module)


def without_fake_int8(program: FakeInt8Program) -> ProgramModule:
    """The trained program with its weights left on the int8 grid and no rounding of activations."""
    graph_module = program.program
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        layer = graph_module.get_submodule(node.target)
        source = node.args[0]
        if isinstance(layer, Int8Weight):
            parameter = graph_module.get_parameter(source.target)
            with torch.no_grad():
                parameter.copy_(layer(parameter))
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
) -> tuple[ProgramModule, TrainResult]:
    """Fine-tune under fake int8; returns the program with int8-grid weights, and what training did."""
    program = fake_int8(module, examples)
    with torch.no_grad():
        program.train()
        for chunk in range(0, min(len(data.y_train), 256), 64):  # first ranges from real samples
            program(*[torch.from_numpy(data.x_train[n][chunk : chunk + 64]) for n in spec.input_names])
    result = train_as(program, data, settings, spec)
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
    if node.op == "placeholder":
        return _is_float(node)
    if node.op != "call_function" or not _is_float(node):
        return False
    op = _op(node)
    if op == "getitem":  # an item of a tuple: BatchNorm's output is its op's; a split's pieces keep the grid
        op = _op(node.args[0]) if _op(node.args[0]) in _FOLDED else "getitem"
    if op in _SAME_GRID:
        return False
    users = list(node.users)
    if len(users) == 1:
        follower = _op(users[0])
        if follower in _FOLDED and op in _WEIGHTED:
            return False
        if follower in _FUSED_ACTIVATIONS and op in _FUSES_ACTIVATION:
            return False
    return True


def _insert_after(graph: fx.Graph, node: fx.Node, module_name: str) -> None:
    with graph.inserting_after(node):
        rounded = graph.call_module(module_name, (node,))
    node.replace_all_uses_with(rounded, delete_user_cb=lambda user: user is not rounded)
