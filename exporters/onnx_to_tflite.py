"""ONNX -> TFLite through onnx2tf's Python API, in-process, offline, output captured."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from edgepipe.exporters.boundary import fit_boundary
from edgepipe.exporters.onnx_inputs import onnx_input_specs, onnx_output_specs
from edgepipe.exporters.tflite_ops import (
    FileComposition,
    custom_op_nodes,
    custom_ops,
    file_composition,
    op_histogram,
    sentinel_scaled_tensors,
)
from edgepipe.exporters.tflite_signature import (
    onnxruntime_outputs,
    settle_ambiguous_outputs,
    signature,
    signature_details,
)
from edgepipe.models.shared.capture import output_to_log
from edgepipe.models.shared.errors import ExportError, first_line
from edgepipe.models.shared.progress import step
from edgepipe.models.shared.specs import FROM_CHANNELS_LAST, InputSpec, channels_last, convert_layout


@dataclass(frozen=True)
class Variant:
    """One TFLite variant: its numerics and its I/O dtype."""

    numerics: str  # "float32", "float16" or "quantized": which validation tolerance applies
    io_dtype: str = "float32"  # the dtype of every float input and output in the written file
    calibrated: bool = False  # activations are quantized, so representative samples are needed


VARIANTS = MappingProxyType(
    {
        "fp32": Variant("float32"),
        "fp16": Variant("float16"),  # float16 weights; float32 activations and I/O
        "dynamic": Variant("quantized"),  # int8 weights; float32 activations and I/O
        "int8": Variant("quantized", "int8", True),  # int8 weights, activations and I/O
        "int8_float_io": Variant("quantized", "float32", True),  # int8 inside, float32 I/O
        "int16x8": Variant("quantized", "int16", True),  # int8 weights; int16 activations and I/O (TFLite's 16x8)
        # int8 kernels and float32 I/O, with the layers int8 hurts most kept in float32
        "int8_mixed": Variant("quantized", "float32", True),
    }
)

# onnx2tf reads this file from its working directory, and downloads it when absent, for
# any model whose inputs are all 4-D with 3 channels (as test data for its own checks).
_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@dataclass(frozen=True)
class TensorQuant:
    """How an integer input or output maps to real values: real = scale * (q - zero_point)."""

    name: str
    role: str  # "input" or "output"
    dtype: str
    scale: float
    zero_point: int

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class MixedTarget:
    """What int8_mixed aims at: the output SQNR floor, and at most how many layers may stay float32 for it."""

    min_sqnr_db: float = 20.0  # the ledger's floor for quantized variants ([validate] quantized_min_sqnr_db)
    max_float_layers: int = 4


@dataclass(frozen=True)
class TfliteExport:
    """One written TFLite file and its inputs as the TFLite signature takes them."""

    path: Path
    variant: str
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    custom_ops: tuple[str, ...] = ()
    outputs: tuple[InputSpec, ...] = ()
    quantization: tuple[TensorQuant, ...] = ()  # integer inputs and outputs only
    sensitivity: tuple = ()  # int8_mixed: every layer's int8 loss (exporters.sensitivity.LayerLoss), worst first
    kept_float: tuple[str, ...] = ()  # int8_mixed: the layers left in float32
    mixed_choice: object = None  # int8_mixed: exporters.sensitivity.MixedChoice, how kept_float was chosen
    op_histogram: dict[str, int] = field(default_factory=dict)  # operators by kind, most frequent first
    size_split: FileComposition | None = None  # where the file's bytes go
    boundary: tuple = ()  # exporters.boundary.BoundaryFix: inputs/outputs reshaped or transposed to the ONNX shape

    @property
    def op_count(self) -> int:
        """How many operators the file runs."""
        return sum(self.op_histogram.values())


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
) -> dict[str, TfliteExport]:
    """Convert one ONNX file to several variants in one onnx2tf run: out_dir/<stem>_<variant>.tflite each.

    int8_mixed keeps in float32 the fewest layers that reach mixed.min_sqnr_db, taken by the
    output noise they remove per byte (exporters.sensitivity.export_to_floor).
    """
    targets = {v: Path(out_dir) / f"{Path(onnx_path).stem}_{v}.tflite" for v in variants}
    return _convert(onnx_path, targets, log_path, onnx_inputs, calibration, allow_flex, mixed)


def _convert(
    onnx_path: Path,
    targets: dict[str, Path],
    log_path: Path,
    onnx_inputs: tuple[InputSpec, ...] | None,
    calibration: dict[str, np.ndarray] | None,
    allow_flex: bool,
    mixed: MixedTarget = MixedTarget(),
) -> dict[str, TfliteExport]:
    """One onnx2tf run writes every target; none is moved into place unless all of them pass."""
    # onnx2tf runs in a private working directory, so relative paths would point elsewhere.
    onnx_path, log_path = onnx_path.resolve(), log_path.resolve()
    targets = {variant: Path(path).resolve() for variant, path in targets.items()}
    specs, calibration = onnx_inputs or onnx_input_specs(onnx_path), calibration or {}
    _check_request(onnx_path, list(targets), specs, calibration)
    with tempfile.TemporaryDirectory(prefix="onnx2tf-", dir=next(iter(targets.values())).parent) as work:
        work_dir = Path(work)
        # Only channels-first tensors may be made channels-last; a (batch, time, features)
        # sequence transposed to (batch, features, time) would silently read the wrong axis.
        # An input whose shape reads the same either way (1x8x8 as NCW) is kept too: then
        # the record is certain rather than a guess between two equal shapes.
        keep = [spec.name for spec in specs if len(spec.shape) >= 3 and channels_last(spec).shape == spec.shape]
        samples = _in_tf_layout(specs, calibration, set(keep))
        cind = _write_custom_inputs(work_dir, specs, samples)
        _write_offline_sample(work_dir, specs, calibration)
        # onnx2tf rewrites the file it is given (node names, simplification): it gets a copy.
        private = work_dir / "model.onnx"
        shutil.copyfile(onnx_path, private)
        _simplify(private, log_path)
        _fix_untranslatable(private, log_path)
        out_dir = work_dir / "out"
        step("export: onnx2tf translating the graph to TensorFlow, writing model_fp32.tflite")
        model, layouts = _translated(private, (cind, keep), onnx_path, specs, out_dir, log_path)
        files = _write_variants(out_dir, onnx_path, targets, samples, mixed, log_path)
        mixed_record = files.pop("mixed", {})
        needs = {v: _builtin_only(files[v], v, onnx_path, allow_flex) for v in targets}
        with output_to_log(log_path):  # the interpreter announces its delegates on fd 2
            results = {
                v: replace(_describe(files[v], v, targets[v], layouts, needs[v]), boundary=model.fixes) for v in targets
            }
        if mixed_record:
            results["int8_mixed"] = replace(results["int8_mixed"], **mixed_record)
        for variant, target in targets.items():
            shutil.move(str(files[variant]), target)
    return results


def _check_request(onnx_path: Path, variants: list[str], specs: tuple[InputSpec, ...], calibration: dict) -> None:
    """Known variants only; those that quantize activations need real samples for every input."""
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


def _translated(
    private: Path, onnx2tf_inputs: tuple, onnx_path: Path, specs: tuple[InputSpec, ...], out_dir: Path, log_path: Path
):
    """(onnx2tf's Keras model of the private ONNX copy, the float32 file's (inputs, outputs) layouts);
    out_dir then holds its SavedModel and model_fp32.tflite. Every variant is the same graph, so
    these layouts hold for all of them.

    onnx2tf's strict mode picks layouts by running the graph translated so far at every binary op:
    half of convnext_tiny's conversion. Its fast translation is kept when the float32 file reproduces
    ONNX Runtime on the original model; otherwise, or when it fails, the strict one is made.
    """
    cind, keep = onnx2tf_inputs
    try:
        model = _saved(
            _run_onnx2tf(private, cind, keep, log_path, strict=False), onnx_path, specs, keep, out_dir, log_path
        )
        try:
            layouts = _layouts(onnx_path, out_dir / "model_fp32.tflite", specs, keep, log_path)
        except Exception:  # the file's signature cannot be read: only the strict translation is trusted
            layouts = None
        with output_to_log(log_path):  # the interpreter announces its delegates on fd 2
            reproduces = layouts and _reproduces_onnxruntime(onnx_path, out_dir / "model_fp32.tflite", specs, layouts)
        if reproduces:
            return model, layouts
        reason = "does not reproduce ONNX Runtime (or ONNX Runtime cannot run the model)"
    except ExportError as exc:
        reason = f"failed ({exc})"
    with open(log_path, "a") as log:
        log.write(f"edgepipe: onnx2tf's fast translation {reason}; translating in strict mode\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    model = _saved(_run_onnx2tf(private, cind, keep, log_path, strict=True), onnx_path, specs, keep, out_dir, log_path)
    return model, _layouts(onnx_path, out_dir / "model_fp32.tflite", specs, keep, log_path)


def _saved(model, onnx_path: Path, specs: tuple[InputSpec, ...], keep: list[str], out_dir: Path, log_path: Path):
    """The model with its boundary fitted, saved to out_dir with its float32 TFLite file."""
    from edgepipe.exporters.tflite_convert import write_saved_model

    model = fit_boundary(model, onnx_path, specs, set(keep), log_path)
    with output_to_log(log_path):
        write_saved_model(model, [o.name for o in onnx_output_specs(onnx_path)], out_dir)
        (out_dir / "model_fp32.tflite").write_bytes(_converted(out_dir, "fp32", (), onnx_path, log_path))
    return model


def _layouts(onnx_path: Path, tflite_path: Path, specs: tuple[InputSpec, ...], keep: list[str], log_path: Path):
    """The float32 file's (inputs, outputs) with the layout of each, ambiguous outputs settled by evidence."""
    with output_to_log(log_path):  # the interpreter announces its delegates on fd 2
        inputs, outputs = signature(tflite_path, specs, onnx_output_specs(onnx_path), set(keep))
        return inputs, settle_ambiguous_outputs(onnx_path, tflite_path, specs, inputs, outputs)


