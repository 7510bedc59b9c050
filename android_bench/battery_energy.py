"""Energy per inference from battery current and voltage sampled on the phone.

The sampler is a shell loop on the phone printing `uptime current voltage` lines. Units and signs
differ between vendors, so they are normalised by stated heuristics (see `normalise`). The load's power
is the trapezoid mean over the interior of the benchmark's measured window, located on the same
uptime clock; the idle baseline's mean power, measured just before, is subtracted, and the rest is
multiplied by the window's length. Taking the mean inside the window rather than the integral up to
its edges keeps the figure when the edges are stamped late (a busy shell reading the tool's output)
or the gauge shows the load a period late: a shift of the window then changes neither factor.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

CURRENT_NOW = "/sys/class/power_supply/battery/current_now"
VOLTAGE_NOW = "/sys/class/power_supply/battery/voltage_now"
# No phone draws 20 A, and none idles below 20 mA: above this a current figure is in µA, below in mA.
MICROAMP_THRESHOLD = 20_000
MIN_WINDOW_UPDATES = 4  # fewer counter updates than this inside the window's interior cannot carry a figure
EDGE_TRIM = 0.1  # share of the window left out at each edge when taking the load's mean power ...
EDGE_TRIM_UPDATES = 2  # ... and at least this many counter updates


@dataclass(frozen=True)
class Sample:
    """One reading of the battery counters, in the phone's own units."""

    t: float  # /proc/uptime seconds
    current: float
    voltage: float


@dataclass(frozen=True)
class Power:
    """Battery power over time in SI units, with how the raw figures were read."""

    t: list[float]
    watts: list[float]
    conventions: list[str]
    update_rate_hz: float
    sample_rate_hz: float


def sampler_script(interval_s: float, stop_file: str) -> str:
    """The long-lived shell loop printing `uptime current voltage` until stop_file appears (paths pre-quoted)."""
    return (
        f"while [ ! -e {stop_file} ]; do read up _ < /proc/uptime; read c < {CURRENT_NOW}; "
        f'read v < {VOLTAGE_NOW}; echo "$up $c $v"; sleep {interval_s:g}; done'
    )


