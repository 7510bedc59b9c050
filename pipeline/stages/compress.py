"""Stage compress: distil the trained zoo model into a smaller student, prune and fine-tune it, then QAT."""

from __future__ import annotations

from dataclasses import asdict, replace

import torch

from edgepipe.models.pruning import count_parameters, finalize_magnitude, magnitude_prune, prune_channels, sparsity
from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.training import TrainSettings, predict, train
from edgepipe.models.zoo import get_model
from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.modules import COMPRESSED, student_module, train_settings, trained_module


def run_compress(ctx: StageContext) -> dict:
    """Apply the job's [compress] steps to model.pt and write model_compressed.pt; nothing when none are asked."""
    settings = ctx.job.compress
    if not settings.active:
        return {"steps": []}
    torch.set_num_threads(ctx.job.train.threads)
    spec = get_model(ctx.job.job.model)
    data = spec.dataset(ctx.job.job.seed)
    base = train_settings(ctx.job, spec)
    module = trained_module(ctx)
    trained = _scored(spec, module, data)
    steps = []
    if settings.distill:
        from edgepipe.models.distillation import distill

        teacher, module = module, student_module(ctx)
        torch.manual_seed(ctx.job.job.seed)
        result = distill(
            module,
            teacher,
            spec,
            data,
            replace(base, epochs=settings.distill_epochs or base.epochs),
            settings.temperature,
            settings.distill_alpha,
        )
        steps.append(
            {
                "step": "distill",
                "student": settings.student or f"width {settings.student_width:g}",
                "temperature": settings.temperature,
                "alpha": settings.distill_alpha,
                "train": asdict(result),
                **_scored(spec, module, data),
            }
        )
    if settings.prune != "none":
        steps.append(_prune(module, spec, data, _finetune_settings(base, settings), settings))
    if settings.qat:
        from edgepipe.models.qat import quantization_aware_finetune

        qat = replace(
            base,
            epochs=settings.qat_epochs,
            lr=settings.qat_lr or base.lr / 10,
            patience=min(base.patience, settings.qat_epochs),
        )
        result = quantization_aware_finetune(module, spec, data, qat)
        steps.append({"step": "qat", "train": asdict(result), **_scored(spec, module, data)})
    torch.save(module.state_dict(), ctx.staging / COMPRESSED)
    return {"steps": steps, "trained": trained, "compressed": _scored(spec, module, data)}


def _prune(module: torch.nn.Module, spec, data, finetune: TrainSettings, settings) -> dict:
    """Prune, fine-tune and describe what was removed; magnitude masks are made permanent after the fine-tune."""
    before = _scored(spec, module, data)
    # Channels are ranked by what they carry on real training samples.
    examples = tuple(torch.from_numpy(data.x_train[n][:256]) for n in spec.input_names)
    if settings.prune == "magnitude":
        magnitude_prune(module, settings.prune_amount)
        removed = []
    else:
        removed = prune_channels(module, examples, settings.prune_amount)
        if not removed:
            raise ConfigError(
                f"compress.prune = 'channels': {spec.name} has no channels that can be removed "
                "(every layer feeds the output or an op edgepipe cannot slice); try 'magnitude'"
            )
    result = train(module, data, finetune, spec.task, spec.input_names, spec.image_inputs) if finetune.epochs else None
    if settings.prune == "magnitude":
        finalize_magnitude(module)
    return {
        "step": f"prune_{settings.prune}",
        "amount": settings.prune_amount,
        "before": before,
        "channels": removed,
        "sparsity": sparsity(module),
        "finetune": asdict(result) if result else None,
        **_scored(spec, module, data),
    }


def _finetune_settings(base: TrainSettings, settings) -> TrainSettings:
    return replace(
        base,
        epochs=settings.finetune_epochs,
        lr=settings.finetune_lr or base.lr,
        patience=min(base.patience, max(1, settings.finetune_epochs)),
    )


def _scored(spec, module: torch.nn.Module, data) -> dict:
    """Parameter count, zero fraction and held-out metrics of a module."""
    metrics = spec.metric(predict(module, data.x_test, spec.input_names), data.y_test)
    return {"parameters": count_parameters(module), "sparsity": sparsity(module), "metrics": metrics}
