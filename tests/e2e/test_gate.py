"""`edgepipe gate` on a real run: exit codes, JUnit, Markdown, JSON, and bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import edgepipe


@pytest.fixture(scope="module")
def run_dir(default_run):
    assert default_run["first"].returncode == 0, default_run["first"].stderr
    return default_run["dir"]


def tflite_size(run_dir) -> int:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return next(a["size_bytes"] for a in manifest["artifacts"] if a["path"] == "model_fp32.tflite")


def budgets(tmp_path, text: str):
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    return path


def test_a_budget_met_passes_and_one_byte_short_fails_once(run_dir, tmp_path):
    size = tflite_size(run_dir)
    common = (
        'format = "tflite"\nvariant = "fp32"\nmin_metric = {accuracy = 0.9}\nmax_metric_drop = {accuracy = 0}\n'
        'max_error = 1e-3\nmax_p90 = {ratio = 1.0, of = "tflite:fp32"}\n'
    )
    met = edgepipe(
        "gate",
        str(run_dir),
        "--budgets",
        str(budgets(tmp_path, f'[[budget]]\nmax_size = "{size} B"\n' + common)),
        "--json",
    )
    assert met.returncode == 0, met.stdout + met.stderr
    verdict = json.loads(met.stdout)
    assert verdict["passed"] and {c["check"] for c in verdict["checks"]} == {
        "max_size",
        "min_metric.accuracy",
        "max_metric_drop.accuracy",
        "max_error",
        "max_p90 (1x tflite:fp32)",
    }
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    missed = edgepipe(
        "gate",
        str(run_dir),
        "--budgets",
        str(budgets(tmp_path, f'[[budget]]\nmax_size = "{size - 1} B"\n' + common)),
        "--junit",
        str(junit),
        "--markdown",
        str(summary),
    )
    assert missed.returncode == 1, missed.stdout + missed.stderr
    suite = ET.parse(junit).getroot()
    failures = suite.findall("testcase/failure")
    assert suite.get("tests") == "5" and suite.get("failures") == "1" and len(failures) == 1
    assert "max_size" in suite.find("testcase[failure]").get("name")
    assert f"{size:,} B, limit {size - 1:,} B" in failures[0].get("message")
    assert "FAILED" in summary.read_text() and f"limit {size - 1:,} B" in summary.read_text()
    assert "gate FAILED: 5 checks: 4 passed, 1 failed, 0 not measured" in missed.stdout.replace("\n", " ")


def test_unmeasured_energy_passes_unless_required(run_dir, tmp_path):
    text = '[[budget]]\ndevice = "host"\nformat = "tflite"\nmin_inferences_per_joule = 100\n'
    loose = edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, text)), "--json")
    checks = json.loads(loose.stdout)["checks"]
    assert loose.returncode == 0 and checks
    assert all(c["status"] == "not measured" and "energy not measured" in c["detail"] for c in checks)
    assert "not measured" in edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, text))).stdout
    strict = edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, text + "require_energy = true\n")))
    assert strict.returncode == 1
    junit = tmp_path / "junit.xml"
    flagged = edgepipe(
        "gate", str(run_dir), "--budgets", str(budgets(tmp_path, text)), "--strict", "--junit", str(junit)
    )
    failures = ET.parse(junit).getroot().findall("testcase/failure")
    assert flagged.returncode == 1 and failures and "not measured" in failures[0].get("message")


def test_shipped_budgets_pass_on_the_default_run_and_limits_echo_their_unit(run_dir, tmp_path):
    from pathlib import Path

    shipped = (Path(__file__).parents[2] / "examples" / "budgets.toml").read_text()
    passed = edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, shipped)))
    assert passed.returncode == 0, passed.stdout
    assert "400 MB" in passed.stdout.replace("\n", " ") and "MiB" not in passed.stdout
    tight = edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, shipped.replace('"64 KiB"', '"1 B"'))))
    assert tight.returncode == 1


def test_bad_input_exits_2_with_one_line(run_dir, tmp_path):
    cases = {
        '[[budget]]\nmax_p90 = "3 MB"\n': "wrong unit",
        "[[budget]]\nmin_metric = {psnr_db = 20}\n": "metric 'psnr_db' is not in this report",
        '[[budget]]\nmodel = "nothing*"\nmax_size = "1 MiB"\n': "selects nothing",
    }
    for text, words in cases.items():
        done = edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, text)), "--strict")
        assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, text
    lenient = edgepipe("gate", str(run_dir), "--budgets", str(budgets(tmp_path, list(cases)[2])))
    assert lenient.returncode == 0 and "selects nothing" in lenient.stdout
    missing = edgepipe("gate", str(tmp_path), "--budgets", str(budgets(tmp_path, list(cases)[2])))
    assert missing.returncode == 2 and "neither a run directory" in missing.stderr
