"""The pipeline runner: a literal list of stages, each cached by the hash of its inputs and settings."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from edgepipe.models.registry import Ref
from edgepipe.models.shared.errors import ConfigError, EdgepipeError, InputFileError
from edgepipe.models.shared.memory import older_objects_frozen
from edgepipe.models.shared.progress import step
from edgepipe.pipeline.core.config import JobConfig
from edgepipe.pipeline.core.context import DeclaredResults, DeclaredSettings, StageContext, onnx_source, source_kind
from edgepipe.pipeline.core.memory import MemoryWatch
from edgepipe.pipeline.core.settings_key import declared_share, job_settings
from edgepipe.pipeline.core.sources import SOURCE_SETTINGS, SourceSettings, model_source, user_splits
from edgepipe.pipeline.core.store import Store

TOOLS = ("edgepipe", "torch", "onnx", "onnxscript", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy")


@dataclass(frozen=True)
class Stage:
    """One step: its function, the job settings it reads, and the stages whose files it reads.

    `settings` are setting paths as the TOML file spells them: one setting ("export.opset") or a whole
    section or table ("train", "export.images"). The stage sees only these (core/context.DeclaredSettings),
    and its cache key holds their values and the fingerprint of what they name (core/settings_key).
    `key_free` settings it may read too, but none of its files depends on them: they stay out of its key.
    """

    name: str
    run: Callable[[StageContext], dict]
    settings: tuple[str, ...]
    reads: tuple[str, ...]
    key_free: tuple[str, ...] = ()


TRAIN = Stage("train", Ref("edgepipe.pipeline.stages.train:run_train"), (*SOURCE_SETTINGS, "train"), ())
COMPRESS = Stage(
    "compress",
    Ref("edgepipe.pipeline.stages.compress:run_compress"),
    # [train]: compress fine-tunes with its schedule; a latency target converts candidates at the job's opset;
    # QAT takes its int8 ranges from the export's calibration samples
    (*SOURCE_SETTINGS, "train", "compress", "export.opset", "export.calibration", "export.calibration_samples"),
    ("train",),
)
EXPORT = Stage(
    "export",
    Ref("edgepipe.pipeline.stages.export:run_export"),
    # int8_mixed keeps layers float until the ledger's SQNR floor is met; int8_fast times its files on
    # [export] int8_target with the profile stage's threads and, on a phone, its benchmark_model
    (*SOURCE_SETTINGS, "export", "validate.quantized_min_sqnr_db", "profile.threads", "profile.benchmark_binary"),
    ("train", "compress"),
    # how long a conversion may take and which process converts change no file; the inputs file only picks
    # the samples of the outputs run ahead for the validate stage, which recalls them by the samples' content
    key_free=("export.converter_timeout_s", "export.converter", "validate.inputs"),
)
VALIDATE = Stage(
    "validate",
    Ref("edgepipe.pipeline.stages.validate:run_validate"),
    (*SOURCE_SETTINGS, "validate"),
    ("train", "compress", "export"),  # the PyTorch reference is the trained (or compressed) module
)
PROFILE = Stage(
    "profile",
    Ref("edgepipe.pipeline.stages.profile:run_profile"),
    # every file is timed on one held-out sample: the eval set's, the inputs file's or the model's data's
    (*SOURCE_SETTINGS, "profile", "validate.inputs"),
    ("export",),
)
# The report and the gate describe every stage's results, so they read them all; of the job, what they show.
REPORT = Stage(
    "report",
    Ref("edgepipe.pipeline.report.document:run_report"),
    (
        *SOURCE_SETTINGS,
        "job.name",
        "validate.rel_tolerance",
        "validate.fp16_rel_tolerance",
        "validate.quantized_min_sqnr_db",
        "profile.threads",
    ),
    ("train", "compress", "export", "validate", "profile"),
)
GATE = Stage(
    "gate",
    Ref("edgepipe.pipeline.stages.gate:run_gate_stage"),
    ("gate", "job.name", "job.model"),  # every check is of one job's model, by name
    ("train", "compress", "export", "validate", "profile"),
)

# The pipeline, in order. An ONNX file has no PyTorch module to train or compress.
MODULE_PIPELINE = [TRAIN, COMPRESS, EXPORT, VALIDATE, PROFILE, REPORT]
ONNX_PIPELINE = [EXPORT, VALIDATE, PROFILE, REPORT]
EXPORT_ONLY = ("train", "compress", "export", "validate")


@dataclass(frozen=True)
class RunResult:
    """What a run did: where, which stages ran or came from the cache, and their results."""

    run_dir: Path
    stages: dict[str, dict]
    results: dict[str, dict]


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the tools whose output the artifacts depend on."""
    versions = {}
    for tool in TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = None
    return versions


