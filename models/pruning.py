"""Pruning: global magnitude (unstructured) and structured channel removal that really shrinks the graph."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.nn.utils import prune

# Ops that act on each channel alone: a channel removed before them is simply absent after them.
_CHANNELWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Dropout,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.MaxPool1d,
    nn.AvgPool1d,
    nn.AdaptiveAvgPool1d,
)
_CHANNELWISE_FUNCTIONS = {
    torch.relu,
    nn.functional.relu,
    nn.functional.relu6,
    nn.functional.hardswish,
    nn.functional.hardsigmoid,
    nn.functional.silu,
    torch.sigmoid,
    torch.tanh,
    nn.functional.gelu,
    nn.functional.dropout,
    nn.functional.adaptive_avg_pool2d,
    nn.functional.adaptive_max_pool2d,
    nn.functional.max_pool2d,
    nn.functional.avg_pool2d,
}
_ELEMENTWISE = {operator.add, operator.mul, operator.sub, torch.add, torch.mul}


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """(layer, "weight") of every convolution and linear layer."""
    return [(m, "weight") for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def count_parameters(module: nn.Module) -> int:
    """Every parameter element, zero or not."""
    return sum(p.numel() for p in module.parameters())


def sparsity(module: nn.Module) -> float:
    """Fraction of conv and linear weights that are exactly zero."""
    weights = [getattr(m, name) for m, name in prunable_weights(module)]
    total = sum(w.numel() for w in weights)
    return float(sum((w == 0).sum() for w in weights)) / total if total else 0.0


def magnitude_prune(module: nn.Module, amount: float) -> None:
    """Zero the smallest `amount` of all conv and linear weights, ranked together (masks stay until finalize)."""
    prune.global_unstructured(prunable_weights(module), pruning_method=prune.L1Unstructured, amount=amount)


def finalize_magnitude(module: nn.Module) -> None:
    """Make the pruning masks permanent: plain weight tensors whose pruned entries are zero."""
    for layer, name in prunable_weights(module):
        if prune.is_pruned(layer):
            prune.remove(layer, name)


@dataclass
class ChannelGroup:
    """Channels that must be removed together: every producer writes them, every consumer reads them."""

    channels: int
    producers: list[nn.Module] = field(default_factory=list)  # conv (groups=1) or linear: output rows
    passthrough: set[nn.Module] = field(default_factory=set)  # BatchNorm, depthwise conv: one slice per channel
    consumers: list[tuple[nn.Module, int]] = field(default_factory=list)  # (layer, input features per channel)
    frozen: str | None = None  # why these channels cannot be removed (reach the output, an unknown op, ...)


def channel_groups(module: nn.Module, example: tuple[torch.Tensor, ...]) -> list[ChannelGroup]:
    """Trace the module and group the channels that conv/linear producers write and later layers read."""
    graph = fx.symbolic_trace(module).graph
    modules = dict(module.named_modules())
    shapes = _shapes(module, graph, example)
    parent: dict[int, int] = {}
    groups: list[ChannelGroup] = []
    tensor_group: dict[fx.Node, int] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def new_group(channels: int, frozen: str | None = None) -> int:
        groups.append(ChannelGroup(channels, frozen=frozen))
        parent[len(groups) - 1] = len(groups) - 1
        return len(groups) - 1

    def freeze(node_arg, reason: str) -> None:
        for arg in _tensor_args(node_arg):
            if arg in tensor_group:
                groups[find(tensor_group[arg])].frozen = groups[find(tensor_group[arg])].frozen or reason

    flattened: dict[fx.Node, tuple[int, int]] = {}  # flatten output -> (group, features per channel)
    for node in graph.nodes:
        layer = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        known = source in tensor_group
        if node.op == "placeholder":
            tensor_group[node] = new_group(shapes[node][1] if len(shapes[node]) > 1 else 1, "model input")
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.groups == 1 or isinstance(layer, nn.Linear):
            flat = len(shapes[node]) == 2  # a linear layer on a sequence has its features on the last axis
            if source in flattened and isinstance(layer, nn.Linear):
                gid, per_channel = flattened[source]
                groups[find(gid)].consumers.append((layer, per_channel))
            elif known:
                groups[find(tensor_group[source])].consumers.append((layer, 1))
                if isinstance(layer, nn.Linear) and not flat:
                    freeze(source, f"{node.target} reads a sequence")
            frozen = None if flat or not isinstance(layer, nn.Linear) else f"{node.target} writes a sequence"
            tensor_group[node] = new_group(layer.weight.shape[0], frozen)
            groups[tensor_group[node]].producers.append(layer)
        elif known and (isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) or _depthwise(layer)):
            groups[find(tensor_group[source])].passthrough.add(layer)
            tensor_group[node] = tensor_group[source]
        elif known and (
            isinstance(layer, _CHANNELWISE_MODULES)
            or node.op == "call_function"
            and node.target in _CHANNELWISE_FUNCTIONS
        ):
            tensor_group[node] = tensor_group[source]
        elif node.op == "call_function" and node.target in _ELEMENTWISE and _same_channels(node, shapes, tensor_group):
            members = [find(tensor_group[a]) for a in _tensor_args(node.args)]
            for other in members[1:]:
                _unite(groups, parent, members[0], find(other))
            tensor_group[node] = members[0]
        elif known and _is_flatten(node, layer) and len(shapes[source]) >= 3:
            flattened[node] = (tensor_group[source], int(torch.tensor(shapes[source][2:]).prod()))
            for user in node.users:  # anything but a linear layer reading the flat tensor pins the channels
                if not (user.op == "call_module" and isinstance(modules.get(user.target), nn.Linear)):
                    freeze(source, f"flattened channels feed {user.name}")
        else:
            freeze(node.args, "the model output" if node.op == "output" else f"unsupported op {node.name}")
    roots: dict[int, ChannelGroup] = {}
    for i, group in enumerate(groups):
        roots.setdefault(find(i), groups[find(i)])
    return list(roots.values())


def prune_channels(module: nn.Module, samples: tuple[torch.Tensor, ...], amount: float) -> list[dict]:
    """Remove the `amount` of each prunable group's channels that contribute least on samples; one record per group."""
    names = {m: n for n, m in module.named_modules()}
    groups = [g for g in channel_groups(module, samples) if not g.frozen and g.producers]
    scores = _contributions(module, groups, samples)
    records = []
    for group, score in zip(groups, scores):
        keep_count = max(1, round(group.channels * (1 - amount)))
        keep = torch.sort(torch.topk(score, keep_count).indices).values
        for layer in group.producers:
            _slice_out(layer, keep)
        for layer in group.passthrough:
            _slice_out(layer, keep)
        for layer, per_channel in group.consumers:
            _slice_in(layer, keep, per_channel)
        records.append({"layers": [names[p] for p in group.producers], "channels": group.channels, "kept": keep_count})
    return records


