"""Stage train: build a zoo model, train it, save its state dict as model.pt."""

from __future__ import annotations

from dataclasses import asdict

import torch

from edgepipe.models.training import fit
from edgepipe.models.zoo import get_model
from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.modules import TRAINED, train_settings


def run_train(ctx: StageContext) -> dict:
    """Train with the job's seed and settings; report the held-out metrics of the best epoch."""
    spec = get_model(ctx.job.job.model)
    settings = train_settings(ctx.job, spec)
    fitted = fit(spec, settings, ctx.job.train.threads)
    torch.save(fitted.module.state_dict(), ctx.staging / TRAINED)
    return {
        "train": asdict(fitted.result),
        "settings": asdict(settings),
        "metrics": fitted.metrics,
        "parameters": sum(p.numel() for p in fitted.module.parameters()),
    }