def _reproduces_onnxruntime(onnx_path: Path, tflite_path: Path, specs: tuple[InputSpec, ...], layouts: tuple) -> bool:
    """Whether the float32 file gives ONNX Runtime's outputs on seeded inputs (a layout error is gross);
    False when ONNX Runtime cannot run the model."""
    from ai_edge_litert.interpreter import Interpreter

    ran = onnxruntime_outputs(onnx_path, specs)
    if ran is None:
        return False
    feeds, reference = ran
    inputs, outputs = layouts
    try:
        runner = Interpreter(model_path=str(tflite_path)).get_signature_runner()
        got = runner(**{t.name: convert_layout(feeds[t.name], s.layout, t.layout) for s, t in zip(specs, inputs)})
    except Exception:  # the file cannot be run: only the strict translation is trusted
        return False
    for out in outputs:
        mine = convert_layout(np.asarray(got[out.name]), out.layout, FROM_CHANNELS_LAST.get(out.layout, out.layout))
        ref = np.asarray(reference[out.name])
        if mine.shape != ref.shape or not np.allclose(
            mine, ref, rtol=0, atol=1e-3 * max(1.0, float(np.nanmax(np.abs(ref), initial=0))), equal_nan=True
        ):
            return False
    return True


def _write_variants(
    out_dir: Path, onnx_path: Path, variants, samples: dict[str, np.ndarray], mixed: MixedTarget, log_path: Path
) -> dict:
    """Each variant's file from the SavedModel in out_dir: {variant: path, "mixed": int8_mixed record}."""
    from edgepipe.exporters.tflite_convert import calibration_feeds

    written: dict = {"fp32": out_dir / "model_fp32.tflite"}
    feeds: tuple = ()
    with output_to_log(log_path):
        for variant in [v for v in variants if v != "fp32"]:
            path = out_dir / f"model_{variant}.tflite"
            calibrated = f", calibrated on {len(next(iter(samples.values())))} samples" if samples else ""
            step(f"export: writing {path.name}{calibrated if VARIANTS[variant].calibrated else ''}")
            if variant == "int8_mixed":
                written["mixed"] = _write_mixed(out_dir, path, samples, mixed, onnx_path, log_path)
            else:
                if VARIANTS[variant].calibrated and not feeds:
                    feeds = calibration_feeds(onnx_path.name, samples, signature_details(written["fp32"])[0])
                path.write_bytes(_converted(out_dir, variant, feeds, onnx_path, log_path))
            _check_scales(path, variant, onnx_path)
            written[variant] = path
    return written


