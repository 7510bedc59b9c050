"""int8_mixed: the int8 file (float32 I/O) that keeps the fewest layers in float32 to reach an SQNR floor."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.exporters.quantize.layer_losses import LayerLoss, calibrate, layer_losses, quantized, run, sqnr
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import EdgepipeError, ExportError, first_line


@dataclass(frozen=True)
class MixedTarget:
    """What int8_mixed aims at: the output SQNR floor, and at most how many layers may stay float32 for it."""

    min_sqnr_db: float = 20.0  # the ledger's floor for quantized variants ([validate] quantized_min_sqnr_db)
    max_float_layers: int = 4


@dataclass(frozen=True)
class MixedStep:
    """One int8_mixed candidate that was kept: these layers in float32, the rest int8."""

    float_layers: tuple[str, ...]
    sqnr_db: float  # model output against the float model, on the calibration samples
    size_bytes: int

    def to_dict(self) -> dict:
        """JSON form; an infinite SQNR (no error at all) becomes None."""
        return {
            "float_layers": list(self.float_layers),
            "sqnr_db": self.sqnr_db if math.isfinite(self.sqnr_db) else None,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class MixedChoice:
    """Which layers int8_mixed keeps in float32 and the trail that led there."""

    target_sqnr_db: float  # the SQNR floor plus HELD_OUT_MARGIN_DB
    max_float_layers: int
    steps: tuple[MixedStep, ...]  # from all-int8 to the file written: layers added, then layers found unneeded

    @property
    def kept_float(self) -> tuple[str, ...]:
        """The written file's float32 layers."""
        return self.steps[-1].float_layers

    @property
    def met(self) -> bool:
        """Whether the written file reaches the target."""
        return self.steps[-1].sqnr_db >= self.target_sqnr_db

    def to_dict(self) -> dict:
        """JSON form."""
        return {
            "target_sqnr_db": self.target_sqnr_db,
            "max_float_layers": self.max_float_layers,
            "met": self.met,
            "steps": [step.to_dict() for step in self.steps],
        }


# The choice is measured on the calibration samples; the ledger judges other samples against
# PyTorch, where the same file reads a little differently. The floor is aimed at with this margin.
HELD_OUT_MARGIN_DB = 1.0


def write_mixed(
    saved_model_dir: Path,
    float_model: bytes,
    feeds: tuple[dict[str, np.ndarray], ...],
    out_path: Path,
    target: MixedTarget,
    log_path: Path,
    onnx_path: Path | None = None,
) -> tuple[list[LayerLoss], MixedChoice]:
    """Write the int8 model that keeps few layers in float32 and reaches target.min_sqnr_db; every layer's
    loss (worst first) and the choice.

    Layers are added in order of the output noise they remove per byte they cost in float
    (LayerLoss.loss_per_byte), each step measured, until the SQNR against the float model reaches
    min_sqnr_db + HELD_OUT_MARGIN_DB or max_float_layers are float. Then every kept layer is dropped
    again whose removal still leaves the target reached (a layer that costs no bytes ranks first even
    when it removes little noise). float_model is the SavedModel's fp32 file; feeds the calibration
    batches. With the ONNX file, each layer also names its PyTorch module.
    """
    try:
        with output_to_log(log_path):
            calibrated = calibrate(saved_model_dir, float_model, feeds)
            losses = layer_losses(calibrated, onnx_path)
            reference = run(float_model, feeds)
            goal = target.min_sqnr_db + HELD_OUT_MARGIN_DB

            def measured(layers: tuple[str, ...]) -> tuple[MixedStep, bytes]:
                flatbuffer = quantized(calibrated.debugger, list(layers))
                return MixedStep(layers, sqnr(reference, run(flatbuffer, feeds)), len(flatbuffer)), flatbuffer

            # Never every layer: that is the fp32 file with extra steps.
            most = min(target.max_float_layers, len(losses) - 1)
            ranked = sorted(losses, key=lambda loss: -loss.loss_per_byte)[:most]
            step, flatbuffer = measured(())
            steps = [step]
            for loss in ranked:
                if steps[-1].sqnr_db >= goal:
                    break
                step, flatbuffer = measured((*steps[-1].float_layers, loss.name))
                steps.append(step)
            if steps[-1].sqnr_db >= goal:
                least_noise_first = sorted(losses, key=lambda loss: -loss.sqnr_db)
                for loss in [loss for loss in least_noise_first if loss.name in steps[-1].float_layers]:
                    trial, trial_flatbuffer = measured(tuple(n for n in steps[-1].float_layers if n != loss.name))
                    if trial.sqnr_db >= goal:
                        steps.append(trial)
                        flatbuffer = trial_flatbuffer
    except EdgepipeError:
        raise
    except Exception as exc:  # converter and debugger raise many types; all mean the same to a user
        raise ExportError(
            f"{saved_model_dir}: mixed-precision export failed: {type(exc).__name__}: {first_line(exc)} "
            f"(details in {log_path})"
        ) from exc
    Path(out_path).write_bytes(flatbuffer)
    return losses, MixedChoice(goal, target.max_float_layers, tuple(steps))
