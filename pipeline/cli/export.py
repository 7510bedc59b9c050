"""`edgepipe models` (the zoo) and `edgepipe export` (one model to ONNX and TFLite, validated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgepipe.pipeline.cli.show import console, metric_columns, stage_printer
from edgepipe.pipeline.core.console import keyed_table, progress_shown


def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the model zoo with the metric each reaches when trained with its defaults."""
    from edgepipe.models.record import recorded, recorded_with
    from edgepipe.models.zoo import MODELS

    trained = recorded()
    rows_json = [
        {
            "name": s.name,
            "task": s.task,
            "description": s.description,
            "metric": s.primary_metric,
            "inputs": [i.to_dict() for i in s.inputs],
            "trained": trained.get(s.name),
        }
        for s in MODELS.values()
    ]
    if as_json:
        typer.echo(json.dumps({"models": rows_json, "recorded_with": recorded_with()}))
        return
    rows = []
    for r in rows_json:
        inputs = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))} {i['layout']}" for i in r["inputs"])
        done = r["trained"]
        rows.append(
            (
                r["name"],
                r["task"],
                inputs,
                f"{r['metric']} {done['metrics'][r['metric']]:.4f}" if done else "not recorded",
                f"{done['train_seconds']:.0f}" if done else "-",
            )
        )
    table = keyed_table(("model", "task", "inputs", "trained metric", "train s"), rows, caption=recorded_with())
    console.print(table)


def export(
    model: str = typer.Argument(..., help="A zoo name, an .onnx file or a factory 'pkg.module:factory'."),
    variant: str = typer.Option("fp32", "--variant", help="Comma-separated TFLite variants."),
    onnx_variant: str = typer.Option(
        "", "--onnx-variant", help="Comma-separated ONNX Runtime variants: int8_qdq, dynamic."
    ),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Run directory."),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help="Validation inputs: .npz, one array per input."),
    allow_flex: bool = typer.Option(False, "--allow-flex", help="Accept Select-TF (Flex) ops."),
    example: list[str] = typer.Option(
        [], "--input", help="A factory's input shape, e.g. 1x3x32x32[:float32]; repeat per input."
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="State dict for a factory (weights_only load)."),
    calibration: Optional[str] = typer.Option(
        None,
        "--calibration",
        help="Calibration samples: .npz (an array per input), a folder of images, or pkg.module:function.",
    ),
    eval_data: Optional[str] = typer.Option(
        None,
        "--eval-data",
        help="Labelled set: .npz with an array per input and 'labels', or pkg.module:function of pairs.",
    ),
    image_mean: Optional[str] = typer.Option(
        None, "--image-mean", help="Image folders: per-channel mean, e.g. 0.485,0.456,0.406."
    ),
    image_std: Optional[str] = typer.Option(
        None, "--image-std", help="Image folders: per-channel std, e.g. 0.229,0.224,0.225."
    ),
    pixel_scale: Optional[float] = typer.Option(
        None, "--pixel-scale", help="Image folders: pixels are divided by this first (255)."
    ),
    converter: str = typer.Option(
        "auto",
        "--converter",
        help="Where ONNX -> TFLite runs: child (a second process, faster), in_process (less memory), or auto.",
    ),
    int8_target: str = typer.Option(
        "host",
        "--int8-target",
        help="int8_fast: where int8 kernels are timed against float ones: host, or a phone's serial.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Export a model to ONNX and TFLite and validate every artifact."""
    from edgepipe.pipeline.core.exporting import UserData, export_job, export_summary
    from edgepipe.pipeline.core.runner import EXPORT_ONLY, default_run_dir, run_job

    job = export_job(
        model,
        _names(variant),
        inputs=inputs,
        allow_flex=allow_flex,
        example_inputs=tuple(example),
        weights=weights,
        onnx_variants=_names(onnx_variant),
        user_data=UserData(calibration, eval_data, image_mean, image_std, pixel_scale),
        converter=converter,
        int8_target=int8_target,
    )
    with progress_shown() as progress:
        result = run_job(
            job,
            out or default_run_dir(job, Path("runs")),
            only=EXPORT_ONLY,
            on_stage=None if as_json else stage_printer(progress),
        )
    summary = export_summary(job, result)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_artifacts(summary["artifacts"])
    console.print(f"run directory: {result.run_dir}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _print_artifacts(artifacts: list[dict]) -> None:
    """One row per exported file: its size, task metrics and error against the reference."""
    names, metric_cells = metric_columns([a["metrics"] for a in artifacts])
    rows = []
    for a, cells in zip(artifacts, metric_cells):
        led = a["ledger"] or {}
        rows.append(
            (
                a["format"],
                a["variant"],
                f"{a['size_bytes']:,}",
                *cells,
                f"{led['max_abs']:.2e}" if led else "reference",
                f"{led['sqnr_db']:.1f}" if led else "-",
                str(led.get("ok", "-")),
            )
        )
    header = ("format", "variant", "size (bytes)", *names, "max abs err", "SQNR dB", "ok")
    table = keyed_table(header, rows, keys=2)
    console.print(table)
