"""The ONNX step before translation: opset upgrade, onnxsim, then an ordered list of named graph passes.

Every ONNX-level change a conversion makes is one entry of PASSES (or the upgrade or onnxsim before
them); each that ran is returned as an AppliedPass, which the export stage records in the manifest
and the conversion log prints. The ledger checks the result numerically.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

from edgepipe.exporters.onnx.channels_first import channels_first_blocks
from edgepipe.exporters.onnx.cubic_resize import cubic_resizes_as_matmuls
from edgepipe.exporters.onnx.files import upgraded
from edgepipe.exporters.onnx.fixes import (
    batchnorm_between_reshapes,
    canonical_gelu,
    decompose_reduce_l2,
    padded_max_pools,
    spelt_hard_swish,
)
from edgepipe.exporters.onnx.group_norm import single_group_norms
from edgepipe.exporters.onnx.high_rank_slices import slices_at_most_5d
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import first_line

LOG_PREFIX = "edgepipe: onnx: "


@dataclass(frozen=True)
class GraphPass:
    """One named rewrite of the graph: what it does (for the log), and the function that returns how many
    places it rewrote."""

    rewrites: str
    apply: Callable[[object], int]


# In the order they run. The channels-first blocks come before the GELU respelling, whose divisor is a
# Constant node, not an initializer.
PASSES: MappingProxyType[str, GraphPass] = MappingProxyType(
    {
        "decompose_reduce_l2": GraphPass("ReduceL2 node(s) rewritten as Sqrt(ReduceSumSquare)", decompose_reduce_l2),
        "cubic_resizes_as_matmuls": GraphPass(
            "bicubic Resize(s) of a fixed size rewritten as two constant MatMuls", cubic_resizes_as_matmuls
        ),
        "channels_first_blocks": GraphPass(
            "channels-last block(s) between transposes rewritten channels-first", channels_first_blocks
        ),
        "canonical_gelu": GraphPass("exact GELU(s) respelt as the chain onnx2tf makes one GELU", canonical_gelu),
        "batchnorm_between_reshapes": GraphPass(
            "BatchNorm(s) between reshapes applied on the last axis instead", batchnorm_between_reshapes
        ),
        "single_group_norms": GraphPass(
            "one-group GroupNorm(s) normalised over every non-batch axis of their input, without reshapes",
            single_group_norms,
        ),
        "spelt_hard_swish": GraphPass("HardSwish(es) spelt as the chain TFLite makes one HARD_SWISH", spelt_hard_swish),
        "padded_max_pools": GraphPass(
            "padded MaxPool(s) given an explicit Pad (zeros or edge values, not float32's lowest)", padded_max_pools
        ),
        "slices_at_most_5d": GraphPass(
            "Slice(s) of tensors above 5-D taken with their whole axes merged", slices_at_most_5d
        ),
    }
)


@dataclass(frozen=True)
class AppliedPass:
    """A step of the ONNX preparation that changed the graph, and how."""

    name: str  # "upgrade_opset", "onnxsim" or a key of PASSES
    detail: str

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def prepare(path: Path, log_path: Path) -> tuple[AppliedPass, ...]:
    """Rewrite the ONNX file at path in place for onnx2tf; what changed, also logged one line each.

    onnxsim works on the file's bytes, so that no Python copy of the graph is held while it runs (its
    Python API holds four copies of the weights at once: the model, its bytes, the result's bytes and
    the result).
    """
    import onnx

    applied, before = _upgraded_file(path)
    skipped = _simplified(path, log_path)
    model = onnx.load(str(path))
    applied.append(AppliedPass("onnxsim", skipped or f"{before} nodes -> {len(model.graph.node)}"))
    applied += apply_passes(model)
    onnx.save(model, str(path))
    with open(log_path, "a") as log:
        log.writelines(f"{LOG_PREFIX}{a.name}: {a.detail}\n" for a in applied)
    return tuple(applied)


def _upgraded_file(path: Path) -> tuple[list[AppliedPass], int]:
    """The file at path upgraded from an opset below 7, and its initializers no longer listed as graph
    inputs (as onnxsim's own API does first: a graph input could be fed, so it is never folded); what
    changed, and the graph's node count."""
    import onnx

    model = onnx.load(str(path))
    model, note = upgraded(model, path)
    constants = {i.name for i in model.graph.initializer}
    listed = [i for i in model.graph.input if i.name in constants]
    if model.ir_version >= 4 and listed:
        for value in listed:
            model.graph.input.remove(value)
    if note or listed:
        onnx.save(model, str(path))
    return ([AppliedPass("upgrade_opset", note)] if note else []), len(model.graph.node)


def apply_passes(model) -> list[AppliedPass]:
    """Every registered pass, in order, on the ModelProto in place; those that changed it."""
    applied = []
    for name, graph_pass in PASSES.items():
        count = graph_pass.apply(model)
        if count:
            applied.append(AppliedPass(name, f"{count} {graph_pass.rewrites}"))
    return applied


def _simplified(path: Path, log_path: Path) -> str | None:
    """The file at path replaced by onnxsim's graph, and None; or left as it was, and why."""
    import onnx
    import onnxsim  # noqa: F401  registers the ONNX Runtime executor its constant folding calls
    from onnxsim import onnxsim_cpp2py_export as simplifier  # what onnxsim.simplify calls, on bytes

    # Not its simplify_path: that names its weights file with std::random_device, which cannot be read
    # once TensorFlow is loaded first (the converter child).
    simplified = path.with_name(f"{path.stem}.simplified{path.suffix}")
    try:
        with output_to_log(log_path):
            # no optimizer skipped, constant folding and shape inference on, onnxsim's tensor size limit
            result = simplifier.simplify(path.read_bytes(), [], True, True, _ONNXSIM_TENSOR_LIMIT)
            if not result:  # how onnxsim says the graph would pass protobuf's 2 GB
                return "skipped: the simplified graph would be larger than 2 GB"
            simplified.write_bytes(result)
            del result
            onnx.checker.check_model(str(simplified))  # what onnxsim.simplify's own check does
    except Exception as exc:  # onnxsim fails on some valid graphs; conversion can still work
        simplified.unlink(missing_ok=True)
        return f"skipped: {type(exc).__name__}: {first_line(exc)}"
    simplified.replace(path)
    return None


# onnxsim's default (onnx_simplifier.DEFAULT_TENSOR_SIZE_THRESHOLDHOLD, "1.5GB"): larger constants stay unfolded
_ONNXSIM_TENSOR_LIMIT = int(1.5 * 2**30)
