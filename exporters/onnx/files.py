"""Load and check an ONNX file, read its declared inputs and outputs as InputSpecs, and bring an old or a
too new file to what ONNX Runtime runs (upgraded from below opset 7, or lowered exactly)."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import onnx
from onnx import helper

from edgepipe.models.shared.errors import InputFileError, first_line
from edgepipe.models.shared.specs import InputSpec

# ONNX's convention for tensors of rank 3 to 5 is channels-first.
_DEFAULT_LAYOUT = {2: "NC", 3: "NCW", 4: "NCHW", 5: "NCDHW"}


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load and check an ONNX file, or say clearly why it is not one."""
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        first = first_line(exc) or type(exc).__name__
        raise InputFileError(
            f"{path} is not a valid ONNX model ({first[:200]}); re-export it or check the file is complete"
        ) from None
    return model


# ONNX Runtime runs no default-domain opset below 7; 11 is the oldest that onnx's
# converter reaches without splitting ops (Split-13 would need a Flex op in TFLite).
_MIN_OPSET, _UPGRADE_TO = 7, 11


def upgrade_old_opset(path: Path) -> str | None:
    """Rewrite a model of opset < 7 in place to opset 11; a note saying so, or None."""
    model, note = upgraded(load_onnx(path), path)
    if note:
        onnx.save(model, str(path))
    return note


def upgraded(model: onnx.ModelProto, where: Path) -> tuple[onnx.ModelProto, str | None]:
    """(the model at opset 11, a note) when its opset is below 7, else (the model, None)."""
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= _MIN_OPSET:
        return model, None
    try:
        model = version_converter.convert_version(model, _UPGRADE_TO)
        model.ir_version = max(model.ir_version, 7)  # from IR 4 on, initializers need not be inputs
        onnx.checker.check_model(model)
    except Exception as exc:  # the converter has gaps for some old ops
        raise InputFileError(
            f"{where}: opset {opset} is too old for ONNX Runtime and could not be upgraded "
            f"({type(exc).__name__}: {str(exc)[:160]}); re-export with opset >= {_MIN_OPSET}"
        ) from None
    return model, f"opset {opset} upgraded to {_UPGRADE_TO} (ONNX Runtime runs no opset below {_MIN_OPSET})"


# Constants with at most this many values keep their data for shape inference: shapes, axes, indices and
# scales that ops read as data are small; weights, which inference reads only the dims of, are not.
_DATA_KEPT_UP_TO = 1024


def inferred_graph(model: onnx.ModelProto) -> onnx.GraphProto:
    """onnx's shape inference of the model, run on a copy without its weights' data: the graph's nodes,
    inputs, outputs and value infos, and its initializers (large ones with their dims and type only).

    Inference on the model itself serialises it whole twice over (four copies of the weights at once).
    """
    light = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import, functions=model.functions)
    graph = model.graph
    light.graph.name = graph.name
    for field in ("node", "input", "output", "value_info"):
        getattr(light.graph, field).extend(getattr(graph, field))
    light.graph.initializer.extend(
        tensor
        if math.prod(tensor.dims) <= _DATA_KEPT_UP_TO
        else onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)
        for tensor in graph.initializer
    )
    return onnx.shape_inference.infer_shapes(light).graph


def onnx_output_specs(path: Path) -> tuple[InputSpec, ...]:
    """Outputs of an ONNX graph with shapes after shape inference; an unknown dimension is -1."""
    stat = Path(path).stat()  # a conversion asks several times; loading a real model takes a while
    return _output_specs(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _output_specs(path: str, _mtime_ns: int, _size: int) -> tuple[InputSpec, ...]:
    graph = inferred_graph(load_onnx(Path(path)))
    specs = []
    for value in graph.output:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        specs.append(InputSpec(value.name, dims, dtype, _DEFAULT_LAYOUT.get(len(dims), "ND")))
    return tuple(specs)


def onnx_input_specs(path: Path, batch: int = 1) -> tuple[InputSpec, ...]:
    """Inputs of an ONNX graph (initializers excluded); a symbolic leading dim becomes batch."""
    graph = load_onnx(path).graph
    initializers = {init.name for init in graph.initializer}
    specs = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = []
        for i, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(dim.dim_value)
            elif i == 0:
                dims.append(batch)
            else:
                raise InputFileError(
                    f"{path}: input {value.name!r} has a dynamic dimension {i} ({dim.dim_param or '?'}); "
                    "export the model with static shapes"
                )
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        specs.append(InputSpec(value.name, tuple(dims), dtype, _DEFAULT_LAYOUT.get(len(dims), "ND")))
    return tuple(specs)


# The element types each IR version added past 11 (onnx.TensorProto.DataType numbers above FLOAT4E2M1's 23):
# a file that uses none of them reads the same at IR 11.
_NEWEST_IR11_TYPE = 23


def onnxruntime_copy(path: Path, out_path: Path) -> str | None:
    """Write to out_path a copy of the model at the IR version and opset ONNX Runtime supports, when lowering
    them changes nothing the model uses; a note of what was lowered, or None when no exact copy loads."""
    import onnxruntime as ort
    from onnx import version_converter

    model, notes = onnx.load(str(path)), []
    for _ in range(3):  # the IR version, then the opset, then a last load
        try:
            onnx.save(model, str(out_path))
            ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
            return "; ".join(notes) or "loads as it is"
        except Exception as exc:  # ORT names the newest IR and opset it supports in its message
            message = str(exc)
        ir = re.search(r"max supported IR version: (\d+)", message)
        opset = re.search(r"domain ai\.onnx is till opset (\d+)", message)
        if ir and int(ir.group(1)) >= 11 and _max_elem_type(model) <= _NEWEST_IR11_TYPE:
            notes.append(f"IR {model.ir_version} lowered to {ir.group(1)} (the model uses nothing newer)")
            model.ir_version = int(ir.group(1))
        elif opset:
            try:  # onnx's converter refuses a step whose op semantics it cannot keep
                lowered = version_converter.convert_version(model, int(opset.group(1)))
            except Exception:
                break
            notes.append(f"opset {_opset(model)} converted down to {opset.group(1)}")
            model = lowered
        else:
            break
    out_path.unlink(missing_ok=True)
    return None


def _opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _max_elem_type(model: onnx.ModelProto) -> int:
    """The largest tensor element type number the model names anywhere (values, constants, Cast targets)."""
    types = [0]
    for graph in _graphs(model.graph):
        for value in [*graph.input, *graph.output, *graph.value_info]:
            types.append(value.type.tensor_type.elem_type)
        types += [t.data_type for t in graph.initializer]
        for node in graph.node:
            for attr in node.attribute:
                if attr.name == "to" or attr.type == onnx.AttributeProto.TENSOR:
                    types.append(attr.i if attr.name == "to" else attr.t.data_type)
    return max(types)


def _graphs(graph: onnx.GraphProto):
    """The graph and every subgraph of its If, Loop and Scan nodes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                yield from _graphs(sub)
