"""PNG plots of a run: size and latency against the task metric, with the Pareto front marked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    """One artifact on a trade-off plot: lower cost and higher metric are better."""

    label: str
    cost: float
    metric: float


def pareto_front(points: list[Point]) -> list[Point]:
    """The points no other point beats on both axes (no lower-or-equal cost with a higher-or-equal
    metric, one strictly)."""

    def beaten(p: Point) -> bool:
        return any(
            q.cost <= p.cost and q.metric >= p.metric and (q.cost < p.cost or q.metric > p.metric) for q in points
        )

    return sorted((p for p in points if not beaten(p)), key=lambda p: p.cost)


def tradeoff_plot(points: list[Point], cost_label: str, metric_label: str, title: str, path: Path) -> Path:
    """Scatter every point, join the Pareto front, label each point; write a PNG."""
    front = pareto_front(points)
    figure, axes = new_figure()
    others = [p for p in points if p not in front]
    axes.scatter([p.cost for p in others], [p.metric for p in others], color="0.55", label="dominated", zorder=2)
    axes.plot([p.cost for p in front], [p.metric for p in front], "o-", color="tab:red", label="Pareto front", zorder=3)
    for p in points:
        axes.annotate(p.label, (p.cost, p.metric), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel(cost_label)
    axes.set_ylabel(metric_label)
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def new_figure():
    """(figure, axes) drawn off-screen: no pyplot, so no global backend is switched and no figure
    is left registered in the process."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=110)
    return figure, figure.subplots()
