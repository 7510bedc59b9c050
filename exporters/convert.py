"""ONNX -> TFLite, every variant from one translation: the steps in order, each in its own package.

1. onnx/: the private copy's opset upgraded, simplified and passed through the named graph passes;
2. tflite/translate: onnx2tf's translation (fast, else strict), the boundary fitted by evidence,
   the float32 file written and its layouts read;
3. quantize/: calibration batches cut once, every other variant written with the variant table's
   converter settings (int8_mixed by its layer search);
4. tflite/record: each file checked and described; all are moved into place only when every one passed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepipe.exporters.onnx.files import onnx_input_specs
from edgepipe.exporters.onnx.passes import prepare
from edgepipe.exporters.quantize.calibration import CalibratedInput, Requirements, calibration_batches
from edgepipe.exporters.quantize.fast import FastTarget
from edgepipe.exporters.quantize.mixed import MixedTarget
from edgepipe.exporters.quantize.variants import VARIANTS
from edgepipe.exporters.tflite.evidence import reference_outputs
from edgepipe.exporters.tflite.record import TfliteExport, describe
from edgepipe.exporters.tflite.signature import signature_details
from edgepipe.exporters.tflite.translate import Source, Translation, translate
from edgepipe.exporters.tflite.write import check_scales, variant_bytes
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.memory import release_freed_heap
from edgepipe.models.shared.progress import step
from edgepipe.models.shared.specs import InputSpec, channels_last, convert_layout


def export_tflite(
    onnx_path: Path,
    out_path: Path,
    variant: str,
    log_path: Path,
    onnx_inputs: tuple[InputSpec, ...] | None = None,
    calibration: dict[str, np.ndarray] | None = None,
    allow_flex: bool = False,
) -> TfliteExport:
    """Convert one ONNX file to one TFLite variant at out_path.

    calibration maps input names to samples in the ONNX (PyTorch) layout; onnx2tf gets
    them as its custom input data so it never reaches for its downloadable sample; int8,
    int8_float_io and int16x8 are calibrated on them and fail without them.
    A result that needs Select-TF (Flex) or custom ops fails unless allow_flex: a phone's
    stock TFLite runtime cannot run it.
    """
    return _convert(onnx_path, {variant: out_path}, log_path, onnx_inputs, calibration, allow_flex)[variant]


def export_tflite_variants(
    onnx_path: Path,
    out_dir: Path,
    variants: tuple[str, ...] | list[str],
    log_path: Path,
    onnx_inputs: tuple[InputSpec, ...] | None = None,
    calibration: dict[str, np.ndarray] | None = None,
    allow_flex: bool = False,
    mixed: MixedTarget = MixedTarget(),
    fast: FastTarget = FastTarget(),
) -> dict[str, TfliteExport]:
    """Convert one ONNX file to several variants in one onnx2tf run: out_dir/<stem>_<variant>.tflite each.

    int8_mixed keeps in float32 the fewest layers that reach mixed.min_sqnr_db, taken by the
    output noise they remove per byte (quantize/mixed.write_mixed). int8_fast keeps in float32 the
    op types whose int8 kernels are slower on fast.timer's target (quantize/fast.write_fast).
    """
    targets = {v: Path(out_dir) / f"{Path(onnx_path).stem}_{v}.tflite" for v in variants}
    return _convert(onnx_path, targets, log_path, onnx_inputs, calibration, allow_flex, mixed, fast)


def _convert(
    onnx_path: Path,
    targets: dict[str, Path],
    log_path: Path,
    onnx_inputs: tuple[InputSpec, ...] | None,
    calibration: dict[str, np.ndarray] | None,
    allow_flex: bool,
    mixed: MixedTarget = MixedTarget(),
    fast: FastTarget = FastTarget(),
) -> dict[str, TfliteExport]:
    """One translation writes every target; none is moved into place unless all of them pass."""
    # onnx2tf runs in a private working directory, so relative paths would point elsewhere.
    onnx_path, log_path = onnx_path.resolve(), log_path.resolve()
    targets = {variant: Path(path).resolve() for variant, path in targets.items()}
    specs, calibration = onnx_inputs or onnx_input_specs(onnx_path), calibration or {}
    _check_request(onnx_path, list(targets), specs, calibration)
    with tempfile.TemporaryDirectory(prefix="onnx2tf-", dir=next(iter(targets.values())).parent) as work:
        work_dir = Path(work)
        private = work_dir / "model.onnx"  # every step rewrites the copy, never the user's file
        shutil.copyfile(onnx_path, private)
        step("export: simplifying the ONNX graph (onnxsim) and applying the named passes")
        passes = prepare(private, log_path)
        release_freed_heap()  # each step's copies of the weights go back before the next one makes its own
        step("export: ONNX Runtime's outputs on seeded inputs, the evidence for the translation")
        evidence = reference_outputs(onnx_path, specs, log_path)
        release_freed_heap()
        # Only channels-first tensors may be made channels-last; a (batch, time, features)
        # sequence transposed to (batch, features, time) would silently read the wrong axis.
        # An input whose shape reads the same either way (1x8x8 as NCW) is kept too: then
        # the record is certain rather than a guess between two equal shapes.
        kept = frozenset(s.name for s in specs if len(s.shape) >= 3 and channels_last(s).shape == s.shape)
        source = Source(private, onnx_path, specs, kept, _in_tf_layout(specs, calibration, kept))
        step("export: onnx2tf translating the graph to TensorFlow")
        translation = translate(source, evidence, work_dir / "out", log_path)
        files, records = _write_variants(translation, source, list(targets), (mixed, fast), log_path)
        release_freed_heap()  # TFLite's converter keeps none of its copies, but the heap does
        layouts = (translation.inputs, translation.outputs)
        with output_to_log(log_path):  # the interpreter announces its delegates on fd 2
            results = {
                v: replace(
                    describe(files[v], v, layouts, onnx_path, allow_flex),
                    path=targets[v],
                    boundary=translation.boundary,
                    onnx_passes=passes,
                    **records.get(v, {}),
                )
                for v in targets
            }
        for variant, target in targets.items():
            shutil.move(str(files[variant]), target)
    return results


def _check_request(onnx_path: Path, variants: list[str], specs: tuple[InputSpec, ...], calibration: dict) -> None:
    """Known variants only; those that quantize activations need real samples for every float input."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ExportError(
            f"{onnx_path.name}: unknown TFLite variant(s) {', '.join(map(repr, unknown)) or '(none given)'}"
            f"; choose from {', '.join(VARIANTS)}"
        )
    calibrated = ", ".join(v for v in variants if VARIANTS[v].calibrated)
    missing = [s.name for s in specs if s.name not in calibration or len(calibration[s.name]) == 0]
    if calibrated and missing:
        raise ExportError(
            f"{onnx_path.name} -> {calibrated}: quantizing activations needs calibration samples for input(s) "
            f"{', '.join(missing)}, and none were given; give your own with --calibration DATA.npz (or "
            "[export] calibration: an .npz, a folder of images or pkg.module:function), or choose fp32, fp16 or dynamic"
        )
    # onnx2tf casts every calibration sample to float32, which an integer input then refuses.
    integer = [f"{s.name} ({s.dtype})" for s in specs if not s.dtype.startswith("float")]
    if calibrated and integer:
        raise ExportError(
            f"{onnx_path.name} -> {calibrated}: onnx2tf calibrates float inputs only, not "
            f"{', '.join(integer)}; choose fp32, fp16 or dynamic"
        )


