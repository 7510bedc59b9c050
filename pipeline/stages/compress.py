"""Stage compress: distil the trained model into a student, prune it and win accuracy back, then QAT.

Any module torch.export can capture is compressed, the zoo's and the user's alike; the result is
saved as a torch.export program (model_compressed.pt2) with the pruning plan beside it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace

import numpy as np
import torch

from edgepipe.models.channel_pruning import amount_for, count_macs_params, prune_channels
from edgepipe.models.programs import save_program
from edgepipe.models.pruning import count_parameters, finalize_magnitude, magnitude_prune, sparsity
from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.training import TrainSettings, predict, recalibrate_batchnorm, task_loss, train_as
from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.modules import (
    COMPRESSED,
    PRUNE_PLAN,
    calibration_samples,
    learning,
    student_module,
    train_settings,
    trained_module,
)
from edgepipe.pipeline.core.sources import model_source
from edgepipe.pipeline.core.store import write_json

# Samples that trace the graph and rank channels by their Taylor importance on the user's data.
IMPORTANCE_SAMPLES = 256


def run_compress(ctx: StageContext) -> dict:
    """Apply the job's [compress] steps to model.pt and save the program; nothing when none are asked."""
    settings = ctx.job.compress
    if not settings.active:
        return {"steps": []}
    torch.set_num_threads(ctx.job.train.threads)
    source = model_source(ctx.job)
    data = source.splits()
    if data is None and settings.needs_data:
        raise ConfigError(
            f"[compress] needs data to recover on, and {source.ref} has none: give [train] data = an .npz with "
            "one array per input and 'labels', a folder of class subfolders, or pkg.module:function"
        )
    fit = learning(source) if data is not None else None
    base = train_settings(ctx.job, source.train_defaults)
    if data is not None:
        examples = tuple(torch.from_numpy(data.x_train[n][:2]) for n in fit.input_names)
    else:  # pruning alone, channels ranked by their weights
        examples = source.examples()
    module = trained_module(ctx)
    trained = _scored(source, module, data, examples)
    steps = []
    if settings.distill:
        from edgepipe.models.distillation import distill

        teacher, module = module, student_module(ctx)
        torch.manual_seed(ctx.job.job.seed)
        epochs = replace(base, epochs=settings.distill_epochs or base.epochs)
        result = distill(module, teacher, fit, data, epochs, settings.temperature, settings.distill_alpha)
        steps.append(
            {
                "step": "distill",
                "student": settings.student or f"width {settings.student_width:g}",
                "temperature": settings.temperature,
                "alpha": settings.distill_alpha,
                "train": asdict(result),
                **_scored(source, module, data, examples),
            }
        )
    plan = None
    if settings.prune == "magnitude":
        steps.append(_magnitude(module, source, data, examples, _finetune_settings(base, settings), settings))
    elif settings.prune == "channels":
        pruned, plan = _channels(ctx, module, source, data, examples, base)
        steps += pruned
    if settings.qat:
        from edgepipe.models.qat import quantization_aware_finetune

        # Every QAT epoch runs and the best is kept, the starting weights included: under int8 rounding
        # the validation loss jumps from epoch to epoch (weights cross rounding boundaries) rather than
        # falling smoothly, and a run of worse epochs was often followed by the best one.
        qat = replace(
            base, epochs=settings.qat_epochs, lr=settings.qat_lr or base.lr / 10, patience=settings.qat_epochs
        )
        # its int8 ranges are the export's: calibrated on the same samples
        calibration = calibration_samples(ctx.job, source)
        module, result = quantization_aware_finetune(module, examples, fit, data, qat, calibration)
        steps.append({"step": "qat", "train": asdict(result), **_scored(source, module, data, examples)})
    any_batch = save_program(module.eval(), source.examples(), ctx.staging / COMPRESSED)
    if plan is not None:
        write_json(ctx.staging / PRUNE_PLAN, plan)
    return {
        "steps": steps,
        "trained": trained,
        "compressed": _scored(source, module, data, examples),
        "lower_is_better": list(source.task.lower_is_better) if source.task else [],
        "any_batch": any_batch,
    }


