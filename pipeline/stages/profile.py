"""Stage profile: time every artifact on the host, then its per-op time and throughput, each in a child process."""

from __future__ import annotations

from pathlib import Path

from edgepipe.models.shared.errors import ConfigError
from edgepipe.models.shared.progress import step
from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.feeding import RUNTIME_OF_FORMAT, feeds_for, held_out
from edgepipe.pipeline.core.run_view import artifact_key
from edgepipe.pipeline.core.store import write_json
from edgepipe.pipeline.profile.details import OP_PROFILE_RUNTIMES, measured_or_unavailable
from edgepipe.pipeline.profile.files import runtime_options
from edgepipe.profilers.calibration import CALIBRATION
from edgepipe.profilers.harness import TimingSettings
from edgepipe.profilers.isolation import in_child
from edgepipe.profilers.op_profile import profile_ops
from edgepipe.profilers.profile import profile_in_process
from edgepipe.profilers.throughput import throughput_sweep

PROFILE = "profile.json"
PROFILE_LOG = "logs/profile.log"


def timing_settings(job) -> TimingSettings:
    """The job's [profile] bounds as harness settings."""
    p = job.profile
    return TimingSettings(p.warmup_runs, p.warmup_seconds, p.min_runs, p.min_seconds, p.max_seconds)


def run_profile(ctx: StageContext) -> dict:
    """Profile each artifact whose runtime the job asks for, fed one real held-out sample."""
    _check_pairs(ctx)
    samples, _ = held_out(ctx)
    first = {name: values[:1] for name, values in samples.items()}
    log = ctx.staging / PROFILE_LOG
    settings = ctx.job.profile
    threads = settings.threads
    results = []
    for art in ctx.results["export"]["artifacts"]:
        runtime = RUNTIME_OF_FORMAT[art["format"]]
        if runtime not in ctx.job.profile.runtimes:
            continue
        path, feeds = ctx.path(art["path"]), feeds_for(art, first)
        step(f"profile: {runtime} {art['path']}: latency")
        result = in_child(
            profile_in_process,
            runtime,
            path,
            feeds,
            threads,
            timing_settings(ctx.job),
            options=runtime_options(ctx.job.profile),
            log_path=log,
        )
        if settings.op_profile and runtime in OP_PROFILE_RUNTIMES:
            step(f"profile: {runtime} {art['path']}: time by op ({settings.op_profile_runs} runs)")
            result["op_profile"] = measured_or_unavailable(
                profile_ops, runtime, path, feeds, threads, settings.op_profile_runs, log_path=log
            )
        if settings.throughput_batches:
            step(f"profile: {runtime} {art['path']}: throughput at batches {list(settings.throughput_batches)}")
            sweep = in_child(
                throughput_sweep,
                runtime,
                path,
                feeds,
                settings.throughput_batches,
                seconds=settings.throughput_seconds,
                log_path=log,
            )
            result["throughput"] = [point.to_dict() for point in sweep]
        results.append({**result, "format": art["format"], "variant": art["variant"], "artifact": art["path"]})
    pairs = [*ctx.job.profile.paired_with, *(["uncompressed"] if ctx.results["export"].get("uncompressed") else [])]
    if pairs:
        step(f"profile: paired with {', '.join(pairs)}, interleaved in one process")
    _pair(ctx, results, first, log)
    phones = _on_phones(ctx) if settings.device != "host" else []
    plots = _plots(results, ctx.staging)
    write_json(ctx.staging / PROFILE, {"results": results, **({"device_results": phones} if phones else {})})
    return {
        "results": [{k: v for k, v in r.items() if k != "samples_ns"} for r in results],
        "plots": plots,
        **({"device_results": phones} if phones else {}),
    }


def _check_pairs(ctx: StageContext) -> None:
    """paired_with must name artifacts of this run; said before any timing starts."""
    keys = [artifact_key(a) for a in ctx.results["export"]["artifacts"]]
    for ref in ctx.job.profile.paired_with:
        if ref not in keys and ref != CALIBRATION:
            raise ConfigError(
                f"[profile] paired_with {ref!r} is not an artifact of this run ({', '.join(keys)}) nor "
                f"'{CALIBRATION}' (a fixed yardstick model); name one as format:variant"
            )


def _pair(ctx: StageContext, results: list[dict], first: dict, log: Path) -> None:
    """Each result's latency ratio to every [profile] paired_with reference, timed interleaved in one child."""
    import tempfile

    from edgepipe.profilers.calibration import calibration_model

    wanted = ctx.job.profile.paired_with
    artifacts = {artifact_key(a): a for a in ctx.results["export"]["artifacts"]}
    # a compressed model's files are also timed interleaved with the uncompressed model's of the same variant
    uncompressed = {artifact_key(a): a for a in ctx.results["export"].get("uncompressed", [])}
    references = {
        ref: (RUNTIME_OF_FORMAT[a["format"]], ctx.path(a["path"]), feeds_for(a, first))
        for ref, a in artifacts.items()
        if ref in wanted
    }
    with tempfile.TemporaryDirectory() as tmp:  # the yardstick is not an artifact of the run
        if CALIBRATION in wanted:
            references[CALIBRATION] = calibration_model(Path(tmp))
        for r in results:
            side = (r["runtime"], ctx.path(r["artifact"]), feeds_for(artifacts[artifact_key(r)], first))
            if (before := uncompressed.get(artifact_key(r))) is not None:
                reference = (r["runtime"], ctx.path(before["path"]), feeds_for(before, first))
                r["vs_uncompressed"] = _ratio(ctx, side, reference, log)
            r["paired"] = {ref: _ratio(ctx, side, reference, log) for ref, reference in references.items()}


def _ratio(ctx: StageContext, side: tuple, reference: tuple, log: Path) -> dict:
    """side's latency ratio to reference, both timed interleaved in one fresh child."""
    from edgepipe.profilers.paired import paired_ratio

    threads, options = ctx.job.profile.threads, runtime_options(ctx.job.profile)
    return in_child(paired_ratio, side, reference, threads, options=options, log_path=log).to_dict()


def _on_phones(ctx: StageContext) -> list[dict]:
    """The TFLite artifacts on the job's phones through benchmark_model."""
    from edgepipe.pipeline.profile.devices import profile_artifacts_on_phones

    tflite = [(art, ctx.path(art["path"])) for art in ctx.results["export"]["artifacts"] if art["format"] == "tflite"]
    return profile_artifacts_on_phones(ctx.job.profile, tflite)


def _plots(results: list[dict], staging: Path) -> dict:
    """plots/latency_distribution.png over every artifact and plots/throughput_<artifact>.png for each."""
    from edgepipe.pipeline.report.plots_profile import latency_distribution_plot, throughput_plot

    if not results:
        return {}
    series = {artifact_key(r): [ns / 1e6 for ns in r["samples_ns"]] for r in results}
    plots = {
        "latency": str(
            latency_distribution_plot(series, staging / "plots" / "latency_distribution.png").relative_to(staging)
        )
    }
    # A plot over batch sizes needs two measured batch sizes; one is already the whole story in the table.
    for r in (
        r for r in results if len({p["batch"] for p in r.get("throughput", []) if p["status"] == "measured"}) > 1
    ):
        name = Path(r["artifact"]).name.replace(".", "_")
        path = throughput_plot(
            r["throughput"], f"{r['runtime']} {r['artifact']}", staging / "plots" / f"throughput_{name}.png"
        )
        plots[f"throughput:{artifact_key(r)}"] = str(path.relative_to(staging))
    return plots
