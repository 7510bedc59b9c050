"""`edgepipe profile FILE`: any model file, inputs made from its declared details or read from an .npz."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ConfigError, InputFileError, ProfileError, summary
from edgepipe.models.shared.progress import step
from edgepipe.pipeline.profile.inputs import generated_inputs, read_inputs
from edgepipe.profilers.harness import TimingSettings
from edgepipe.profilers.isolation import in_child
from edgepipe.profilers.profile import profile_in_process
from edgepipe.profilers.runtimes import RUNTIME_FOR_SUFFIX, RUNTIMES, RuntimeOptions, Session

log = logging.getLogger(__name__)


def profile_file(
    path: Path,
    runtime: str | None,
    threads: int,
    timing: TimingSettings = TimingSettings(),
    options: RuntimeOptions = RuntimeOptions(),
    inputs: Path | None = None,
) -> dict:
    """On the host: check the file loads and runs its inputs (seeded, or from an .npz), then profile it in a
    child process. Phones go through pipeline/profile/devices.py."""
    if not path.is_file():
        raise InputFileError(f"model file {path} not found; check the path")
    if inputs is not None and not inputs.is_file():
        raise InputFileError(f"inputs file {inputs} not found; check the path given to --inputs")
    runtime = runtime or RUNTIME_FOR_SUFFIX.get(path.suffix)
    if runtime not in RUNTIMES:
        raise ConfigError(f"cannot tell the runtime for {path}; pass --runtime with one of {', '.join(RUNTIMES)}")
    with tempfile.TemporaryDirectory(prefix="edgepipe-profile-") as tmp:
        log_path = Path(tmp) / "profile.log"  # the runtimes' native banners; shown with --debug
        with output_to_log(log_path):
            session = RUNTIMES[runtime](path, threads, options)
            feeds = read_inputs(inputs, session) if inputs is not None else generated_inputs(session)
            _check_runs(session, feeds, options.batch)
            del session  # the child loads its own copy; this one only checked the file and the inputs
        step(f"profile: timing {path.name} on {runtime}, {threads} thread(s), in a child process")
        try:
            return in_child(
                profile_in_process, runtime, path, feeds, threads, timing, options=options, log_path=log_path
            )
        finally:
            log.debug("runtime output:\n%s", log_path.read_text(errors="replace"))


def _check_runs(session: Session, feeds: dict[str, np.ndarray], batch: int | None) -> None:
    """One call before timing, so a model that cannot run these inputs fails here with one line."""
    try:
        outputs = session.run(feeds)
    except Exception as exc:  # each runtime raises its own types; to a user they mean one thing
        first = summary(exc)
        if batch is not None:
            raise ConfigError(
                f"{session.path} does not run at batch {batch} ({first}); profile it at its own batch (omit --batch)"
            ) from None
        raise ProfileError(f"{session.runtime} cannot run {session.path} on these inputs ({first})") from None
    # A batch baked into a reshape may still run, folding the batch away: that is no batch-N run.
    if batch is not None and batch > 1 and any(np.ndim(o) < 1 or np.shape(o)[0] != batch for o in outputs.values()):
        shapes = ", ".join(f"{name} {list(np.shape(o))}" for name, o in outputs.items())
        raise ConfigError(
            f"{session.path} ran at batch {batch} but its outputs ({shapes}) do not follow the batch; "
            "the graph fixes its batch, so profile it at its own batch (omit --batch)"
        )


def runtime_options(profile_section) -> RuntimeOptions:
    """A job's [profile] runtime knobs (xnnpack, ort_optimization) as opener options."""
    return RuntimeOptions(xnnpack=profile_section.xnnpack, ort_optimization=profile_section.ort_optimization)
