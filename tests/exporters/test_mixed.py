"""int8_mixed: per-layer int8 loss and the layers kept in float32, on a CNN with one deliberately damaged conv,
through the real conversion (export_tflite_variants) as the export stage runs it; and that the layer search
makes a fixed number of whole conversions however many layers a model has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.exporters.convert import export_tflite_variants
from edgepipe.exporters.quantize.calibration import CalibratedInput, Requirements, calibration_batches
from edgepipe.exporters.quantize.mixed import (
    GROUPS_PER_MEASURED_LAYER,
    HELD_OUT_MARGIN_DB,
    MEASURED_PER_FLOAT_LAYER,
    MixedTarget,
    write_mixed,
)
from edgepipe.exporters.torch.to_onnx import export_onnx
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


def _deep(convs: int) -> nn.Sequential:
    """Seeded CNN of many small convolutions: many quantized layers, each quick to convert and run."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()]
    for _ in range(convs - 1):
        layers += [nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


@dataclass(frozen=True)
class Mixed:
    """The fp32 and int8_mixed files of one conversion, int8_mixed's record, and held-out samples."""

    float_tflite: Path
    mixed_tflite: Path
    ranking: tuple  # every layer's loss, worst first
    choice: object  # MixedChoice
    held_out: np.ndarray  # NHWC


def _mixed(module: nn.Module, work: Path, floor: float, max_float_layers: int = 4) -> Mixed:
    """module -> ONNX -> fp32 and int8_mixed TFLite, calibrated on seeded samples."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "convert.log"
    example = (torch.zeros(SHAPE),)
    onnx_file = export_onnx(torch.export.export(module, example), example, ["x"], work / "model.onnx", log)
    calibration = {"x": np.transpose(_nhwc(1, 64), (0, 3, 1, 2))}  # the ONNX layout, as the export stage gives it
    results = export_tflite_variants(
        onnx_file.path,
        work,
        ["fp32", "int8_mixed"],
        log,
        calibration=calibration,
        mixed=MixedTarget(floor, max_float_layers),
    )
    mixed = results["int8_mixed"]
    return Mixed(results["fp32"].path, mixed.path, mixed.sensitivity, mixed.mixed_choice, _nhwc(2, 48))


FLOOR = 40.0  # above plain int8 of the damaged CNN (about 34 dB), below both layers in float (about 49)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Mixed:
    converted = _mixed(_cnn(True), tmp_path_factory.mktemp("mixed"), FLOOR)
    print("\nlayer ranking (output SQNR with only this layer int8 | local | layer-direct SQNR | rmse/scale):")
    for loss in converted.ranking:
        print(
            f"  {loss.op:16} {str(loss.shape):16} {loss.sqnr_db:7.1f} dB | {loss.local_sqnr_db:6.1f} dB | "
            f"{loss.layer_sqnr_db:6.1f} dB | {loss.rmse_over_scale:5.2f} | {loss.float_bytes:6} B | "
            f"{loss.module}  {loss.name}"
        )
    return converted


@pytest.fixture(scope="module")
def capped(tmp_path_factory) -> Mixed:
    """The damaged CNN with one layer allowed in float: two layers of five are measured whole-file."""
    return _mixed(_cnn(True), tmp_path_factory.mktemp("capped"), FLOOR, max_float_layers=1)


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    assert {name: d["dtype"] for name, d in runner.get_input_details().items()} == {"x": np.float32}
    return np.concatenate([runner(x=x[None])["output_0"] for x in inputs]).astype(np.float64)


def _sqnr_db(reference: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - got) ** 2)))


def _consumers(float_tflite: Path, tensor_name: str) -> set[str]:
    """Output tensor names of the ops that read tensor_name in the float TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(float_tflite))
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # test-only look at the graph's wiring
    produced = {i for op in ops for i in op["outputs"] if names[i] == tensor_name}
    return {names[op["outputs"][0]] for op in ops if produced & set(op["inputs"])}