def _channels(ctx, module, source, data, examples, base: TrainSettings) -> tuple[list[dict], dict]:
    """Prune channels by dependency groups in prune_steps steps, recovering after each; the plan says what went."""
    settings = ctx.job.compress
    teacher = copy.deepcopy(module).eval()
    trials = None
    if settings.prune_target and settings.prune_target.latency:
        from edgepipe.pipeline.core.latency_target import amount_for_latency

        log = ctx.staging / "logs" / "compress.log"
        log.parent.mkdir(exist_ok=True)
        amount, trials = amount_for_latency(
            module,
            source.examples(),
            source.inputs,
            settings.prune_target.latency,
            settings.prune_skip,
            ctx.job.export.opset,
            log,
        )
    elif settings.prune_target:
        goal, fraction = settings.prune_target.goal
        amount = amount_for(module, examples, goal, fraction, settings.prune_skip)
    else:
        amount = settings.prune_amount
    # each step removes the same share of what is left, so that the steps compound to `amount`
    per_step = 1 - (1 - amount) ** (1 / settings.prune_steps)
    finetune = _finetune_settings(base, settings)
    gradients = _taylor(source, data) if data is not None else None
    steps, outcomes = [], []
    for index in range(settings.prune_steps):
        before = _scored(source, module, data, examples)
        outcome = prune_channels(module, examples, per_step, settings.prune_skip, gradients)
        if not outcome.layers:
            raise ConfigError(
                f"compress.prune = 'channels': no channel of {source.ref} can be removed "
                f"(kept whole: {', '.join(sorted(outcome.kept_whole)) or 'none'}); try 'magnitude'"
            )
        if data is not None:
            recalibrate_batchnorm(module, data.x_train, source.input_names)
        pruned = _scored(source, module, data, examples)
        recovery = _recover(module, teacher, source, data, finetune, settings) if finetune.epochs else None
        if recovery is not None:
            recalibrate_batchnorm(module, data.x_train, source.input_names)
        outcomes.append(outcome.to_dict())
        steps.append(
            {
                "step": "prune_channels",
                "index": index + 1,
                "of": settings.prune_steps,
                "amount": per_step,
                "recovery": settings.recovery if recovery else None,
                "before": before,
                "pruned": pruned,
                "channels": [{"name": a["name"], "channels": a["channels"], "kept": a["kept"]} for a in outcome.layers],
                "kept_whole": outcome.kept_whole,
                "finetune": asdict(recovery) if recovery else None,
                **_scored(source, module, data, examples),
            }
        )
    target = settings.prune_target.goal if settings.prune_target else None
    plan = {
        "amount": amount,
        "target": target,
        "latency_trials": trials,
        "steps": outcomes,
        "importance": "taylor" if gradients else "l2",
    }
    return steps, plan


def _recover(module, teacher, source, data, finetune: TrainSettings, settings):
    """Fine-tune on the labels, learn the unpruned model's outputs, or both (with [train]'s schedule and
    early stopping)."""
    from edgepipe.models.distillation import distillation_loss

    fit = learning(source)
    alpha = {"finetune": 0.0, "distill": 1.0, "both": settings.distill_alpha}[settings.recovery]
    criterion = distillation_loss(teacher, fit.task, settings.temperature, alpha, fit.loss) if alpha else None
    return train_as(module, data, finetune, fit, criterion)


def _taylor(source, data):
    """A backward pass of the task loss on training samples, for Taylor importance."""
    fit = learning(source)
    count = min(IMPORTANCE_SAMPLES, len(data.y_train))
    inputs = [torch.from_numpy(data.x_train[n][:count]) for n in fit.input_names]
    targets = torch.from_numpy(data.y_train[:count])
    loss = fit.loss or task_loss(fit.task)

    def gradients(module: torch.nn.Module) -> None:
        module.eval()  # BatchNorm statistics stay as trained
        for chunk in range(0, count, 64):
            batch = [x[chunk : chunk + 64] for x in inputs]
            loss(module(*batch), targets[chunk : chunk + 64]).backward()

    return gradients


def _magnitude(module, source, data, examples, finetune: TrainSettings, settings) -> dict:
    """Zero the smallest weights, fine-tune, then make the masks permanent."""
    before = _scored(source, module, data, examples)
    magnitude_prune(module, settings.prune_amount)
    result = train_as(module, data, finetune, learning(source)) if finetune.epochs else None
    finalize_magnitude(module)
    return {
        "step": "prune_magnitude",
        "amount": settings.prune_amount,
        "before": before,
        "sparsity": sparsity(module),
        "finetune": asdict(result) if result else None,
        **_scored(source, module, data, examples),
    }


def _finetune_settings(base: TrainSettings, settings) -> TrainSettings:
    return replace(
        base,
        epochs=settings.finetune_epochs,
        lr=settings.finetune_lr or base.lr,
        patience=min(base.patience, max(1, settings.finetune_epochs)),
    )


def _scored(source, module: torch.nn.Module, data, examples) -> dict:
    """Parameters, MACs, zero fraction and held-out metrics (none without data) of a module."""
    macs, _ = count_macs_params(module, tuple(x[:1] for x in examples))  # per sample
    metrics = {}
    if data is not None:
        metrics = source.task.metric(np.asarray(predict(module, data.x_test, source.input_names)), data.y_test)
    return {"parameters": count_parameters(module), "macs": macs, "sparsity": sparsity(module), "metrics": metrics}
