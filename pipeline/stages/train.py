"""Stage train: build a zoo model, train it, save its state dict as model.pt."""

from __future__ import annotations

from dataclasses import asdict, fields

import torch

from models.registry import ModelSpec
from models.training import TrainSettings, fit
from models.zoo import get_model
from pipeline.core.config import JobConfig
from pipeline.core.context import StageContext


def train_settings(job: JobConfig, spec: ModelSpec) -> TrainSettings:
    """Library defaults, then the model's defaults, then what the job's [train] sets."""
    overrides = {k: v for k, v in job.train.model_dump().items() if v is not None}
    known = {f.name for f in fields(TrainSettings)}
    merged = {**spec.train_defaults, **{k: v for k, v in overrides.items() if k in known}, "seed": job.job.seed}
    return TrainSettings(**merged)


def run_train(ctx: StageContext) -> dict:
    """Train with the job's seed and settings; report the held-out metrics of the best epoch."""
    spec = get_model(ctx.job.job.model)
    settings = train_settings(ctx.job, spec)
    fitted = fit(spec, settings, ctx.job.train.threads)
    torch.save(fitted.module.state_dict(), ctx.staging / "model.pt")
    return {
        "train": asdict(fitted.result),
        "settings": asdict(settings),
        "metrics": fitted.metrics,
        "parameters": sum(p.numel() for p in fitted.module.parameters()),
    }


def load_trained(ctx: StageContext) -> torch.nn.Module:
    """The trained module rebuilt from model.pt (weights only, never arbitrary pickles)."""
    module = get_model(ctx.job.job.model).build()
    module.load_state_dict(torch.load(ctx.path("model.pt"), weights_only=True))
    return module.eval()
