"""Stage profile: time every artifact on the host, one child process per artifact."""
from __future__ import annotations

from pipeline.context import StageContext
from pipeline.feeding import RUNTIME_OF_FORMAT, feeds_for, held_out
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
    results = []
    for art in ctx.results["export"]["artifacts"]:
        runtime = RUNTIME_OF_FORMAT[art["format"]]
        if runtime not in ctx.job.profile.runtimes:
            continue
        result = profile_isolated(runtime, ctx.path(art["path"]), feeds_for(art, first),
                                  ctx.job.profile.threads, timing_settings(ctx.job), ctx.staging / PROFILE_LOG)
        results.append({**result, "format": art["format"], "variant": art["variant"], "artifact": art["path"]})
    write_json(ctx.staging / PROFILE, {"results": results})
    return {"results": [{k: v for k, v in r.items() if k != "samples_ns"} for r in results]}
