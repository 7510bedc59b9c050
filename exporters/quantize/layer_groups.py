"""int8_mixed's estimate of every layer's output noise alone, from a fixed number of whole-file
measurements: bisection over groups of consecutive layers.

Each group is measured with only its layers in int8 (everything else float32), so what its
quantization does to the model's output is measured, however the noise travels there. The
noisiest group is split in halves and both halves are measured, until the measurements run out
or enough single layers have come out noisier than every group still unsplit. A model with no
more layers than measurements has each layer measured alone instead. A layer's estimate
is then the output noise of the smallest group measured with it, shared among that group's layers
by their local noise (quantize/layer_screen.py); a layer measured alone gets its measurement.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

from edgepipe.exporters.quantize.layer_screen import noise_share

# The search starts from this many groups of consecutive layers (fewer when the model has fewer layers).
FIRST_GROUPS = 8


@dataclass(frozen=True)
class Estimates:
    """Every layer's estimated output noise alone and how many group measurements it took."""

    noise: dict[str, float]  # layer -> output noise (a share of the signal) with only it in int8
    measurements: int


def estimated_noise(
    layers: list[str],
    local_noise: dict[str, float],
    only_int8_sqnr: Callable[[tuple[str, ...]], float],
    measurements: int,
    wanted: int,
) -> Estimates:
    """Each of layers' (in graph order) output noise alone, estimated from at most `measurements` calls of
    only_int8_sqnr (the output SQNR in dB with just the given layers in int8); stops once `wanted` single
    layers have been measured as noisier than every unsplit group."""
    measured: dict[tuple[int, int], float] = {}

    def measure(group: tuple[int, int]) -> tuple[float, int, int]:
        measured[group] = noise_share(only_int8_sqnr(tuple(layers[group[0] : group[1]])))
        return (-measured[group], *group)  # a min-heap of negated noise pops the noisiest first

    first = len(layers) if len(layers) <= measurements else min(FIRST_GROUPS, measurements)
    noisiest = [measure(group) for group in _first_groups(len(layers), first)]
    heapq.heapify(noisiest)
    leaves, singles = [], 0
    while noisiest and singles < wanted and len(measured) + 2 <= measurements:
        _, start, stop = heapq.heappop(noisiest)
        if stop - start == 1:
            leaves.append((start, stop))
            singles += 1
            continue
        middle = (start + stop) // 2
        for half in ((start, middle), (middle, stop)):
            heapq.heappush(noisiest, measure(half))
    leaves += [(start, stop) for _, start, stop in noisiest]
    noise = {}
    for start, stop in leaves:
        group = layers[start:stop]
        for layer, share in zip(group, _shares([local_noise[layer] for layer in group])):
            noise[layer] = measured[(start, stop)] * share if share else 0.0
    return Estimates(noise, len(measured))


def _first_groups(count: int, groups: int) -> list[tuple[int, int]]:
    """count layers cut into `groups` runs of consecutive layers as even as can be (one per layer if fewer)."""
    groups = max(1, min(groups, count))
    bounds = [round(i * count / groups) for i in range(groups + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(groups)]


def _shares(local: list[float]) -> list[float]:
    """Each layer's part of its group's noise: by local noise; equal parts when none has any; the layers
    with infinite local noise (no signal) split it alone."""
    infinite = [math.isinf(x) for x in local]
    if any(infinite):
        return [1 / sum(infinite) if flag else 0.0 for flag in infinite]
    total = sum(local)
    return [x / total for x in local] if total > 0 else [1 / len(local)] * len(local)
