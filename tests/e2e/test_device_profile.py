"""`edgepipe devices` and `edgepipe profile --device` through the real adb client and server, against fake phones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from tests.fakes.adb_device import FakeAdbDevice
from tests.fakes.adb_host import private_host
from tests.fakes.phone import FakePhone, PhoneSpec, standin_binary

SCRIPTED_LOAD_W = 0.400 * 3.9  # the fake gauge adds 400 mA at 3.9 V during the measured phase
MODEL_NAME = "my model; rm -rf x'.tflite"


@pytest.fixture(scope="module")
def adb_host(tmp_path_factory):
    host = private_host(tmp_path_factory.mktemp("adbhome"))
    host.start_server()
    yield host
    host.kill_server()


@pytest.fixture
def phones(adb_host, tmp_path):
    """Start fake phones on demand: phones(spec, mode=...) -> (serial, FakePhone)."""
    with ExitStack() as stack:
        started = []

        def start(spec: PhoneSpec = PhoneSpec(), mode: str = "device"):
            phone = FakePhone(tmp_path / f"phone{len(started)}", spec)
            started.append(phone)
            stack.callback(phone.close)
            device = FakeAdbDevice(
                phone,
                banner={"ro.product.name": "panther", "ro.product.model": "Pixel_7", "ro.product.device": "panther"},
                mode=mode,
            ).start()
            stack.callback(device.close)
            phone.device = device
            serial = adb_host.connect(device.port, state=mode)
            stack.callback(adb_host.run, "disconnect", serial)
            return serial, phone

        yield start


@pytest.fixture
def model(cnn_files, tmp_path) -> Path:
    path = tmp_path / MODEL_NAME
    shutil.copy(cnn_files["fp32"], path)
    return path


def edgepipe_adb(adb_host, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**adb_host.env(), "PYTHONUNBUFFERED": "1"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "edgepipe.pipeline", *args], capture_output=True, text=True, env=env, timeout=300
    )


def profile(adb_host, model: Path, device: str, *extra: str) -> subprocess.CompletedProcess:
    binary = standin_binary(model.parent)
    return edgepipe_adb(
        adb_host, "profile", str(model), "--device", device, "--benchmark-binary", str(binary), "--json", *extra
    )


def truth_mj(phone: FakePhone) -> float:
    t = phone.truth()
    return SCRIPTED_LOAD_W * (t["end"] - t["start"]) / t["count"] * 1e3


def test_devices_lists_facts_and_says_what_to_do_with_an_unauthorized_phone(adb_host, phones):
    good, _ = phones()
    locked, _ = phones(mode="unauthorized")
    done = edgepipe_adb(adb_host, "devices", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["serial"]: r for r in json.loads(done.stdout)["devices"]}
    phone = rows[good]
    assert (phone["state"], phone["model"], phone["manufacturer"]) == ("device", "Pixel 7", "Google")
    assert (phone["android_version"], phone["api_level"], phone["abi"], phone["soc"]) == (
        "14",
        34,
        "arm64-v8a",
        "Google GS201",
    )
    assert [(c["cpus"], c["max_mhz"]) for c in phone["clusters"]] == [
        ([0, 1, 2, 3], 1803.0),
        ([4, 5], 2348.0),
        ([6, 7], 2850.0),
    ]
    assert phone["governors"] == ["schedutil"] and phone["cpu_cores"] == 8
    assert phone["battery"]["level"] == 83 and phone["battery"]["status"] == "discharging"
    assert phone["battery"]["charging"] is False and phone["temperatures_c"]["cpu-0-0-0"] == pytest.approx(31, abs=1)
    assert rows[locked]["state"] == "unauthorized" and "Allow USB debugging" in rows[locked]["hint"]
    table = edgepipe_adb(adb_host, "devices")
    assert table.returncode == 0 and f"{locked} is unauthorized" in table.stdout.replace("\n", " ")


def test_energy_per_inference_matches_the_scripted_discharge(adb_host, phones, model):
    serial, phone = phones()
    sentinel = phone.root / "x"
    sentinel.write_text("must survive")
    done = profile(adb_host, model, serial, "--min-secs", "3", "--cpus", "big")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    energy = result["energy"]
    assert energy["status"] == "measured", energy
    assert energy["mj_per_inference"] == pytest.approx(truth_mj(phone), rel=0.05)
    assert energy["idle_power_w"] == pytest.approx(0.150 * 3.9, rel=0.05)
    assert energy["window_source"] == "streamed output lines" and energy["samples"] >= 30
    assert energy["update_rate_hz"] > 10 and 0 < energy["uncertainty_pct"] < 5
    assert energy["inferences"] == phone.truth()["count"] == result["latency_ms"]["n"]
    # the quoted name reached the tool whole, injected nothing, and the run directory is gone
    assert phone.truth()["graph"].endswith("/" + MODEL_NAME) and sentinel.read_text() == "must survive"
    assert list((phone.root / "data/local/tmp/edgepipe").iterdir()) == [phone.root / "data/local/tmp/edgepipe/bin"]
    assert (phone.state / "taskset.log").read_text().split() == ["f0", "f0"]  # measured and op-profile passes
    assert result["cpus"] == {"requested": "big", "mask": "f0", "cores": [4, 5, 6, 7]}
    assert result["binary"]["pushed"] is True and result["op_profile"]["status"] == "measured"
    assert set(result["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std", "min", "max", "n"}
    assert result["device"]["serial"] == serial and result["memory"]["peak_rss_mb"] > 0
    assert result["thermal"]["hottest_after_c"] > result["thermal"]["hottest_before_c"]
    again = profile(adb_host, model, serial, "--min-secs", "0.5", "--quick")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["binary"]["pushed"] is False  # cached on the phone by its sha256


def test_charging_is_detected_and_suspended_only_on_request(adb_host, phones, model):
    serial, phone = phones(PhoneSpec(charging=True))
    plain = profile(adb_host, model, serial, "--quick", "--min-secs", "0.5")
    assert plain.returncode == 0, plain.stderr
    energy = json.loads(plain.stdout)["energy"]
    assert energy["status"] == "unavailable" and "--suspend-charging" in energy["reason"]
    suspended = profile(adb_host, model, serial, "--quick", "--min-secs", "2", "--suspend-charging")
    assert suspended.returncode == 0, suspended.stderr
    energy = json.loads(suspended.stdout)["energy"]
    assert energy["status"] == "measured", energy
    assert energy["mj_per_inference"] == pytest.approx(truth_mj(phone), rel=0.05)
    assert energy["charging"]["suspended_with"] == "dumpsys battery suspend_input"
    assert not (phone.state / "suspended").exists()  # charging restored afterwards


def test_charging_that_cannot_be_suspended_gives_a_reason_and_rails_give_a_figure(adb_host, phones, model):
    stuck, _ = phones(PhoneSpec(charging=True, suspend=None))
    railed, rail_phone = phones(PhoneSpec(charging=True, rails=True))
    done = profile(adb_host, model, stuck, "--quick", "--min-secs", "0.5", "--suspend-charging")
    assert done.returncode == 0, done.stderr
    energy = json.loads(done.stdout)["energy"]
    assert energy["status"] == "unavailable" and "could not be suspended" in energy["reason"]
    done = profile(adb_host, model, railed, "--quick", "--min-secs", "3")
    assert done.returncode == 0, done.stderr
    energy = json.loads(done.stdout)["energy"]
    assert energy["status"] == "measured" and energy["source"] == "power_rails:IPowerStats", energy
    assert energy["mj_per_inference"] == pytest.approx(truth_mj(rail_phone), rel=0.10)


def test_two_phones_at_once_and_one_pulled_mid_run(adb_host, phones, model):
    healthy, _ = phones()
    pulled, _ = phones(PhoneSpec(disconnect_after_s=2.0))
    done = profile(adb_host, model, f"{healthy},{pulled}", "--quick", "--min-secs", "3", "--delegate", "gpu")
    assert done.returncode == 1, done.stderr  # one phone failed; the results are still printed
    results = json.loads(done.stdout)["devices"]
    assert results[healthy]["status"] == "ok", results[healthy]
    assert results[healthy]["energy"]["status"] == "measured", results[healthy]["energy"]
    delegation = results[healthy]["delegation"]
    assert delegation["partial"] is True and delegation["delegated_nodes"] == delegation["total_nodes"] - 1
    lost = results[pulled]
    assert lost["status"] == "failed" and lost["error_type"] == "DeviceError" and "disconnected" in lost["error"]
    assert "Running benchmark" in lost["partial"]["output"]


def test_missing_binary_and_missing_adb_each_get_one_line(adb_host, phones, model):
    serial, _ = phones()
    no_binary = edgepipe_adb(adb_host, "profile", str(model), "--device", serial)
    assert no_binary.returncode == 2 and "--benchmark-binary" in no_binary.stderr
    assert "ai.google.dev/edge/litert" in no_binary.stderr and len(no_binary.stderr.strip().splitlines()) == 1
    empty = model.parent / "no-adb-here"
    empty.mkdir()
    no_adb = edgepipe_adb(adb_host, "devices", path=str(empty))
    assert no_adb.returncode == 1 and "adb was not found on PATH" in no_adb.stderr
    assert "apt-get install adb" in no_adb.stderr


def test_a_job_with_device_profiles_its_tflite_artifacts_on_the_phone(adb_host, phones, cnn_files, tmp_path):
    serial, phone = phones()
    job = tmp_path / "job.toml"
    job.write_text(
        f'[job]\nname = "phone"\nmodel = "{cnn_files["onnx"]}"\n[export]\nvariants = ["fp32"]\n'
        f'[profile]\nruntimes = ["tflite"]\ndevice = "{serial}"\n'
        f'benchmark_binary = "{standin_binary(tmp_path)}"\nwarmup_seconds = 0.1\nmin_runs = 50\n'
        "min_seconds = 2.0\nop_profile = false\nthroughput_batches = []\n"
    )
    done = edgepipe_adb(adb_host, "run", str(job), "-o", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr
    profile = json.loads((tmp_path / "out" / "profile.json").read_text())
    (host,) = profile["results"]
    (on_phone,) = profile["device_results"]
    assert host["device"]["kind"] == "host" and on_phone["device"]["kind"] == "android"
    assert on_phone["serial"] == serial and (on_phone["format"], on_phone["variant"]) == ("tflite", "fp32")
    assert on_phone["energy"]["mj_per_inference"] == pytest.approx(truth_mj(phone), rel=0.05)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## On the phone" in report and f"Google Pixel 7 ({serial})" in report


def test_int8_fast_times_its_files_on_the_phone_and_the_report_says_where_int8_is_slower(adb_host, phones, tmp_path):
    """[export] int8_target = a serial: the op types int8_fast keeps float come from the phone's op profiles."""
    serial, _ = phones()
    calibration = tmp_path / "cal.npz"
    np.savez(calibration, x=np.random.default_rng(0).standard_normal((16, 8, 32, 32)).astype(np.float32))
    job = tmp_path / "job.toml"
    job.write_text(
        f'[job]\nname = "fast"\nmodel = "tests.profile_models:token_mixer"\n'
        f'[export]\nvariants = ["fp32", "int8_float_io", "int8_fast"]\nint8_target = "{serial}"\n'
        f'calibration = "{calibration}"\n'
        f'[profile]\nruntimes = ["tflite"]\ndevice = "{serial}"\nbenchmark_binary = "{standin_binary(tmp_path)}"\n'
        "warmup_seconds = 0.1\nmin_runs = 20\nmin_seconds = 0.2\nop_profile_runs = 20\nthroughput_batches = []\n"
    )
    done = edgepipe_adb(adb_host, "run", str(job), "-o", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (fast,) = [a["fast_choice"] for a in manifest["stages"]["export"]["result"]["artifacts"] if "fast_choice" in a]
    assert fast["target"] == serial and "benchmark_model" in fast["method"]
    # the phone's op tables (XNNPACK operators and TFLite kernels) name LayerNorm's int8 ops as the slow ones
    assert fast["all_int8_vs_fp32"] > 1 and "SQUARED_DIFFERENCE" in fast["float_ops"]
    assert fast["vs_fp32"] < fast["all_int8_vs_fp32"]
    report = (tmp_path / "out" / "report.md").read_text()
    section = report[report.index("## int8 against float32") :]
    assert "tflite:int8_float_io runs" in section and f"on phone {serial} (median)" in section
    assert "SQUARED_DIFFERENCE +" in section and f"int8_fast, timed on {serial}" in section
