"""PNG plots of profiling results: throughput over batch sizes, latency distributions.

With nothing measured to draw, each plot still writes a PNG that says "no measured points"
(and, for throughput, why): a report keeps its figure slot and shows the absence instead of
failing the run, as DESIGN.md asks of figures that could not be measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.models.shared.files import atomic_path
from edgepipe.pipeline.report.plots import new_figure

NO_POINTS = "no measured points"
# Above this max/min ratio a linear axis squashes the boxes against a long tail.
LOG_SPREAD = 10.0


def throughput_plot(points: list[dict], title: str, path: Path) -> Path:
    """Inferences/s against batch size (log2 x), one line per thread count; unavailable points skipped."""
    measured = [p for p in points if p.get("status") == "measured" and p.get("inferences_per_second")]
    notes = _unavailable_lines(points)
    figure, axes = new_figure()
    axes.set_title(title, fontsize=10)
    if not measured:
        _say(axes, "\n".join([NO_POINTS, *notes]))
        return _save(figure, path)
    for threads in sorted({p["threads"] for p in measured}):
        line = sorted((p["batch"], p["inferences_per_second"]) for p in measured if p["threads"] == threads)
        axes.plot(*zip(*line), "o-", label=f"{threads} thread{'s' if threads != 1 else ''}")
    batches = sorted({p["batch"] for p in points})
    axes.set_xscale("log", base=2)
    axes.set_xticks(batches, [str(b) for b in batches])  # every batch asked for, runnable or not
    axes.set_xlabel("batch size")
    axes.set_ylabel("inferences / s")
    axes.set_ylim(bottom=0)  # rates compared by height: a cut axis would exaggerate gaps
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    bottom = 0.01 + 0.035 * len(notes) if notes else 0.0
    for row, note in enumerate(notes):
        figure.text(0.01, 0.01 + 0.035 * (len(notes) - 1 - row), note, fontsize=7, color="tab:red")
    figure.tight_layout(rect=(0, bottom, 1, 1))
    return _save(figure, path)


def _unavailable_lines(points: list[dict]) -> list[str]:
    """One line per reason for the batch sizes that no thread count could run."""
    by_reason: dict[str, list[int]] = {}
    for batch in sorted({p["batch"] for p in points}):
        rows = [p for p in points if p["batch"] == batch]
        if all(p.get("status") != "measured" for p in rows):
            reason = next((p["reason"] for p in rows if p.get("reason")), "no reason recorded")
            by_reason.setdefault(reason, []).append(batch)
    return [
        f"batch {', '.join(map(str, batches))}: unavailable ({_clip(reason, 80)})"
        for reason, batches in by_reason.items()
    ]


def _clip(text: str, width: int) -> str:
    """At most width characters, so a note fits the figure's width."""
    return text if len(text) <= width else text[: width - 1] + "…"


def latency_distribution_plot(series: dict[str, list[float]], path: Path) -> Path:
    """One box per label (latencies in ms) with p50 and p90 marked; log y when the spread is large."""
    data = {
        label: values[np.isfinite(values)]
        for label, values in ((label, np.asarray(v, dtype=np.float64).ravel()) for label, v in series.items())
    }
    data = {label: values for label, values in data.items() if values.size}
    figure, axes = new_figure()
    if not data:
        _say(axes, NO_POINTS)
        return _save(figure, path)
    positions = np.arange(1, len(data) + 1)
    axes.boxplot(list(data.values()), positions=positions, widths=0.5, flierprops={"markersize": 2, "alpha": 0.4})
    p50, p90 = zip(*(np.percentile(v, [50, 90]) for v in data.values()))
    axes.scatter(positions, p50, marker="D", color="tab:blue", zorder=3, label="p50")
    axes.scatter(positions, p90, marker="^", color="tab:red", zorder=3, label="p90")
    crowded = len(data) > 4
    axes.set_xticks(positions, list(data), rotation=30 if crowded else 0, ha="right" if crowded else "center")
    low, high = min(v.min() for v in data.values()), max(v.max() for v in data.values())
    if low > 0 and high / low > LOG_SPREAD:
        axes.set_yscale("log")
    axes.set_ylabel("latency (ms)")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def _say(axes, text: str) -> None:
    """A figure that is only a message, for when there is nothing to draw."""
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True, transform=axes.transAxes)
    axes.set_axis_off()


def _save(figure, path: Path) -> Path:
    """Write the PNG under a temporary name and rename it, so a crash leaves no half-written plot."""
    with atomic_path(Path(path)) as partial:
        figure.savefig(partial, format="png")
    return Path(path)
