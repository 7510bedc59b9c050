"""Which operators a .tflite file uses, read from its flatbuffer without loading a runtime."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import flatbuffers
from flatbuffers.table import Table

from models.errors import ExportError

CUSTOM = 32  # BuiltinOperator.CUSTOM in TFLite's schema: the op is named by custom_code


@dataclass(frozen=True)
class OperatorCode:
    """One entry of the model's operator_codes table."""

    builtin: int
    custom: str | None

    @property
    def is_custom(self) -> bool:
        """A custom op, Select-TF (Flex) ops included: a stock runtime cannot run it."""
        return self.builtin == CUSTOM


def operator_codes(path: Path) -> list[OperatorCode]:
    """The operator_codes vector of a TFLite flatbuffer (schema fields 0, 1 and 3)."""
    buf = bytearray(Path(path).read_bytes())
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ExportError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    model = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    codes_field = model.Offset(6)  # Model.operator_codes
    if not codes_field:
        return []
    start, count = model.Vector(codes_field), model.VectorLen(codes_field)
    codes = []
    for i in range(count):
        entry = Table(buf, model.Indirect(start + 4 * i))
        deprecated = _scalar(entry, 4, flatbuffers.number_types.Int8Flags)
        builtin = _scalar(entry, 10, flatbuffers.number_types.Int32Flags)
        custom_field = entry.Offset(6)
        custom = entry.String(custom_field + entry.Pos).decode() if custom_field else None
        # Codes above 127 live only in builtin_code; older files only fill the deprecated byte.
        codes.append(OperatorCode(max(deprecated, builtin), custom))
    return codes


def custom_ops(path: Path) -> list[str]:
    """Names of the custom and Flex ops a model needs, sorted."""
    return sorted({c.custom or "?" for c in operator_codes(path) if c.is_custom})


def custom_op_nodes(path: Path) -> dict[str, list[str]]:
    """For each custom/Flex op, the names of the tensors its operators write (they carry the node names)."""
    buf = bytearray(Path(path).read_bytes())
    codes = operator_codes(path)
    model = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    found: dict[str, list[str]] = {}
    for subgraph in _tables(model, 8):  # Model.subgraphs
        tensors = _tables(subgraph, 4)  # SubGraph.tensors
        for op in _tables(subgraph, 10):  # SubGraph.operators
            code = codes[_scalar(op, 4, flatbuffers.number_types.Uint32Flags)]
            if code.is_custom:
                for index in _ints(op, 8):  # Operator.outputs
                    name_field = tensors[index].Offset(10)  # Tensor.name
                    found.setdefault(code.custom or "?", []).append(
                        tensors[index].String(name_field + tensors[index].Pos).decode())
    return found


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
    buf = bytearray(Path(path).read_bytes())
    operator_codes(path)  # checks the TFL3 identifier
    model = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    data = sum(_vector_len(b, 4) for b in _tables(model, 12))  # Model.buffers -> Buffer.data
    quant = names = 0
    for subgraph in _tables(model, 8):
        for tensor in _tables(subgraph, 4):
            names += _vector_len(tensor, 10)  # Tensor.name
            params = tensor.Offset(12)  # Tensor.quantization
            if params:
                q = Table(buf, tensor.Indirect(params + tensor.Pos))
                # min, max, scale: float32 vectors; zero_point: int64 vector
                quant += 4 * (_vector_len(q, 4) + _vector_len(q, 6) + _vector_len(q, 8)) + 8 * _vector_len(q, 10)
    return FileComposition(len(buf), data, quant, names)


def _vector_len(table: Table, vtable_offset: int) -> int:
    field = table.Offset(vtable_offset)
    return table.VectorLen(field) if field else 0


def _tables(table: Table, vtable_offset: int) -> list[Table]:
    field = table.Offset(vtable_offset)
    if not field:
        return []
    start = table.Vector(field)
    return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(field))]


def _ints(table: Table, vtable_offset: int) -> list[int]:
    field = table.Offset(vtable_offset)
    if not field:
        return []
    start = table.Vector(field)
    return [table.Get(flatbuffers.number_types.Int32Flags, start + 4 * i) for i in range(table.VectorLen(field))]


def _scalar(table: Table, vtable_offset: int, flags) -> int:
    field = table.Offset(vtable_offset)
    return table.Get(flags, field + table.Pos) if field else 0
