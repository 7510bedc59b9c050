"""budgets.toml: what a model may cost, read strictly.

Every figure with a dimension carries its unit ("160 KiB", "2.5 ms", "120 MB"), so nobody has to
guess whether 2 means seconds or milliseconds. A latency budget is either absolute or relative to
another artifact of the same run on the same device: `max_p90 = {ratio = 1.15, of = "tflite:fp32"}`.
Every mistake is a ConfigError naming the key path (exit 2).
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import ConfigError

SIZE_UNITS = {"B": 1, "KB": 1e3, "KiB": 2**10, "MB": 1e6, "MiB": 2**20, "GB": 1e9, "GiB": 2**30}
TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}  # to milliseconds
MEMORY_UNITS = {k: v / 2**20 for k, v in SIZE_UNITS.items()}  # to MiB, as profiles record peak RSS
FRACTION_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
METRICS = FRACTION_METRICS | {"psnr_db"}
LATENCY_KEYS = ("max_p50", "max_p90", "max_p99")
BUDGET_KEYS = {
    "name",
    "model",
    "format",
    "variant",
    "device",
    "max_size",
    *LATENCY_KEYS,
    "max_peak_memory",
    "min_metric",
    "max_metric_drop",
    "max_error",
    "min_sqnr_db",
    "min_inferences_per_joule",
    "require_energy",
}
BASELINE_KEYS = {"latency_tolerance", "size_tolerance", "metric_tolerance"}
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


def load_budgets(path: Path) -> Budgets:
    """Read and check a budgets file; a ConfigError names the first wrong key."""
    if not path.is_file():
        raise ConfigError(f"budgets file {path} not found; check the path given to --budgets")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_budgets(data, str(path))


def parse_budgets(data: dict, where: str) -> Budgets:
    """Budgets from parsed TOML; `where` names the file in errors."""
    _no_unknown(data, {"budget", "baseline", "strict", "require_energy"}, where)
    default_energy = _bool(data, "require_energy", where, False)
    entries = data.get("budget", [])
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: expected one or more [[budget]] tables")
    budgets = tuple(_budget(entry, f"{where}: budget[{i}]", default_energy) for i, entry in enumerate(entries))
    baseline = data.get("baseline", {})
    if not isinstance(baseline, dict):
        raise ConfigError(f"{where}: [baseline] must be a table of {', '.join(sorted(BASELINE_KEYS))}")
    _no_unknown(baseline, BASELINE_KEYS, f"{where}: baseline")
    tolerances = Tolerances(
        *(
            _number(baseline, key, f"{where}: baseline", default)
            for key, default in (("latency_tolerance", 0.10), ("size_tolerance", 0.0), ("metric_tolerance", 0.0))
        )
    )
    return Budgets(budgets, tolerances, _bool(data, "strict", where, False))


def _budget(entry: dict, where: str, default_energy: bool) -> Budget:
    _no_unknown(entry, BUDGET_KEYS, where)
    selectors = {key: _text(entry, key, where, "*") for key in ("model", "format", "variant", "device")}
    name = _text(entry, "name", where, "/".join(selectors[k] for k in ("model", "format", "variant", "device")))
    latency = {key[4:]: _latency(entry[key], f"{where}.{key}") for key in LATENCY_KEYS if key in entry}
    budget = Budget(
        name,
        **selectors,
        max_size_bytes=_quantity(entry, "max_size", where, SIZE_UNITS, "'160 KiB'"),
        latency_ms=latency,
        max_peak_memory_mb=_quantity(entry, "max_peak_memory", where, MEMORY_UNITS, "'120 MB'"),
        min_metric=_metrics(entry, "min_metric", where),
        max_metric_drop=_metrics(entry, "max_metric_drop", where),
        max_error=_number(entry, "max_error", where, None),
        min_sqnr_db=_number(entry, "min_sqnr_db", where, None),
        min_inferences_per_joule=_number(entry, "min_inferences_per_joule", where, None),
        require_energy=_bool(entry, "require_energy", where, default_energy),
    )
    _check_consistent(budget, where)
    return budget


def _check_consistent(budget: Budget, where: str) -> None:
    """Limits no artifact could ever meet, or that say nothing."""
    for metric, low in budget.min_metric.items():
        if metric in FRACTION_METRICS and low > 1:
            raise ConfigError(
                f"{where}.min_metric.{metric} = {low:g}: {metric} is a fraction in [0, 1]; write 0.95, not 95"
            )
    for key, limit in budget.latency_ms.items():
        if isinstance(limit, Relative) and limit.ratio < 1 and _self_reference(budget, limit.of):
            raise ConfigError(
                f"{where}.max_{key}: at most {limit.ratio:g}x itself ({limit.of}) can never pass; "
                "a ratio against the same artifact must be at least 1"
            )
    limits = [
        budget.max_size_bytes,
        budget.max_peak_memory_mb,
        budget.max_error,
        budget.min_sqnr_db,
        budget.min_inferences_per_joule,
    ]
    if (
        not budget.latency_ms
        and not budget.min_metric
        and not budget.max_metric_drop
        and all(v is None for v in limits)
        and not budget.require_energy
    ):
        raise ConfigError(f"{where} ('{budget.name}') sets no limit; add e.g. max_size = \"160 KiB\"")


def _self_reference(budget: Budget, of: str) -> bool:
    fmt, _, variant = of.partition(":")
    return budget.format == fmt and budget.variant == variant


def _latency(value, where: str) -> float | Relative:
    if isinstance(value, dict):
        _no_unknown(value, {"ratio", "of"}, where)
        if "ratio" not in value or "of" not in value:
            raise ConfigError(
                f'{where}: a relative limit needs both ratio and of, e.g. {{ratio = 1.15, of = "tflite:fp32"}}'
            )
        ratio = _number(value, "ratio", where, None)
        of = _text(value, "of", where, "")
        if ratio == 0 or not (of == "calibration" or re.fullmatch(r"[\w.-]+:[\w.-]+", of)):
            raise ConfigError(
                f"{where}: ratio must be above 0 and of a 'format:variant' such as 'tflite:fp32', or "
                f"'calibration' (got ratio {ratio}, of {of!r})"
            )
        return Relative(ratio, of)
    return _parse_quantity(value, where, TIME_UNITS, "'2.5 ms'")


def _quantity(entry: dict, key: str, where: str, units: dict, example: str) -> float | None:
    return _parse_quantity(entry[key], f"{where}.{key}", units, example) if key in entry else None


def _parse_quantity(value, where: str, units: dict, example: str) -> float:
    """'2.5 ms' -> the number in the units' base; a bare number, an unknown unit or a negative is an error."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r}: give a unit, e.g. {example} (units: {', '.join(units)})")
    m = _QUANTITY.match(value)
    if value.strip().startswith("-"):
        raise ConfigError(f"{where} = {value!r}: a limit cannot be negative")
    if not m or m.group(2) not in units:
        unit = m.group(2) if m else value
        raise ConfigError(
            f"{where} = {value!r}: unknown or wrong unit {unit!r} here; use one of {', '.join(units)}, e.g. {example}"
        )
    return float(m.group(1)) * units[m.group(2)]


def _metrics(entry: dict, key: str, where: str) -> dict[str, float]:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key}: expected a table such as {{accuracy = 0.95}}")
    for metric in value:
        if metric not in METRICS:
            raise ConfigError(f"{where}.{key}.{metric}: unknown metric; edgepipe measures {', '.join(sorted(METRICS))}")
    return {metric: _number(value, metric, f"{where}.{key}", None) for metric in value}


def _number(table: dict, key: str, where: str, default):
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{key} = {value!r}: expected a number")
    if value < 0:
        raise ConfigError(f"{where}.{key} = {value}: a limit cannot be negative")
    return float(value)


def _text(table: dict, key: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} = {value!r}: expected a non-empty string")
    return value


def _bool(table: dict, key: str, where: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} = {value!r}: expected true or false")
    return value


def _no_unknown(table: dict, known: set[str], where: str) -> None:
    import difflib

    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
