"""int8_mixed: the int8 file (float32 I/O) that keeps the fewest layers in float32 to reach an SQNR floor."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.exporters.quantize.layer_groups import estimated_noise
from edgepipe.exporters.quantize.layer_losses import LayerLoss, WholeFiles, calibrate, layer_losses, module_origins, run
from edgepipe.exporters.quantize.layer_screen import noise_share, screen
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import EdgepipeError, ExportError, first_line
from edgepipe.models.shared.progress import tick


@dataclass(frozen=True)
class MixedTarget:
    """What int8_mixed aims at: the output SQNR floor, and at most how many layers may stay float32 for it."""

    min_sqnr_db: float = 20.0  # the ledger's floor for quantized variants ([validate] quantized_min_sqnr_db)
    max_float_layers: int = 4


@dataclass(frozen=True)
class MixedStep:
    """One int8_mixed candidate that was kept: these layers in float32, the rest int8."""

    float_layers: tuple[str, ...]
    sqnr_db: float  # model output against the float model, measured on the search samples
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
    search_samples: int  # calibration samples every figure of the search was measured on (search_feeds)
    layers_quantized: int  # every layer the int8 conversion quantized: each has local figures and an estimate
    group_measurements: int  # whole files measured for the estimates, each with one group of layers in int8
    layers_measured: int  # layers measured alone (sqnr_db, float_bytes): the worst by the estimate

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
            "search_samples": self.search_samples,
            "layers_quantized": self.layers_quantized,
            "group_measurements": self.group_measurements,
            "layers_measured": self.layers_measured,
        }


# The choice is measured on calibration samples; the ledger judges other samples against
# PyTorch, where the same file reads a little differently. The floor is aimed at with this margin.
HELD_OUT_MARGIN_DB = 1.0
# Every file the search measures runs on at most this many calibration batches, spread over them,
# so that a measurement costs the same on 200 samples as on 16 (mobilevit_xxs at 256x256: 2 s).
SEARCH_FEEDS = 16
# Layers measured alone for each layer that may stay float: the choice picks among them.
MEASURED_PER_FLOAT_LAYER = 2
# Group measurements for each layer measured alone: what bisection may spend to find them.
GROUPS_PER_MEASURED_LAYER = 4


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

    One calibration on every feed, one debug run for every layer's local figures
    (quantize/layer_screen.py), then a fixed number of whole-file measurements, however many layers
    the model has: groups of layers bisected to estimate each layer's output noise alone
    (quantize/layer_groups.py), and MEASURED_PER_FLOAT_LAYER x max_float_layers layers, the worst
    by the estimate, measured alone. Measured layers are added in order of the output noise they
    remove per byte they cost in float (LayerLoss.loss_per_byte), each step measured, until the SQNR
    against the float model reaches min_sqnr_db + HELD_OUT_MARGIN_DB or max_float_layers are float.
    Then every kept layer is dropped again whose removal still leaves the target reached (a layer that
    costs no bytes ranks first even when it removes little noise). float_model is the SavedModel's
    fp32 file; feeds the calibration batches, of which search_feeds are measured on. With the ONNX
    file, each layer also names its PyTorch module.
    """
    try:
        with output_to_log(log_path):
            calibrated = calibrate(saved_model_dir, feeds)
            search = search_feeds(feeds)
            files = WholeFiles(calibrated, search, run(float_model, search))
            tick(f"export: int8_mixed: local figures of {len(calibrated.layers)} layers from one debug run")
            screens = screen(calibrated.debug_model, calibrated.calibrated_model, calibrated.layers, search)
            names = [screened.name for screened in screens]
            measured = MEASURED_PER_FLOAT_LAYER * target.max_float_layers
            tick(f"export: int8_mixed: up to {GROUPS_PER_MEASURED_LAYER * measured} groups of layers measured")
            estimates = estimated_noise(
                names,
                {screened.name: noise_share(screened.local_sqnr_db) for screened in screens},
                files.only_int8_sqnr,
                GROUPS_PER_MEASURED_LAYER * measured,
                measured,
            )
            to_measure = sorted(names, key=lambda name: -estimates.noise[name])[:measured]
            origins = module_origins(calibrated, names, onnx_path)
            tick(f"export: int8_mixed: the {len(to_measure)} layers estimated worst measured alone")
            losses = layer_losses(screens, estimates.noise, to_measure, files, origins)
            goal = target.min_sqnr_db + HELD_OUT_MARGIN_DB
            steps, flatbuffer = _choose(losses, files, goal, target.max_float_layers)
    except EdgepipeError:
        raise
    except Exception as exc:  # converter and debugger raise many types; all mean the same to a user
        raise ExportError(
            f"{saved_model_dir}: mixed-precision export failed: {type(exc).__name__}: {first_line(exc)} "
            f"(details in {log_path})"
        ) from exc
    Path(out_path).write_bytes(flatbuffer)
    samples = sum(len(next(iter(feed.values()))) for feed in search)
    return losses, MixedChoice(
        goal, target.max_float_layers, tuple(steps), samples, len(names), estimates.measurements, len(to_measure)
    )


def search_feeds(feeds: tuple[dict[str, np.ndarray], ...]) -> tuple[dict[str, np.ndarray], ...]:
    """At most SEARCH_FEEDS of the calibration batches, spread evenly (samples sorted by class keep every class)."""
    if len(feeds) <= SEARCH_FEEDS:
        return feeds
    return tuple(feeds[i * len(feeds) // SEARCH_FEEDS] for i in range(SEARCH_FEEDS))


def _choose(
    losses: list[LayerLoss], files: WholeFiles, goal: float, max_float_layers: int
) -> tuple[list[MixedStep], bytes]:
    """Steps from all-int8 to the chosen file, and its bytes: measured layers added by noise removed per
    byte until goal or max_float_layers, then each one dropped that the goal does without."""

    def step(layers: tuple[str, ...]) -> tuple[MixedStep, bytes]:
        sqnr_db, flatbuffer = files.keeping_float(layers)
        return MixedStep(layers, sqnr_db, len(flatbuffer)), flatbuffer

    candidates = [loss for loss in losses if loss.measured]
    # Never every layer: that is the fp32 file with extra steps.
    most = min(max_float_layers, len(losses) - 1)
    ranked = sorted(candidates, key=lambda loss: -loss.loss_per_byte)[:most]
    last, flatbuffer = step(())
    steps = [last]
    for loss in ranked:
        if steps[-1].sqnr_db >= goal:
            break
        last, flatbuffer = step((*steps[-1].float_layers, loss.name))
        steps.append(last)
    if steps[-1].sqnr_db >= goal:
        least_noise_first = sorted(candidates, key=lambda loss: -loss.sqnr_db)
        for loss in [loss for loss in least_noise_first if loss.name in steps[-1].float_layers]:
            trial, trial_flatbuffer = step(tuple(n for n in steps[-1].float_layers if n != loss.name))
            if trial.sqnr_db >= goal:
                steps.append(trial)
                flatbuffer = trial_flatbuffer
    return steps, flatbuffer
