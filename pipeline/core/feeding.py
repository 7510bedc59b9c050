"""Held-out samples for a job and how each artifact is fed them, through its recorded layouts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from edgepipe.models.shared.errors import ExportError, InputFileError, first_line
from edgepipe.models.shared.specs import FROM_CHANNELS_LAST, InputSpec, convert_layout, random_feeds
from edgepipe.pipeline.core.context import StageContext
from edgepipe.pipeline.core.sources import model_source
from edgepipe.profilers.runtimes import RUNTIMES, quantize

RUNTIME_OF_FORMAT = {"torch": "torch", "onnx": "onnxruntime", "tflite": "tflite"}
RANDOM_SAMPLES = 32
TORCH_REFERENCE = "the PyTorch module's outputs"  # what recall() calls the reference run of a factory's weights


def held_out(ctx: StageContext) -> tuple[dict[str, np.ndarray], Callable[[dict], dict] | None]:
    """Samples in the PyTorch layout and the task metric over outputs (None for ONNX files).

    The user's eval set when given; then the job's inputs file; then the held-out split of the
    model's data (the zoo's, or a factory's [train] data); else seeded random inputs of its shapes, each
    within the domain the ONNX graph's ops give it (an index within its axis, a positive scale).
    """
    if ctx.job.validate_.eval_data:
        return _eval_set(ctx)
    if ctx.job.validate_.inputs:
        onnx_art = next(a for a in ctx.results["export"]["artifacts"] if a["format"] == "onnx")
        return load_inputs(Path(ctx.job.validate_.inputs), specs_of(onnx_art)), None
    source = model_source(ctx.job)
    data = source.splits() if source.has_module else None
    if data is None:
        from edgepipe.exporters.onnx import input_domains

        onnx_art = next(a for a in ctx.results["export"]["artifacts"] if a["format"] == "onnx")
        # the export stage runs this ahead, while its files are still in its staging directory
        onnx_file = next(p for p in (ctx.staging / onnx_art["path"], ctx.path(onnx_art["path"])) if p.is_file())
        domains = input_domains(onnx_file)
        return random_feeds(tuple(specs_of(onnx_art)), ctx.job.job.seed, RANDOM_SAMPLES, domains), None
    return data.x_test, (lambda out: source.task.metric(out["output_0"], data.y_test))


def _eval_set(ctx: StageContext) -> tuple[dict[str, np.ndarray], Callable[[dict], dict]]:
    """The user's labelled set, and the task's metric (top-1 by default) over the model's first output."""
    from edgepipe.exporters.onnx import onnx_output_specs
    from edgepipe.pipeline.core.user_data import load_eval

    metric = model_source(ctx.job).task.metric

    onnx_art = next(a for a in ctx.results["export"]["artifacts"] if a["format"] == "onnx")
    inputs, labels = load_eval(ctx.job.validate_.eval_data, tuple(specs_of(onnx_art)), ctx.job.export.images)
    first = onnx_output_specs(ctx.path(onnx_art["path"]))[0].name
    # A torch reference names its outputs output_0, ...; the exported ONNX graph's first output is output_0 too.
    return inputs, (lambda out: metric(out[first] if first in out else out["output_0"], labels))


def specs_of(art: dict) -> list[InputSpec]:
    """An artifact record's inputs."""
    return [InputSpec.from_dict(d) for d in art["inputs"]]


