"""budgets.toml: units, selectors, relative limits, and one clear error for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepipe.models.shared.errors import ConfigError
from edgepipe.pipeline.gate.budgets import Relative, load_budgets, parse_budgets

ROOT = Path(__file__).resolve().parents[2]

# Each bad file, and the words its one-line error must contain.
BAD = {
    "unknown key": (
        '[[budget]]\nmax_sise = "1 KiB"\n',
        "budget[0].max_sise: unknown key; did you mean 'budget[0].max_size'?",
    ),
    "unknown metric": (
        "[[budget]]\nmin_metric = {acuracy = 0.9}\n",
        "budget[0].min_metric.acuracy: unknown key; did you mean 'budget[0].min_metric.accuracy'?",
    ),
    "wrong unit": ('[[budget]]\nmax_p90 = "3 MB"\n', "budget[0].max_p90 = '3 MB': unknown or wrong unit 'MB'"),
    "no unit": ("[[budget]]\nmax_size = 1000\n", "max_size = 1000: give a unit"),
    "negative size": ('[[budget]]\nmax_size = "-5 KiB"\n', "cannot be negative"),
    "negative number": ("[[budget]]\nmin_sqnr_db = -3\n", "min_sqnr_db = -3: a limit cannot be negative"),
    "accuracy as percent": ("[[budget]]\nmin_metric = {accuracy = 95}\n", "is a fraction in [0, 1]"),
    "ratio below itself": (
        '[[budget]]\nformat = "tflite"\nvariant = "fp32"\nmax_p90 = {ratio = 0.9, of = "tflite:fp32"}\n',
        "can never pass",
    ),
    "relative without of": ("[[budget]]\nmax_p90 = {ratio = 1.2}\n", "needs both ratio and of"),
    "relative bad target": ('[[budget]]\nmax_p90 = {ratio = 1.2, of = "fp32"}\n', "'format:variant'"),
    "no limit": ('[[budget]]\nvariant = "int8"\n', "sets no limit"),
    "no budget": ("strict = true\n", "expected one or more [[budget]] tables"),
    "not toml": ("[[budget]\n", "is not valid TOML"),
    "bad baseline key": (
        '[[budget]]\nmax_size = "1 MiB"\n[baseline]\nlatency = 0.1\n',
        "baseline.latency: unknown key; known keys: latency_tolerance",
    ),
    "wrong type": (
        '[[budget]]\nmax_size = "1 MiB"\nrequire_energy = "yes"\n',
        "budget[0].require_energy = 'yes': Input should be a valid boolean",
    ),
}


@pytest.mark.parametrize("name", BAD)
def test_every_bad_budgets_file_names_its_mistake(name, tmp_path):
    text, words = BAD[name]
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_budgets(path)
    assert words in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_units_and_relative_limits_are_read():
    budgets = parse_budgets(
        {
            "budget": [
                {
                    "model": "cnn_*",
                    "max_size": "160 KiB",
                    "max_p50": "250 us",
                    "max_p90": {"ratio": 1.15, "of": "tflite:fp32"},
                    "max_p99": "0.01 s",
                    "max_peak_memory": "1 GiB",
                    "min_metric": {"accuracy": 0.95},
                }
            ],
            "baseline": {"latency_tolerance": 0.05},
        },
        "b.toml",
    )
    b = budgets.budgets[0]
    assert b.max_size_bytes == 160 * 1024 and b.max_peak_memory_mb == 1024
    assert b.latency_ms == {"p50": 0.25, "p90": Relative(1.15, "tflite:fp32"), "p99": 10.0}
    assert budgets.tolerances.latency == 0.05 and budgets.tolerances.size == 0.0
    assert b.selects("cnn_digits", "tflite", "int8", "R5CW") and not b.selects("mlp", "tflite", "int8", "host")


def test_the_shipped_example_is_valid():
    budgets = load_budgets(ROOT / "examples" / "budgets.toml")
    assert len(budgets.budgets) == 4 and budgets.tolerances.latency == 0.10