def _check_scales(path: Path, variant: str, onnx_path: Path) -> None:
    """Refuse a quantized file that calibration gave a sentinel's range: TFLite aborts the process on some."""
    wrong = sentinel_scaled_tensors(path) if VARIANTS[variant].calibrated else []
    if wrong:
        raise ExportError(
            f"{onnx_path.name} -> {variant}: calibration gave tensor(s) {', '.join(wrong[:3])}"
            f"{' ...' if len(wrong) > 3 else ''} a range no real activation has (a padding or masking value "
            "such as float32's lowest reached it), which rounds every value there to zero; keep padding and mask "
            "values within the activations' range in the model, or choose fp32, fp16 or dynamic"
        )


def _converted(out_dir: Path, variant: str, feeds: tuple, onnx_path: Path, log_path: Path) -> bytes:
    from edgepipe.exporters.tflite_convert import convert_variant

    try:
        return convert_variant(out_dir, variant, feeds)
    except Exception as exc:  # the converter raises several types; all mean the same to a user
        first = first_line(exc) or type(exc).__name__
        raise ExportError(
            f"{onnx_path.name} -> {variant}: TFLite conversion failed: {first} (details in {log_path})"
        ) from None


def _write_mixed(
    out_dir: Path, path: Path, samples: dict[str, np.ndarray], mixed: MixedTarget, onnx_path: Path, log_path: Path
) -> dict:
    """The int8 model that keeps the fewest layers in float32 to reach the target, and how they were chosen."""
    from edgepipe.exporters.sensitivity import export_to_floor

    losses, choice = export_to_floor(
        out_dir, samples, path, log_path, mixed.min_sqnr_db, mixed.max_float_layers, onnx_path
    )
    return {"sensitivity": tuple(losses), "kept_float": choice.kept_float, "mixed_choice": choice}


