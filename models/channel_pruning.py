"""Structural channel pruning of any module torch can run, by dependency groups (Torch-Pruning's DepGraph).

Torch-Pruning finds which channels must go together (residual adds, concatenation and split,
grouped and depthwise convolutions, norms, attention heads). What it lacks is written here:
- the model's outputs never change shape: every layer whose channels reach an output unmixed is kept;
- what it slices wrongly (a channel shuffle, the input of a depthwise convolution with a channel
  multiplier) stays whole, with the reason, and equal chunks of a split lose channels alike;
- a global goal (a fraction of MACs or parameters) is met by searching the per-group amount;
- attributes that a forward reads for its reshapes (heads, head width) follow the pruned layers.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from edgepipe.models.shared.errors import ConfigError, first_line


@dataclass
class PruneOutcome:
    """What one pruning step removed, in counted figures."""

    amount: float  # channels removed per group
    macs: tuple[int, int]  # before, after
    params: tuple[int, int]
    layers: list[dict] = field(default_factory=list)  # name, kind, out channels before and after
    kept_whole: dict[str, str] = field(default_factory=dict)  # layer name -> why its channels stay

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {
            "amount": self.amount,
            "macs_before": self.macs[0],
            "macs_after": self.macs[1],
            "params_before": self.params[0],
            "params_after": self.params[1],
            "layers": self.layers,
            "kept_whole": self.kept_whole,
        }


def count_macs_params(module: nn.Module, examples: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """Multiply-accumulates of one forward on the examples, and the parameter count."""
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(module, examples)
    return int(macs), int(params)


def prune_channels(
    module: nn.Module,
    examples: tuple[torch.Tensor, ...],
    amount: float,
    skip: tuple[str, ...] = (),
    gradients: Callable[[nn.Module], None] | None = None,
) -> PruneOutcome:
    """Remove `amount` of the channels of every prunable group, in place.

    gradients(module) runs a backward pass on the user's data: channels are then ranked by their
    first-order effect on the loss (Taylor importance); without it, by their weights' L2 norm.
    """
    with _depgraph_fixes():
        return _prune(module, examples, amount, skip, gradients)


def _prune(module, examples, amount: float, skip: tuple[str, ...], gradients) -> PruneOutcome:
    names = {m: n for n, m in module.named_modules()}
    missing = sorted(set(skip) - set(names.values()))
    if missing:
        raise ConfigError(
            f"compress.prune_skip: no module named {missing[0]!r}; names are as model.named_modules() gives them, "
            f"e.g. {', '.join(n for n in list(names.values())[1:4])}"
        )
    before = count_macs_params(module, examples)
    shapes = _output_shapes(module, examples)
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(module, examples)
    kept = {n: "listed in prune_skip" for n in skip}
    kept.update(_feeding_outputs(graph, names))
    unprunable, chunks = _unprunable(graph, [m for m, n in names.items() if n in kept], names)
    kept.update({n: why for n, why in unprunable.items() if n not in kept})
    widths = {n: _out_width(m) for m, n in names.items() if _out_width(m) is not None}
    pruner = _pruner(module, examples, amount, kept, names, chunks, gradients is not None)
    if gradients is not None:
        module.zero_grad()
        gradients(module)
    pruner.step()
    module.zero_grad(set_to_none=True)
    _follow_heads(module)
    try:
        changed = _output_shapes(module, examples) != shapes
    except RuntimeError as exc:
        raise ConfigError(
            f"compress.prune: the pruned model no longer runs ({first_line(exc, 160)}); a layer whose "
            "width the forward assumes must stay whole: list it in compress.prune_skip"
        ) from exc
    if changed:
        raise ConfigError(
            "compress.prune: pruning changed the model's output shape; list the output layers in compress.prune_skip"
        )
    after = count_macs_params(module, examples)
    layers = [
        {"name": n, "kind": type(m).__name__, "channels": widths[n], "kept": _out_width(m)}
        for m, n in names.items()
        if n in widths and _out_width(m) != widths[n]
    ]
    return PruneOutcome(amount, (before[0], after[0]), (before[1], after[1]), layers, kept)


def amount_for(
    module: nn.Module, examples: tuple[torch.Tensor, ...], goal: str, fraction: float, skip: tuple[str, ...] = ()
) -> float:
    """The per-group amount that leaves about `fraction` of the model's MACs or parameters (bisection on copies)."""
    total = count_macs_params(module, examples)[0 if goal == "macs" else 1]
    low, high = 0.0, 0.95
    for _ in range(7):
        middle = (low + high) / 2
        trial = copy.deepcopy(module)
        prune_channels(trial, examples, middle, skip)
        left = count_macs_params(trial, examples)[0 if goal == "macs" else 1] / total
        low, high = (middle, high) if left > fraction else (low, middle)
    return high


def _pruner(module, examples, amount: float, kept: dict[str, str], names: dict, chunks: dict, taylor: bool):
    import torch_pruning as tp

    ignored = [m for m, n in names.items() if n in kept]
    heads = {
        m.qkv: m.num_heads
        for m in module.modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)
    }
    heads.update({m: m.num_heads for m in module.modules() if isinstance(m, nn.MultiheadAttention)})
    importance = tp.importance.GroupTaylorImportance() if taylor else tp.importance.GroupMagnitudeImportance(p=2)
    return tp.pruner.MetaPruner(
        module,
        examples,
        importance=importance,
        pruning_ratio=amount,
        ignored_layers=ignored,
        num_heads=heads,
        prune_head_dims=True,
        prune_num_heads=False,
        out_channel_groups=dict(chunks),  # a fresh dict: MetaPruner's default one is shared between calls
    )


