"""What a .tflite file holds (its operators, where its bytes go), read through the TFLite schema LiteRT ships."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepipe.models.shared.errors import ExportError


def _schema():
    from ai_edge_litert import schema_py_generated  # the flatbuffer schema of the installed runtime

    return schema_py_generated


@dataclass(frozen=True)
class OperatorCode:
    """One entry of the model's operator_codes table."""

    builtin: int
    custom: str | None

    @property
    def is_custom(self) -> bool:
        """A custom op, Select-TF (Flex) ops included: a stock runtime cannot run it."""
        return self.builtin == _schema().BuiltinOperator.CUSTOM

    @property
    def name(self) -> str:
        """CONV_2D, DEPTHWISE_CONV_2D, ...; a custom op by its custom code."""
        if self.is_custom:
            return self.custom or "CUSTOM"
        return _OP_NAMES().get(self.builtin, f"BUILTIN_{self.builtin}")


def _OP_NAMES() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {value: key for key, value in vars(ops).items() if not key.startswith("_") and isinstance(value, int)}


def _model(path: Path):
    buf = Path(path).read_bytes()
    schema = _schema()
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise ExportError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    return schema.Model.GetRootAs(buf, 0), len(buf)


def _codes(model) -> list[OperatorCode]:
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        # Codes above 127 live only in builtin_code; older files only fill the deprecated byte.
        codes.append(
            OperatorCode(max(code.DeprecatedBuiltinCode(), code.BuiltinCode()), custom.decode() if custom else None)
        )
    return codes


def _operators(model):
    """(operator, subgraph) for every operator of every subgraph."""
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for i in range(subgraph.OperatorsLength()):
            yield subgraph.Operators(i), subgraph


def operator_codes(path: Path) -> list[OperatorCode]:
    """The operator_codes table of a TFLite file."""
    return _codes(_model(path)[0])


def custom_ops(path: Path) -> list[str]:
    """Names of the custom and Flex ops a model needs, sorted."""
    return sorted({c.custom or "?" for c in operator_codes(path) if c.is_custom})


def custom_op_nodes(path: Path) -> dict[str, list[str]]:
    """For each custom/Flex op, the names of the tensors its operators write (they carry the node names)."""
    model, _ = _model(path)
    codes = _codes(model)
    found: dict[str, list[str]] = {}
    for op, subgraph in _operators(model):
        code = codes[op.OpcodeIndex()]
        if code.is_custom:
            for j in range(op.OutputsLength()):
                found.setdefault(code.custom or "?", []).append(subgraph.Tensors(op.Outputs(j)).Name().decode())
    return found


def op_histogram(path: Path) -> dict[str, int]:
    """How many operators of each kind the file runs, most frequent first."""
    model, _ = _model(path)
    codes = _codes(model)
    counts = Counter(codes[op.OpcodeIndex()].name for op, _ in _operators(model))
    return dict(counts.most_common())


# A real activation's int8 range never reaches this: a scale past it means calibration saw a
# padding or masking sentinel (float32's lowest, -1e30) and every real value would round to zero.
SENTINEL_SCALE = 1e20


def sentinel_scaled_tensors(path: Path) -> list[str]:
    """Names of the tensors whose quantization scale is not finite or above SENTINEL_SCALE, activations first."""
    import math

    model, _ = _model(path)
    found = []
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            q = tensor.Quantization()
            scales = [q.Scale(i) for i in range(q.ScaleLength())] if q is not None else []
            if any(not math.isfinite(s) or s > SENTINEL_SCALE for s in scales):
                constant = model.Buffers(tensor.Buffer()).DataLength() > 0
                found.append((constant, (tensor.Name() or b"?").decode()))
    return [name for _, name in sorted(found, key=lambda f: f[0])]


@dataclass(frozen=True)
class FileComposition:
    """Where a .tflite file's bytes go: tensor data, quantization parameters, tensor names, and the rest."""

    total_bytes: int
    tensor_data_bytes: int  # constant buffers: weights, biases, other constants
    quantization_bytes: int  # scales (float32) and zero points (int64), per tensor or per channel
    name_bytes: int  # tensor names

    @property
    def structure_bytes(self) -> int:
        """Graph tables, shapes, signatures, metadata and alignment padding."""
        return self.total_bytes - self.tensor_data_bytes - self.quantization_bytes - self.name_bytes

    def to_dict(self) -> dict:
        """JSON form, structure included."""
        return {**asdict(self), "structure_bytes": self.structure_bytes}


def file_composition(path: Path) -> FileComposition:
    """Measure the file's parts from its flatbuffer: what a smaller model can and cannot shrink."""
    model, total = _model(path)
    # A buffer's bytes sit inside its data vector, or (files over 2 GB) at offset/size past the flatbuffer.
    data = sum(max(model.Buffers(i).DataLength(), model.Buffers(i).Size()) for i in range(model.BuffersLength()))
    quant = names = 0
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            names += len(tensor.Name() or b"")
            q = tensor.Quantization()
            if q is not None:
                # min, max, scale: float32 vectors; zero_point: int64 vector
                quant += 4 * (q.MinLength() + q.MaxLength() + q.ScaleLength()) + 8 * q.ZeroPointLength()
    return FileComposition(total, data, quant, names)