def _builtin_only(path: Path, variant: str, onnx_path: Path, allow_flex: bool) -> tuple[str, ...]:
    """The file's non-builtin ops, which fail the export unless allow_flex."""
    needs = custom_ops(path)
    if needs and not allow_flex:
        raise ExportError(
            f"{onnx_path.name} -> {variant}: the TFLite model needs non-builtin op(s) "
            f"{_describe_custom_ops(path, onnx_path)}, which a stock TFLite runtime cannot run; "
            "rewrite the model to avoid them or pass --allow-flex"
        )
    return tuple(needs)


def _describe(path: Path, variant: str, target: Path, reference: tuple, needs: tuple[str, ...]) -> TfliteExport:
    """A variant's record: the float32 file's (inputs, outputs) layouts, this file's dtypes and quantization."""
    in_details, out_details = signature_details(path)
    inputs = _as_written(path, variant, reference[0], in_details)
    outputs = _as_written(path, variant, reference[1], out_details)
    quant = tuple(
        TensorQuant(name, role, np.dtype(d["dtype"]).name, float(d["quantization"][0]), int(d["quantization"][1]))
        for role, details in (("input", in_details), ("output", out_details))
        for name, d in details.items()
        if d["quantization"][0] != 0
    )
    return TfliteExport(
        target,
        variant,
        inputs,
        tuple(o.name for o in outputs),
        needs,
        outputs,
        quant,
        op_histogram=op_histogram(path),
        size_split=file_composition(path),
    )


def _as_written(path: Path, variant: str, reference: tuple[InputSpec, ...], details: dict) -> tuple[InputSpec, ...]:
    """Each tensor as this variant's file has it; a float tensor must carry the variant's I/O dtype.

    The dtype check pins which onnx2tf file is which variant: should a later onnx2tf name its
    files differently, the export fails instead of shipping float I/O under the name int8.
    """
    expected = VARIANTS[variant].io_dtype
    written = tuple(
        InputSpec(
            s.name, tuple(int(x) for x in details[s.name]["shape"]), np.dtype(details[s.name]["dtype"]).name, s.layout
        )
        for s in reference
        if s.name in details
    )
    wrong = [
        f"{w.name!r} is {w.dtype} {w.shape}"
        for w, s in zip(written, reference)
        if w.shape != s.shape or (s.dtype.startswith("float") and w.dtype != expected)
    ]
    if wrong or len(written) != len(reference):
        raise ExportError(
            f"{path.name} is not the {variant} model expected ({expected} I/O in the float32 model's "
            f"shapes): {', '.join(wrong) or 'tensors missing from its signature'}"
        )
    return written


