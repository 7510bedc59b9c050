"""TFLite variants from one onnx2tf run: sizes, I/O dtypes, quantized feeding and numerics against torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.exporters.convert import export_tflite, export_tflite_variants
from edgepipe.exporters.quantize import FastTarget
from edgepipe.exporters.quantize.variants import VARIANTS
from edgepipe.exporters.tflite.record import TfliteExport
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.specs import InputSpec, convert_layout
from edgepipe.pipeline.core.config import ExportSection, ValidateSection
from edgepipe.pipeline.core.int8_target import HostTimer
from edgepipe.pipeline.core.ledger import output_figures
from edgepipe.pipeline.stages.validate import Limits, limits_for
from edgepipe.profilers.runtimes import dequantize, open_tflite, quantize

SHAPE = (1, 1, 8, 8)
SPECS = (InputSpec("x", SHAPE, "float32", "NCHW"),)
ALL = ("fp32", "fp16", "dynamic", "int8", "int8_float_io", "int16x8", "int8_mixed", "int8_fast")
INTEGER_IO = {"int8": "int8", "int16x8": "int16"}
# Floors well under what these variants reach on this model, above what a broken one would.
SQNR_FLOOR_DB = {
    "fp32": 100.0,
    "fp16": 50.0,
    "dynamic": 30.0,
    "int8": 20.0,
    "int8_float_io": 20.0,
    "int16x8": 20.0,
    "int8_mixed": 20.0,
    "int8_fast": 20.0,
}


def _uniform(seed: int, count: int) -> np.ndarray:
    """Pixels in [0, 1], the range the model is calibrated and tested on."""
    return np.random.default_rng(seed).random((count, *SHAPE[1:]), dtype=np.float32)


def _calibration() -> dict[str, np.ndarray]:
    """Seeded samples spanning exactly [0, 1], so the int8 input scale is 1/255 and its zero point -128."""
    samples = _uniform(1, 64)
    samples[0, 0, 0, :2] = (0.0, 1.0)
    return {"x": samples}


def _cnn() -> nn.Module:
    """A small CNN with seeded, untrained weights; most of its bytes are weights, so sizes compare cleanly."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    ).eval()


@dataclass(frozen=True)
class Converted:
    """The ONNX file, every variant from one onnx2tf run, and torch's outputs on the test inputs."""

    onnx_path: Path
    work: Path
    exports: dict[str, TfliteExport]
    inputs: np.ndarray  # NCHW
    reference: np.ndarray


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Converted:
    work = tmp_path_factory.mktemp("quant")
    module = _cnn()
    example = (torch.zeros(SHAPE),)
    onnx_file = export_onnx(
        torch.export.export(module, example), example, ["x"], work / "model.onnx", work / "convert.log"
    )
    exports = export_tflite_variants(
        onnx_file.path, work, ALL, work / "convert.log", SPECS, _calibration(), fast=FastTarget(HostTimer())
    )
    inputs = _uniform(2, 48)
    with torch.no_grad():
        reference = module(torch.from_numpy(inputs)).numpy()
    return Converted(onnx_file.path, work, exports, inputs, reference)


