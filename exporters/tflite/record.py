"""What the export records of each written TFLite file: its inputs and outputs as the file has them,
their quantization, its operators and where its bytes go."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgepipe.exporters.quantize.variants import VARIANTS
from edgepipe.exporters.tflite.inspect import (
    FileComposition,
    custom_op_nodes,
    custom_ops,
    file_composition,
    op_histogram,
)
from edgepipe.exporters.tflite.signature import signature_details
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import InputSpec


@dataclass(frozen=True)
class TensorQuant:
    """How an integer input or output maps to real values: real = scale * (q - zero_point)."""

    name: str
    role: str  # "input" or "output"
    dtype: str
    scale: float
    zero_point: int

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class TfliteExport:
    """One written TFLite file and its inputs as the TFLite signature takes them."""

    path: Path
    variant: str
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    custom_ops: tuple[str, ...] = ()
    outputs: tuple[InputSpec, ...] = ()
    quantization: tuple[TensorQuant, ...] = ()  # integer inputs and outputs only
    sensitivity: tuple = ()  # int8_mixed: every layer's int8 loss (quantize.layer_losses.LayerLoss), worst first
    kept_float: tuple[str, ...] = ()  # int8_mixed: the layers left in float32
    mixed_choice: object = None  # int8_mixed: quantize.mixed.MixedChoice, how kept_float was chosen
    fast_choice: object = None  # int8_fast: quantize.fast.FastChoice, which op types stay float32 and why
    op_histogram: dict[str, int] = field(default_factory=dict)  # operators by kind, most frequent first
    size_split: FileComposition | None = None  # where the file's bytes go
    boundary: tuple = ()  # tflite.boundary.BoundaryFix: inputs/outputs reshaped or transposed to the ONNX shape
    onnx_passes: tuple = ()  # onnx.passes.AppliedPass: what the ONNX step changed before translation

    @property
    def op_count(self) -> int:
        """How many operators the file runs."""
        return sum(self.op_histogram.values())


def describe(path: Path, variant: str, layouts: tuple, where: Path, allow_flex: bool) -> TfliteExport:
    """A variant's record: the float32 file's (inputs, outputs) layouts, this file's dtypes and quantization.

    A file that needs Select-TF (Flex) or custom ops fails unless allow_flex: a phone's stock
    TFLite runtime cannot run it.
    """
    needs = tuple(custom_ops(path))
    if needs and not allow_flex:
        raise ExportError(
            f"{where.name} -> {variant}: the TFLite model needs non-builtin op(s) "
            f"{_describe_custom_ops(path, where)}, which a stock TFLite runtime cannot run; "
            "rewrite the model to avoid them or pass --allow-flex"
        )
    in_details, out_details = signature_details(path)
    inputs = _as_written(path, variant, layouts[0], in_details)
    outputs = _as_written(path, variant, layouts[1], out_details)
    quant = tuple(
        TensorQuant(name, role, np.dtype(d["dtype"]).name, float(d["quantization"][0]), int(d["quantization"][1]))
        for role, details in (("input", in_details), ("output", out_details))
        for name, d in details.items()
        if d["quantization"][0] != 0
    )
    return TfliteExport(
        path,
        variant,
        inputs,
        tuple(o.name for o in outputs),
        needs,
        outputs,
        quant,
        op_histogram=op_histogram(path),
        size_split=file_composition(path),
    )


def _as_written(path: Path, variant: str, reference: tuple[InputSpec, ...], details: dict) -> tuple[InputSpec, ...]:
    """Each tensor as this variant's file has it; a float tensor must carry the variant's I/O dtype.

    The dtype check pins which converted file is which variant: should a converter change write
    another I/O dtype, the export fails instead of shipping float I/O under the name int8.
    """
    expected = VARIANTS[variant].io_dtype
    written = tuple(
        InputSpec(
            s.name, tuple(int(x) for x in details[s.name]["shape"]), np.dtype(details[s.name]["dtype"]).name, s.layout
        )
        for s in reference
        if s.name in details
    )
    wrong = [
        f"{w.name!r} is {w.dtype} {w.shape}"
        for w, s in zip(written, reference)
        if w.shape != s.shape or (s.dtype.startswith("float") and w.dtype != expected)
    ]
    if wrong or len(written) != len(reference):
        raise ExportError(
            f"{path.name} is not the {variant} model expected ({expected} I/O in the float32 model's "
            f"shapes): {', '.join(wrong) or 'tensors missing from its signature'}"
        )
    return written


def _describe_custom_ops(tflite_path: Path, onnx_path: Path) -> str:
    """'FlexErf (TFLite tensors a, b; ONNX Erf nodes n1, n2)' for each custom op."""
    import onnx

    nodes_by_type: dict[str, list[str]] = {}
    for node in onnx.load(str(onnx_path)).graph.node:
        nodes_by_type.setdefault(node.op_type, []).append(node.name or "(unnamed)")
    parts = []
    for op, tensors in sorted(custom_op_nodes(tflite_path).items()):
        tf_op = op.removeprefix("Flex")
        onnx_type = next((t for t in (tf_op, re.sub(r"V\d+$", "", tf_op)) if t in nodes_by_type), None)
        where = f"TFLite tensors {', '.join(tensors[:4])}{' ...' if len(tensors) > 4 else ''}"
        if onnx_type:
            where += f"; ONNX {onnx_type} nodes {', '.join(nodes_by_type[onnx_type][:4])}"
        parts.append(f"{op} ({where})")
    return ", ".join(parts)