def _contributions(module: nn.Module, groups: list[ChannelGroup], samples: tuple[torch.Tensor, ...]) -> list:
    """Per group and channel: how much the channel feeds its readers, mean |input| x the reader's |weights| on it.

    Weight magnitude alone keeps channels that a ReLU silences on real data (a channel whose
    weights are large but whose output is always negative); their int8 range then collapses.
    """
    seen: dict[nn.Module, torch.Tensor] = {}
    readers = {layer for group in groups for layer, _ in group.consumers}
    hooks = [
        layer.register_forward_pre_hook(lambda mod, args: seen.__setitem__(mod, args[0].detach())) for layer in readers
    ]
    try:
        with torch.no_grad():
            module.eval()(*samples)
    finally:
        for hook in hooks:
            hook.remove()
    scores = []
    for group in groups:
        score = torch.zeros(group.channels)
        for layer, per_channel in group.consumers:
            x = seen[layer]
            activity = (
                x.abs().transpose(0, 1).reshape(x.shape[1], -1).mean(1)
                if x.dim() > 2
                else x.abs().reshape(len(x), group.channels, per_channel).mean((0, 2))
            )
            weight = layer.weight.detach().abs()
            reach = weight.reshape(weight.shape[0], group.channels, -1).sum((0, 2))
            score += activity * reach
        scores.append(score)
    return scores