def parse_samples(text: str) -> list[Sample]:
    """Sampler lines as samples; a line with a missing or non-numeric field is dropped."""
    samples = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            samples.append(Sample(float(parts[0]), float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return samples


def normalise(samples: list[Sample]) -> Power:
    """Samples as watts, reading units from magnitudes and the discharge sign from the median current.

    Current above 20,000 is µA, else mA. Voltage above 100,000 is µV, above 100 mV, else V. The
    phone is discharging while we measure (charging is refused before), so a negative median current
    means this vendor reports discharge as negative and every sign is flipped.
    """
    currents = [s.current for s in samples]
    median_current = statistics.median(currents)
    notes = []
    if abs(median_current) > MICROAMP_THRESHOLD:
        amps, notes = 1e-6, ["current_now read as µA (|median| above 20,000)"]
    else:
        amps, notes = 1e-3, ["current_now read as mA (|median| at most 20,000)"]
    volts_median = statistics.median(abs(s.voltage) for s in samples)
    volts, unit = (1e-6, "µV") if volts_median > 100_000 else (1e-3, "mV") if volts_median > 100 else (1.0, "V")
    notes.append(f"voltage_now read as {unit}")
    sign = -1.0 if median_current < 0 else 1.0
    notes.append(
        "discharge reported as negative current; signs flipped"
        if sign < 0
        else "discharge reported as positive current"
    )
    watts = [sign * s.current * amps * s.voltage * volts for s in samples]
    span = samples[-1].t - samples[0].t
    changes = sum(1 for a, b in zip(samples, samples[1:]) if (a.current, a.voltage) != (b.current, b.voltage))
    return Power(
        [s.t for s in samples],
        watts,
        notes,
        changes / span if span > 0 else 0.0,
        (len(samples) - 1) / span if span > 0 else 0.0,
    )


def integrate(t: list[float], y: list[float], start: float, end: float) -> float:
    """Trapezoid integral of y over [start, end], interpolating linearly at both edges."""
    points = [(start, _at(t, y, start))]
    points += [(ti, yi) for ti, yi in zip(t, y) if start < ti < end]
    points.append((end, _at(t, y, end)))
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(points, points[1:]))


def battery_energy(
    samples: list[Sample], idle: tuple[float, float], window: tuple[float, float], inferences: int
) -> dict:
    """Energy per inference over window, the idle baseline's average power subtracted; or why not."""
    if len(samples) < 3:
        return unavailable(f"only {len(samples)} battery samples were read; {CURRENT_NOW} may be unreadable")
    if all(s.current == 0 for s in samples):
        return unavailable(f"{CURRENT_NOW} reads 0 throughout; this phone does not report battery current")
    power = normalise(samples)
    first, last = power.t[0], power.t[-1]
    if not (first <= idle[0] < idle[1] <= window[0] < window[1] <= last):
        return unavailable(
            f"battery samples cover {first:.2f}-{last:.2f} s but the idle baseline "
            f"({idle[0]:.2f}-{idle[1]:.2f} s) and measured window ({window[0]:.2f}-{window[1]:.2f} s) "
            "must fall inside; the sampler stopped early"
        )
    seconds = window[1] - window[0]
    period = 1 / power.update_rate_hz if power.update_rate_hz > 0 else math.inf
    trim = max(EDGE_TRIM * seconds, EDGE_TRIM_UPDATES * period)
    interior = (window[0] + trim, window[1] - trim)
    updates = power.update_rate_hz * max(0.0, interior[1] - interior[0])
    if updates < MIN_WINDOW_UPDATES:
        need = (MIN_WINDOW_UPDATES + 2 * EDGE_TRIM_UPDATES) * period
        return unavailable(
            f"the battery counter changed {updates:.1f} times inside the {seconds:.2f} s measured window "
            f"(about {power.update_rate_hz:.2f} Hz); measure for at least {need:.0f} s "
            "(--min-secs) to get a figure"
        )
    idle_w = integrate(power.t, power.watts, *idle) / (idle[1] - idle[0])
    load_w = integrate(power.t, power.watts, *interior) / (interior[1] - interior[0])
    active_j = (load_w - idle_w) * seconds
    sigma_j = _uncertainty_j(power, idle, interior, idle_w, load_w, seconds)
    if active_j <= 2 * sigma_j:  # indistinguishable from idle: a figure here would be noise
        return unavailable(
            f"power during the run ({load_w:.3f} W) was not above the idle baseline "
            f"({idle_w:.3f} W) by more than twice its uncertainty ({sigma_j / seconds:.3f} W); "
            "lengthen the run (--min-secs) or quiet the phone (screen off, airplane mode)"
        )
    per_inference = active_j / inferences
    return {
        "status": "measured",
        "source": "battery:current_now*voltage_now",
        "mj_per_inference": per_inference * 1e3,
        "inferences_per_joule": 1 / per_inference,
        "avg_power_w": load_w,
        "idle_power_w": idle_w,
        "active_power_w": active_j / seconds,
        "window_s": seconds,
        "inferences": inferences,
        "samples": sum(1 for t in power.t if window[0] <= t <= window[1]),
        "sample_rate_hz": power.sample_rate_hz,
        "update_rate_hz": power.update_rate_hz,
        "uncertainty_mj_per_inference": sigma_j / inferences * 1e3,
        "uncertainty_pct": 100 * sigma_j / active_j,
        "conventions": power.conventions,
    }


def _uncertainty_j(
    power: Power, idle: tuple[float, float], interior: tuple[float, float], idle_w: float, load_w: float, seconds: float
) -> float:
    """One standard uncertainty of the active energy, from three sources added in quadrature.

    Baseline and load noise: the standard error of the mean power (the load's over the window's
    interior) times the window length. Edges: the window's stamps and the counter may each be up to
    one update (or sample) period apart, so each edge may be off by half a period of the
    load-minus-idle power.
    """
    idle_w_s = [w for t, w in zip(power.t, power.watts) if idle[0] <= t <= idle[1]]
    load_w_s = [w for t, w in zip(power.t, power.watts) if interior[0] <= t <= interior[1]]
    terms = [statistics.stdev(ws) / math.sqrt(len(ws)) * seconds for ws in (idle_w_s, load_w_s) if len(ws) > 1]
    period = 1 / min(power.update_rate_hz, power.sample_rate_hz)
    edge = abs(load_w - idle_w) * period / 2
    return math.sqrt(sum(x * x for x in terms) + 2 * edge * edge)


def _at(t: list[float], y: list[float], x: float) -> float:
    """y linearly interpolated at x (t ascending, x within its range)."""
    for (t0, y0), (t1, y1) in zip(zip(t, y), zip(t[1:], y[1:])):
        if t0 <= x <= t1:
            return y0 if t1 == t0 else y0 + (y1 - y0) * (x - t0) / (t1 - t0)
    return y[0] if x < t[0] else y[-1]


def unavailable(reason: str) -> dict:
    """The energy record when no trustworthy figure exists."""
    return {"status": "unavailable", "reason": reason}
