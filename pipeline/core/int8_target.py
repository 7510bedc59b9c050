"""Where int8_fast times its candidate files: this host, or a phone over adb ([export] int8_target).

The exporter knows neither profilers nor adb; it takes one of these (quantize.fast.Timer). Both are
plain picklable dataclasses, so the converter child can time with them as the parent would.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Op profiles: LiteRT's (host) or benchmark_model's (phone) own profiler over this many runs.
OP_RUNS = 30
# Latency ratios on the host: blocks of interleaved runs (profilers.paired), as its prune target times.
BLOCKS = 20


@dataclass(frozen=True)
class HostTimer:
    """This host: LiteRT with XNNPACK, the profile stage's threads."""

    threads: int = 1
    target: str = "host"

    @property
    def method(self) -> str:
        return (
            f"this host, LiteRT with XNNPACK, {self.threads} thread(s): op times from LiteRT's profiler "
            f"({OP_RUNS} runs), each file's latency over the float32 file's interleaved in one process "
            f"(p50 of {BLOCKS} blocks each)"
        )

    def op_times(self, model: bytes, feed: dict[str, np.ndarray]) -> list[tuple[str, float]]:
        from edgepipe.profilers.op_profile import profile_ops

        with _as_files(model) as (path,):
            profile = profile_ops("tflite", path, feed, self.threads, OP_RUNS)
        return [(op.op_type, op.total_ms) for op in profile.ops]

    def ratio(self, candidate: bytes, reference: bytes, feed: dict[str, np.ndarray]) -> float:
        from edgepipe.profilers.paired import paired_ratio

        with _as_files(candidate, reference) as (a, b):
            return paired_ratio(("tflite", a, feed), ("tflite", b, feed), self.threads, blocks=BLOCKS).p50_ratio


@dataclass(frozen=True)
class PhoneTimer:
    """A phone by serial: benchmark_model with XNNPACK (--use_xnnpack=true), op profiles and mean latencies."""

    target: str  # the serial
    binary: str | None = None  # benchmark_model for the phone's ABI; None: the user config's
    threads: int = 1

    @property
    def method(self) -> str:
        return (
            f"phone {self.target}, benchmark_model with XNNPACK, {self.threads} thread(s): op times "
            f"from its op profiling ({OP_RUNS} runs), latency as each file's mean, the two files run back to "
            "back (not interleaved)"
        )

    def op_times(self, model: bytes, feed: dict[str, np.ndarray]) -> list[tuple[str, float]]:
        result = self._profile(model, op_profile=True)
        table = result.get("op_profile") or {}
        if table.get("status") != "measured":
            from edgepipe.models.shared.errors import DeviceError

            raise DeviceError(f"{self.target}: no op profile for int8_fast: {table.get('reason', 'none printed')}")
        return [(row["node_type"], row["avg_ms"] or 0.0) for row in table["summary_by_node_type"]]

    def ratio(self, candidate: bytes, reference: bytes, feed: dict[str, np.ndarray]) -> float:
        return self._mean_ms(candidate) / self._mean_ms(reference)

    def _mean_ms(self, model: bytes) -> float:
        return self._profile(model, op_profile=False)["latency_ms"]["mean"]

    def _profile(self, model: bytes, op_profile: bool) -> dict:
        from edgepipe.android_bench.adb import find_adb
        from edgepipe.android_bench.device_profile import profile_on_device
        from edgepipe.android_bench.device_run import BenchSettings
        from edgepipe.pipeline.profile.devices import benchmark_binary

        settings = BenchSettings(
            threads=self.threads,
            delegate="xnnpack",
            op_profile=op_profile,
            op_profile_runs=OP_RUNS,
            energy=False,
            cooldown_max_s=0.0,
        )
        binary = benchmark_binary(Path(self.binary) if self.binary else None)
        with _as_files(model) as (path,):
            return profile_on_device(find_adb(), self.target, path, binary, settings)


@contextlib.contextmanager
def _as_files(*models: bytes):
    """The models as .tflite files in a private folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="edgepipe-int8-target-") as tmp:
        paths = [Path(tmp) / f"model_{i}.tflite" for i in range(len(models))]
        for path, model in zip(paths, models):
            path.write_bytes(model)
        yield paths


def int8_timer(target: str, threads: int, binary: str | None):
    """The timer of [export] int8_target: "host" or a phone's serial."""
    return HostTimer(threads) if target == "host" else PhoneTimer(target, binary, threads)
