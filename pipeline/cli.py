"""The edgepipe command line: thin wrappers that parse, call the pipeline and print results."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console

from edgepipe.models.shared.errors import INTERNAL_ERROR_EXIT, EdgepipeError
from edgepipe.pipeline.core.console import keyed_table, progress_shown
from edgepipe.pipeline.core.run_view import RunView

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=(
        "Train, export PyTorch -> ONNX -> TFLite with checked numerics, and profile.\n\n"
        "Exit codes: 0 ok; 1 a check failed (gate, numerics, a failed batch job); 2 bad input, including an "
        "exception raised in your own code; 3 an internal error."
    ),
)
console = Console()


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")) -> None:
    """edgepipe: small PyTorch models to phones, with honest numbers."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="Job TOML; the embedded default job when omitted."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Run directory (default runs/<job>-<hash8>)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the job's TOML and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's results as JSON."),
) -> None:
    """Run the whole chain for one job: train, export, validate, profile, report."""
    from edgepipe.pipeline.core.config import default_job_text, load_job
    from edgepipe.pipeline.core.runner import default_run_dir, run_job

    job = load_job(config)
    if print_config:
        typer.echo(default_job_text() if config is None else config.read_text(), nl=False)
        return
    with progress_shown() as progress:
        result = run_job(job, out or default_run_dir(job), on_stage=None if as_json else _stage_printer(progress))
    if as_json:
        typer.echo(json.dumps({"job": job.job.name, "run_dir": str(result.run_dir), "results": result.results}))
    else:
        _print_summary(result)
    if "gate" in result.results:
        _report_gate(result.results["gate"], result.run_dir, as_json)


@app.command()
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


@app.command()
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
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Export a model to ONNX and TFLite and validate every artifact."""
    from edgepipe.pipeline.core.exporting import UserData, export_job, export_summary
    from edgepipe.pipeline.core.runner import EXPORT_ONLY, default_run_dir, run_job

    data = UserData(calibration, eval_data, image_mean, image_std, pixel_scale)
    job = export_job(model, _names(variant), inputs, allow_flex, tuple(example), weights, _names(onnx_variant), data)
    with progress_shown() as progress:
        result = run_job(
            job,
            out or default_run_dir(job, Path("runs")),
            only=EXPORT_ONLY,
            on_stage=None if as_json else _stage_printer(progress),
        )
    summary = export_summary(job, result)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    names, metric_cells = _metric_columns([a["metrics"] for a in summary["artifacts"]])
    rows = []
    for a, cells in zip(summary["artifacts"], metric_cells):
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
    console.print(f"run directory: {result.run_dir}")


@app.command()
def profile(
    artifact: Path = typer.Argument(
        ..., help="A .tflite, .onnx or .pt2 file, or TorchScript (.pt, .ts; with --inputs)."
    ),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="tflite, onnxruntime or torch (default: by suffix)."),
    device: str = typer.Option("host", "--device", help="host, a phone's serial, serials joined by commas, or all."),
    threads: int = typer.Option(1, "--threads", min=1, help="Inference threads."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Set every input's batch dimension to N."),
    inputs: Optional[Path] = typer.Option(
        None, "--inputs", help="Inputs .npz, one array per input name (default: seeded)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="At least 50 runs and 0.5 s (at most 5 s) instead of at least 1024 runs and 10 s (at most 60 s).",
    ),
    xnnpack: bool = typer.Option(
        True, "--xnnpack/--no-xnnpack", help="TFLite: the XNNPACK delegate, or built-in kernels only."
    ),
    ort_optimization: str = typer.Option(
        "all", "--ort-optimization", help="ONNX Runtime graph optimisation: disable, basic, extended or all."
    ),
    benchmark_binary: Optional[Path] = typer.Option(
        None, "--benchmark-binary", help="Phones: TFLite's benchmark_model for the phone's ABI."
    ),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="Phones: pin to big, little, all or a hex mask (taskset)."),
    delegate: str = typer.Option("cpu", "--delegate", help="Phones: cpu, xnnpack, gpu or nnapi."),
    runs: int = typer.Option(50, "--runs", min=1, help="Phones: at least this many measured runs."),
    min_secs: float = typer.Option(
        1.0, "--min-secs", min=0, help="Phones: measure for at least this long (energy needs seconds)."
    ),
    suspend_charging: bool = typer.Option(
        False, "--suspend-charging", help="Phones: stop USB charging while measuring energy (restored after)."
    ),
    cooldown: float = typer.Option(
        60.0, "--cooldown", min=0, help="Phones: wait at most this long for the phone to cool first."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Profile one model file on the host (fed seeded inputs or an .npz), or on phones with benchmark_model."""
    if device != "host":
        _profile_phones(
            artifact,
            runtime,
            device,
            threads,
            benchmark_binary,
            cpus,
            delegate,
            runs,
            min_secs,
            suspend_charging,
            cooldown,
            quick,
            as_json,
        )
        return
    from edgepipe.pipeline.profile.files import profile_file
    from edgepipe.profilers.harness import QUICK, TimingSettings
    from edgepipe.profilers.runtimes import RuntimeOptions

    options = RuntimeOptions(xnnpack=xnnpack, ort_optimization=ort_optimization, batch=batch)
    with progress_shown() as progress:
        result = profile_file(artifact, runtime, threads, QUICK if quick else TimingSettings(), options, inputs)
        progress.pause()
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "samples_ns"}))
        return
    _latency_table([result])
    memory = result["memory"]
    console.print(
        f"{result['library']}, kernels {result['kernels']}, batch {result['batch']}; peak RSS "
        f"{memory['peak_rss_load_mb']:.0f} MB after load, {memory['peak_rss_mb']:.0f} MB after timing"
    )
    if result.get("kernels_note"):
        console.print(f"kernels: {result['kernels_note']}")
    if result["energy"]["status"] != "measured":
        console.print(f"energy unavailable: {result['energy']['reason']}")