def _out_width(layer: nn.Module) -> int | None:
    if isinstance(layer, nn.modules.conv._ConvNd):
        return layer.out_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return None


def _output_shapes(module: nn.Module, examples) -> list[tuple]:
    with torch.no_grad():
        out = module(*examples)
    flat = out if isinstance(out, (tuple, list)) else [out]
    return [tuple(t.shape) for t in flat if isinstance(t, torch.Tensor)]


def _feeding_outputs(graph, names: dict) -> dict[str, str]:
    """Layers whose output channels reach a model output without a layer that mixes channels between."""
    from torch_pruning import ops

    mixing = (ops.OPTYPE.CONV, ops.OPTYPE.LINEAR, ops.OPTYPE.MHA)
    kept = {}
    for layer, node in graph.module2node.items():
        if layer not in names or _out_width(layer) is None:
            continue
        seen, frontier = set(), list(node.outputs)
        while frontier:
            current = frontier.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            if current.type in mixing and not _channelwise(current.module):
                continue
            if not current.outputs:
                kept[names[layer]] = "its channels reach the model's output"
                break
            frontier.extend(current.outputs)
        else:
            if not node.outputs:
                kept[names[layer]] = "it writes the model's output"
    return kept


def _channelwise(layer) -> bool:
    """A depthwise convolution acts on each channel alone."""
    return isinstance(layer, nn.modules.conv._ConvNd) and layer.groups == layer.in_channels == layer.out_channels


def _unprunable(graph, ignored: list[nn.Module], names: dict) -> tuple[dict, dict]:
    """({layer name: why it stays whole}, {group root: equal chunks}) for what Torch-Pruning slices wrongly.

    - a channel shuffle (view to 5-D, transpose, reshape back) permutes channels, which Torch-Pruning
      maps as if it did not: every group through it stays whole;
    - a depthwise convolution with a channel multiplier (groups == in_channels != out_channels) would
      need its output channels and groups cut with its input: its input group stays whole;
    - a tensor split into equal chunks (torch.chunk) is split evenly again at run time: the group
      feeding it loses the same number of channels in every chunk.
    """
    from torch_pruning.pruner import function

    kept, chunks = {}, {}
    for group in graph.get_all_groups(ignored_layers=ignored):
        root, why = group[0].dep.target.module, None
        for dep, _ in group:
            nodes = (dep.source, dep.target)
            if any(_permutes_channels(n) for n in nodes):
                why = "its channels pass a channel shuffle"
            if dep.handler == function.prune_conv_in_channels and _multiplier_depthwise(dep.target.module):
                why = "it feeds a depthwise convolution with a channel multiplier"
            for node in nodes:
                sizes = getattr(node.module, "split_sizes", None) if node.type == _optype().SPLIT else None
                if sizes and len(set(sizes)) == 1 and node.module.offsets is not None:
                    chunks[root] = max(chunks.get(root, 1), len(sizes))
        if why:
            for dep, _ in group:
                if graph.is_out_channel_pruning_fn(dep.handler) and dep.target.module in names:
                    kept.setdefault(names[dep.target.module], why)
            chunks.pop(root, None)
    return kept, chunks


def _optype():
    from torch_pruning import ops

    return ops.OPTYPE


def _permutes_channels(node) -> bool:
    size = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
    return node.type == _optype().RESHAPE and size is not None and len(size) >= 5


def _multiplier_depthwise(layer) -> bool:
    return isinstance(layer, nn.modules.conv._ConvNd) and 1 < layer.groups == layer.in_channels != layer.out_channels


@contextlib.contextmanager
def _depgraph_fixes():
    """Two fixes to Torch-Pruning 1.6's graph building, in place only while it builds a graph.

    It reads autograd's saved sizes as `_saved_self_sizes`, which torch 2 calls `_saved_self_sym_sizes`:
    its guard that maps only 1-D and 4-D reshapes never fires (a channel shuffle's 5-D view then divides
    by zero), and it guesses the sizes of torch.chunk's pieces instead of reading them.
    """
    from torch_pruning.dependency import index_mapping, shape_infer

    reshape, shapes = index_mapping.update_reshape_index_mapping, shape_infer.init_shape_information

    def guarded_reshape(graph, node):
        size = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
        if size is None or len(size) in (1, 4):
            reshape(graph, node)

    def chunk_sizes(graph):
        shapes(graph)
        for node in graph.module2node.values():
            saved = node.grad_fn
            if node.type == _optype().SPLIT and hasattr(saved, "_saved_split_size") and saved._saved_dim == 1:
                total, step = saved._saved_self_sym_sizes[1], saved._saved_split_size
                sizes = [min(step, total - start) for start in range(0, total, step)]
                node.module.split_sizes = sizes
                node.module.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]

    index_mapping.update_reshape_index_mapping, shape_infer.init_shape_information = guarded_reshape, chunk_sizes
    try:
        yield
    finally:
        index_mapping.update_reshape_index_mapping, shape_infer.init_shape_information = reshape, shapes


def _follow_heads(module: nn.Module) -> None:
    """Attention blocks that reshape by stored widths (timm's head_dim, attn_dim, scale) read the pruned ones."""
    for m in module.modules():
        qkv = getattr(m, "qkv", None)
        if isinstance(qkv, nn.Linear) and hasattr(m, "num_heads"):
            width = qkv.out_features // 3
            if hasattr(m, "head_dim"):
                m.head_dim = width // m.num_heads
            if hasattr(m, "attn_dim"):
                m.attn_dim = width
            if hasattr(m, "scale"):  # what the fused attention kernel uses for the new head width
                m.scale = (width // m.num_heads) ** -0.5
