"""Per-layer int8 sensitivity and mixed-precision export, on a CNN with one deliberately damaged conv."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.exporters.sensitivity import (
    HELD_OUT_MARGIN_DB,
    LayerLoss,
    export_mixed,
    export_to_floor,
    layer_sensitivity,
)
from edgepipe.exporters.torch_to_onnx import export_onnx
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError

SHAPE = (1, 1, 8, 8)
DAMAGED_CHANNELS = 12  # only the damaged conv writes 12 channels, so its output shape identifies it
OUTLIER = 5  # the damaged conv's channel that carries the huge bias
OUTLIER_BIAS = 1000.0


def _cnn(damaged: bool) -> nn.Sequential:
    """Seeded CNN whose next conv ignores one channel of the middle conv; damaged adds a huge bias to that channel."""
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, DAMAGED_CHANNELS, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(DAMAGED_CHANNELS, 8, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()
    with torch.no_grad():
        module[4].weight[:, OUTLIER] = 0.0  # so the damage cannot change the float model's output
        if damaged:
            # One per-tensor int8 scale must now span 0..OUTLIER_BIAS: the other channels, far below
            # one step, read as 0.
            module[2].bias[OUTLIER] += OUTLIER_BIAS
    return module


def _nhwc(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, SHAPE[2], SHAPE[3], SHAPE[1]), dtype=np.float32)


@dataclass(frozen=True)
class Converted:
    """onnx2tf's SavedModel and float TFLite file for the damaged CNN, with its samples."""

    work: Path
    saved_model: Path
    float_tflite: Path
    onnx_path: Path  # the exporter's file, with torch.onnx's module metadata (onnx2tf rewrote a copy)
    calibration: np.ndarray  # NHWC
    held_out: np.ndarray  # NHWC


def _weight_damaged(huge: bool = True) -> nn.Sequential:
    """Seeded CNN whose middle conv has one huge weight per filter, on an input channel that is always zero.

    The float model cannot tell, but each filter's per-channel int8 scale must now reach the
    huge weight, so its ordinary weights round to zero: this layer alone is ruined by int8,
    while every tensor it writes or reads keeps its normal range.
    """
    module = _cnn(False)
    with torch.no_grad():
        module[0].weight[3] = 0.0  # input channel 3 of the middle conv: always zero after the ReLU
        module[0].bias[3] = 0.0
        if huge:
            module[2].weight[:, 3] = 50.0
    return module


def _convert(module: nn.Module, work: Path) -> Converted:
    """onnx2tf's SavedModel of the module, calibrated on seeded samples."""
    log = work / "convert.log"
    example = (torch.zeros(SHAPE),)
    onnx_file = export_onnx(torch.export.export(module, example), example, ["x"], work / "model.onnx", log)
    calibration = _nhwc(1, 64)
    np.save(work / "calibration.npy", calibration)
    shutil.copyfile(onnx_file.path, work / "exported.onnx")  # onnx2tf rewrites the file it converts
    with output_to_log(log), contextlib.chdir(work):  # onnx2tf writes scratch files into the cwd
        import onnx2tf

        onnx2tf.convert(
            input_onnx_file_path=str(onnx_file.path),
            output_folder_path=str(work / "saved_model"),
            custom_input_op_name_np_data_path=[
                ["x", str(work / "calibration.npy"), np.zeros(1, np.float32), np.ones(1, np.float32)]
            ],
            disable_group_convolution=True,
            not_use_onnxsim=True,
            copy_onnx_input_output_names_to_tflite=True,
            output_signaturedefs=True,
            non_verbose=True,
        )
    return Converted(
        work,
        work / "saved_model",
        work / "saved_model" / "model_float32.tflite",
        work / "exported.onnx",
        calibration,
        _nhwc(2, 48),
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Converted:
    return _convert(_cnn(True), tmp_path_factory.mktemp("sensitivity"))


@pytest.fixture(scope="module")
def ranking(converted) -> list[LayerLoss]:
    losses = layer_sensitivity(
        converted.saved_model, {"x": converted.calibration}, converted.work / "sens.log", converted.onnx_path
    )
    print("\nlayer ranking (output SQNR with only this layer int8 | layer-direct SQNR | rmse/scale):")
    for loss in losses:
        print(
            f"  {loss.op:16} {str(loss.shape):16} {loss.sqnr_db:7.1f} dB | {loss.layer_sqnr_db:6.1f} dB | "
            f"{loss.rmse_over_scale:5.2f} | {loss.float_bytes:6} B | {loss.module}  {loss.name}"
        )
    return losses


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    assert {name: d["dtype"] for name, d in runner.get_input_details().items()} == {"x": np.float32}
    return np.concatenate([runner(x=x[None])["output_0"] for x in inputs]).astype(np.float64)


def _sqnr_db(reference: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - got) ** 2)))