def _profile_phones(
    artifact,
    runtime,
    device,
    threads,
    binary,
    cpus,
    delegate,
    runs,
    min_secs,
    suspend_charging,
    cooldown,
    quick,
    as_json,
) -> None:
    from edgepipe.android_bench.device_run import BenchSettings
    from edgepipe.models.shared.errors import ConfigError
    from edgepipe.pipeline.profile.device_view import print_phone_results
    from edgepipe.pipeline.profile.devices import profile_on_phones

    if runtime not in (None, "tflite"):
        raise ConfigError(f"--runtime {runtime} with --device {device}: phones run TFLite only (benchmark_model)")
    settings = BenchSettings(
        threads=threads,
        runs=runs,
        min_secs=min_secs,
        cpus=cpus,
        delegate=delegate,
        suspend_charging=suspend_charging,
        cooldown_max_s=cooldown,
        op_profile=not quick,
        idle_s=1.0 if quick else 2.0,
    )
    result = profile_on_phones(artifact, device, settings, binary)
    failed = [s for s, r in result.get("devices", {}).items() if r["status"] != "ok"]
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_phone_results(console, result)
    if failed:
        raise typer.Exit(1)


@app.command()
def devices(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List attached Android devices with their facts; unusable ones with what to do."""
    from edgepipe.pipeline.profile.device_view import print_devices
    from edgepipe.pipeline.profile.devices import list_devices

    try:
        rows = list_devices()
    except EdgepipeError as exc:  # no adb: --json still answers in JSON, with the same exit code
        if not as_json:
            raise
        typer.echo(json.dumps({"devices": [], "error": str(exc)}))
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        typer.echo(json.dumps({"devices": rows}))
        return
    print_devices(console, rows)


@app.command()
def gate(
    report: Path = typer.Argument(..., help="A run directory, its manifest.json, or a batch summary."),
    budgets: Path = typer.Option(..., "--budgets", help="budgets.toml: limits per model, variant and device."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="An older report to compare with (noise-aware)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML: one test case per check."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary for a CI job page."),
    strict: bool = typer.Option(False, "--strict", help="A budget that selects nothing is an error, not a warning."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Apply budgets to a report: exit 0 when every check passes, 1 when one fails, 2 for bad input."""
    from edgepipe.pipeline.gate.output import print_verdict, run_gate, write_outputs

    verdict = run_gate(report, budgets, baseline, strict)
    write_outputs(verdict, junit, markdown)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict()))
    else:
        print_verdict(console, verdict)
    if not verdict.passed:
        raise typer.Exit(1)


@app.command()
def batch(
    jobs: Path = typer.Argument(..., help="JOBS.toml: a matrix of models x variants x export settings."),
    out: Path = typer.Option(Path("runs/batch"), "-o", "--out", help="Batch directory (runs, batch.json, summaries)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Warm worker processes (default: the core count)."),
    executor: str = typer.Option("local", "--executor", help="local (warm worker processes) or ray."),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray: the cluster address (default: start a local one)."
    ),
    force: bool = typer.Option(False, "--force", help="Ignore the cache: run every stage of every job again."),
    as_json: bool = typer.Option(False, "--json", help="Print batch.json instead of progress and a table."),
) -> None:
    """Run many jobs: cached, resumable after a crash; exit 1 when any job failed."""
    import os

    from edgepipe.models.shared.errors import ConfigError
    from edgepipe.pipeline.batch.run import BATCH_MANIFEST, run_batch
    from edgepipe.pipeline.batch.view import BatchProgress

    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor {executor!r}: expected local or ray")
    with BatchProgress(console, quiet=as_json) as progress:
        result = run_batch(jobs, out, workers or os.cpu_count() or 1, executor, force, address, progress.event)
    if as_json:
        typer.echo((result.out / BATCH_MANIFEST).read_text())
    else:
        progress.finish(result)
    if result.failed:
        raise typer.Exit(1)