def _run_all(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Float NCHW samples through open_tflite(...).run one at a time (the model takes batch 1)."""
    session = open_tflite(path)
    return np.concatenate([session.run({"x": convert_layout(x[None], "NCHW", "NHWC")})["output_0"] for x in inputs])


def test_one_run_writes_every_variant(converted):
    assert set(converted.exports) == set(ALL)
    for variant, result in converted.exports.items():
        assert result.path == (converted.work / f"model_{variant}.tflite").resolve() and result.path.is_file()
        assert result.variant == variant and result.custom_ops == ()
        assert [s.layout for s in result.inputs] == ["NHWC"] and result.output_names == ("output_0",)


def test_file_sizes_relate_as_their_weights(converted):
    size = {v: r.path.stat().st_size for v, r in converted.exports.items()}
    assert size["fp16"] <= 0.55 * size["fp32"]
    for variant in ("dynamic", "int8", "int8_float_io", "int16x8"):  # int8 weights everywhere
        assert size[variant] <= 0.35 * size["fp32"], variant
        assert size[variant] < size["fp16"], variant
    assert size["int8"] < size["int8_mixed"] <= 0.35 * size["fp32"]  # int8 already meets the floor: no float layer


def test_mixed_variant_keeps_layers_by_loss_per_byte_until_the_floor(converted):
    mixed = converted.exports["int8_mixed"]
    ranking = [loss.sqnr_db for loss in mixed.sensitivity]
    assert len(ranking) >= 4 and ranking == sorted(ranking)
    by_value = sorted(mixed.sensitivity, key=lambda loss: -loss.loss_per_byte)
    assert mixed.kept_float == tuple(loss.name for loss in by_value[: len(mixed.kept_float)])
    choice = mixed.mixed_choice
    assert choice.met and choice.target_sqnr_db == 21.0 and choice.max_float_layers == 4
    assert choice.kept_float == mixed.kept_float == ()  # this model's int8 is far above 20 dB
    assert choice.steps[-1].size_bytes == mixed.path.stat().st_size
    assert not any(r.sensitivity for v, r in converted.exports.items() if v != "int8_mixed")


def test_io_dtypes_as_read_by_the_interpreter(converted):
    from ai_edge_litert.interpreter import Interpreter

    for variant, result in converted.exports.items():
        runner = Interpreter(model_path=str(result.path)).get_signature_runner()
        dtypes = {
            np.dtype(d["dtype"]).name
            for d in (*runner.get_input_details().values(), *runner.get_output_details().values())
        }
        expected = INTEGER_IO.get(variant, "float32")
        assert dtypes == {expected}, variant
        assert [s.dtype for s in (*result.inputs, *result.outputs)] == [expected, expected], variant


def test_quantization_params_are_recorded_for_integer_io_only(converted):
    for variant, result in converted.exports.items():
        assert bool(result.quantization) == (variant in INTEGER_IO), variant
    by_role = {q.role: q for q in converted.exports["int8"].quantization}
    assert by_role["input"].name == "x" and by_role["input"].dtype == "int8"
    assert by_role["input"].scale == pytest.approx(1 / 255, rel=1e-6) and by_role["input"].zero_point == -128
    assert by_role["output"].name == "output_0" and by_role["output"].scale > 0
    int16_in = next(q for q in converted.exports["int16x8"].quantization if q.role == "input")
    assert int16_in.scale == pytest.approx(1 / 32767, rel=1e-6) and int16_in.zero_point == 0  # symmetric int16


def test_quantize_and_dequantize_by_hand():
    x = np.array([0.0, 0.2, 0.25, 0.8, 1.0, 1.5, -0.1, 0.12], np.float32)
    # round(x * 255) - 128, clipped to [-128, 127]: 0, 51, 63.75, 204, 255, 382.5, -25.5, 30.6
    assert quantize(x, 1 / 255, -128, np.dtype("int8")).tolist() == [-128, -77, -64, 76, 127, 127, -128, -97]
    assert quantize(np.array([0.5, -0.5, 1.5, -2.5]), 1.0, 0, np.dtype("int8")).tolist() == [1, -1, 2, -3]
    assert quantize(np.array([0.2, -2.0]), 1 / 32767, 0, np.dtype("int16")).tolist() == [6553, -32768]
    assert dequantize(np.array([-77, 127], np.int8), 1 / 255, -128).tolist() == pytest.approx([51 / 255, 1.0])


def test_int8_run_quantizes_inputs_and_dequantizes_outputs(converted):
    """run() on floats equals the raw int8 model fed hand-quantized inputs, its output dequantized by hand."""
    from ai_edge_litert.interpreter import Interpreter

    result = converted.exports["int8"]
    in_q, out_q = sorted(result.quantization, key=lambda q: q.role != "input")
    assert (in_q.scale, in_q.zero_point) == (pytest.approx(1 / 255, rel=1e-6), -128)  # calibrated on exactly [0, 1]
    x = np.resize(np.array([0.0, 0.2, 0.25, 0.8, 1.0, 1.5, -0.1, 0.12], np.float32), (1, 8, 8, 1))
    q = np.resize(np.array([-128, -77, -64, 76, 127, 127, -128, -97], np.int8), (1, 8, 8, 1))  # scale 1/255, zp -128
    raw = Interpreter(model_path=str(result.path)).get_signature_runner()(x=q)["output_0"]
    assert raw.dtype == np.int8
    expected = (raw.astype(np.float32) - out_q.zero_point) * np.float32(out_q.scale)
    session = open_tflite(result.path)
    got = session.run({"x": x})["output_0"]
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.array_equal(session.run({"x": q})["output_0"], expected)  # integer feeds pass through as given
    assert session.inputs[0].dtype == "int8"


def test_sqnr_against_torch_above_floor(converted):
    for variant, result in converted.exports.items():
        got = _run_all(result.path, converted.inputs)
        figures = output_figures("output_0", converted.reference, got, rel_tolerance=1.0)
        assert figures.sqnr_db > SQNR_FLOOR_DB[variant], (variant, figures)


def test_single_variant_export_still_works(converted, tmp_path):
    result = export_tflite(
        converted.onnx_path, tmp_path / "only.tflite", "int8_float_io", tmp_path / "convert.log", SPECS, _calibration()
    )
    assert result.path == (tmp_path / "only.tflite").resolve() and result.inputs[0].dtype == "float32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convert.log", "only.tflite"]


@pytest.mark.parametrize("calibration", [None, {}, {"x": np.zeros((0, 1, 8, 8), np.float32)}])
@pytest.mark.parametrize("variant", ["int8", "int8_float_io", "int16x8"])
def test_integer_variants_without_calibration_fail_clearly(converted, tmp_path, variant, calibration):
    with pytest.raises(ExportError) as info:
        export_tflite(converted.onnx_path, tmp_path / "m.tflite", variant, tmp_path / "convert.log", SPECS, calibration)
    message = str(info.value)
    assert "\n" not in message and variant in message and "calibration samples for input(s) x" in message
    with pytest.raises(ExportError, match="calibration"):
        export_tflite_variants(converted.onnx_path, tmp_path, ("fp32", variant), tmp_path / "convert.log", SPECS, None)
    assert list(tmp_path.iterdir()) == []  # refused before anything was converted or written


def test_integer_variants_refuse_integer_inputs(tmp_path):
    # onnx2tf would cast the token ids to float32 for calibration and then fail inside TensorFlow.
    tokens = (InputSpec("tokens", (1, 12), "int64", "NC"),)
    with pytest.raises(ExportError, match=r"-> int8: onnx2tf calibrates float inputs only, not tokens \(int64\)"):
        export_tflite(
            tmp_path / "m.onnx",
            tmp_path / "m.tflite",
            "int8",
            tmp_path / "convert.log",
            tokens,
            {"tokens": np.zeros((4, 12), np.int64)},
        )


def test_unknown_variant_is_named():
    with pytest.raises(ExportError, match="'int4'.*choose from fp32, fp16, dynamic, int8, int8_float_io, int16x8"):
        export_tflite_variants(Path("model.onnx"), Path("."), ("int4",), Path("convert.log"), SPECS, None)


def test_config_lists_exactly_the_exporter_variants():
    literal = get_args(ExportSection.model_fields["variants"].annotation)[0]
    assert get_args(literal) == tuple(VARIANTS) == ALL


def test_validation_limits_follow_the_variant():
    validate = ValidateSection()
    assert limits_for(validate, "tflite:fp32") == limits_for(validate, "onnx:fp32") == Limits(1e-4, None, 0.005)
    assert limits_for(validate, "torch:fp32") == Limits(1e-4, None, 0.005)
    assert limits_for(validate, "tflite:fp16") == Limits(1e-2, None, 0.005)
    for key in (
        "tflite:dynamic",
        "tflite:int8",
        "tflite:int8_float_io",
        "tflite:int16x8",
        "onnx:int8_qdq",
        "onnx:dynamic",
    ):
        assert limits_for(validate, key) == Limits(None, 20.0, 0.01)
    strict = ValidateSection(quantized_min_sqnr_db=30.0, quantized_max_metric_drop=0.0, fp16_rel_tolerance=1e-3)
    assert limits_for(strict, "tflite:int8") == Limits(None, 30.0, 0.0)
    assert limits_for(strict, "tflite:fp16") == Limits(1e-3, None, 0.005)
