"""ONNX -> ONNX Runtime int8 variants (static QDQ, dynamic), for users who deploy ONNX instead of TFLite."""

from __future__ import annotations

import contextlib
import tempfile
import traceback
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping

import numpy as np
import onnx

from edgepipe.exporters.onnx.files import load_onnx
from edgepipe.exporters.quantize.calibration import CalibratedInput, Requirements, calibration_batches
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError, first_line
from edgepipe.models.shared.files import atomic_path

ORT_VARIANTS: Mapping[str, str] = MappingProxyType(
    {
        "int8_qdq": "static QDQ: int8 weights (per-channel) and int8 activations calibrated on samples; float32 I/O",
        "dynamic": "int8 weights; activations quantized at run time per batch; float32 I/O",
    }
)

_NO_CALIBRATION = "choose variant 'dynamic' (needs none)"


@dataclass(frozen=True)
class OnnxQuantExport:
    """One written ONNX Runtime quantization variant and what it quantized."""

    path: Path
    variant: str  # key of ORT_VARIANTS
    quantized_nodes: int  # nodes that run on integers in the written graph; see _quantized_nodes
    excluded_nodes: tuple[str, ...] = ()


class _SampleReader:  # an ORT CalibrationDataReader: its __subclasshook__ takes any class with get_next
    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_onnx(
    onnx_path: Path,
    out_path: Path,
    variant: str,
    log_path: Path,
    calibration: dict[str, np.ndarray] | None = None,
    nodes_to_exclude: tuple[str, ...] = (),
) -> OnnxQuantExport:
    """Write one ONNX Runtime quantization variant of onnx_path to out_path, atomically."""
    if variant not in ORT_VARIANTS:
        raise ExportError(
            f"{onnx_path.name}: unknown ONNX Runtime variant {variant!r}; choose one of: {', '.join(ORT_VARIANTS)}"
        )
    feeds = _calibration_feeds(onnx_path, calibration) if variant == "int8_qdq" else []
    with atomic_path(out_path) as tmp_out:
        with tempfile.TemporaryDirectory(prefix="edgepipe-ortq-") as work:  # intermediates; calibration makes its own
            prepared = Path(work) / "prepared.onnx"
            with _ort_failures(onnx_path, variant, log_path), output_to_log(log_path):
                import onnxruntime as ort
                from onnxruntime.quantization.shape_inference import quant_pre_process

                ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])  # the clear reason ORT cannot
                # Folds BatchNorm and constants; no symbolic shapes: on failure that pass leaves a file in the cwd.
                quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
                model = onnx.load(str(prepared))
                _check_excluded(f"{onnx_path.name} -> {variant}", model.graph, nodes_to_exclude)
                model.graph.ClearField("value_info")  # dynamo's weight shapes: stale once Gemm weights transpose
                onnx.save(model, str(prepared))
                _quantize(variant, prepared, tmp_out, feeds, nodes_to_exclude)
                ort.InferenceSession(str(tmp_out), providers=["CPUExecutionProvider"])  # a kernel may be missing
        written = onnx.load(str(tmp_out))
    return OnnxQuantExport(out_path, variant, _quantized_nodes(written.graph, variant), tuple(nodes_to_exclude))