def job_hash(job: JobConfig) -> str:
    """sha256 of the job's settings, for the default run directory name."""
    return hashlib.sha256(json.dumps(job.to_toml_dict(), sort_keys=True).encode()).hexdigest()


def default_run_dir(job: JobConfig, root: Path = Path("runs")) -> Path:
    """runs/<job>-<hash8>."""
    return root / f"{job.job.name}-{job_hash(job)[:8]}"


def run_job(
    job: JobConfig,
    run_dir: Path,
    only: tuple[str, ...] | None = None,
    on_stage: Callable[[str, dict], None] | None = None,
) -> RunResult:
    """Run (or reuse from the cache) each stage in order; the manifest records every step."""
    path = list(sys.path)
    try:
        check_source(job)  # before PyTorch is imported: bad input answers at once
    finally:
        sys.path[:] = path
    with _process_state_kept():
        return _run_stages(job, run_dir, only, on_stage)


@contextlib.contextmanager
def _process_state_kept():
    """Put back what a job changes in the process (torch's thread count, sys.path, the garbage collector's
    frozen objects), so that a warm batch worker starts every job from the same state. Within, what the
    imports and the source check made is left out of the job's garbage collections."""
    import torch

    threads, path = torch.get_num_threads(), list(sys.path)
    try:
        with older_objects_frozen():
            yield
    finally:
        torch.set_num_threads(threads)
        sys.path[:] = path


def _run_stages(
    job: JobConfig, run_dir: Path, only: tuple[str, ...] | None, on_stage: Callable[[str, dict], None] | None
) -> RunResult:
    store = Store.open(run_dir)
    report = on_stage or (lambda name, record: None)
    versions = tool_versions()
    store.manifest.update({"job": job.to_toml_dict(), "versions": versions})
    stages = job_stages(job, only)
    settings = job_settings(job)
    results: dict[str, dict] = {}
    records: dict[str, dict] = {}
    for stage in stages:
        key = stage_key(stage, settings, store, versions)
        previous = _cached_record(stage, key, store)
        if previous:
            results[stage.name] = previous["result"]
            records[stage.name] = {**previous, "cached": True}
            report(stage.name, records[stage.name])
            continue
        staging = store.staging_dir(stage.name)
        try:
            start = time.perf_counter()
            with MemoryWatch() as memory:
                step(f"{stage.name}: started")
                result = stage.run(_context(stage, job, store, staging, results))
            seconds = time.perf_counter() - start
            record = {"key": key, "seconds": seconds, "result": result, "memory": memory.record()}
            store.commit_stage(stage.name, staging, record)
        except EdgepipeError as exc:
            store.forget(stage.name)
            _keep_logs(staging, store.run_dir)
            # the same exception (its type, attributes and cause kept), naming the run dir, not the staging dir
            exc.args = (str(exc).replace(str(staging), str(store.run_dir)), *exc.args[1:])
            raise
        except BaseException:
            store.forget(stage.name)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        results[stage.name] = result
        records[stage.name] = {**record, "cached": False}
        report(stage.name, records[stage.name])
    return RunResult(store.run_dir, records, results)


def job_stages(job: JobConfig, only: tuple[str, ...] | None = None) -> list[Stage]:
    """The job's stages in order, optionally only some of them."""
    pipeline = (ONNX_PIPELINE if source_kind(job) == "onnx" else MODULE_PIPELINE) + ([GATE] if job.gate else [])
    return [s for s in pipeline if only is None or s.name in only]


