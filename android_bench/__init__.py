"""On-device profiling over adb: the adb client, device facts, benchmark_model runs and their output,
battery and power-rail energy, thermal state and the phone farm."""

from edgepipe.android_bench.bm_output import BenchmarkOutput, parse_benchmark_output

__all__ = ["BenchmarkOutput", "parse_benchmark_output"]
