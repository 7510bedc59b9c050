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
from edgepipe.exporters.onnx.files import upgraded
from edgepipe.exporters.onnx.fixes import (
    batchnorm_between_reshapes,
    canonical_gelu,
    decompose_reduce_l2,
    padded_max_pools,
    spelt_hard_swish,
)
from edgepipe.exporters.onnx.group_norm import single_group_norms
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
    """Rewrite the ONNX file at path in place for onnx2tf (loaded and saved once); what changed, also logged
    one line each."""
    import onnx

    model, note = upgraded(onnx.load(str(path)), path)
    applied = [AppliedPass("upgrade_opset", note)] if note else []
    model, simplified = _simplified(model, log_path)
    applied.append(simplified)
    applied += apply_passes(model)
    onnx.save(model, str(path))
    with open(log_path, "a") as log:
        log.writelines(f"{LOG_PREFIX}{a.name}: {a.detail}\n" for a in applied)
    return tuple(applied)


def apply_passes(model) -> list[AppliedPass]:
    """Every registered pass, in order, on the ModelProto in place; those that changed it."""
    applied = []
    for name, graph_pass in PASSES.items():
        count = graph_pass.apply(model)
        if count:
            applied.append(AppliedPass(name, f"{count} {graph_pass.rewrites}"))
    return applied


def _simplified(model, log_path: Path) -> tuple[object, AppliedPass]:
    """onnxsim's graph when it succeeds and its own check passes, else the graph as it was; and what happened."""
    import onnxsim

    before = len(model.graph.node)
    try:
        with output_to_log(log_path):
            simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim fails on some valid graphs; conversion can still work
        return model, AppliedPass("onnxsim", f"skipped: {type(exc).__name__}: {first_line(exc)}")
    if not ok:
        return model, AppliedPass("onnxsim", "skipped: its own check of the simplified graph failed")
    return simplified, AppliedPass("onnxsim", f"{before} nodes -> {len(simplified.graph.node)}")