def cached_run(
    job: JobConfig, run_dir: Path, only: tuple[str, ...] | None = None, versions: dict | None = None
) -> RunResult | None:
    """The run's results when every stage is already in run_dir's cache, else None; runs nothing."""
    if not (run_dir / "manifest.json").is_file():
        return None
    store = Store.open(run_dir)
    versions = versions or tool_versions()
    try:
        settings = job_settings(job)
    except EdgepipeError:  # a factory or data function that no longer imports: running the job says why
        return None
    records, results = {}, {}
    for stage in job_stages(job, only):
        previous = _cached_record(stage, stage_key(stage, settings, store, versions), store)
        if not previous:
            return None
        records[stage.name], results[stage.name] = {**previous, "cached": True}, previous["result"]
    return RunResult(store.run_dir, records, results)


def check_source(job: JobConfig) -> None:
    """Fail on an unknown model, a broken factory or an unreadable file before anything is written."""
    source = onnx_source(job)
    if job.compress.active and source_kind(job) == "onnx":
        raise ConfigError(
            f"[compress] works on a PyTorch module, and {job.job.model} is an ONNX file; give the model as "
            "a factory 'pkg.module:factory' (with weights = ...) or remove the [compress] section"
        )
    if job.compress.needs_data and source_kind(job) == "factory" and not job.train.data:
        raise ConfigError(
            f"[compress] fine-tunes and distils on data, and {job.job.model} has none: add [train] data = an .npz "
            "with one array per input and 'labels', a folder of class subfolders or pkg.module:function (or prune "
            "without recovery: finetune_epochs = 0)"
        )
    if job.train.data and source_kind(job) != "factory":
        raise ConfigError(
            "[train] data is for a user's factory: a zoo model trains on its own dataset, and an ONNX file "
            "cannot be trained; remove [train] data"
        )
    if source is not None and not source.is_file():
        raise InputFileError(f"ONNX file {source} not found; check the path")
    specs = model_source(job).inputs  # loading the model checks it
    if job.validate_.inputs and not Path(job.validate_.inputs).is_file():
        raise InputFileError(f"inputs file {job.validate_.inputs} not found; check the path")
    _check_user_data(job, specs)
    if job.gate:
        from edgepipe.pipeline.gate.budgets import job_budgets

        job_budgets(job.gate)  # bad budgets fail before hours of work, not after
        if job.gate.baseline and not Path(job.gate.baseline).exists():
            raise InputFileError(f"[gate] baseline {job.gate.baseline} not found; check the path")


def _check_user_data(job: JobConfig, specs) -> None:
    """Calibration and evaluation data must fit the model's inputs before any stage runs."""
    from edgepipe.pipeline.core.modules import user_calibration
    from edgepipe.pipeline.core.user_data import load_eval

    user_calibration(job, specs)
    if job.validate_.eval_data:
        load_eval(job.validate_.eval_data, specs, job.export.images)
    if job.train.data:
        user_splits(SourceSettings.of(job), specs)


def _keep_logs(staging: Path, run_dir: Path) -> None:
    """Move a failed stage's complete log files into the run dir (not recorded as artifacts)."""
    for log in (staging / "logs").glob("*.log"):
        (run_dir / "logs").mkdir(exist_ok=True)
        log.replace(run_dir / "logs" / log.name)


def _cached_record(stage: Stage, key: str, store: Store) -> dict | None:
    """The stage's manifest record when it was made with this key and its files are intact, else None."""
    previous = store.manifest["stages"].get(stage.name)
    return previous if previous and previous["key"] == key and store.verify(stage.name) else None


def _context(stage: Stage, job: JobConfig, store: Store, staging: Path, results: dict[str, dict]) -> StageContext:
    """What the stage may see: the settings and the results it declares, and nothing else."""
    settings = DeclaredSettings(stage.name, stage.settings + stage.key_free, job)
    return StageContext(settings, store, staging, DeclaredResults(stage.name, stage.reads, results))


def stage_key(stage: Stage, settings: dict, store: Store, versions: dict) -> str:
    """sha256 over the stage's share of the job's settings (settings_key.job_settings), the files it reads
    and the tool versions."""
    inputs = {a["path"]: a["sha256"] for name in stage.reads for a in store.artifacts_of(name)}
    share = declared_share(settings, stage.settings, stage.key_free)
    blob = {"stage": stage.name, "settings": share, "inputs": inputs, "versions": versions}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()
