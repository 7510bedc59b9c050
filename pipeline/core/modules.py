"""The torch modules a job works on, rebuilt in one place: trained, compressed, student, and the one
the export stage converts (with its example inputs and calibration samples).

Stages load models through here rather than through each other, so no stage module imports another.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from edgepipe.models.pruning import resize_to
from edgepipe.models.registry import ModelSpec
from edgepipe.models.shared.specs import InputSpec
from edgepipe.models.training import TrainSettings
from edgepipe.models.zoo import get_model
from edgepipe.pipeline.core.config import JobConfig
from edgepipe.pipeline.core.context import StageContext, source_kind

TRAINED = "model.pt"
COMPRESSED = "model_compressed.pt"
# Activation ranges from fewer samples than this describe a handful of inputs, not the data.
MIN_CALIBRATION_SAMPLES = 8


def train_settings(job: JobConfig, spec: ModelSpec) -> TrainSettings:
    """Library defaults, then the model's defaults, then what the job's [train] sets."""
    overrides = {k: v for k, v in job.train.model_dump().items() if v is not None}
    known = {f.name for f in fields(TrainSettings)}
    merged = {**spec.train_defaults, **{k: v for k, v in overrides.items() if k in known}, "seed": job.job.seed}
    return TrainSettings(**merged)


def trained_module(ctx: StageContext) -> torch.nn.Module:
    """The trained module rebuilt from model.pt (weights only, never arbitrary pickles)."""
    module = get_model(ctx.job.job.model).build()
    module.load_state_dict(torch.load(ctx.path(TRAINED), weights_only=True))
    return module.eval()


def student_module(ctx: StageContext) -> torch.nn.Module:
    """The student: the user's factory, or the zoo model built narrower."""
    settings = ctx.job.compress
    torch.manual_seed(ctx.job.job.seed)
    if settings.student:
        from edgepipe.pipeline.core.user_models import load_user_model

        spec = get_model(ctx.job.job.model)
        shapes = tuple(f"{'x'.join(map(str, s.shape))}:{s.dtype}" for s in spec.inputs)
        return load_user_model(settings.student, shapes, None, ctx.job.job.seed).module
    from edgepipe.models.distillation import narrower

    return narrower(get_model(ctx.job.job.model), settings.student_width)


def compressed_module(ctx: StageContext) -> torch.nn.Module:
    """The module the export stage converts: the compressed one when the job compresses, else the trained one."""
    if not ctx.results.get("compress", {}).get("steps"):
        return trained_module(ctx)
    module = student_module(ctx) if ctx.job.compress.distill else get_model(ctx.job.job.model).build()
    # Channel pruning changed layer shapes: the module takes them from the saved tensors.
    return resize_to(module, torch.load(ctx.path(COMPRESSED), weights_only=True)).eval()


def source_module(ctx: StageContext) -> tuple:
    """(module, example inputs, input specs, calibration samples) of a zoo model or a user factory."""
    if source_kind(ctx.job) == "factory":
        from edgepipe.pipeline.core.user_models import load_user_model

        user = load_user_model(ctx.job.job.model, ctx.job.job.inputs, ctx.job.job.weights, ctx.job.job.seed)
        return user.module, user.examples, user.inputs, user_calibration(ctx.job, user.inputs)
    spec = get_model(ctx.job.job.model)
    examples = tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in spec.inputs)
    calibration = user_calibration(ctx.job, spec.inputs)
    if calibration is None:
        count = ctx.job.export.calibration_samples
        calibration = {
            name: np.ascontiguousarray(values[:count])
            for name, values in spec.dataset(ctx.job.job.seed).x_train.items()
        }
    return compressed_module(ctx), examples, spec.inputs, calibration


def user_calibration(job, specs: tuple[InputSpec, ...]) -> dict[str, np.ndarray] | None:
    """The job's own calibration data (`[export] calibration`), checked against the inputs; None without it."""
    from edgepipe.pipeline.core.user_data import load_samples

    export = job.export
    if not export.calibration:
        return None
    return load_samples(
        export.calibration, specs, "calibration", export.images, MIN_CALIBRATION_SAMPLES, export.calibration_samples
    )
