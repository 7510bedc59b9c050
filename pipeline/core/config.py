"""Job configuration: TOML validated by pydantic into frozen models, errors naming the key path."""

from __future__ import annotations

from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, PositiveInt, model_validator

from edgepipe.exporters.quantize import ORT_VARIANTS, VARIANTS
from edgepipe.models.registry import DEFAULT_THREADS
from edgepipe.pipeline.core.toml_config import STRICT, checked, parse_toml, read_toml

# Variant names are declared once, by the exporters; a name they do not know is a config error.
TfliteVariant = Literal[tuple(VARIANTS)]
OrtVariant = Literal[tuple(ORT_VARIANTS)]
FUNCTION_REF = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"  # 'pkg.module:function'


class Names(Enum):
    """Marks a setting whose value names something a result is made from: the cache key of a stage that
    declares the setting then holds a fingerprint of what it names too (pipeline/core/settings_key.py),
    so that new contents under the same name are not taken for the old."""

    CONTENT = "a file, a folder or 'pkg.module:function'"
    RUN = "a run directory or its manifest.json"


class JobSection(BaseModel):
    model_config = STRICT
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: Annotated[str, Names.CONTENT]  # a zoo name, an .onnx file, or a user factory 'pkg.module:factory'
    seed: int = 0
    inputs: tuple[str, ...] = ()  # example input shapes of a user factory, e.g. "1x3x32x32:float32"
    weights: Annotated[str | None, Names.CONTENT] = None  # state dict for a user factory, loaded with weights_only=True


class TrainSection(BaseModel):
    """Training overrides; a key left out takes the zoo model's own default."""

    model_config = STRICT
    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    weight_decay: float | None = Field(None, ge=0)
    patience: int | None = Field(None, ge=1)
    class_weighting: bool | None = None
    grad_clip_norm: float | None = Field(None, gt=0)
    lr_schedule: Literal["none", "step", "cosine"] | None = None
    lr_step_size: int | None = Field(None, ge=1)
    lr_gamma: float | None = Field(None, gt=0, le=1)
    augment: bool | None = None
    optimizer: Literal["adam", "adamw", "sgd"] | None = None
    threads: int = Field(DEFAULT_THREADS, ge=1)  # more threads than free cores collapse
    # A user model's labelled training data: an .npz (an array per input name plus 'labels'), a folder of
    # images with one subfolder per class (read as [export.images] says) or 'pkg.module:function' yielding
    # (sample, label) pairs. val_fraction of it (seeded) is held back for early stopping.
    data: Annotated[str | None, Names.CONTENT] = Field(None, min_length=1)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    # 'pkg.module:function' (outputs, targets) -> scalar loss tensor; default: cross-entropy on class labels
    loss: Annotated[str | None, Names.CONTENT] = Field(None, pattern=FUNCTION_REF)


