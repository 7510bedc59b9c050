"""Profiling on phones: `edgepipe profile --device`, `edgepipe devices` and a job's `device = "SERIAL"`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from edgepipe.android_bench.adb import find_adb
from edgepipe.android_bench.device_profile import profile_on_device
from edgepipe.android_bench.device_run import BenchSettings
from edgepipe.android_bench.facts import device_facts
from edgepipe.android_bench.farm import profile_on_devices, resolve_serials
from edgepipe.models.shared.errors import ConfigError, DeviceError, InputFileError
from edgepipe.pipeline.core.toml_config import STRICT, checked, read_toml


class UserConfig(BaseModel):
    """~/.config/edgepipe/config.toml."""

    model_config = STRICT
    benchmark_binary: str | None = None  # the benchmark_model binary for phones, when --benchmark-binary is not given


def user_config_path() -> Path:
    """~/.config/edgepipe/config.toml (or under XDG_CONFIG_HOME): per-user settings such as benchmark_binary."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "edgepipe" / "config.toml"


def benchmark_binary(given: Path | None) -> Path | None:
    """The benchmark_model binary: the one given, else the user config's benchmark_binary, else None."""
    if given is not None:
        return given
    path = user_config_path()
    if not path.is_file():
        return None
    value = checked(UserConfig, read_toml(path, "create it or remove it"), str(path)).benchmark_binary
    return Path(value).expanduser() if value else None


def profile_on_phones(path: Path, device: str, settings: BenchSettings, binary: Path | None) -> dict:
    """One phone: its profile result. Several ('all' or 'A,B'): {"artifact", "devices": {serial: result}}."""
    if not path.is_file():
        raise InputFileError(f"model file {path} not found; check the path")
    if path.suffix != ".tflite":
        raise ConfigError(
            f"{path}: phones run .tflite files through benchmark_model; export to TFLite first "
            "('edgepipe export MODEL --variant fp32')"
        )
    adb = find_adb()
    binary = benchmark_binary(binary)
    serials = resolve_serials(adb, device)
    if device != "all" and len(serials) == 1:
        return profile_on_device(adb, serials[0], path, binary, settings)
    return {
        "artifact": str(path),
        "runtime": "tflite",
        "devices": profile_on_devices(adb, serials, path, binary, settings),
    }


def list_devices() -> list[dict]:
    """Every phone adb knows: facts for the usable ones, state and what to do for the rest."""
    adb = find_adb()
    rows = []
    for entry in adb.devices():
        if entry.state != "device":
            rows.append(
                {"kind": "android", "serial": entry.serial, "state": entry.state, "hint": entry.hint, **entry.details}
            )
            continue
        try:
            rows.append(device_facts(adb, entry.serial).to_dict())
        except DeviceError as exc:
            rows.append({"kind": "android", "serial": entry.serial, "state": "error", "hint": str(exc)})
    return rows


def bench_settings(profile) -> BenchSettings:
    """A job's [profile] section as benchmark_model settings: the same run counts and bounds as on the host."""
    return BenchSettings(
        threads=profile.threads,
        warmup_runs=max(profile.warmup_runs, 1),
        warmup_min_secs=profile.warmup_seconds,
        runs=profile.min_runs,
        min_secs=profile.min_seconds,
        max_secs=profile.max_seconds,
        cpus=profile.cpus,
        delegate=profile.delegate,
        op_profile=profile.op_profile,
        suspend_charging=profile.suspend_charging,
    )


def profile_artifacts_on_phones(profile, artifacts: list[tuple[dict, Path]]) -> list[dict]:
    """Every TFLite artifact on every phone the job names, one phone-result per (artifact, phone).

    A job naming one phone fails when that phone fails; with several, a failed phone's entry is kept, marked.
    """
    adb = find_adb()
    serials = resolve_serials(adb, profile.device)
    binary = benchmark_binary(Path(profile.benchmark_binary).expanduser() if profile.benchmark_binary else None)
    settings, baselines, results = bench_settings(profile), {}, []
    for art, path in artifacts:
        if profile.device != "all" and len(serials) == 1:
            per_phone = {
                serials[0]: {
                    "status": "ok",
                    **profile_on_device(adb, serials[0], path, binary, settings, baselines.get(serials[0])),
                }
            }
        else:
            per_phone = profile_on_devices(adb, serials, path, binary, settings, baselines)
        for serial, result in per_phone.items():
            if result["status"] == "ok":
                baselines.setdefault(serial, result["thermal"]["hottest_before_c"])
            results.append(
                {
                    **result,
                    "serial": serial,
                    "format": art["format"],
                    "variant": art["variant"],
                    "artifact": art["path"],
                }
            )
    return results
