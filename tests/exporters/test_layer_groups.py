"""int8_mixed's bisection over groups of layers, on made-up layers whose output noise adds up: it finds
the noisiest layers with a fixed number of measurements, whatever their local noise claims."""

from __future__ import annotations

import math

import pytest

from edgepipe.exporters.quantize.layer_groups import FIRST_GROUPS, estimated_noise


def _measure(truth: dict[str, float], calls: list[tuple[str, ...]]):
    """only_int8_sqnr for layers whose output noise (as a share of the signal) adds up, counting its calls."""

    def only_int8_sqnr(group: tuple[str, ...]) -> float:
        calls.append(group)
        return -10 * math.log10(sum(truth[layer] for layer in group))

    return only_int8_sqnr


def test_the_noisiest_layers_are_found_alone_within_the_measurements():
    layers = [f"layer{i}" for i in range(200)]
    truth = dict.fromkeys(layers, 1e-6)
    truth["layer37"], truth["layer150"] = 1e-3, 3e-4
    # Local noise says the opposite: a decoy beside each loud layer, and the loud ones quiet.
    local = dict.fromkeys(layers, 1e-4)
    local["layer36"] = local["layer151"] = 1.0
    local["layer37"] = local["layer150"] = 1e-8
    calls = []
    estimates = estimated_noise(layers, local, _measure(truth, calls), measurements=32, wanted=2)
    assert len(calls) == estimates.measurements <= 32
    worst = sorted(layers, key=lambda layer: -estimates.noise[layer])[:2]
    assert worst == ["layer37", "layer150"]
    # Measured alone, so the estimate is the measurement.
    assert estimates.noise["layer37"] == pytest.approx(1e-3) and ("layer37",) in calls


def test_the_search_stops_once_the_wanted_layers_are_found():
    layers = [f"layer{i}" for i in range(64)]
    truth = {layer: 1e-2 if layer == "layer5" else 1e-7 for layer in layers}
    calls = []
    estimated_noise(layers, dict.fromkeys(layers, 1.0), _measure(truth, calls), measurements=48, wanted=1)
    # Eight groups, then the noisy one halved three times down to layer5 alone.
    assert len(calls) == FIRST_GROUPS + 2 * 3 and calls[-2:] == [("layer4",), ("layer5",)]


def test_no_more_layers_than_measurements_are_each_measured_alone():
    truth = {f"layer{i}": 1e-6 * (i + 1) for i in range(20)}
    calls = []
    estimates = estimated_noise(list(truth), dict.fromkeys(truth, 0.0), _measure(truth, calls), 20, 2)
    assert sorted(calls) == sorted((layer,) for layer in truth)
    assert estimates.noise == pytest.approx(truth) and estimates.measurements == 20


def test_a_group_is_shared_by_local_noise_and_equally_when_none_is_told():
    truth = dict.fromkeys("abcd", 1e-4)
    local = {"a": 3.0, "b": 1.0, "c": 0.0, "d": 0.0}
    estimates = estimated_noise(list(truth), local, _measure(truth, []), measurements=2, wanted=4)
    assert estimates.measurements == 2  # groups (a, b) and (c, d), nothing left to split them
    assert estimates.noise == pytest.approx({"a": 1.5e-4, "b": 0.5e-4, "c": 1e-4, "d": 1e-4})
    estimates = estimated_noise(list(truth), {**local, "b": math.inf}, _measure(truth, []), 2, 4)
    assert estimates.noise["b"] == pytest.approx(2e-4) and estimates.noise["a"] == 0.0