class PruneTarget(BaseModel):
    """One global goal for channel pruning, as a fraction of the unpruned model's figure."""

    model_config = STRICT
    macs: float | None = Field(None, gt=0, lt=1)
    params: float | None = Field(None, gt=0, lt=1)
    latency: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_goal(self) -> PruneTarget:
        given = [k for k in ("macs", "params", "latency") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of macs, params or latency, e.g. prune_target = {macs = 0.5}")
        return self

    @property
    def goal(self) -> tuple[str, float]:
        """(what, fraction)."""
        return next((k, v) for k in ("macs", "params", "latency") if (v := getattr(self, k)) is not None)


class CompressSection(BaseModel):
    """Distillation, then pruning, of a trained zoo model; both off by default."""

    model_config = STRICT
    distill: bool = False
    student_width: float = Field(0.5, gt=0, le=1)  # a narrower build of the zoo model ...
    student: Annotated[str | None, Names.CONTENT] = Field(None, pattern=FUNCTION_REF)  # ... or 'pkg.module:factory'
    temperature: float = Field(4.0, gt=0)
    distill_alpha: float = Field(0.7, ge=0, le=1)  # weight of the teacher's soft targets; the rest is the labels'
    distill_epochs: int | None = Field(None, ge=1)  # default: the model's own training epochs
    prune: Literal["none", "magnitude", "channels"] = "none"
    prune_amount: float = Field(0.5, gt=0, lt=1)  # fraction of weights (magnitude) or of channels per group
    # channels: prune until the model keeps this fraction of its MACs or parameters (instead of prune_amount),
    # or until its fp32 TFLite file runs in this fraction of the unpruned file's host time
    prune_target: PruneTarget | None = None
    prune_skip: tuple[str, ...] = ()  # module names (as named_modules() gives them) whose channels stay
    prune_steps: int = Field(1, ge=1)  # prune in this many smaller steps, recovering after each
    # how pruned accuracy is won back: on the labels, from the unpruned model's outputs (no labels needed), or both
    recovery: Literal["finetune", "distill", "both"] = "both"
    finetune_epochs: int = Field(20, ge=0)
    finetune_lr: float | None = Field(None, gt=0)  # default: the model's training learning rate
    qat: bool = False  # quantization-aware fine-tune, last: for models whose post-training int8 loses too much
    qat_epochs: int = Field(10, ge=1)
    qat_lr: float | None = Field(None, gt=0)  # default: a tenth of the model's training learning rate

    @property
    def active(self) -> bool:
        """True when the job asks for any compression."""
        return self.distill or self.prune != "none" or self.qat

    @property
    def needs_data(self) -> bool:
        """True when a step trains (distillation, QAT, recovery after pruning); pruning alone needs none."""
        return self.distill or self.qat or (self.prune != "none" and self.finetune_epochs > 0)


class ImageSection(BaseModel):
    """How a folder of images becomes model inputs: pixels / pixel_scale, then (x - mean) / std per channel."""

    model_config = STRICT
    pixel_scale: float = Field(255.0, gt=0)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[Annotated[float, Field(gt=0)], ...] = (1.0,)
    # where the channel axis of the image input sits; "auto": as its recorded layout (NCHW for PyTorch models)
    layout: Literal["auto", "NCHW", "NHWC"] = "auto"


class ExportSection(BaseModel):
    model_config = STRICT
    variants: tuple[TfliteVariant, ...] = ("fp32",)
    # int8_mixed: at most this many layers stay float32 to reach [validate] quantized_min_sqnr_db
    mixed_float_layers: int = Field(4, ge=1)
    # int8_fast: where the op types slower in int8 are measured, "host" or a phone's serial (timed with
    # XNNPACK at [profile] threads; a phone with [profile] benchmark_binary)
    int8_target: str = Field("host", min_length=1)
    onnx_variants: tuple[OrtVariant, ...] = ()  # ONNX Runtime quantized models, for ONNX deployments
    opset: int = Field(18, ge=13, le=23)
    calibration_samples: int = Field(200, ge=1)
    # The user's calibration data: an .npz (an array per input name, first axis the samples), a folder of
    # images ([export.images] says how to read them) or 'pkg.module:function' returning an iterable of samples.
    # Default: a zoo model's training split; .onnx files and factories then have none.
    calibration: Annotated[str | None, Names.CONTENT] = Field(None, min_length=1)
    images: ImageSection = ImageSection()
    allow_flex: bool = False
    # seconds the converter process may take before it is stopped and the export fails (a hung onnx2tf)
    converter_timeout_s: float = Field(3600.0, gt=0)
    # where ONNX -> TFLite runs: "child" (a second process that loads TensorFlow while PyTorch exports:
    # faster, but two processes hold memory at once), "in_process" (one process: a lower peak, slower),
    # or "auto" (a child when this process has not loaded TensorFlow and has a second core)
    converter: Literal["auto", "child", "in_process"] = "auto"


class ValidateSection(BaseModel):
    """Tolerances per kind of artifact: float32 (and ONNX, torch), float16 weights, quantized."""

    model_config = STRICT
    rel_tolerance: float = Field(1e-4, gt=0)  # max abs error as a fraction of each output's max magnitude
    max_metric_drop: float = Field(0.005, ge=0)
    fp16_rel_tolerance: float = Field(1e-2, gt=0)  # fp16 (its metric drop is held to max_metric_drop)
    # dynamic, int8, int8_float_io, int16x8 and the ONNX Runtime variants: judged by SQNR, not their worst value
    quantized_min_sqnr_db: float = Field(20.0, gt=0)
    quantized_max_metric_drop: float = Field(0.01, ge=0)
    # .npz of validation inputs by name (ONNX layout); for models without a dataset
    inputs: Annotated[str | None, Names.CONTENT] = None
    # A user model's labelled evaluation set: an .npz with an array per input and 'labels', or 'pkg.module:function'
    # returning (sample, label) pairs; gives every artifact the task metric, held to max_metric_drop.
    eval_data: Annotated[str | None, Names.CONTENT] = Field(None, min_length=1)
    eval_metric: Literal["accuracy"] = "accuracy"  # arg-max class over the output's class axis
    # A user model's own task metric, 'pkg.module:function' (outputs, labels) -> float or {name: float};
    # the function's `higher_is_better` attribute (default True) says which way a drop goes.
    metric: Annotated[str | None, Names.CONTENT] = Field(None, pattern=FUNCTION_REF)


class ProfileSection(BaseModel):
    model_config = STRICT
    runtimes: tuple[Literal["torch", "onnxruntime", "tflite"], ...] = ("torch", "onnxruntime", "tflite")
    # "host", a phone's serial, serials joined by commas, or "all": TFLite artifacts then also run on the phones
    device: str = Field("host", min_length=1)
    threads: int = Field(1, ge=1)
    warmup_runs: int = Field(10, ge=0)
    warmup_seconds: float = Field(0.2, ge=0)
    min_runs: int = Field(100, ge=1)
    min_seconds: float = Field(1.0, ge=0)
    max_seconds: float = Field(10.0, gt=0)
    xnnpack: bool = True  # false: TFLite's built-in kernels only, as on a runtime built without the delegate
    # ONNX Runtime graph optimisation, the names of profilers.runtimes.ORT_OPTIMIZATION
    ort_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    op_profile: bool = True  # time by op type, for TFLite and ONNX Runtime artifacts
    op_profile_runs: int = Field(200, ge=1)
    throughput_batches: tuple[PositiveInt, ...] = (1, 4, 16, 64)  # empty: no throughput sweep
    throughput_seconds: float = Field(0.3, gt=0)  # per batch x threads point
    # "format:variant" references: every host artifact is also timed interleaved with each in one
    # process, so relative latency budgets compare under the same machine state
    paired_with: tuple[str, ...] = ()
    # phones only: TFLite's benchmark_model for the phone's ABI (else the user's ~/.config/edgepipe/config.toml)
    benchmark_binary: Annotated[str | None, Names.CONTENT] = None
    cpus: str | None = None  # phones: pin to "big", "little", "all" or a hex mask
    delegate: Literal["cpu", "xnnpack", "gpu", "nnapi"] = "cpu"
    suspend_charging: bool = False  # phones: stop USB charging while energy is measured (restored after)


class GateSection(BaseModel):
    """Budgets applied as the run's last stage; a failed check makes `edgepipe run` exit 1."""

    model_config = STRICT
    # a budgets.toml (see examples/budgets.toml) ...
    budgets: Annotated[str | None, Names.CONTENT] = Field(None, min_length=1)
    budget: tuple[dict, ...] = ()  # ... or [[gate.budget]] tables written here, as in a budgets file
    baseline: Annotated[str | None, Names.RUN] = None  # an older run directory or manifest.json to compare with
    strict: bool = False  # a budget that selects nothing is an error; so is a check that could not be measured

    @model_validator(mode="after")
    def _one_source(self) -> GateSection:
        if (self.budgets is None) == (not self.budget):
            raise ValueError('give either budgets = "budgets.toml" or [[gate.budget]] tables, not both or neither')
        return self


class JobConfig(BaseModel):
    """A whole job; every section but [job] has defaults."""

    model_config = STRICT
    job: JobSection
    train: TrainSection = TrainSection()
    compress: CompressSection = CompressSection()
    export: ExportSection = ExportSection()
    validate_: ValidateSection = Field(ValidateSection(), alias="validate")
    profile: ProfileSection = ProfileSection()
    gate: GateSection | None = None

    def to_toml_dict(self) -> dict:
        """Plain dict keyed as in the TOML file."""
        return self.model_dump(mode="json", by_alias=True)


DEFAULT_JOB = "default_job.toml"


def default_job_text() -> str:
    """The embedded default job, as shipped in the package."""
    return resources.files("edgepipe.pipeline").joinpath(DEFAULT_JOB).read_text()


def load_job(path: Path | None) -> JobConfig:
    """Read and validate a job file (the embedded default when path is None)."""
    if path is None:
        return parse_job(default_job_text(), f"<embedded {DEFAULT_JOB}>")
    data = read_toml(path, "run 'edgepipe run --print-config' for a template")
    return validate_job(data, str(path))


def parse_job(text: str, source: str) -> JobConfig:
    """Parse TOML text and validate it; one ConfigError lists every problem by key path."""
    return validate_job(parse_toml(text, source), source)


def validate_job(data: dict, source: str) -> JobConfig:
    """Validate a parsed job; one ConfigError lists every problem by key path."""
    return checked(JobConfig, data, source)
