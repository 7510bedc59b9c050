"""Stage profile: time every artifact on the host, then its per-op time and throughput, each in a child process."""
from __future__ import annotations

from pathlib import Path

from pipeline.context import StageContext
from pipeline.feeding import RUNTIME_OF_FORMAT, feeds_for, held_out
from pipeline.profile_details import OP_PROFILE_RUNTIMES, op_profile_isolated, throughput_isolated
from pipeline.profiling import runtime_options
from pipeline.store import write_json
from profilers.harness import TimingSettings
from profilers.profile import profile_isolated

PROFILE = "profile.json"
PROFILE_LOG = "logs/profile.log"


def timing_settings(job) -> TimingSettings:
    """The job's [profile] bounds as harness settings."""
    p = job.profile
    return TimingSettings(p.warmup_runs, p.warmup_seconds, p.min_runs, p.min_seconds, p.max_seconds)


def run_profile(ctx: StageContext) -> dict:
    """Profile each artifact whose runtime the job asks for, fed one real held-out sample."""
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
        result = profile_isolated(runtime, path, feeds, threads, timing_settings(ctx.job), log,
                                  options=runtime_options(ctx.job.profile))
        if settings.op_profile and runtime in OP_PROFILE_RUNTIMES:
            result["op_profile"] = op_profile_isolated(runtime, path, feeds, threads, settings.op_profile_runs, log)
        if settings.throughput_batches:
            result["throughput"] = throughput_isolated(runtime, path, feeds, settings.throughput_batches,
                                                       settings.throughput_seconds, log)
        results.append({**result, "format": art["format"], "variant": art["variant"], "artifact": art["path"]})
    phones = _on_phones(ctx) if settings.device != "host" else []
    plots = _plots(results, ctx.staging)
    write_json(ctx.staging / PROFILE, {"results": results, **({"device_results": phones} if phones else {})})
    return {"results": [{k: v for k, v in r.items() if k != "samples_ns"} for r in results], "plots": plots,
            **({"device_results": phones} if phones else {})}


def _on_phones(ctx: StageContext) -> list[dict]:
    """The TFLite artifacts on the job's phones through benchmark_model."""
    from pipeline.device_profiling import profile_artifacts_on_phones

    tflite = [(art, ctx.path(art["path"])) for art in ctx.results["export"]["artifacts"] if art["format"] == "tflite"]
    return profile_artifacts_on_phones(ctx.job.profile, tflite)


def _plots(results: list[dict], staging: Path) -> dict:
    """plots/latency_distribution.png over every artifact and plots/throughput_<artifact>.png for each."""
    from pipeline.plots_profile import latency_distribution_plot, throughput_plot

    if not results:
        return {}
    series = {f"{r['format']}:{r['variant']}": [ns / 1e6 for ns in r["samples_ns"]] for r in results}
    plots = {"latency": str(latency_distribution_plot(series, staging / "plots" / "latency_distribution.png")
                            .relative_to(staging))}
    for r in (r for r in results if r.get("throughput")):
        name = Path(r["artifact"]).name.replace(".", "_")
        path = throughput_plot(r["throughput"], f"{r['runtime']} {r['artifact']}", staging / "plots" / f"throughput_{name}.png")
        plots[f"throughput:{r['format']}:{r['variant']}"] = str(path.relative_to(staging))
    return plots
