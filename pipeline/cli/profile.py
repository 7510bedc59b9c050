"""`edgepipe profile` (one model file on the host or on phones) and `edgepipe devices`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgepipe.models.shared.errors import ConfigError, EdgepipeError
from edgepipe.pipeline.cli.show import console, latency_table
from edgepipe.pipeline.core.console import progress_shown


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
        from edgepipe.android_bench.device_run import BenchSettings
        from edgepipe.pipeline.profile.devices import profile_on_phones

        _check_phone_runtime(runtime, device)
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
        _print_phones(profile_on_phones(artifact, device, settings, benchmark_binary), as_json)
        return
    from edgepipe.pipeline.profile.files import profile_file
    from edgepipe.profilers.harness import QUICK, TimingSettings
    from edgepipe.profilers.runtimes import RuntimeOptions

    options = RuntimeOptions(xnnpack=xnnpack, ort_optimization=ort_optimization, batch=batch)
    with progress_shown() as progress:
        result = profile_file(artifact, runtime, threads, QUICK if quick else TimingSettings(), options, inputs)
        progress.pause()
    _print_host(result, as_json)


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


def _check_phone_runtime(runtime: str | None, device: str) -> None:
    if runtime not in (None, "tflite"):
        raise ConfigError(f"--runtime {runtime} with --device {device}: phones run TFLite only (benchmark_model)")


def _print_host(result: dict, as_json: bool) -> None:
    """The host profile as JSON (without the raw samples), or its table and notes."""
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "samples_ns"}))
        return
    latency_table([result])
    memory = result["memory"]
    console.print(
        f"{result['library']}, kernels {result['kernels']}, batch {result['batch']}; peak RSS "
        f"{memory['peak_rss_load_mb']:.0f} MB after load, {memory['peak_rss_mb']:.0f} MB after timing"
    )
    if result.get("kernels_note"):
        console.print(f"kernels: {result['kernels_note']}")
    if result["energy"]["status"] != "measured":
        console.print(f"energy unavailable: {result['energy']['reason']}")


def _print_phones(result: dict, as_json: bool) -> None:
    """Every phone's result as JSON or tables; exit 1 when any phone failed."""
    from edgepipe.pipeline.profile.device_view import print_phone_results

    failed = [s for s, r in result.get("devices", {}).items() if r["status"] != "ok"]
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_phone_results(console, result)
    if failed:
        raise typer.Exit(1)
