"""Stage train: build a zoo model, train it, save its state dict as model.pt."""
from __future__ import annotations

from dataclasses import asdict

import torch

from models.zoo import get_model
from models.training import TrainSettings, predict, train_classifier
from pipeline.context import StageContext


def train_settings(job) -> TrainSettings:
    """The job's [train] section as the training loop's settings."""
    t = job.train
    return TrainSettings(t.epochs, t.lr, t.batch_size, t.weight_decay, t.patience, job.job.seed)


def run_train(ctx: StageContext) -> dict:
    """Train with the job's seed and settings; report the held-out metric of the best epoch."""
    spec = get_model(ctx.job.job.model)
    torch.set_num_threads(ctx.job.train.threads)
    torch.manual_seed(ctx.job.job.seed)
    module = spec.build()
    data = spec.dataset(ctx.job.job.seed)
    result = train_classifier(module, data, train_settings(ctx.job))
    torch.save(module.state_dict(), ctx.staging / "model.pt")
    metrics = spec.metric(predict(module, data.x_test), data.y_test)
    return {"train": asdict(result), "metrics": metrics,
            "parameters": sum(p.numel() for p in module.parameters())}


def load_trained(ctx: StageContext) -> torch.nn.Module:
    """The trained module rebuilt from model.pt (weights only, never arbitrary pickles)."""
    module = get_model(ctx.job.job.model).build()
    module.load_state_dict(torch.load(ctx.path("model.pt"), weights_only=True))
    return module.eval()