def _quantize(variant: str, src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], exclude: tuple[str, ...]):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    # reduce_range (7-bit weights stored as int8) because int8 kernels saturate on AVX2 without VNNI. Measured
    # on cnn_digits vs fp32 here: QDQ 20.1 dB SQNR without, 38.6 with (39.8 unfused, so ~1 dB where kernels
    # do not saturate); dynamic 35.2 dB without, 40.4 with. Accuracy moved at most 0.3 points either way.
    if variant == "dynamic":
        # ORT's CPU ConvInteger has no int8-weight kernel (NOT_IMPLEMENTED on load, checked on 1.23; see
        # microsoft/onnxruntime#6430) and ORT recommends static quantization for CNNs, so Conv stays float
        # here (int8_qdq covers conv models); Gemm/MatMul weights, most of a small CNN's bytes, become int8.
        # ORT rewrites each Gemm N into MatMul N_MatMul + Add before applying exclusions: exclude that name too.
        exclude = (*exclude, *(f"{name}_MatMul" for name in exclude))
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=[op for op in IntegerOpsRegistry if op != "Conv"],
            weight_type=QuantType.QInt8,
            reduce_range=True,
            nodes_to_exclude=list(exclude),
        )
        return
    # Measured on cnn_digits (fp32 97.78%): MinMax, Percentile, Entropy all 98.06%, within 0.4 dB; MinMax is
    # deterministic and keeps no histograms. QInt8 = QUInt8 activations (QInt8 is ORT's QDQ default); symmetric
    # ones fell to 88.89% (ReLU outputs waste half the range): asymmetric activations, symmetric weights.
    quantize_static(
        str(src),
        str(dst),
        _SampleReader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=list(exclude),
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


@contextlib.contextmanager
def _ort_failures(onnx_path: Path, variant: str, log_path: Path) -> Iterator[None]:
    """Turn any exception from ONNX Runtime's tools into one ExportError line; the traceback goes to the log."""
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:  # ORT's quantizer raises many types; all mean the same to a user
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n{onnx_path} -> {variant}:\n{traceback.format_exc()}")
        first = first_line(exc, 200) or type(exc).__name__
        raise ExportError(
            f"{onnx_path.name} -> {variant}: ONNX Runtime quantization failed: {first} (details in {log_path})"
        ) from None


def _calibration_feeds(onnx_path: Path, calibration: dict[str, np.ndarray] | None) -> list[dict[str, np.ndarray]]:
    """The samples checked against the graph's inputs and cut into the runs ORT's calibrator makes."""
    graph = load_onnx(onnx_path).graph
    initializers = {i.name for i in graph.initializer}
    inputs = {
        v.name: CalibratedInput(
            tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim),
            onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type),
        )
        for v in graph.input
        if v.name not in initializers
    }
    # A fixed batch dimension (often 1) is fed exactly; else runs of 64, as ORT keeps every tensor of a run.
    needs = Requirements(f"{onnx_path.name} -> int8_qdq", "ONNX", _NO_CALIBRATION, open_batch=64)
    return list(calibration_batches(calibration, inputs, needs))


def _check_excluded(where: str, graph: onnx.GraphProto, names: tuple[str, ...]) -> None:
    known = [n.name for n in graph.node]
    missing = [name for name in names if name not in known]
    if missing:  # ORT itself ignores an unknown name silently
        raise ExportError(
            f"{where}: no node named {missing[0]!r} to exclude from quantization; nodes (after ORT "
            f"pre-processing): {', '.join(known[:20])}"
        )


def _quantized_nodes(graph: onnx.GraphProto, variant: str) -> int:
    """How many nodes run on integers in the written graph."""
    if variant == "dynamic":
        # Ops computing on integers (ConvInteger, MatMulInteger, QAttention...); DynamicQuantizeLinear only
        # converts activations and a quantized Gather only looks up, so neither counts.
        fused = ("QAttention", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "QEmbedLayerNormalization")
        return sum(n.op_type.endswith("Integer") or n.op_type in fused for n in graph.node)
    # QDQ: a node whose float inputs all come from DequantizeLinear and whose outputs all go only into
    # QuantizeLinear is a DQ -> op -> Q group ORT fuses into an integer kernel (QLinearConv, QGemm) or runs
    # on int8 data (MaxPool, Reshape). An excluded node keeps a float weight or output, so it fails this.
    producer = {out: n.op_type for n in graph.node for out in n.output}
    consumers: dict[str, set[str]] = defaultdict(set)
    for node, name in ((node, name) for node in graph.node for name in node.input):
        consumers[name].add(node.op_type)
    int_consts = {
        i.name
        for i in graph.initializer
        if not np.issubdtype(onnx.helper.tensor_dtype_to_np_dtype(i.data_type), np.floating)
    }
    inputs = [
        (n, [i for i in n.input if i and i not in int_consts])
        for n in graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
    ]
    return sum(
        bool(data)
        and all(producer.get(i) == "DequantizeLinear" for i in data)
        and all(consumers[out] == {"QuantizeLinear"} for out in n.output)
        for n, data in inputs
    )
