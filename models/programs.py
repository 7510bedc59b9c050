"""Modules saved as torch.export programs: a pruned network keeps its new layer shapes without its class."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from edgepipe.models.shared.errors import first_line

log = logging.getLogger(__name__)


class ProgramModule(torch.nn.Module):
    """A torch.export program as a module: train()/eval() only set the flag (the program is already in
    inference form: BatchNorm reads its running statistics, dropout is gone), and it exports again like
    any module."""

    def __init__(self, program: torch.nn.Module):
        super().__init__()
        self.program = program

    def forward(self, *inputs):
        return self.program(*inputs)

    def train(self, mode: bool = True):
        self.training = mode
        return self


def load_program(path: Path) -> ProgramModule:
    """A program saved by save_program."""
    return ProgramModule(torch.export.load(path).module())


def capture(module: torch.nn.Module, examples: tuple[torch.Tensor, ...]) -> tuple[torch.export.ExportedProgram, bool]:
    """(program, any_batch): torch.export with the batch axis free where the module allows it."""
    batched = tuple(torch.cat([x, x]) if x.dim() and x.shape[0] == 1 else x for x in examples)
    batch = torch.export.Dim("batch", min=1)
    try:
        dynamic = tuple({0: batch} if x.dim() else None for x in batched)
        return torch.export.export(module, batched, dynamic_shapes=dynamic), True
    except Exception as exc:  # a forward that fixes its batch (a reshape to 1, ...): the example's batch only
        log.info("captured for batch %s only: %s", examples[0].shape[:1], first_line(exc, 200))
        return torch.export.export(module, examples), False


def save_program(module: torch.nn.Module, examples: tuple[torch.Tensor, ...], path: Path) -> bool:
    """Save module as a .pt2 program that takes any batch size where the module allows it; True if it does."""
    program, any_batch = capture(module, examples)
    torch.export.save(program, path)
    return any_batch