def test_damage_leaves_the_float_model_unchanged():
    x = torch.from_numpy(np.random.default_rng(3).random((16, *SHAPE[1:]), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(_cnn(True)(x).numpy(), _cnn(False)(x).numpy(), rtol=0, atol=1e-5)


def test_damaged_conv_and_its_consumer_rank_worst(converted):
    ranking = converted.ranking
    assert len({loss.name for loss in ranking}) == len(ranking) >= 5
    assert [loss.sqnr_db for loss in ranking] == sorted(loss.sqnr_db for loss in ranking)
    damaged = [loss for loss in ranking if loss.op == "CONV_2D" and loss.shape[-1] == DAMAGED_CHANNELS]
    assert len(damaged) == 1
    consumer = _consumers(converted.float_tflite, damaged[0].name)
    assert len(consumer) == 1
    # Both quantize the damaged tensor (one as its output, one as its input), so both destroy it.
    worst, rest = ranking[:2], ranking[2:]
    assert {loss.name for loss in worst} == {damaged[0].name, *consumer}
    assert all(loss.op == "CONV_2D" for loss in worst)
    assert max(loss.sqnr_db for loss in worst) < min(loss.sqnr_db for loss in rest) - 10
    assert all(loss.to_dict()["name"] == loss.name for loss in ranking)


@pytest.mark.slow
def test_a_layer_ruined_by_its_own_weights_ranks_first_alone(tmp_path):
    x = torch.from_numpy(np.random.default_rng(3).random((16, *SHAPE[1:]), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(_weight_damaged()(x).numpy(), _weight_damaged(False)(x).numpy(), rtol=0, atol=1e-5)
    ranking = _mixed(_weight_damaged(), tmp_path, FLOOR).ranking
    worst, runner_up = ranking[0], ranking[1]
    assert worst.op == "CONV_2D" and worst.shape[-1] == DAMAGED_CHANNELS, [(r.op, r.shape, r.sqnr_db) for r in ranking]
    assert worst.sqnr_db < runner_up.sqnr_db - 10, (worst.sqnr_db, runner_up.sqnr_db)


def test_layers_name_the_pytorch_modules_they_come_from(converted):
    by_shape = {(loss.op, loss.shape[-1]): loss.module for loss in converted.ranking}
    # nn.Sequential's indices: conv 0 (8 ch), conv 2 (the damaged, 12 ch), conv 4 (8 ch, 1x1), linear 8.
    assert by_shape[("CONV_2D", 8)] in {"0", "4"} and by_shape[("CONV_2D", DAMAGED_CHANNELS)] == "2"
    assert by_shape[("FULLY_CONNECTED", 10)] == "8"
    assert by_shape[("MEAN", 8)] == "6 (mean)"  # weightless: the call and the module it ran in
    assert all(loss.module is None or loss.module[0].isdigit() for loss in converted.ranking)


def test_mixed_export_keeps_the_fewest_layers_that_reach_the_floor(converted):
    ranking, choice = converted.ranking, converted.choice
    reference = _run(converted.float_tflite, converted.held_out)
    plain = choice.steps[0]
    assert plain.float_layers == () and plain.sqnr_db < FLOOR + HELD_OUT_MARGIN_DB  # the damage needs float layers
    # Neither the damaged conv nor its consumer helps alone (both quantize the damaged tensor): both are kept.
    damaged = next(loss for loss in ranking if loss.shape[-1] == DAMAGED_CHANNELS)
    assert set(choice.kept_float) == {damaged.name, *_consumers(converted.float_tflite, damaged.name)}
    assert choice.met and choice.target_sqnr_db == FLOOR + HELD_OUT_MARGIN_DB
    assert choice.steps[-1].float_layers == choice.kept_float
    assert choice.steps[-1].sqnr_db > plain.sqnr_db + 10  # measured on the calibration samples
    # The final linear layer costs no bytes in float, so it ranks first; once both convs are float it is dropped.
    linear = next(loss.name for loss in ranking if loss.op == "FULLY_CONNECTED")  # named by the file, not by us
    assert linear in {n for step in choice.steps for n in step.float_layers}
    assert choice.steps[-1].size_bytes == converted.mixed_tflite.stat().st_size
    held_out = _sqnr_db(reference, _run(converted.mixed_tflite, converted.held_out))
    assert held_out >= FLOOR, held_out


@pytest.mark.slow
def test_a_reachable_floor_keeps_nothing_and_a_cap_is_said(converted, capped, tmp_path):
    plain = converted.choice.steps[0]
    low = _mixed(_cnn(True), tmp_path / "low", plain.sqnr_db - 5).choice
    assert low.kept_float == () and low.met and len(low.steps) == 1
    # One layer allowed cannot reach the floor: the file keeps one and says the target was missed.
    choice = capped.choice
    assert len(choice.kept_float) == 1 and not choice.met
    assert choice.to_dict()["met"] is False and len(choice.to_dict()["steps"]) == 2


def test_the_local_screen_charges_the_damaged_tensor_to_both_layers_that_quantize_it(converted):
    damaged = next(loss for loss in converted.ranking if loss.shape[-1] == DAMAGED_CHANNELS)
    # Its own op's error looks the smallest of all: the outlier channel holds the tensor's power.
    assert damaged.layer_sqnr_db == max(loss.layer_sqnr_db for loss in converted.ranking)
    # The damage surfaces at the consumer, which mixes the channels; both layers are charged with it.
    pair = {damaged.name, *_consumers(converted.float_tflite, damaged.name)}
    by_local = sorted(converted.ranking, key=lambda loss: loss.local_sqnr_db)
    assert {loss.name for loss in by_local[:2]} == pair
    assert max(loss.local_sqnr_db for loss in by_local[:2]) < min(loss.local_sqnr_db for loss in by_local[2:]) - 10


def test_with_two_layers_measured_alone_they_are_the_damaged_conv_and_its_consumer(converted, capped):
    damaged = next(loss for loss in capped.ranking if loss.shape[-1] == DAMAGED_CHANNELS)
    pair = {damaged.name, *_consumers(capped.float_tflite, damaged.name)}
    measured = [loss for loss in capped.ranking if loss.measured]
    assert {loss.name for loss in measured} == pair and list(capped.ranking[:2]) == measured
    choice = capped.choice
    assert (choice.layers_measured, choice.layers_quantized) == (MEASURED_PER_FLOAT_LAYER, 5)
    assert choice.group_measurements == 5  # fewer layers than first groups: each is a group, measured alone
    for loss in capped.ranking[2:]:
        assert loss.sqnr_db is None and loss.float_bytes is None and loss.loss_per_byte is None
        assert loss.to_dict()["sqnr_db"] is None and loss.to_dict()["measured"] is False
    # A layer measured alone reads the same however many others were measured (another conversion
    # names the tensors anew, so layers are matched by their PyTorch module).
    full = {loss.module: loss for loss in converted.ranking}
    assert all(loss.sqnr_db == full[loss.module].sqnr_db for loss in measured)
    assert all(loss.estimated_sqnr_db == pytest.approx(full[loss.module].sqnr_db) for loss in capped.ranking)


def test_whole_conversions_do_not_grow_with_the_layer_count(tmp_path, monkeypatch):
    from tensorflow.lite.python import convert

    conversions = []
    quantize = convert.mlir_quantize  # every quantized file, debug model or re-quantization, passes here

    def counted(*args, **kwargs):
        conversions.append(1)
        return quantize(*args, **kwargs)

    monkeypatch.setattr(convert, "mlir_quantize", counted)
    max_float_layers = 2
    mixed = _mixed(_deep(40), tmp_path, 100.0, max_float_layers)  # a floor out of reach: every step is taken
    layers, choice = len(mixed.ranking), mixed.choice
    measured = MEASURED_PER_FLOAT_LAYER * max_float_layers
    groups = GROUPS_PER_MEASURED_LAYER * measured
    assert layers >= 42 and sum(loss.measured for loss in mixed.ranking) == choice.layers_measured == measured
    assert choice.group_measurements <= groups and len(choice.steps) == 1 + max_float_layers and not choice.met
    # The debugger converts twice per re-quantization (its options setter makes a debug model too):
    # calibration's 2; then all-int8, each group, each layer measured alone (unless it was a group)
    # and its float bytes, and each step of the choice.
    bound = 2 + 2 * (1 + groups + 2 * measured + 2 * max_float_layers)
    assert len(conversions) <= bound < 2 * layers, (len(conversions), bound, layers)


def test_samples_in_the_wrong_layout_are_an_export_error():
    inputs = {"x": CalibratedInput((1, 8, 8, 1), np.dtype(np.float32))}
    needs = Requirements("model.onnx -> int8", "TFLite model's (NHWC for images)", "choose fp32")
    nchw = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(ExportError, match=r"'x' has calibration samples of shape \(4, 1, 8, 8\).*NHWC"):
        calibration_batches({"x": nchw}, inputs, needs)
    batches = calibration_batches({"x": np.zeros((5, 8, 8, 1), np.float64)}, inputs, needs)
    assert len(batches) == 5 and all(b["x"].shape == (1, 8, 8, 1) and b["x"].dtype == np.float32 for b in batches)


def test_an_unreadable_saved_model_is_an_export_error_pointing_to_the_log(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"not a protobuf")
    log = tmp_path / "mixed.log"
    with pytest.raises(ExportError, match=rf"broken: mixed-precision export failed: .*details in {log}"):
        write_mixed(tmp_path / "broken", b"", ({"x": _nhwc(0, 1)},), tmp_path / "m.tflite", MixedTarget(), log)
    assert not (tmp_path / "m.tflite").exists()
