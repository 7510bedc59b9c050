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
from edgepipe.models.shared.progress import step
from edgepipe.pipeline.core.config import JobConfig
from edgepipe.pipeline.core.context import DeclaredResults, StageContext, onnx_source, source_kind
from edgepipe.pipeline.core.store import Store, sha256_file
from edgepipe.pipeline.core.user_data import fingerprint

TOOLS = ("edgepipe", "torch", "onnx", "onnxscript", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy")


@dataclass(frozen=True)
class Stage:
    """One step: its function, the job settings it depends on, and the stages whose files it reads."""

    name: str
    run: Callable[[StageContext], dict]
    settings: Callable[[JobConfig], dict]
    reads: tuple[str, ...]


def _sha_or_none(path: str | Path | None) -> str | None:
    return sha256_file(Path(path)) if path else None


def _baseline_sha(baseline: str | None) -> str | None:
    """A baseline run directory is identified by its manifest."""
    if not baseline:
        return None
    path = Path(baseline)
    return _sha_or_none(path / "manifest.json" if path.is_dir() else path)


def _model_settings(job: JobConfig) -> dict:
    return {
        "model": job.job.model,
        "seed": job.job.seed,
        "inputs": list(job.job.inputs),
        "source_sha256": _sha_or_none(onnx_source(job)),
        "weights_sha256": _sha_or_none(job.job.weights),
    }


def _train_settings(job: JobConfig) -> dict:
    """[train] and the contents of what it names: its data, its loss, and the held-out set its metrics use."""
    return {
        **job.train.model_dump(),
        "data_content": fingerprint(job.train.data),
        "loss_content": fingerprint(job.train.loss),
        "eval_data": fingerprint(job.validate_.eval_data),
        "metric": fingerprint(job.validate_.metric),
        "images": job.export.images.model_dump() if job.train.data else None,
    }


TRAIN = Stage(
    "train",
    Ref("edgepipe.pipeline.stages.train:run_train"),
    lambda j: {**_model_settings(j), **_train_settings(j)},
    (),
)
COMPRESS = Stage(
    "compress",
    Ref("edgepipe.pipeline.stages.compress:run_compress"),
    lambda j: {
        **_model_settings(j),
        **_train_settings(j),
        **j.compress.model_dump(),
        # a latency target converts candidates to time them
        "latency_opset": j.export.opset if j.compress.prune_target and j.compress.prune_target.latency else None,
    },
    ("train",),
)
EXPORT = Stage(
    "export",
    Ref("edgepipe.pipeline.stages.export:run_export"),
    lambda j: {
        **_model_settings(j),
        **j.export.model_dump(exclude={"converter_timeout_s"}),  # how long it may take changes no file
        "calibration_data": fingerprint(j.export.calibration),
        # without its own calibration data, a model calibrates on its training data
        "train_data": fingerprint(j.train.data) if not j.export.calibration else None,
        # int8_mixed aims at the ledger's floor, so only it depends on a [validate] setting
        "mixed_min_sqnr_db": j.validate_.quantized_min_sqnr_db if "int8_mixed" in j.export.variants else None,
    },
    ("train", "compress"),
)
VALIDATE = Stage(
    "validate",
    Ref("edgepipe.pipeline.stages.validate:run_validate"),
    lambda j: {
        **_model_settings(j),
        **j.validate_.model_dump(),
        "inputs_sha256": _sha_or_none(j.validate_.inputs),
        "eval_data": fingerprint(j.validate_.eval_data),
        "metric_content": fingerprint(j.validate_.metric),
        "train_data": fingerprint(j.train.data),
    },
    ("train", "compress", "export"),  # the PyTorch reference is the trained (or compressed) module
)
PROFILE = Stage(
    "profile",
    Ref("edgepipe.pipeline.stages.profile:run_profile"),
    lambda j: {
        **j.profile.model_dump(),
        # every file is timed on one held-out sample: the eval set's, the inputs file's or the training data's
        "inputs_sha256": _sha_or_none(j.validate_.inputs),
        "eval_data": fingerprint(j.validate_.eval_data),
        "train_data": fingerprint(j.train.data),
    },
    ("export",),
)
# The report and the gate describe every stage's results, so they read them all.
REPORT = Stage(
    "report",
    Ref("edgepipe.pipeline.report.document:run_report"),
    lambda j: {},
    ("train", "compress", "export", "validate", "profile"),
)
GATE = Stage(
    "gate",
    Ref("edgepipe.pipeline.stages.gate:run_gate_stage"),
    lambda j: {
        **j.gate.model_dump(),
        "budgets_sha256": _sha_or_none(j.gate.budgets),
        "baseline_sha256": _baseline_sha(j.gate.baseline),
    },
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
    """Put back what a job changes in the process (torch's thread count, sys.path), so that a warm
    batch worker starts every job from the same state."""
    import torch

    threads, path = torch.get_num_threads(), list(sys.path)
    try:
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
    results: dict[str, dict] = {}
    records: dict[str, dict] = {}
    for stage in stages:
        key = _stage_key(stage, job, store, versions)
        previous = _cached_record(stage, key, store)
        if previous:
            results[stage.name] = previous["result"]
            records[stage.name] = {**previous, "cached": True}
            report(stage.name, records[stage.name])
            continue
        staging = store.staging_dir(stage.name)
        try:
            start = time.perf_counter()
            step(f"{stage.name}: started")
            result = stage.run(StageContext(job, store, staging, DeclaredResults(stage.name, stage.reads, results)))
            record = {"key": key, "seconds": time.perf_counter() - start, "result": result}
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
    records, results = {}, {}
    for stage in job_stages(job, only):
        previous = _cached_record(stage, _stage_key(stage, job, store, versions), store)
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
    from edgepipe.pipeline.core.sources import model_source

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
        from edgepipe.pipeline.core.sources import SourceSettings, user_splits

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


def _stage_key(stage: Stage, job: JobConfig, store: Store, versions: dict) -> str:
    """sha256 over the stage's settings, the files it reads and the tool versions."""
    inputs = {a["path"]: a["sha256"] for name in stage.reads for a in store.artifacts_of(name)}
    blob = {"stage": stage.name, "settings": stage.settings(job), "inputs": inputs, "versions": versions}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()
