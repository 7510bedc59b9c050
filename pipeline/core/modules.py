"""The torch modules a job works on, rebuilt in one place: trained, compressed, student, and the one
the export stage converts (with its example inputs and calibration samples).

Stages load models through here rather than through each other, so no stage module imports another.
Every question about the model goes to its source (pipeline/core/sources.py).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from edgepipe.models.programs import load_program
from edgepipe.models.shared.specs import InputSpec
from edgepipe.models.training import Learning, TrainSettings
from edgepipe.pipeline.core.config import TrainSection
from edgepipe.pipeline.core.context import JobSettings, StageContext
from edgepipe.pipeline.core.sources import ModelSource, model_source

TRAINED = "model.pt"
COMPRESSED = "model_compressed.pt2"  # a torch.export program: pruned layers keep their new shapes
PRUNE_PLAN = "prune_plan.json"
# Activation ranges from fewer samples than this describe a handful of inputs, not the data.
MIN_CALIBRATION_SAMPLES = 8


def train_settings(job: JobSettings, defaults: dict) -> TrainSettings:
    """Library defaults, then the model's defaults, then what the job's [train] sets."""
    knobs = [f.name for f in fields(TrainSettings) if f.name in TrainSection.model_fields]
    overrides = {name: value for name in knobs if (value := getattr(job.train, name)) is not None}
    return TrainSettings(**{**defaults, **overrides, "seed": job.job.seed})


def learning(source: ModelSource) -> Learning:
    """What the training loop needs of the source's model."""
    return Learning(source.task.kind, source.input_names, source.image_inputs, source.task.loss)


def trained_module(ctx: StageContext) -> torch.nn.Module:
    """The trained module rebuilt from model.pt (weights only, never arbitrary pickles)."""
    module = model_source(ctx.job).build()
    module.load_state_dict(torch.load(ctx.path(TRAINED), weights_only=True))
    return module.eval()


def student_module(ctx: StageContext) -> torch.nn.Module:
    """The student: the user's factory, or the zoo model built narrower."""
    settings = ctx.job.compress
    torch.manual_seed(ctx.job.job.seed)
    source = model_source(ctx.job)
    if settings.student:
        from edgepipe.pipeline.core.user_models import load_user_model

        shapes = tuple(f"{'x'.join(map(str, s.shape))}:{s.dtype}" for s in source.inputs)
        return load_user_model(settings.student, shapes, None, ctx.job.job.seed).module
    if source.kind != "zoo":
        from edgepipe.models.shared.errors import ConfigError

        raise ConfigError(
            f"compress.distill: {source.ref} has no narrower build; name a student with "
            "compress.student = 'pkg.module:factory'"
        )
    from edgepipe.models.distillation import narrower
    from edgepipe.models.zoo import get_model

    return narrower(get_model(source.ref), settings.student_width)


def compressed_module(ctx: StageContext) -> torch.nn.Module:
    """The module the export stage converts: the compressed program when the job compresses, else the trained one."""
    if not ctx.results.get("compress", {}).get("steps"):
        return trained_module(ctx)
    return load_program(ctx.path(COMPRESSED))


def exported_module_file(ctx: StageContext) -> Path:
    """The file whose module the export stage converts (what validation's PyTorch reference runs)."""
    return ctx.path(COMPRESSED if ctx.results.get("compress", {}).get("steps") else TRAINED)


def reference_batch(ctx: StageContext, specs: tuple[InputSpec, ...]) -> int:
    """Samples per forward of the reference module: a user's module may only take its example's batch,
    and a compressed program keeps the batch it was saved with when it could not be saved for any."""
    compress = ctx.results.get("compress", {})
    if compress.get("steps") and not compress.get("any_batch", True):
        return specs[0].shape[0]
    return 256 if model_source(ctx.job).kind == "zoo" else specs[0].shape[0]


def source_module(ctx: StageContext) -> tuple:
    """(module, example inputs, input specs, calibration samples) of the job's model."""
    source = model_source(ctx.job)
    return compressed_module(ctx), source.examples(), source.inputs, calibration_samples(ctx.job, source)


def calibration_samples(job: JobSettings, source: ModelSource) -> dict[str, np.ndarray] | None:
    """The samples the export calibrates int8 on (and QAT takes its ranges from): the job's own
    (`[export] calibration`), else the first `[export] calibration_samples` of the training split."""
    calibration = user_calibration(job, source.inputs)
    if calibration is None and (splits := source.splits()) is not None:
        count = job.export.calibration_samples
        calibration = {name: np.ascontiguousarray(values[:count]) for name, values in splits.x_train.items()}
    return calibration


def user_calibration(job: JobSettings, specs: tuple[InputSpec, ...]) -> dict[str, np.ndarray] | None:
    """The job's own calibration data (`[export] calibration`), checked against the inputs; None without it."""
    from edgepipe.pipeline.core.user_data import load_samples

    export = job.export
    if not export.calibration:
        return None
    return load_samples(
        export.calibration, specs, "calibration", export.images, MIN_CALIBRATION_SAMPLES, export.calibration_samples
    )
