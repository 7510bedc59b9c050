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
    """Write tradeoff_figure(...) as a PNG."""
    figure = tradeoff_figure(points, cost_label, metric_label, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def tradeoff_figure(points: list[Point], cost_label: str, metric_label: str, title: str):
    """Every point, the Pareto front joined, each point labelled where no label covers another.

    The cost axis is logarithmic when costs span a decade or more (PyTorch next to TFLite); when all
    metrics tie the plot says so instead of stretching a flat band.
    """
    front = pareto_front(points)
    figure, axes = new_figure()
    others = [p for p in points if p not in front]
    axes.scatter([p.cost for p in others], [p.metric for p in others], color="0.55", label="dominated", zorder=2)
    axes.plot([p.cost for p in front], [p.metric for p in front], "o-", color="tab:red", label="Pareto front", zorder=3)
    costs = [p.cost for p in points if p.cost > 0]
    if costs and max(costs) >= 10 * min(costs):
        axes.set_xscale("log")
    metrics = {p.metric for p in points}
    if len(metrics) == 1:
        value = metrics.pop()
        pad = max(abs(value) * 0.01, 1e-3)
        axes.set_ylim(value - pad, value + pad)
        axes.text(0.5, 0.9, f"all artifacts tie at {value:.4g}", transform=axes.transAxes, ha="center", fontsize=8)
    axes.set_xlabel(cost_label)
    axes.set_ylabel(metric_label)
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    _place_labels(figure, axes, points)
    return figure


# Offsets (points) tried for a label, nearest first: right, left, above, below, then diagonals, then further out.
_OFFSETS = [
    (dx * r, dy * r) for r in (1, 2, 3, 4) for dx, dy in ((5, 3), (-5, 3), (0, 8), (0, -10), (5, -10), (-5, -10))
]


def _place_labels(figure, axes, points: list[Point]) -> None:
    """Annotate each point at the first offset whose box stays inside the axes and overlaps no label placed
    before it."""
    renderer = figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    placed = []
    for p in sorted(points, key=lambda p: (p.cost, -p.metric)):
        for dx, dy in _OFFSETS:
            text = axes.annotate(
                p.label,
                (p.cost, p.metric),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx >= 0 else "right",
                fontsize=7,
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if abs(dx) + abs(dy) > 20 else None,
            )
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            within = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            if within and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()
        else:  # nowhere free: the last offset, so the label is at least there
            text = axes.annotate(
                p.label, (p.cost, p.metric), textcoords="offset points", xytext=_OFFSETS[-1], fontsize=7
            )
            placed.append(text.get_window_extent(renderer))


def new_figure():
    """(figure, axes) drawn off-screen: no pyplot, so no global backend is switched and no figure
    is left registered in the process."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(figure)  # a renderer, so label boxes can be measured before saving
    return figure, figure.subplots()
