"""`edgepipe profile FILE`: any model file, inputs made from its declared details."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import ConfigError, InputFileError
from pipeline.feeding import random_input
from profilers.harness import TimingSettings
from profilers.profile import profile_isolated
from profilers.runtimes import RUNTIME_FOR_SUFFIX, RUNTIMES


def profile_file(path: Path, runtime: str | None, device: str, threads: int,
                 timing: TimingSettings = TimingSettings()) -> dict:
    """Check the file loads, make seeded inputs for its inputs, and profile it in a child process."""
    if device != "host":
        raise ConfigError(f"--device {device!r}: only 'host' is supported in this version")
    if not path.is_file():
        raise InputFileError(f"model file {path} not found; check the path")
    runtime = runtime or RUNTIME_FOR_SUFFIX.get(path.suffix)
    if runtime not in RUNTIMES:
        raise ConfigError(f"cannot tell the runtime for {path}; pass --runtime with one of {', '.join(RUNTIMES)}")
    session = RUNTIMES[runtime](path, threads)
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.inputs:
        if any(d < 1 for d in spec.shape):
            raise InputFileError(f"{path}: input {spec.name!r} has a dynamic shape {spec.shape}; "
                                 "export it with a static shape")
        feeds[spec.name] = random_input(rng, spec, spec.shape[0])
    return profile_isolated(runtime, path, feeds, threads, timing)
