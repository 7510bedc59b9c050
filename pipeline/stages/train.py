"""Stage train: train the job's model on its data (or keep the weights it came with); save model.pt."""

from __future__ import annotations

from dataclasses import asdict

import torch

from edgepipe.models.training import predict, train_as
from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.modules import TRAINED, learning, train_settings
from edgepipe.pipeline.core.sources import model_source


def run_train(ctx: StageContext) -> dict:
    """Train with the job's seed and settings and report the held-out metrics of the best epoch.

    A factory given weights keeps them as trained unless [train] epochs asks for fine-tuning; a factory
    without [train] data keeps its own initialisation (there is nothing to learn from).
    """
    source = model_source(ctx.job)
    settings = train_settings(ctx.job, source.train_defaults)
    torch.set_num_threads(ctx.job.train.threads)
    torch.manual_seed(settings.seed)
    module = source.build()
    data = source.splits()
    kept = None
    if data is None:
        kept = "weights as given" if source.weights_given else "the factory's own initialisation: no [train] data"
    elif source.weights_given and ctx.job.train.epochs is None:
        kept = "weights as given ([train] epochs fine-tunes them)"
    result = None if kept else train_as(module, data, settings, learning(source))
    module.eval()
    torch.save(module.state_dict(), ctx.staging / TRAINED)
    metrics = source.task.metric(predict(module, data.x_test, source.input_names), data.y_test) if data else {}
    return {
        "train": asdict(result) if result else None,
        "kept": kept,
        "settings": asdict(settings),
        "metrics": metrics,
        "lower_is_better": list(source.task.lower_is_better) if source.task else [],
        "parameters": sum(p.numel() for p in module.parameters()),
    }
