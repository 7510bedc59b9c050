"""Throughput and latency-distribution plots are real PNGs, also when nothing was measured."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from edgepipe.pipeline.report.plots_profile import _unavailable_lines, latency_distribution_plot, throughput_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(batch, threads, ips=None, reason=None) -> dict:
    """A ThroughputPoint.to_dict() row."""
    status = "measured" if ips is not None else "unavailable"
    return {
        "batch": batch,
        "threads": threads,
        "status": status,
        "inferences_per_second": ips,
        "p50_ms": None if ips is None else batch / ips * 1e3,
        "reason": reason,
    }


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(autouse=True)
def _no_figures_left():
    import matplotlib.pyplot as plt

    yield
    assert plt.get_fignums() == [], "a plot left its figure open"
    assert matplotlib.get_backend().lower() == "agg"


def test_throughput_plot_writes_a_png_in_new_directories(tmp_path):
    rows = [_row(b, t, 1000.0 * b / t) for t in (1, 2) for b in (1, 4, 16)]
    rows += [_row(64, t, reason="the ONNX graph fixes batch 1") for t in (1, 2)]
    path = throughput_plot(rows, "cnn fp32 on onnxruntime", tmp_path / "plots" / "deep" / "throughput.png")
    assert path == tmp_path / "plots" / "deep" / "throughput.png" and _is_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["throughput.png"]  # no partial file left behind


def test_only_batches_no_thread_count_could_run_get_a_note():
    rows = [
        _row(1, 1, 10.0),
        _row(1, 2, 12.0),
        _row(4, 1, 30.0),
        _row(4, 2, reason="resize failed"),
        _row(16, 1, reason="XNNPack delegate failed to reshape"),
        _row(16, 2),
        _row(64, 1, reason="XNNPack delegate failed to reshape"),
        _row(128, 2),
    ]
    assert _unavailable_lines(rows) == [
        "batch 16, 64: unavailable (XNNPack delegate failed to reshape)",
        "batch 128: unavailable (no reason recorded)",
    ]


@pytest.mark.parametrize("rows", [[], [_row(4, 1, reason="the ONNX graph fixes batch 1")]])
def test_throughput_plot_without_measured_points_says_so(tmp_path, rows):
    assert _is_png(throughput_plot(rows, "nothing ran", tmp_path / "t.png"))


def test_latency_distribution_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    series = {
        "tflite fp32": list(rng.lognormal(-2, 0.2, 500)),
        "onnxruntime": list(rng.lognormal(-1.5, 0.2, 500)),
        "torch": list(rng.lognormal(0, 1.5, 500)),
    }  # wide spread: drawn on a log axis
    assert _is_png(latency_distribution_plot(series, tmp_path / "a" / "latency.png"))


@pytest.mark.parametrize("series", [{}, {"tflite": []}, {"tflite": [float("nan")]}])
def test_latency_distribution_plot_without_samples_says_so(tmp_path, series):
    assert _is_png(latency_distribution_plot(series, tmp_path / "latency.png"))
