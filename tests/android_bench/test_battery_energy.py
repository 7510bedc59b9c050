"""Battery energy: vendor units and signs, trapezoid integration, baseline, uncertainty and refusals."""

from __future__ import annotations

import pytest

from edgepipe.android_bench.battery_energy import Sample, battery_energy, integrate, normalise, parse_samples

IDLE, WINDOW = (0.0, 2.0), (3.0, 6.0)


def scripted(
    unit: float = 1000, sign: int = 1, volts: float = 3.9e6, hz: float = 20, load_ma: float = 400, idle_ma: float = 150
) -> list[Sample]:
    """A gauge sampled at hz: idle_ma throughout, plus load_ma inside WINDOW, with an alternating 1 mA ripple."""
    samples, n = [], int(8 * hz)
    for i in range(n + 1):
        t = i / hz
        ma = idle_ma + (load_ma if WINDOW[0] <= t < WINDOW[1] else 0) + (1 if i % 2 else -1)
        samples.append(Sample(t, sign * ma * unit, volts))
    return samples


@pytest.mark.parametrize("unit, sign, volts", [(1000, 1, 3.9e6), (1, 1, 3.9e6), (1000, -1, 3900), (1, -1, 3.9)])
def test_every_vendor_convention_gives_the_same_energy(unit, sign, volts):
    result = battery_energy(scripted(unit, sign, volts), IDLE, WINDOW, inferences=1000)
    assert result["status"] == "measured"
    # 400 mA x 3.9 V for 3 s over 1000 inferences; the window edges fall between samples, so within one sample
    assert result["mj_per_inference"] == pytest.approx(0.4 * 3.9 * 3.0, rel=0.03)
    assert result["idle_power_w"] == pytest.approx(0.150 * 3.9, rel=0.01)
    flipped = any("flipped" in note for note in result["conventions"])
    assert flipped is (sign < 0)
    assert result["update_rate_hz"] == pytest.approx(20, rel=0.01) and result["samples"] == 61


@pytest.mark.parametrize("shift_s", [-0.15, 0.15, 0.25])
def test_a_window_stamped_early_or_late_keeps_its_energy(shift_s):
    # A busy shell stamps the tool's lines late (or the gauge shows the load late): the window found
    # is the true one shifted; the integral up to its edges would be off by shift x load, 5-10 % here.
    shifted = (WINDOW[0] + shift_s, WINDOW[1] + shift_s)
    result = battery_energy(scripted(), IDLE, shifted, inferences=1000)
    assert result["mj_per_inference"] == pytest.approx(0.4 * 3.9 * 3.0, rel=0.01)


def test_normalise_states_its_units():
    power = normalise([Sample(0, -250, 3850), Sample(1, -260, 3850)])
    assert power.watts == pytest.approx([0.25 * 3.85, 0.26 * 3.85])
    assert power.conventions[0].startswith("current_now read as mA") and "mV" in power.conventions[1]


def test_integrate_interpolates_at_the_edges():
    t, y = [0.0, 1.0, 2.0], [0.0, 2.0, 2.0]
    assert integrate(t, y, 0.5, 1.5) == pytest.approx(0.5 * (1 + 2) / 2 + 0.5 * 2)


def test_uncertainty_grows_with_a_noisy_baseline():
    quiet = battery_energy(scripted(), IDLE, WINDOW, 1000)
    noisy_samples = [
        Sample(s.t, s.current + (300_000 if i % 3 == 0 else 0), s.voltage) for i, s in enumerate(scripted())
    ]
    noisy = battery_energy(noisy_samples, IDLE, WINDOW, 1000)
    assert noisy["uncertainty_pct"] > 2 * quiet["uncertainty_pct"] > 0


def test_a_slow_counter_refuses_with_the_length_it_needs():
    slow = [Sample(s.t, scripted()[int(s.t) * 20].current, s.voltage) for s in scripted()]  # changes once a second
    result = battery_energy(slow, IDLE, (3.0, 4.5), 100)
    assert result["status"] == "unavailable" and "--min-secs" in result["reason"]


def test_refusals_name_the_reason():
    assert "reads 0" in battery_energy([Sample(t, 0, 3.9e6) for t in range(10)], IDLE, WINDOW, 10)["reason"]
    assert "sampler stopped early" in battery_energy(scripted()[:100], IDLE, WINDOW, 10)["reason"]
    flat = scripted(load_ma=0)
    assert "not above the idle baseline" in battery_energy(flat, IDLE, WINDOW, 10)["reason"]


def test_parse_samples_drops_broken_lines():
    text = "10.00 150000 3900000\n10.05 151000\n10.10 abc 3900000\n10.15 149000 3900000\n"
    assert parse_samples(text) == [Sample(10.0, 150000, 3900000), Sample(10.15, 149000, 3900000)]