def _report_gate(record: dict, run_dir: Path, as_json: bool) -> None:
    """The job's gate verdict on the console; every failed check named, and exit 1 when one failed."""
    from edgepipe.pipeline.gate.checks import Check
    from edgepipe.pipeline.gate.output import Verdict, failure_lines

    verdict = Verdict([Check(**c) for c in record["checks"]], record["warnings"])
    where = run_dir / record["markdown"]
    if verdict.passed:
        if not as_json:
            console.print(f"gate passed: {verdict.counts}; see {where}")
        return
    lines = [f"edgepipe: gate failed: {verdict.counts}; see {where}", *(f"  {x}" for x in failure_lines(verdict))]
    print("\n".join(lines), file=sys.stderr)
    raise typer.Exit(1)


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _stage_printer(progress):
    """Prints each stage's line as it ends, clearing the live progress line first."""

    def print_stage(name: str, record: dict) -> None:
        progress.pause()
        state = "cached" if record["cached"] else f"done in {record['seconds']:.1f}s"
        console.print(f"[bold]{name:<9}[/bold] {state}")

    return print_stage


def _metric_columns(metrics: list[dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    """One column per metric name (so a number never shares a cell with its name); '-' where one is missing."""
    names = list(dict.fromkeys(name for values in metrics for name in values))
    return names, [[f"{values[n]:.4f}" if n in values else "-" for n in names] for values in metrics]


def _print_summary(result) -> None:
    run = RunView.read(result.run_dir)
    names, metric_cells = _metric_columns([run.metrics(art.key) for art in run.artifacts])
    rows = []
    for art, cells in zip(run.artifacts, metric_cells):
        led = run.ledger(art.key)
        rows.append(
            (
                art.path,
                *cells,
                f"{led.get('max_abs', 0):.2e}",
                f"{led.get('cosine', 1):.6f}",
                str(led.get("ok", "-")),
            )
        )
    header = ("artifact", *names, "max abs err", "cosine", "ok")
    table = keyed_table(header, rows, title=f"run {result.run_dir}")
    console.print(table)
    profiles = run.result("profile").get("results", [])
    _latency_table(profiles)
    cached = [n for n, r in result.stages.items() if r["cached"]]
    energy = next((r["energy"] for r in profiles), None)
    if energy and energy["status"] != "measured":
        console.print(f"energy unavailable: {energy['reason']}")
    console.print(
        f"errors vs {run.result('validate').get('reference', '?')}; stages from cache: {', '.join(cached) or 'none'}; "
        f"report: {result.run_dir / 'report.md'}"
    )


def _latency_table(results: list[dict]) -> None:
    rows = []
    for r in results:
        lat, energy = r["latency_ms"], r["energy"]
        rows.append(
            (
                r["runtime"],
                Path(r["artifact"]).name,
                f"{lat['p50']:.4f}",
                f"{lat['p90']:.4f}",
                f"{lat['p99']:.4f}",
                str(lat["n"]),
                f"{r['throughput_ips']:.0f}",
                f"{r['memory']['peak_rss_mb']:.0f}",
                f"{energy['mj_per_inference']:.4f} mJ" if energy["status"] == "measured" else "n/a",
            )
        )
    headers = ("runtime", "artifact", "p50 ms", "p90 ms", "p99 ms", "n", "inf/s", "RSS MB", "energy")
    if all(r["energy"]["status"] != "measured" for r in results):  # said once, below the table
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    table = keyed_table(headers, rows, keys=2, box=box.SIMPLE_HEAD)
    console.print(table)


def entry() -> None:
    """Console-script entry: one clear line and the right exit code for every edgepipe error."""
    debug = "--debug" in sys.argv[1:]
    try:
        app()  # standalone: usage errors print and exit 2 inside
    except EdgepipeError as exc:
        if debug:
            traceback.print_exc()
        print(f"edgepipe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unforeseen still gets one line, and its own exit code
        if debug:
            traceback.print_exc()
        print(
            f"edgepipe: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; "
            "please report it)",
            file=sys.stderr,
        )
        sys.exit(INTERNAL_ERROR_EXIT)