def _consumers(saved_model: Path, tensor_name: str) -> set[str]:
    """Output tensor names of the ops that read tensor_name in the SavedModel's float TFLite conversion."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # test-only look at the graph's wiring
    produced = {i for op in ops for i in op["outputs"] if names[i] == tensor_name}
    return {names[op["outputs"][0]] for op in ops if produced & set(op["inputs"])}


def test_damage_leaves_the_float_model_unchanged():
    x = torch.from_numpy(np.random.default_rng(3).random((16, *SHAPE[1:]), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(_cnn(True)(x).numpy(), _cnn(False)(x).numpy(), rtol=0, atol=1e-5)


def test_damaged_conv_and_its_consumer_rank_worst(converted, ranking):
    assert len({loss.name for loss in ranking}) == len(ranking) >= 5
    assert [loss.sqnr_db for loss in ranking] == sorted(loss.sqnr_db for loss in ranking)
    damaged = [loss for loss in ranking if loss.op == "CONV_2D" and loss.shape[-1] == DAMAGED_CHANNELS]
    assert len(damaged) == 1
    consumer = _consumers(converted.saved_model, damaged[0].name)
    assert len(consumer) == 1
    # Both quantize the damaged tensor (one as its output, one as its input), so both destroy it.
    worst, rest = ranking[:2], ranking[2:]
    assert {loss.name for loss in worst} == {damaged[0].name, *consumer}
    assert all(loss.op == "CONV_2D" for loss in worst)
    assert max(loss.sqnr_db for loss in worst) < min(loss.sqnr_db for loss in rest) - 10
    assert all(loss.to_dict()["name"] == loss.name for loss in ranking)


def test_a_layer_ruined_by_its_own_weights_ranks_first_alone(tmp_path_factory):
    x = torch.from_numpy(np.random.default_rng(3).random((16, *SHAPE[1:]), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(_weight_damaged()(x).numpy(), _weight_damaged(False)(x).numpy(), rtol=0, atol=1e-5)
    converted = _convert(_weight_damaged(), tmp_path_factory.mktemp("weights"))
    ranking = layer_sensitivity(converted.saved_model, {"x": converted.calibration}, converted.work / "sens.log")
    worst, runner_up = ranking[0], ranking[1]
    assert worst.op == "CONV_2D" and worst.shape[-1] == DAMAGED_CHANNELS, [(r.op, r.shape, r.sqnr_db) for r in ranking]
    assert worst.sqnr_db < runner_up.sqnr_db - 10, (worst.sqnr_db, runner_up.sqnr_db)


def test_mixed_export_keeping_the_worst_layers_beats_plain_int8(converted, ranking):
    reference = _run(converted.float_tflite, converted.held_out)
    samples, log = {"x": converted.calibration}, converted.work / "mixed.log"
    out = converted.work / "exports"
    damaged = next(loss.name for loss in ranking if loss.shape[-1] == DAMAGED_CHANNELS)
    figures = {}
    for label, keep in (
        ("plain int8", []),
        ("damaged conv float", [damaged]),
        ("worst two float", [loss.name for loss in ranking[:2]]),
    ):
        path = export_mixed(converted.saved_model, samples, keep, out / f"{label.replace(' ', '_')}.tflite", log)
        figures[label] = _sqnr_db(reference, _run(path, converted.held_out))
    print("\nheld-out output SQNR vs float: " + ", ".join(f"{k} {v:.1f} dB" for k, v in figures.items()))
    assert figures["worst two float"] > figures["plain int8"] + 10
    # Its consumer re-quantizes the damaged tensor on the same scale, so keeping the conv alone cannot help.
    assert figures["damaged conv float"] < figures["plain int8"] + 3
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{k.replace(' ', '_')}.tflite" for k in figures)


def test_layers_name_the_pytorch_modules_they_come_from(ranking):
    by_shape = {(loss.op, loss.shape[-1]): loss.module for loss in ranking}
    # nn.Sequential's indices: conv 0 (8 ch), conv 2 (the damaged, 12 ch), conv 4 (8 ch, 1x1), linear 8.
    assert by_shape[("CONV_2D", 8)] in {"0", "4"} and by_shape[("CONV_2D", DAMAGED_CHANNELS)] == "2"
    assert by_shape[("FULLY_CONNECTED", 10)] == "8"
    assert by_shape[("MEAN", 8)] == "6 (mean)"  # weightless: the call and the module it ran in
    assert all(loss.module is None or loss.module[0].isdigit() for loss in ranking), [r.module for r in ranking]


def test_mixed_export_keeps_the_fewest_layers_that_reach_the_floor(converted, ranking):
    FLOOR = 40.0  # above plain int8 of the damaged CNN (about 34 dB), below both layers in float (about 49)
    reference = _run(converted.float_tflite, converted.held_out)
    samples, log, out = {"x": converted.calibration}, converted.work / "floor.log", converted.work / "floor"
    losses, choice = export_to_floor(
        converted.saved_model, samples, out / "to_40.tflite", log, FLOOR, 4, converted.onnx_path
    )
    assert [loss.name for loss in losses] == [loss.name for loss in ranking]
    plain = choice.steps[0]
    assert plain.float_layers == () and plain.sqnr_db < FLOOR + HELD_OUT_MARGIN_DB  # the damage needs float layers
    # Neither the damaged conv nor its consumer helps alone (both quantize the damaged tensor): both are kept.
    damaged = next(loss for loss in ranking if loss.shape[-1] == DAMAGED_CHANNELS)
    assert set(choice.kept_float) == {damaged.name, *_consumers(converted.saved_model, damaged.name)}
    assert choice.met and choice.target_sqnr_db == FLOOR + HELD_OUT_MARGIN_DB
    assert choice.steps[0].float_layers == () and choice.steps[-1].float_layers == choice.kept_float
    # The final linear layer costs no bytes in float, so it ranks first; once both convs are float it is dropped.
    linear = next(loss.name for loss in ranking if loss.op == "FULLY_CONNECTED")  # named by the file, not by us
    assert linear in {n for step in choice.steps for n in step.float_layers}
    assert choice.steps[-1].size_bytes == (out / "to_40.tflite").stat().st_size
    assert _sqnr_db(reference, _run(out / "to_40.tflite", converted.held_out)) >= FLOOR

    # A floor plain int8 already reaches keeps nothing in float.
    _, low = export_to_floor(converted.saved_model, samples, out / "low.tflite", log, plain.sqnr_db - 5, 4)
    assert low.kept_float == () and low.met and len(low.steps) == 1
    # One layer allowed cannot reach it: the file keeps one and says the target was missed.
    _, capped = export_to_floor(converted.saved_model, samples, out / "one.tflite", log, FLOOR, 1)
    assert len(capped.kept_float) == 1 and not capped.met
    assert capped.to_dict()["met"] is False and len(capped.to_dict()["steps"]) == 2


def test_unknown_layer_name_is_an_export_error(converted, ranking):
    with pytest.raises(ExportError, match="unknown layer") as info:
        export_mixed(
            converted.saved_model,
            {"x": converted.calibration},
            ["conv_that_is_not_there"],
            converted.work / "never.tflite",
            converted.work / "mixed.log",
        )
    assert any(repr(loss.name) in str(info.value) for loss in ranking)  # it shows real names to copy
    assert not (converted.work / "never.tflite").exists()


def test_samples_in_the_onnx_layout_are_an_export_error(converted):
    nchw = np.transpose(converted.calibration, (0, 3, 1, 2))
    with pytest.raises(ExportError, match=r"NHWC.*\(1, 8, 8\) \(expected \(8, 8, 1\)\)"):
        layer_sensitivity(converted.saved_model, {"x": nchw}, converted.work / "sens.log")


def test_an_unreadable_saved_model_is_an_export_error_pointing_to_the_log(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"not a protobuf")
    log = tmp_path / "sens.log"
    with pytest.raises(ExportError, match=rf"broken: int8 sensitivity analysis failed: .*details in {log}"):
        layer_sensitivity(tmp_path / "broken", {"x": _nhwc(0, 2)}, log)
    with pytest.raises(ExportError, match="no saved_model.pb"):
        export_mixed(tmp_path, {"x": _nhwc(0, 2)}, [], tmp_path / "m.tflite", log)