def feeds_for(art: dict, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Samples (PyTorch layout) converted to the layout and dtype the artifact recorded.

    Real values for a quantized integer input are quantized with its recorded scale and zero point.
    """
    quantized = {q["name"]: q for q in art.get("quantization", []) if q["role"] == "input"}
    feeds = {}
    for s in specs_of(art):
        value = convert_layout(samples[s.name], FROM_CHANNELS_LAST.get(s.layout, s.layout), s.layout)
        q = quantized.get(s.name)
        if q and np.issubdtype(np.asarray(value).dtype, np.floating):
            feeds[s.name] = quantize(value, q["scale"], q["zero_point"], np.dtype(q["dtype"]))
        else:
            feeds[s.name] = np.asarray(value).astype(s.dtype)
    return feeds


def load_inputs(path: Path, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    """An .npz of inputs by name, checked against the model's inputs."""
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InputFileError(f"inputs file {path} is not a readable .npz ({exc})") from None
    for spec in specs:
        if spec.name not in arrays:
            raise InputFileError(
                f"inputs file {path} has no array {spec.name!r} (has {', '.join(arrays) or 'none'}); "
                "name each array after a model input"
            )
        shape = arrays[spec.name].shape
        if not spec.shape:  # a scalar input is one value, the same for every sample
            if shape != ():
                raise InputFileError(
                    f"inputs file {path}: {spec.name!r} has shape {shape}, the model takes a scalar; "
                    "store it as a 0-d array"
                )
            continue
        if shape[1:] != tuple(spec.shape[1:]) or not shape or len(arrays[spec.name]) % spec.shape[0]:
            raise InputFileError(
                f"inputs file {path}: {spec.name!r} has shape {arrays[spec.name].shape}, "
                f"the model takes {tuple(spec.shape)} (any multiple of the batch is fine)"
            )
    return {s.name: arrays[s.name].astype(s.dtype) for s in specs}


def validation_threads() -> int:
    """Threads for runs whose outputs count, not their time: OMP_NUM_THREADS when set (batch and Ray
    workers set their share), else every core this process may use. [profile] threads sets timing runs."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else len(os.sched_getaffinity(0))


# Outputs run ahead of the validate stage (while the converter process works), by file, what ran, samples.
_AHEAD: dict[tuple, dict[str, np.ndarray]] = {}


def _ahead_key(path: Path, what: str, samples: dict[str, np.ndarray]) -> tuple:
    """The file by identity (a rename into the run directory keeps it), what ran on it, the samples by content."""
    import hashlib

    st = os.stat(path)
    digest = hashlib.sha1()
    for name in sorted(samples):
        value = np.ascontiguousarray(samples[name])
        digest.update(f"{name}{value.shape}{value.dtype}".encode())
        digest.update(value.data)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, what, digest.hexdigest())


def remember(path: Path, what: str, samples: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """Keep outputs computed ahead from the file at path (what: which run of it) for recall()."""
    _AHEAD[_ahead_key(path, what, samples)] = outputs


def recall(path: Path, what: str, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Outputs remember() kept for the same file, run and samples (once), else None."""
    return _AHEAD.pop(_ahead_key(path, what, samples), None) if _AHEAD else None


def run_ahead(path: Path, art: dict, samples: dict[str, np.ndarray], threads: int) -> None:
    """Run an artifact now, on `threads` threads, for run_artifact to return later on the same file and samples."""
    remember(path, repr(sorted(art.items())), samples, _run(path, art, samples, threads))


def run_artifact(path: Path, art: dict, samples: dict[str, np.ndarray], opener=None) -> dict[str, np.ndarray]:
    """Run samples in chunks of each input's own leading size; outputs come back in the ONNX layout.

    opener opens the file instead of its format's runtime (onnx.reference for an ONNX file that ONNX
    Runtime cannot load)."""
    ahead = recall(path, repr(sorted(art.items())), samples) if opener is None else None
    return ahead if ahead is not None else _run(path, art, samples, validation_threads(), opener)


def _run(path: Path, art: dict, samples: dict[str, np.ndarray], threads: int, opener=None) -> dict[str, np.ndarray]:
    session = (opener or RUNTIMES[RUNTIME_OF_FORMAT[art["format"]]])(path, threads)
    lead = {s.name: s.shape[0] if s.shape else 0 for s in specs_of(art)}
    counts = {len(samples[name]) // size for name, size in lead.items() if size}
    if len(counts) > 1:
        raise InputFileError(f"inputs hold different numbers of batches ({sorted(counts)}); give each the same count")
    layouts = {d["name"]: d["layout"] for d in art.get("outputs", [])}
    collected: dict[str, list[np.ndarray]] = {}
    for i in range(counts.pop() if counts else 1):
        chunk = {
            name: samples[name][i * size : (i + 1) * size] if size else samples[name] for name, size in lead.items()
        }
        try:
            outputs = session.run(feeds_for(art, chunk))
        except Exception as exc:  # each runtime raises its own types; to a user they mean one thing
            first = first_line(exc) or type(exc).__name__
            raise ExportError(f"{session.runtime} cannot run {path.name} on the validation inputs: {first}") from None
        for name, value in outputs.items():
            collected.setdefault(name, []).append(_in_onnx_layout(value, layouts.get(name, "ND")))
    return {name: _joined(values) for name, values in collected.items()}


def _in_onnx_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """A chunk of an output in the ONNX layout. Chunk by chunk, the whole output is never held twice
    over (a segmenter's 32 outputs take 135 MiB); the sample axis N leads both layouts of FROM_CHANNELS_LAST,
    so the chunks join along it either way."""
    return convert_layout(value, layout, FROM_CHANNELS_LAST.get(layout, layout))


def _joined(values: list[np.ndarray]) -> np.ndarray:
    """One output over every chunk: concatenated on the batch axis, or a scalar output (a loss) as it is
    for one chunk and stacked, one per chunk, for several."""
    if len(values) == 1:
        return np.asarray(values[0])
    return np.concatenate(values) if np.ndim(values[0]) else np.stack(values)