def resize_to(module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Give each conv, linear and BatchNorm layer the shapes a (channel-pruned) state dict holds, then load it."""
    for name, layer in module.named_modules():
        weight = state.get(f"{name}.weight")
        if weight is None or getattr(layer, "weight", None) is None or weight.shape == layer.weight.shape:
            continue
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            depthwise = _depthwise(layer)
            layer.out_channels = weight.shape[0]
            layer.groups = weight.shape[0] if depthwise else layer.groups
            layer.in_channels = weight.shape[1] * layer.groups
        elif isinstance(layer, nn.Linear):
            layer.out_features, layer.in_features = weight.shape
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layer.num_features = weight.shape[0]
        else:
            continue
        for key in ("weight", "bias", "running_mean", "running_var"):
            current = getattr(layer, key, None)
            if current is not None and f"{name}.{key}" in state:
                new = torch.empty_like(state[f"{name}.{key}"])
                setattr(
                    layer, key, nn.Parameter(new, current.requires_grad) if isinstance(current, nn.Parameter) else new
                )
    module.load_state_dict(state)
    return module


def _slice_out(layer: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the output channels `keep` of a conv, linear, depthwise conv or BatchNorm."""
    for key in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(layer, key, None)
        if tensor is not None:
            sliced = tensor.detach()[keep].clone()
            setattr(
                layer, key, nn.Parameter(sliced, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else sliced
            )
    if isinstance(layer, nn.Linear):
        layer.out_features = len(keep)
    elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        layer.num_features = len(keep)
    else:
        layer.out_channels = len(keep)
        if layer.groups > 1:  # depthwise: one filter per channel
            layer.groups = layer.in_channels = len(keep)


def _slice_in(layer: nn.Module, keep: torch.Tensor, per_channel: int) -> None:
    """Keep only the input features of `keep`'s channels (per_channel features each after a flatten)."""
    index = (keep[:, None] * per_channel + torch.arange(per_channel)[None, :]).flatten()
    layer.weight = nn.Parameter(layer.weight.detach()[:, index].clone())
    if isinstance(layer, nn.Linear):
        layer.in_features = len(index)
    else:
        layer.in_channels = len(index)


def _shapes(module: nn.Module, graph: fx.Graph, example: tuple[torch.Tensor, ...]) -> dict[fx.Node, tuple]:
    """Every traced node's output shape on the example inputs."""
    from torch.fx.passes.shape_prop import ShapeProp

    traced = fx.GraphModule(module, graph)
    with torch.no_grad():
        ShapeProp(traced).propagate(*example)
    return {
        node: tuple(node.meta["tensor_meta"].shape)
        for node in graph.nodes
        if isinstance(node.meta.get("tensor_meta"), torch.fx.passes.shape_prop.TensorMetadata)
    }


def _tensor_args(args) -> list[fx.Node]:
    out = []
    for arg in args if isinstance(args, (tuple, list)) else (args,):
        if isinstance(arg, fx.Node):
            out.append(arg)
        elif isinstance(arg, (tuple, list)):
            out.extend(_tensor_args(arg))
    return out


def _same_channels(node: fx.Node, shapes: dict, tensor_group: dict) -> bool:
    """An elementwise op whose tensor operands are all grouped and have the output's channel count on axis 1."""
    args = _tensor_args(node.args)
    return (
        bool(args)
        and node in shapes
        and len(shapes[node]) > 1
        and all(a in tensor_group and len(shapes.get(a, ())) > 1 and shapes[a][1] == shapes[node][1] for a in args)
    )


def _depthwise(layer: nn.Module | None) -> bool:
    """A convolution with one filter per channel: it keeps channels apart, like BatchNorm."""
    return isinstance(layer, (nn.Conv1d, nn.Conv2d)) and 1 < layer.groups == layer.in_channels == layer.out_channels


def _is_flatten(node: fx.Node, layer: nn.Module | None) -> bool:
    if isinstance(layer, nn.Flatten):
        return layer.start_dim == 1
    return node.op == "call_function" and node.target is torch.flatten and node.args[1:2] == (1,)


def _unite(groups: list[ChannelGroup], parent: dict[int, int], a: int, b: int) -> None:
    """Merge group b into a: coupled channels are kept or removed together."""
    if a == b:
        return
    parent[b] = a
    ga, gb = groups[a], groups[b]
    ga.producers += gb.producers
    ga.passthrough |= gb.passthrough
    ga.consumers += gb.consumers
    ga.frozen = ga.frozen or gb.frozen