def _run_onnx2tf(onnx_path: Path, cind: list, keep_shape: list[str], log_path: Path, strict: bool):
    """onnx2tf's graph translation only: the Keras model, before onnx2tf writes any file."""
    try:
        with output_to_log(log_path), contextlib.chdir(onnx_path.parent):
            import onnx2tf  # heavy: loads TensorFlow, which logs to fd 2 on import

            from edgepipe.exporters.onnx2tf_fixes import translator_fixes

            with translator_fixes():
                return onnx2tf.convert(
                    input_onnx_file_path=str(onnx_path),
                    output_folder_path=str(onnx_path.parent / "onnx2tf"),
                    custom_input_op_name_np_data_path=cind or None,
                    keep_shape_absolutely_input_names=keep_shape or None,
                    # edgepipe writes the files (exporters.tflite_convert): onnx2tf's own writing spends
                    # minutes serialising Keras metadata, and without it grouped convolutions stay one op.
                    disable_model_save=True,
                    # _simplify already ran onnxsim in-process; onnx2tf's own run depends on
                    # finding the onnxsim executable on PATH, which made results vary by shell.
                    not_use_onnxsim=True,
                    disable_strict_mode=not strict,
                    non_verbose=True,
                )
    except SystemExit as exc:  # onnx2tf reports its errors with sys.exit(1)
        raise ExportError(
            f"onnx2tf could not convert {onnx_path.name} (exit {exc.code}){_failed_node(onnx_path, log_path)}"
            f"; see {log_path}"
        ) from None
    except Exception as exc:
        op = exc.name.removeprefix("onnx2tf.ops.") if isinstance(exc, ModuleNotFoundError) and exc.name else None
        if op and exc.name.startswith("onnx2tf.ops."):
            nodes = [n.name or "(unnamed)" for n in _onnx_nodes(onnx_path) if n.op_type == op]
            raise ExportError(
                f"{onnx_path.name}: ONNX op {op} has no TFLite conversion in onnx2tf "
                f"(node(s) {', '.join(nodes) or '?'}); replace it in the model"
            ) from None
        first = first_line(exc)
        raise ExportError(
            f"onnx2tf failed on {onnx_path.name}{_failed_node(onnx_path, log_path)}: "
            f"{type(exc).__name__}: {first[:300]}"
            f" (details in {log_path})"
        ) from exc


def _simplify(path: Path, log_path: Path) -> None:
    """Run onnxsim in place when it succeeds and its own check passes; otherwise keep the graph."""
    import onnx
    import onnxsim

    try:
        with output_to_log(log_path):
            simplified, ok = onnxsim.simplify(onnx.load(str(path)))
    except Exception as exc:  # onnxsim fails on some valid graphs; conversion can still work
        with open(log_path, "a") as log:
            log.write(f"edgepipe: onnxsim skipped: {type(exc).__name__}: {exc}\n")
        return
    if ok:
        onnx.save(simplified, str(path))


def _fix_untranslatable(path: Path, log_path: Path) -> None:
    """Rewrite, in the private copy, ONNX ops onnx2tf cannot translate (the ledger checks the result)."""
    import onnx

    from edgepipe.exporters.onnx_channels_first import channels_first_blocks
    from edgepipe.exporters.onnx_fixes import (
        batchnorm_between_reshapes,
        canonical_gelu,
        decompose_reduce_l2,
        padded_max_pools,
        spelt_hard_swish,
    )

    model = onnx.load(str(path))
    counts = {
        "ReduceL2 node(s) rewritten as Sqrt(ReduceSumSquare)": decompose_reduce_l2(model),
        # before the GELU respelling, whose divisor is a Constant node, not an initializer
        "channels-last block(s) between transposes rewritten channels-first": channels_first_blocks(model),
        "exact GELU(s) respelt as the chain onnx2tf makes one GELU": canonical_gelu(model),
        "BatchNorm(s) between reshapes applied on the last axis instead": batchnorm_between_reshapes(model),
        "HardSwish(es) spelt as the chain TFLite makes one HARD_SWISH": spelt_hard_swish(model),
        "padded MaxPool(s) given an explicit Pad (zeros or edge values, not float32's lowest)": padded_max_pools(model),
    }
    if any(counts.values()):
        onnx.save(model, str(path))
        with open(log_path, "a") as log:
            log.writelines(f"edgepipe: {count} {what}\n" for what, count in counts.items() if count)