def _write_variants(
    translation: Translation,
    source: Source,
    variants: list[str],
    targets: tuple[MixedTarget, FastTarget],
    log_path: Path,
) -> tuple[dict[str, Path], dict[str, dict]]:
    """({variant: file in the working directory}, {variant: how it was chosen}) from the translation's SavedModel;
    int8_mixed and int8_fast record their choice."""
    from edgepipe.exporters.quantize.fast import write_fast
    from edgepipe.exporters.quantize.mixed import write_mixed

    (mixed, fast), written, records = targets, {"fp32": translation.float_file}, {}
    calibrated = [v for v in variants if VARIANTS[v].calibrated]
    feeds = _calibration_feeds(translation, source) if calibrated else ()
    where = source.original.name
    with output_to_log(log_path):
        for variant in [v for v in variants if v != "fp32"]:
            path = translation.saved_model / f"model_{variant}.tflite"
            on = f", calibrated on {len(next(iter(source.samples.values())))} samples" if variant in calibrated else ""
            step(f"export: writing {path.name}{on}")
            if variant == "int8_mixed":
                float_model = translation.float_file.read_bytes()
                losses, choice = write_mixed(
                    translation.saved_model, float_model, feeds, path, mixed, log_path, source.original
                )
                records[variant] = {"sensitivity": tuple(losses), "kept_float": choice.kept_float}
                records[variant]["mixed_choice"] = choice
            elif variant == "int8_fast":
                float_model = translation.float_file.read_bytes()
                choice = write_fast(translation.saved_model, float_model, feeds, path, fast, log_path)
                records[variant] = {"fast_choice": choice}
            else:
                path.write_bytes(variant_bytes(translation.saved_model, variant, feeds, where, log_path))
            check_scales(path, variant, where)
            written[variant] = path
    return written, records


def _calibration_feeds(translation: Translation, source: Source) -> tuple[dict[str, np.ndarray], ...]:
    """The samples cut into the batches the float32 file's signature takes: once, for every calibrated variant."""
    details = signature_details(translation.float_file)[0]
    inputs = {
        name: CalibratedInput(tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"])) for name, d in details.items()
    }
    needs = Requirements(
        f"{source.original.name} -> int8", "TFLite model's (NHWC for images)", "choose fp32, fp16 or dynamic"
    )
    return calibration_batches(source.samples, inputs, needs)


def _in_tf_layout(specs: tuple[InputSpec, ...], calibration: dict, kept: frozenset[str]) -> dict[str, np.ndarray]:
    """Calibration samples in the layout the TF model takes (channels-last unless the input's shape was kept)."""
    # Calibration ranges are taken per tensor: samples fed in the wrong layout skew them.
    return {
        spec.name: convert_layout(
            calibration[spec.name], spec.layout, spec.layout if spec.name in kept else channels_last(spec).layout
        ).astype(spec.dtype)
        for spec in specs
        if spec.name in calibration
    }
