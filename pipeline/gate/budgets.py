"""budgets.toml: what a model may cost, read strictly.

Every figure with a dimension carries its unit ("160 KiB", "2.5 ms", "120 MB"), so nobody has to
guess whether 2 means seconds or milliseconds. A latency budget is either absolute or relative to
another artifact of the same run on the same device: `max_p90 = {ratio = 1.15, of = "tflite:fp32"}`.
The file is checked by the pydantic models below (`BudgetsFile`); every mistake is a ConfigError
naming the key path (exit 2). `load_budgets` turns a checked file into `Budgets`, which the gate reads.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, PlainValidator, StrictBool, model_validator

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.core.toml_config import STRICT, checked, read_toml

SIZE_UNITS = {"B": 1, "KB": 1e3, "KiB": 2**10, "MB": 1e6, "MiB": 2**20, "GB": 1e9, "GiB": 2**30}
TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}  # to milliseconds
MEMORY_UNITS = {k: v / 2**20 for k, v in SIZE_UNITS.items()}  # to MiB, as profiles record peak RSS
FRACTION_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
LATENCY_KEYS = ("max_p50", "max_p90", "max_p99")
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Relative:
    """A latency limit as a multiple of another artifact's, e.g. 1.15 x tflite:fp32."""

    ratio: float
    of: str  # "format:variant"


@dataclass(frozen=True)
class Budget:
    """One [[budget]]: which artifacts it selects (globs) and the limits it sets on them."""

    name: str
    model: str = "*"
    format: str = "*"
    variant: str = "*"
    device: str = "*"
    max_size_bytes: float | None = None
    latency_ms: dict[str, float | Relative] = field(default_factory=dict)  # "p50" -> limit
    max_peak_memory_mb: float | None = None
    min_metric: dict[str, float] = field(default_factory=dict)
    max_metric_drop: dict[str, float] = field(default_factory=dict)
    max_error: float | None = None
    min_sqnr_db: float | None = None
    min_inferences_per_joule: float | None = None
    require_energy: bool = False
    written_units: dict[str, str] = field(default_factory=dict)  # "max_size" -> "KiB", as the file wrote it

    def selects(self, model: str, fmt: str, variant: str, device: str) -> bool:
        """Whether this budget applies to one artifact on one device."""
        return all(
            fnmatch.fnmatchcase(value, pattern)
            for value, pattern in (
                (model, self.model),
                (fmt, self.format),
                (variant, self.variant),
                (device, self.device),
            )
        )


@dataclass(frozen=True)
class Tolerances:
    """How much worse than a baseline counts as noise: latency relative, size relative, metric absolute."""

    latency: float = 0.10
    size: float = 0.0
    metric: float = 0.0


@dataclass(frozen=True)
class Budgets:
    """A whole budgets file."""

    budgets: tuple[Budget, ...]
    tolerances: Tolerances = Tolerances()
    strict: bool = False


def _quantity(units: dict, example: str):
    """A parser: '2.5 ms' -> the number in the units' base; a bare number, an unknown unit or a negative is refused."""

    def parse(value) -> float:
        if not isinstance(value, str):
            raise ValueError(f"give a unit, e.g. {example} (units: {', '.join(units)})")
        if value.strip().startswith("-"):
            raise ValueError("a limit cannot be negative")
        m = _QUANTITY.match(value)
        if not m or m.group(2) not in units:
            unit = m.group(2) if m else value
            raise ValueError(f"unknown or wrong unit {unit!r} here; use one of {', '.join(units)}, e.g. {example}")
        return float(m.group(1)) * units[m.group(2)]

    return parse


def _limit(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    if value < 0:
        raise ValueError("a limit cannot be negative")
    return float(value)


def _latency(value) -> float | Relative:
    if not isinstance(value, dict):
        return _time(value)
    unknown = sorted(set(value) - {"ratio", "of"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; a relative limit has ratio and of")
    if "ratio" not in value or "of" not in value:
        raise ValueError('a relative limit needs both ratio and of, e.g. {ratio = 1.15, of = "tflite:fp32"}')
    ratio, of = value["ratio"], value["of"]
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, float))
        or ratio <= 0
        or not isinstance(of, str)
        or not (of == "calibration" or re.fullmatch(r"[\w.-]+:[\w.-]+", of))
    ):
        raise ValueError(
            "ratio must be above 0 and of a 'format:variant' such as 'tflite:fp32', or "
            f"'calibration' (got ratio {ratio!r}, of {of!r})"
        )
    return Relative(float(ratio), of)


_time = _quantity(TIME_UNITS, "'2.5 ms'")
Limit = Annotated[float, PlainValidator(_limit)]
Size = Annotated[float, PlainValidator(_quantity(SIZE_UNITS, "'160 KiB'"))]
Memory = Annotated[float, PlainValidator(_quantity(MEMORY_UNITS, "'120 MB'"))]
Latency = Annotated[float | Relative, PlainValidator(_latency)]
Selector = Annotated[str, Field(min_length=1)]


