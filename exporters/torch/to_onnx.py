"""PyTorch -> ONNX with named inputs and outputs, single file, fixed opset."""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError, first_line

log = logging.getLogger(__name__)


def _forget_last_trace() -> None:
    """Drop PyTorch's module-level map from the last trace's fake tensors to its graph nodes.

    torch.export fills it for a leak check (torch.fx.experimental.proxy_tensor's
    _FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT) and empties it only when the next trace starts. Through
    its nodes it keeps that graph's module alive, weights included: after an ONNX export, the
    decomposed program's (112 MiB on convnext_tiny), held beside the converter's peak.
    """
    from torch.fx.experimental import proxy_tensor

    getattr(proxy_tensor, "_FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT", {}).clear()


def _forget_rewrite_matches() -> None:
    """Reset the matchers of onnxscript's rewrite rules, which keep their last match.

    The rules are module-level objects (onnxscript 0.7); each matcher keeps the graph, node and
    bindings it last tried. After torch.onnx.export's optimizer, that graph's initializers wrap the
    decomposed program's weight tensors and its metadata names that program's nodes, so the whole
    program stays alive until the next rewrite: 112 MiB on convnext_tiny, beside the converter's peak.
    """
    if "onnxscript.rewriter" not in sys.modules:
        return
    from onnxscript.rewriter.pattern import PatternMatcher, RewriteRule, RewriteRuleSet

    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("onnxscript.rewriter"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, RewriteRuleSet):
                value = value.rules
            for rule in value if isinstance(value, (tuple, list)) else (value,):
                matcher = getattr(rule, "_matcher", None) if isinstance(rule, RewriteRule) else None
                if isinstance(matcher, PatternMatcher) and hasattr(matcher, "_init_match"):
                    matcher._init_match(0)  # a fresh match: no node, no bindings
                    for held in ("_graph", "_tracer"):
                        if hasattr(matcher, held):
                            setattr(matcher, held, None)


@contextlib.contextmanager
def _without_slices_split():
    """Within: torch.onnx.export's optimizer leaves out onnxscript's SlicesSplit rewrite.

    The rule would turn two Slices that halve a tensor's last axis into one Split, but its pattern is a
    Slice of four inputs and the exporter's Slices carry five (the steps), so it never matches one. Its
    two-output pattern is still tried against every node in turn: 2.9 s of swin_t's 11 s ONNX export
    (0.3 s of deit_tiny's). The graphs are the same without it (swin_t, deit_tiny, convnext_tiny,
    mobilevitv2_050, levit_128s, efficientnet_b0 compared node by node). The rule list is onnxscript's
    private module attribute (0.7), read when the optimizer runs; without it the optimizer runs unchanged.
    """
    from onnxscript import rewriter

    rules = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)
    if not isinstance(rules, tuple):
        yield
        return
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in rules if getattr(r, "name", None) != "SlicesSplit")
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


@dataclass(frozen=True)
class OnnxExport:
    """The written ONNX file and the names it carries."""

    path: Path
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def export_onnx(
    program: torch.export.ExportedProgram,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    path: Path,
    log_path: Path,
    opset: int = 18,
) -> OnnxExport:
    """Export a torch.export program through the dynamo exporter and check the result loads."""
    output_names = [f"output_{i}" for i in range(len(program.graph_signature.user_outputs))]
    try:
        with output_to_log(log_path), _without_slices_split():
            torch.onnx.export(
                program,
                example_inputs,
                str(path),
                input_names=input_names,
                output_names=output_names,
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # torch.export raises many types; all mean the same to a user
        with open(log_path, "a") as log:  # the details the one line points to: torch.onnx's own summary
            log.write(f"edgepipe: torch -> ONNX export failed: {type(exc).__name__}: {exc}\n")
        raise ExportError(
            f"torch -> ONNX export failed: {type(exc).__name__}: {first_line(exc)} (details in {log_path})"
        ) from exc
    finally:
        _forget_last_trace()
        _forget_rewrite_matches()
    return OnnxExport(path, opset, tuple(input_names), tuple(output_names))
