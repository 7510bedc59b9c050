"""Modules saved as torch.export programs: a pruned network keeps its new layer shapes without its class."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def save_program(module: torch.nn.Module, examples: tuple[torch.Tensor, ...], path: Path) -> bool:
    """Save module as a .pt2 program that takes any batch size where the module allows it; True if it does."""
    batched = tuple(torch.cat([x, x]) if x.dim() and x.shape[0] == 1 else x for x in examples)
    batch = torch.export.Dim("batch", min=1)
    try:
        dynamic = tuple({0: batch} if x.dim() else None for x in batched)
        program = torch.export.export(module, batched, dynamic_shapes=dynamic)
        any_batch = True
    except Exception as exc:  # a forward that fixes its batch (a reshape to 1, ...): saved for the example's batch
        log.info("program saved for batch %s only: %s", examples[0].shape[:1], str(exc).splitlines()[0][:200])
        program, any_batch = torch.export.export(module, examples), False
    torch.export.save(program, path)
    return any_batch