class MetricLimits(BaseModel):
    """min_metric / max_metric_drop: a limit per task metric edgepipe measures."""

    model_config = STRICT
    accuracy: Limit | None = None
    precision: Limit | None = None
    recall: Limit | None = None
    f1: Limit | None = None
    roc_auc: Limit | None = None
    psnr_db: Limit | None = None

    def given(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class BudgetEntry(BaseModel):
    """One [[budget]] table as written in the file (sizes, times and memory still carry their units)."""

    model_config = STRICT
    name: Selector | None = None
    model: Selector = "*"
    format: Selector = "*"
    variant: Selector = "*"
    device: Selector = "*"
    max_size: Size | None = None
    max_p50: Latency | None = None
    max_p90: Latency | None = None
    max_p99: Latency | None = None
    max_peak_memory: Memory | None = None
    min_metric: MetricLimits = MetricLimits()
    max_metric_drop: MetricLimits = MetricLimits()
    max_error: Limit | None = None
    min_sqnr_db: Limit | None = None
    min_inferences_per_joule: Limit | None = None
    require_energy: StrictBool | None = None  # default: the file's require_energy

    @model_validator(mode="after")
    def _meetable(self) -> BudgetEntry:
        """Limits no artifact could ever meet, or that say nothing."""
        for metric, low in self.min_metric.given().items():
            if metric in FRACTION_METRICS and low > 1:
                raise ValueError(f"min_metric.{metric} = {low:g}: {metric} is a fraction in [0, 1]; write 0.95, not 95")
        for key in LATENCY_KEYS:
            limit = getattr(self, key)
            if isinstance(limit, Relative) and limit.ratio < 1 and (self.format, self.variant) == _split(limit.of):
                raise ValueError(
                    f"{key}: at most {limit.ratio:g}x itself ({limit.of}) can never pass; "
                    "a ratio against the same artifact must be at least 1"
                )
        return self

    def sets_a_limit(self, require_energy: bool) -> bool:
        """Whether any limit is set (a budget that only selects says nothing)."""
        limits = (*(getattr(self, k) for k in LATENCY_KEYS), self.max_size, self.max_peak_memory, self.max_error)
        return (
            any(v is not None for v in (*limits, self.min_sqnr_db, self.min_inferences_per_joule))
            or bool(self.min_metric.given() or self.max_metric_drop.given())
            or (require_energy if self.require_energy is None else self.require_energy)
        )


class Baseline(BaseModel):
    """[baseline]: how much worse than the baseline run counts as noise."""

    model_config = STRICT
    latency_tolerance: Limit = 0.10
    size_tolerance: Limit = 0.0
    metric_tolerance: Limit = 0.0


class BudgetsFile(BaseModel):
    """A whole budgets.toml."""

    model_config = STRICT
    budget: list[BudgetEntry]
    baseline: Baseline = Baseline()
    strict: StrictBool = False  # a budget that selects nothing is an error
    require_energy: StrictBool = False  # every budget needs a measured energy figure

    @model_validator(mode="before")
    @classmethod
    def _has_budgets(cls, data):
        entries = data.get("budget") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError("expected one or more [[budget]] tables")
        return data

    @model_validator(mode="after")
    def _every_budget_limits(self) -> BudgetsFile:
        for i, entry in enumerate(self.budget):
            if not entry.sets_a_limit(self.require_energy):
                raise ValueError(
                    f"budget[{i}] ('{entry.name or 'unnamed'}') sets no limit; add e.g. max_size = \"160 KiB\""
                )
        return self


def load_budgets(path: Path) -> Budgets:
    """Read and check a budgets file; a ConfigError names the first wrong key."""
    if not Path(path).is_file():
        raise ConfigError(f"budgets file {path} not found; check the path given to --budgets")
    return parse_budgets(read_toml(path, "check the path given to --budgets"), str(path))


def job_budgets(gate) -> Budgets:
    """The budgets of a job's [gate] section: its budgets file, or the [[gate.budget]] tables written in the job."""
    if gate.budgets is not None:
        return load_budgets(Path(gate.budgets))
    return parse_budgets({"budget": [dict(b) for b in gate.budget]}, "[gate] of the job")


def parse_budgets(data: dict, where: str) -> Budgets:
    """Budgets from parsed TOML; `where` names the file in errors."""
    file = checked(BudgetsFile, data, where)
    b = file.baseline
    tolerances = Tolerances(b.latency_tolerance, b.size_tolerance, b.metric_tolerance)
    budgets = (_budget(e, file.require_energy, _units(raw)) for e, raw in zip(file.budget, data["budget"]))
    return Budgets(tuple(budgets), tolerances, file.strict)


def _units(table: dict) -> dict[str, str]:
    """The unit each quantity of one [[budget]] table was written in, to echo limits as the user wrote them."""
    quantities = {key: value for key, value in table.items() if key in ("max_size", "max_peak_memory", *LATENCY_KEYS)}
    return {
        key: m.group(2) for key, value in quantities.items() if isinstance(value, str) and (m := _QUANTITY.match(value))
    }


def _budget(entry: BudgetEntry, default_energy: bool, written_units: dict[str, str]) -> Budget:
    selectors = {key: getattr(entry, key) for key in ("model", "format", "variant", "device")}
    return Budget(
        entry.name or "/".join(selectors.values()),
        **selectors,
        max_size_bytes=entry.max_size,
        latency_ms={key[4:]: getattr(entry, key) for key in LATENCY_KEYS if getattr(entry, key) is not None},
        max_peak_memory_mb=entry.max_peak_memory,
        min_metric=entry.min_metric.given(),
        max_metric_drop=entry.max_metric_drop.given(),
        max_error=entry.max_error,
        min_sqnr_db=entry.min_sqnr_db,
        min_inferences_per_joule=entry.min_inferences_per_joule,
        require_energy=default_energy if entry.require_energy is None else entry.require_energy,
        written_units=written_units,
    )


def _split(of: str) -> tuple[str, str]:
    fmt, _, variant = of.partition(":")
    return fmt, variant