def _onnx_nodes(onnx_path: Path) -> list:
    import onnx

    return list(onnx.load(str(onnx_path)).graph.node)


def _failed_node(onnx_path: Path, log_path: Path) -> str:
    """' at node NAME (OpType)' from the last node onnx2tf names in its error log, or ''."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace")) if log_path.exists() else ""
    names = re.findall(r"onnx_op_name: (\S+)", text)
    if not names:
        return ""
    types = {n.name: n.op_type for n in _onnx_nodes(onnx_path)}
    return f" at node {names[-1]} ({types.get(names[-1], '?')})"


def _describe_custom_ops(tflite_path: Path, onnx_path: Path) -> str:
    """'FlexErf (TFLite tensors a, b; ONNX Erf nodes n1, n2)' for each custom op."""
    nodes_by_type: dict[str, list[str]] = {}
    for node in _onnx_nodes(onnx_path):
        nodes_by_type.setdefault(node.op_type, []).append(node.name or "(unnamed)")
    parts = []
    for op, tensors in sorted(custom_op_nodes(tflite_path).items()):
        tf_op = op.removeprefix("Flex")
        onnx_type = next((t for t in (tf_op, re.sub(r"V\d+$", "", tf_op)) if t in nodes_by_type), None)
        where = f"TFLite tensors {', '.join(tensors[:4])}{' ...' if len(tensors) > 4 else ''}"
        if onnx_type:
            where += f"; ONNX {onnx_type} nodes {', '.join(nodes_by_type[onnx_type][:4])}"
        parts.append(f"{op} ({where})")
    return ", ".join(parts)


def _in_tf_layout(specs: tuple[InputSpec, ...], calibration: dict, kept: set[str]) -> dict[str, np.ndarray]:
    """Calibration samples in the layout the TF model takes (channels-last unless the input's shape was kept)."""
    # Calibration ranges are taken per tensor: samples fed in the wrong layout skew them.
    return {
        spec.name: convert_layout(
            calibration[spec.name], spec.layout, spec.layout if spec.name in kept else channels_last(spec).layout
        ).astype(spec.dtype)
        for spec in specs
        if spec.name in calibration
    }


def _write_custom_inputs(work_dir: Path, specs: tuple[InputSpec, ...], samples: dict[str, np.ndarray]) -> list:
    """onnx2tf's -cind entries: [name, .npy of the samples in the TF model's layout, mean, std]."""
    entries = []
    for spec in specs:
        if spec.name not in samples:
            continue
        path = work_dir / f"cind_{len(entries)}.npy"
        np.save(path, samples[spec.name])
        # The data is already normalised as the model expects it: identity mean and std.
        entries.append([spec.name, str(path), np.zeros(1, np.float32), np.ones(1, np.float32)])
    return entries


def _write_offline_sample(work_dir: Path, specs: tuple[InputSpec, ...], calibration: dict) -> None:
    """Place onnx2tf's sample image file locally so it never downloads it."""
    if not all(len(s.shape) == 4 and s.shape[1] == 3 for s in specs):
        return
    first = specs[0]
    if first.name in calibration:
        nhwc = convert_layout(calibration[first.name].astype(np.float32), first.layout, "NHWC")
        reps = -(-20 // len(nhwc))
        sample = np.tile(nhwc, (reps, 1, 1, 1))[:20]
        rows = np.linspace(0, sample.shape[1] - 1, 128).round().astype(int)
        cols = np.linspace(0, sample.shape[2] - 1, 128).round().astype(int)
        sample = sample[:, rows][:, :, cols]
    else:
        sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work_dir / _SAMPLE_FILE, np.ascontiguousarray(sample, dtype=np.float32))
