"""benchmark_model output parsing, against real outputs (shared fixtures) and our own per-format fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepipe.android_bench.bm_output import BenchmarkOutput, parse_benchmark_output
from edgepipe.models.shared.errors import DeviceError, EdgepipeError

# Real outputs from boards and TFLite versions, kept beside the repository (../shared) and never copied in:
# their tests skip where that folder is absent (a bare clone in CI); our own fixtures cover every format.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "benchmark_model"
OWN = Path(__file__).resolve().parent / "fixtures"
SHARED_NAMES = [
    "bm_06_metatflite_riscv_sci_opprof.txt",
    "bm_07_tfsoc_x86_native_peakmem_opprof.txt",
    "bm_08_tfsoc_zedboard_old_format_opprof.txt",
    "bm_09_tfsoc_zedboard_old_format_noprof.txt",
    "bm_10_ti_am57x_tflite112_oldest_format.txt",
    "bm_11_ti_am62x_cpu_info_pctl.txt",
    "bm_12_ti_am62x_xnnpack_info_pctl.txt",
]
STAT_KEYS = {"count", "first_us", "curr_us", "min_us", "max_us", "avg_us", "std_us", "p5_us", "median_us", "p95_us"}
STABLE_KEYS = {
    "init_us",
    "first_inference_us",
    "warmup_avg_us",
    "inference_avg_us",
    "warmup",
    "inference",
    "model_size_mb",
    "memory_mb",
    "num_threads",
    "delegated_nodes",
    "total_nodes",
    "op_profile",
}
RUN_ORDER_KEYS = {
    "node_type",
    "start_ms",
    "first_ms",
    "avg_ms",
    "percent",
    "cdf_percent",
    "mem_kb",
    "times_called",
    "name",
}
BY_TYPE_KEYS = {"node_type", "count", "avg_ms", "avg_percent", "cdf_percent", "mem_kb", "times_called"}


def shared(name: str) -> dict:
    """Parse a shared fixture; the test skips when the shared folder is not beside the repository."""
    if not SHARED.is_dir():
        pytest.skip(f"shared benchmark_model fixtures not at {SHARED}")
    return parse_benchmark_output((SHARED / name).read_text()).to_dict()


def own(name: str) -> dict:
    """Parse one of this package's fixtures, bytes as written (CRLF kept)."""
    return parse_benchmark_output((OWN / name).read_bytes().decode()).to_dict()


def stat(count, first, curr, lo, hi, avg, std, p5=None, median=None, p95=None) -> dict:
    """The expected to_dict() of one stat line."""
    return {
        "count": count,
        "first_us": first,
        "curr_us": curr,
        "min_us": lo,
        "max_us": hi,
        "avg_us": avg,
        "std_us": std,
        "p5_us": p5,
        "median_us": median,
        "p95_us": p95,
    }


def all_same(count, value) -> dict:
    """The expected to_dict() of a "count=N curr=X" line: every run took X."""
    return stat(count, value, value, value, value, value, 0.0, value, value, value)


def assert_timings(d: dict, init, first, warmup_avg, inference_avg) -> None:
    """The four summary figures, exactly and as floats."""
    got = (d["init_us"], d["first_inference_us"], d["warmup_avg_us"], d["inference_avg_us"])
    assert got == (init, first, warmup_avg, inference_avg)
    assert all(v is None or isinstance(v, float) for v in got)


def assert_no_delegation(d: dict) -> None:
    """No delegate line was printed."""
    assert (d["delegated_nodes"], d["total_nodes"], d["delegates"], d["partially_delegated"]) == (None, None, [], None)


# ---- the shared real outputs -----------------------------------------------------------------------------


def test_shared_fixtures_are_all_read():
    if not SHARED.is_dir():
        pytest.skip(f"shared benchmark_model fixtures not at {SHARED}")
    assert sorted(p.name for p in SHARED.glob("bm_*.txt")) == SHARED_NAMES


def test_bm06_riscv_scientific_notation_and_op_profile():
    d = shared("bm_06_metatflite_riscv_sci_opprof.txt")
    assert_timings(d, 17187.0, 3512391.0, 3512390.0, 2950340.0)  # "3.51239e+06", "2.95034e+06"
    assert d["warmup"] == all_same(1, 3512391.0)
    assert d["inference"] == stat(50, 2990275.0, 2913402.0, 2727568.0, 3189954.0, 2950340.0, 109798.0)
    assert d["model_size_mb"] == 16.9008
    assert d["memory_mb"] == {"init": 4.21094, "overall": 46.0859, "peak": None}
    assert d["memory_source"] == "footprint_delta"
    assert d["num_threads"] == 4
    assert d["graph"] == "./mobilenet_v1_1.0_224.tflite" and d["init_session_ms"] == 17.187
    assert_no_delegation(d)
    prof = d["op_profile"]
    assert len(prof["run_order"]) == 31 and prof["nodes_executed"] == 31
    assert prof["run_order"][0] == {
        "node_type": "CONV_2D",
        "start_ms": 0.066,
        "first_ms": 87.754,
        "avg_ms": 60.957,
        "percent": 2.066,
        "cdf_percent": 2.066,
        "mem_kb": 0.0,
        "times_called": 1,
        "name": "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0",
    }
    assert prof["run_order"][-1] == {
        "node_type": "SOFTMAX",
        "start_ms": 2950.011,
        "first_ms": 0.230,
        "avg_ms": 0.233,
        "percent": 0.008,
        "cdf_percent": 100.0,
        "mem_kb": 0.0,
        "times_called": 1,
        "name": "[MobilenetV1/Predictions/Reshape_1]:30",
    }
    assert [r["node_type"] for r in prof["summary_by_node_type"]] == [
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "AVERAGE_POOL_2D",
        "SOFTMAX",
        "SQUEEZE",
    ]
    assert prof["summary_by_node_type"][0] == {
        "node_type": "CONV_2D",
        "count": 15,
        "avg_ms": 2651.853,
        "avg_percent": 89.897,
        "cdf_percent": 89.897,
        "mem_kb": 0.0,
        "times_called": 15,
    }
    # The profiler's own timings line, and the init profile's "count=1 curr=1356", are not run stats.
    assert prof["timings"] == stat(50, 2989660.0, 2912978.0, 2727203.0, 3189476.0, 2949900.0, 109770.0)
    init = d["init_op_profile"]
    assert init["run_order"] == [
        {
            "node_type": "AllocateTensors",
            "start_ms": 0.0,
            "first_ms": 1.356,
            "avg_ms": 1.356,
            "percent": 100.0,
            "cdf_percent": 100.0,
            "mem_kb": 0.0,
            "times_called": 1,
            "name": "AllocateTensors/0",
        }
    ]
    assert init["timings"] == all_same(1, 1356.0)


def test_bm07_x86_peak_memory_line_and_multi_run_warmup():
    d = shared("bm_07_tfsoc_x86_native_peakmem_opprof.txt")
    assert_timings(d, 250.0, 25428.0, 9007.27, 8677.03)
    assert d["warmup"] == stat(56, 25428.0, 8815.0, 8483.0, 25428.0, 9007.27, 2217.0)
    assert d["inference"] == stat(114, 8633.0, 8509.0, 8355.0, 10438.0, 8677.03, 280.0)
    assert d["memory_mb"] == {"init": 4.80859, "overall": 41.0625, "peak": None}
    assert d["memory_source"] == "peak_footprint"
    assert (d["model_size_mb"], d["num_threads"], d["init_session_ms"]) == (16.9008, 4, 0.25)
    assert_no_delegation(d)
    prof = d["op_profile"]
    assert len(prof["run_order"]) == 31
    assert prof["run_order"][1] == {
        "node_type": "DEPTHWISE_CONV_2D",
        "start_ms": 0.571,
        "first_ms": 0.579,
        "avg_ms": 0.609,
        "percent": 7.018,
        "cdf_percent": 13.602,
        "mem_kb": 0.0,
        "times_called": 1,
        "name": "[MobilenetV1/MobilenetV1/Conv2d_1_depthwise/Relu6]:1",
    }
    assert [(r["node_type"], r["count"], r["avg_ms"]) for r in prof["summary_by_node_type"]] == [
        ("CONV_2D", 15, 6.141),
        ("DEPTHWISE_CONV_2D", 13, 2.505),
        ("AVERAGE_POOL_2D", 1, 0.006),
        ("SOFTMAX", 1, 0.002),
        ("SQUEEZE", 1, 0.0),
    ]
    assert prof["timings"]["avg_us"] == 8672.96
    assert d["init_op_profile"]["run_order"][0]["avg_ms"] == 0.030


def test_bm08_old_summary_line_and_tables_without_heading():
    d = shared("bm_08_tfsoc_zedboard_old_format_opprof.txt")
    # "Average inference timings in us: Warmup: 395037, Init: 18764, no stats: 394183"; first= of the warm-up
    assert_timings(d, 18764.0, 393500.0, 395037.0, 394183.0)
    assert d["warmup"] == stat(2, 393500.0, 396574.0, 393500.0, 396574.0, 395037.0, 1537.0)
    assert d["inference"] == stat(50, 390368.0, 390936.0, 389982.0, 417669.0, 394183.0, 4373.0)
    assert d["memory_mb"] == {"init": None, "overall": None, "peak": None} and d["memory_source"] is None
    assert (d["num_threads"], d["init_session_ms"], d["model_size_mb"]) == (2, 18.764, None)
    assert_no_delegation(d)
    prof = d["op_profile"]
    assert len(prof["run_order"]) == 31 and prof["nodes_executed"] == 31
    assert prof["run_order"][29] == {
        "node_type": "RESHAPE",
        "start_ms": 394.092,
        "first_ms": 0.006,
        "avg_ms": 0.006,
        "percent": 0.001,
        "cdf_percent": 99.981,
        "mem_kb": 0.0,
        "times_called": 1,
        "name": "[MobilenetV1/Logits/SpatialSqueeze]",
    }
    assert prof["summary_by_node_type"][1]["avg_ms"] == 71.644
    assert prof["timings"]["avg_us"] == 394059.0
    assert d["init_op_profile"] is None


def test_bm09_old_format_without_profile():
    d = shared("bm_09_tfsoc_zedboard_old_format_noprof.txt")
    assert_timings(d, 21039.0, 751932.0, 751932.0, 747733.0)
    assert d["warmup"] == all_same(1, 751932.0)
    assert d["inference"] == stat(50, 747738.0, 747428.0, 747331.0, 748577.0, 747733.0, 293.0)
    assert (d["num_threads"], d["model_size_mb"], d["op_profile"], d["init_op_profile"]) == (1, None, None, None)
    assert d["memory_mb"] == {"init": None, "overall": None, "peak": None}
    assert_no_delegation(d)


def test_bm10_tflite_1_12_running_for_n_iterations():
    d = shared("bm_10_ti_am57x_tflite112_oldest_format.txt")
    assert_timings(d, 4452.0, 146161.0, 146161.0, 137722.0)
    assert d["warmup"] == all_same(1, 146161.0)
    assert d["inference"] == stat(50, 137789.0, 137254.0, 137079.0, 143416.0, 137722.0, 896.0)
    assert (d["num_threads"], d["graph"], d["init_session_ms"]) == (1, "mobilenet_v1_1.0_224_quant.tflite", 4.452)
    assert (d["model_size_mb"], d["op_profile"]) == (None, None)
    assert d["memory_mb"] == {"init": None, "overall": None, "peak": None}
    assert_no_delegation(d)


def test_bm11_percentiles_without_thread_line():
    d = shared("bm_11_ti_am62x_cpu_info_pctl.txt")
    assert_timings(d, 5579.0, 1357602.0, 1357600.0, 1240270.0)
    assert d["warmup"] == all_same(1, 1357602.0)  # printed as count=1 curr= p5= median= p95=
    assert d["inference"] == stat(
        50, 1249964.0, 1240143.0, 1238588.0, 1252566.0, 1240270.0, 2565.0, 1238753.0, 1239807.0, 1247415.0
    )
    assert d["memory_mb"] == {"init": 6.36328, "overall": 109.832, "peak": None} and d["model_size_mb"] == 67.3128
    assert d["num_threads"] is None  # --num_threads=4 was passed, but the run never printed it
    assert d["op_profile"] is None
    assert_no_delegation(d)


def test_bm12_xnnpack_applied_without_node_counts():
    d = shared("bm_12_ti_am62x_xnnpack_info_pctl.txt")
    assert_timings(d, 614333.0, 905463.0, 905463.0, 899641.0)
    assert d["warmup"] == all_same(1, 905463.0)
    assert d["inference"] == stat(
        50, 900416.0, 898333.0, 898007.0, 906121.0, 899641.0, 1549.0, 898333.0, 899281.0, 904305.0
    )
    assert d["memory_mb"] == {"init": 146.363, "overall": 150.141, "peak": None}
    assert d["init_session_ms"] == 614.333
    # "Explicitly applied XNNPACK delegate, and the model graph will be partially executed ..." names the
    # delegate and says it is partial, but gives no node counts.
    assert (d["delegated_nodes"], d["total_nodes"]) == (None, None)
    assert d["delegates"] == ["XNNPACK"] and d["partially_delegated"] is True
    assert d["num_threads"] is None and d["op_profile"] is None


# ---- our fixtures: every format, so the parser is proven without the shared folder ---------------------


def test_own_old_format_with_op_profile_tables_without_heading_and_a_multi_run_warmup():
    d = own("old_format_op_profile.txt")
    # "Average inference timings in us: Warmup: 2210.4, Init: 1402, no stats: 2201.7"; first= of the warm-up
    assert_timings(d, 1402.0, 2630.0, 2210.4, 2201.7)
    assert d["warmup"] == stat(226, 2630.0, 2188.0, 2151.0, 2630.0, 2210.4, 48.0)
    assert d["inference"] == stat(455, 2197.0, 2203.0, 2149.0, 2512.0, 2201.7, 39.0)
    assert d["memory_mb"] == {"init": None, "overall": None, "peak": None} and d["memory_source"] is None
    assert (d["num_threads"], d["init_session_ms"], d["model_size_mb"]) == (2, 1.402, None)
    assert_no_delegation(d)
    prof = d["op_profile"]
    assert len(prof["run_order"]) == 4 and prof["nodes_executed"] == 4
    assert prof["run_order"][3] == {
        "node_type": "FULLY_CONNECTED",
        "start_ms": 2.06,
        "first_ms": 0.149,
        "avg_ms": 0.147,
        "percent": 6.679,
        "cdf_percent": 100.002,
        "mem_kb": 0.0,
        "times_called": 1,
        "name": "[cnn/fc/MatMul]",
    }
    assert prof["summary_by_node_type"][0] == {
        "node_type": "CONV_2D",
        "count": 2,
        "avg_ms": 1.955,
        "avg_percent": 88.825,
        "cdf_percent": 88.825,
        "mem_kb": 0.0,
        "times_called": 2,
    }
    assert prof["timings"] == stat(455, 2190.0, 2196.0, 2142.0, 2505.0, 2194.6, 39.0)
    assert d["init_op_profile"] is None


def test_own_scientific_notation_and_the_initialization_profile():
    d = own("sci_notation_init_profile.txt")
    assert_timings(d, 9871.0, 1270554.0, 1270550.0, 1201180.0)  # "1.27055e+06", "1.20118e+06"
    assert d["warmup"] == all_same(1, 1270554.0)
    assert d["inference"] == stat(50, 1204411.0, 1199874.0, 1187025.0, 1261730.0, 1201180.0, 11206.0)
    assert d["memory_mb"] == {"init": 1.98047, "overall": 7.33984, "peak": None}
    assert d["memory_source"] == "footprint_delta"
    assert (d["num_threads"], d["model_size_mb"], d["init_session_ms"]) == (1, 0.51172, 9.871)
    prof = d["op_profile"]
    assert [r["name"] for r in prof["run_order"]] == ["[kws/conv1/Relu]", "[kws/conv2/Relu]"]
    assert prof["summary_by_node_type"][0]["avg_ms"] == 1200.986
    # The profiler's own timings line ("avg=1.20107e+06") is not the run's statistics.
    assert prof["timings"] == stat(50, 1204302.0, 1199770.0, 1186911.0, 1261622.0, 1201070.0, 11204.0)
    init = d["init_op_profile"]
    assert init["run_order"] == [
        {
            "node_type": "AllocateTensors",
            "start_ms": 0.0,
            "first_ms": 0.742,
            "avg_ms": 0.742,
            "percent": 100.0,
            "cdf_percent": 100.0,
            "mem_kb": 0.0,
            "times_called": 1,
            "name": "AllocateTensors/0",
        }
    ]
    assert init["timings"] == all_same(1, 742.0)


def test_own_old_format_without_profile():
    d = own("old_format_no_profile.txt")  # "Min num runs" parameters, "no stats" summary
    assert_timings(d, 3118.0, 4410.0, 4410.0, 4697.5)
    assert d["warmup"] == all_same(1, 4410.0)
    assert d["inference"] == stat(212, 4702.0, 4655.0, 4588.0, 5120.0, 4697.5, 61.0)
    assert (d["num_threads"], d["model_size_mb"], d["op_profile"], d["init_op_profile"]) == (2, None, None, None)
    assert d["memory_mb"] == {"init": None, "overall": None, "peak": None}
    assert d["graph"] == "models/kws_int8.tflite" and d["init_session_ms"] == 3.118
    assert_no_delegation(d)


def test_own_tflite_1_12_running_for_n_iterations():
    d = own("tflite_1_12_iterations.txt")  # "Num runs", "Running benchmark for N iterations"
    assert_timings(d, 917.0, 2284.0, 2284.0, 1999.0)
    assert d["warmup"] == all_same(1, 2284.0)
    assert d["inference"] == stat(20, 2011.0, 1987.0, 1960.0, 2101.0, 1999.0, 31.0)
    assert (d["num_threads"], d["graph"], d["init_session_ms"]) == (1, "denoise_fp32.tflite", 0.917)
    assert (d["model_size_mb"], d["op_profile"]) == (None, None)
    assert_no_delegation(d)


def test_own_info_prefixed_percentiles_in_scientific_notation_without_thread_line():
    d = own("info_percentiles_no_threads.txt")
    assert_timings(d, 2205.0, 2174455.0, 2174460.0, 2100450.0)  # "2.17446e+06", "2.10045e+06"
    assert d["warmup"] == all_same(1, 2174455.0)  # count=1 curr= p5= median= p95=
    assert d["inference"] == stat(
        50, 2101334.0, 2098417.0, 2090125.0, 2113870.0, 2100450.0, 4410.0, 2093012.0, 2099977.0, 2108761.0
    )
    assert d["memory_mb"] == {"init": 3.85547, "overall": 71.2031, "peak": None} and d["model_size_mb"] == 46.7341
    assert d["memory_source"] == "footprint_delta"
    assert d["num_threads"] is None  # --num_threads=2 was passed, but the run never printed it
    assert d["op_profile"] is None
    assert_no_delegation(d)


def test_own_xnnpack_applied_partially_without_node_counts():
    d = own("xnnpack_partial_no_counts.txt")
    assert_timings(d, 88750.0, 311208.0, 311208.0, 301102.0)
    assert d["inference"] == stat(
        50, 301877.0, 300512.0, 299963.0, 305540.0, 301102.0, 981.0, 300010.0, 300845.0, 303772.0
    )
    assert d["memory_mb"] == {"init": 21.5078, "overall": 25.9102, "peak": None}
    assert d["init_session_ms"] == 88.75
    assert (d["delegated_nodes"], d["total_nodes"]) == (None, None)
    assert d["delegates"] == ["XNNPACK"] and d["partially_delegated"] is True


def test_modern_info_prefixed_with_percentiles_memory_and_xnnpack():
    d = own("modern_xnnpack_percentiles.txt")
    assert_timings(d, 4823.0, 5023.0, 1601.26, 1556.4)
    assert d["warmup"] == stat(312, 5023.0, 1533.0, 1490.0, 5023.0, 1601.26, 241.0, 1502.0, 1561.0, 1712.0)
    assert d["inference"] == stat(643, 1547.0, 1529.0, 1478.0, 2210.0, 1556.4, 48.0, 1491.0, 1549.0, 1632.0)
    assert d["memory_mb"] == {"init": 3.10938, "overall": 9.43359, "peak": 11.4219}
    assert d["memory_source"] == "peak_footprint"
    assert (d["model_size_mb"], d["num_threads"], d["init_session_ms"]) == (0.314952, 4, 4.823)
    assert d["graph"] == "/data/local/tmp/edgepipe/kws_fp32.tflite"
    assert (d["delegated_nodes"], d["total_nodes"]) == (10, 11)
    assert d["delegates"] == ["TfLiteXNNPackDelegate"] and d["partially_delegated"] is True
    prof = d["op_profile"]
    # Newer builds dropped the [start] column; the "Delegate internal:" tables are XNNPACK's ops, not nodes.
    assert prof["run_order"] == [
        {
            "node_type": "TfLiteXNNPackDelegate",
            "start_ms": None,
            "first_ms": 1.534,
            "avg_ms": 1.512,
            "percent": 99.605,
            "cdf_percent": 99.605,
            "mem_kb": 0.0,
            "times_called": 1,
            "name": "[StatefulPartitionedCall:0]:11",
        },
        {
            "node_type": "ARG_MAX",
            "start_ms": None,
            "first_ms": 0.007,
            "avg_ms": 0.006,
            "percent": 0.395,
            "cdf_percent": 100.0,
            "mem_kb": 0.0,
            "times_called": 1,
            "name": "[StatefulPartitionedCall:1]:10",
        },
    ]
    assert prof["summary_by_node_type"][1] == {
        "node_type": "ARG_MAX",
        "count": 1,
        "avg_ms": 0.006,
        "avg_percent": 0.395,
        "cdf_percent": 100.0,
        "mem_kb": 0.0,
        "times_called": 1,
    }
    assert prof["nodes_executed"] == 2
    assert prof["timings"] == stat(643, 1541.0, 1497.0, 1452.0, 2187.0, 1518.2, 47.0)
    init = d["init_op_profile"]
    assert [(r["node_type"], r["mem_kb"], r["times_called"]) for r in init["run_order"]] == [
        ("ModifyGraphWithDelegate", 1186.816, 1),
        ("AllocateTensors", 0.0, 2),
    ]
    assert init["summary_by_node_type"][1]["avg_ms"] == 0.206
    assert init["timings"] == all_same(1, 3608.0)


def test_logcat_threadtime_capture_with_crlf():
    raw = (OWN / "logcat_threadtime_crlf.txt").read_bytes()
    assert b"\r\n" in raw and b" I tflite  : count=420 " in raw  # the fixture really is a CRLF logcat capture
    d = own("logcat_threadtime_crlf.txt")
    assert_timings(d, 6954.0, 7412.0, 2455.13, 2382.61)
    assert d["warmup"] == stat(204, 7412.0, 2398.0, 2311.0, 7412.0, 2455.13, 357.0, 2327.0, 2401.0, 2519.0)
    assert d["inference"] == stat(420, 2405.0, 2377.0, 2296.0, 3104.0, 2382.61, 61.0, 2318.0, 2371.0, 2472.0)
    assert d["memory_mb"] == {"init": 2.98047, "overall": 8.85938, "peak": 10.7656}
    assert (d["model_size_mb"], d["num_threads"], d["init_session_ms"]) == (0.314952, 2, 6.954)
    assert (d["delegated_nodes"], d["total_nodes"], d["delegates"]) == (10, 11, ["TfLiteXNNPackDelegate"])
    prof = d["op_profile"]
    assert [(r["node_type"], r["first_ms"], r["avg_ms"], r["percent"], r["name"]) for r in prof["run_order"]] == [
        ("TfLiteXNNPackDelegate", 2.398, 2.301, 99.610, "[StatefulPartitionedCall:0]:11"),
        ("ARG_MAX", 0.011, 0.009, 0.390, "[StatefulPartitionedCall:1]:10"),
    ]
    assert prof["timings"]["avg_us"] == 2310.4
    assert d["init_op_profile"]["run_order"][0]["first_ms"] == 5.862
    assert d["init_op_profile"]["timings"] == all_same(1, 6186.0)


def test_gpu_partial_delegation_counts_each_node_once():
    d = own("gpu_partial_delegation.txt")
    # Both the GPU delegate's "28 operations will run on the GPU, and the remaining 3 ..." and the
    # "Replacing 28 out of 31" line are printed: they describe the same nodes.
    assert (d["delegated_nodes"], d["total_nodes"]) == (28, 31)
    assert d["delegates"] == ["TfLiteGpuDelegateV2"] and d["partially_delegated"] is True
    assert_timings(d, 1843720.0, 92311.0, 24460.4, 21196.8)
    assert d["warmup"] == stat(24, 92311.0, 21480.0, 20871.0, 92311.0, 24460.4, 14520.0)
    assert d["inference"] == stat(50, 21302.0, 20988.0, 20544.0, 23817.0, 21196.8, 612.0)
    assert d["memory_mb"] == {"init": 38.6641, "overall": 52.2734, "peak": None}
    assert d["memory_source"] == "footprint_delta"
    assert (d["model_size_mb"], d["num_threads"], d["init_session_ms"]) == (1.18842, 4, 1843.72)
    assert d["op_profile"] is None and d["init_op_profile"] is None


def test_all_same_warmup_without_memory_or_profile():
    d = own("all_same_warmup_no_memory.txt")
    assert d["warmup"] == all_same(1, 262417.0)
    assert d["inference"] == stat(50, 252804.0, 250911.0, 249517.0, 258339.0, 251360.0, 1804.0)
    assert_timings(d, 38105.0, 262417.0, 262417.0, 251360.0)
    assert d["memory_mb"] == {"init": None, "overall": None, "peak": None} and d["memory_source"] is None
    assert (d["model_size_mb"], d["num_threads"], d["init_session_ms"]) == (13.9786, 1, 38.105)
    assert d["op_profile"] is None and d["init_op_profile"] is None
    assert_no_delegation(d)


def test_a_model_that_failed_to_load_is_a_device_error_naming_the_cause():
    text = (OWN / "failed_to_load_model.txt").read_text()
    with pytest.raises(DeviceError) as info:
        parse_benchmark_output(text)
    message = str(info.value)
    assert "\n" not in message and "printed no timings" in message
    # The closing "Benchmarking failed." says nothing; the line before it does.
    assert message.endswith("ERROR: Failed to mmap model /data/local/tmp/edgepipe/cnn_digits_int8.tflite")
    assert isinstance(info.value, EdgepipeError) and info.value.exit_code == 1


# ---- rules that no single fixture covers -----------------------------------------------------------------

RUN = "Running benchmark for at least {n} iterations and at least 1 seconds but terminate if exceeding 150 seconds."
SUMMARY = "Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 2, Inference (avg): 3"


def test_all_same_with_count_above_one_fills_every_field():
    d = parse_benchmark_output(
        f"{RUN.format(n=5)}\ncount=5 curr=100(all same)\n\n{RUN.format(n=5)}\ncount=5 curr=90(all same)\n"
    ).to_dict()
    assert d["warmup"] == all_same(5, 100.0) and d["inference"] == all_same(5, 90.0)
    # No summary line: the averages and the first inference are the stat lines' own figures, init is unknown.
    assert_timings(d, None, 100.0, 100.0, 90.0)


def test_without_summary_line_inference_comes_from_the_measured_stat_line():
    text = (
        f"{RUN.format(n=1)}\ncount=3 first=1200 curr=1000 min=1000 max=1200 avg=1066.67 std=94\n"
        f"{RUN.format(n=50)}\ncount=50 first=2.1e+03 curr=2000 min=1900 max=2100 avg=2.00012e+03 std=40\n"
    )
    d = parse_benchmark_output(text).to_dict()
    assert_timings(d, None, 1200.0, 1066.67, 2000.12)
    assert d["inference"]["first_us"] == 2100.0


def test_only_stat_lines_after_running_benchmark_count():
    text = "\n".join(
        [
            "Timings (microseconds): count=1 curr=1356",  # an init-profile line, stray before the run
            "count=1 curr=1356",  # the same figures without their label, as a lossy capture can leave them
            RUN.format(n=1),
            "count=1 curr=500",
            "Timings (microseconds): count=9 curr=9(all same)",
            "count=9 curr=9(all same)",
            RUN.format(n=50),
            "count=50 first=410 curr=400 min=390 max=430 avg=401 std=8",
            "Inference timings in us: Init: 99, First inference: 500, Warmup (avg): 500, Inference (avg): 401",
        ]
    )
    d = parse_benchmark_output(text).to_dict()
    assert d["warmup"] == all_same(1, 500.0) and d["inference"]["avg_us"] == 401.0


def test_bare_stat_lines_without_running_lines_stop_at_the_profile():
    text = (
        "count=1 curr=500\ncount=50 first=410 curr=400 min=390 max=430 avg=401 std=8\n"
        "============================== Run Order ==============================\n"
    )
    d = parse_benchmark_output(text).to_dict()
    assert d["warmup"] == all_same(1, 500.0) and d["inference"]["count"] == 50


def test_logcat_brief_prefix_and_peak_footprint_preferred_over_delta():
    text = "\r\n".join(
        "I/tflite  ( 4242): " + line
        for line in [
            "Num threads: [-1]",
            "#threads used for CPU inference: [8]",
            RUN.format(n=1),
            "count=1 curr=7",
            "",
            RUN.format(n=50),
            "count=60 first=6 curr=5 min=5 max=6 avg=5.4 std=0",
            "Memory footprint delta from the start of the tool (MB): init=1.5 overall=2.5",
            "Peak memory footprint (MB): init=3.5 overall=4.5",
        ]
    )
    d = parse_benchmark_output(text).to_dict()
    assert d["inference"]["avg_us"] == 5.4 and d["warmup"] == all_same(1, 7.0)
    assert d["memory_mb"] == {"init": 3.5, "overall": 4.5, "peak": None} and d["memory_source"] == "peak_footprint"
    assert d["num_threads"] == -1  # printed as -1 (runtime default); the CPU line is only a fallback


def test_thread_count_falls_back_to_the_cpu_inference_line():
    d = parse_benchmark_output(f"INFO: #threads used for CPU inference: [6]\nINFO: {SUMMARY}\n").to_dict()
    assert d["num_threads"] == 6 and d["warmup"] is None and d["inference"] is None
    assert_timings(d, 1.0, 2.0, 2.0, 3.0)


def test_delegation_lines_per_subgraph_are_summed():
    text = "\n".join(
        [
            "VERBOSE: Replacing 30 out of 31 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 2 "
            "partitions for subgraph 0.",
            "VERBOSE: Replacing 4 out of 4 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 "
            "partitions for subgraph 1.",
            SUMMARY,
        ]
    )
    d = parse_benchmark_output(text).to_dict()
    assert (d["delegated_nodes"], d["total_nodes"], d["delegates"]) == (34, 35, ["TfLiteXNNPackDelegate"])
    assert d["partially_delegated"] is True


def test_old_replacing_line_without_total_leaves_total_unknown():
    text = f"INFO: Replacing 31 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions.\n{SUMMARY}"
    d = parse_benchmark_output(text).to_dict()
    assert (d["delegated_nodes"], d["total_nodes"], d["partially_delegated"]) == (31, None, None)


@pytest.mark.parametrize(
    "line",
    [
        "28 operations will run on the GPU, and the remaining 3 operations will run on the CPU.",
        "First 28 operations will run on the GPU, and the remaining 3 on the CPU.",
    ],
)
def test_gpu_split_line_alone_gives_the_counts(line):
    d = parse_benchmark_output(f"INFO: Created 1 GPU delegate kernels.\n{line}\n{SUMMARY}\n").to_dict()
    assert (d["delegated_nodes"], d["total_nodes"], d["delegates"], d["partially_delegated"]) == (28, 31, ["GPU"], True)


def test_empty_stat_prints_count_zero_and_nan_is_none():
    text = (
        f"{RUN.format(n=0)}\ncount=0\n{RUN.format(n=0)}\ncount=0\n"
        "Inference timings in us: Init: 812, First inference: 0, Warmup (avg): nan, Inference (avg): -nan\n"
    )
    d = parse_benchmark_output(text).to_dict()
    assert d["inference"] == stat(0, None, None, None, None, None, None)
    assert_timings(d, 812.0, 0.0, None, None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "INFO: STARTING!\nINFO: Graph: [m.tflite]\n",
        f"{RUN.format(n=1)}\ncount=1 curr=5\nERROR: Node number 3 (CONV_2D) failed to invoke.\n",  # died in warm-up
    ],
)
def test_output_without_measured_timings_is_a_device_error(text):
    with pytest.raises(DeviceError, match="printed no timings"):
        parse_benchmark_output(text)


def test_error_message_is_truncated_to_about_200_characters():
    with pytest.raises(DeviceError) as info:
        parse_benchmark_output("ERROR: " + "x" * 1000 + "\r\n")
    last = str(info.value).split(": ", 1)[1]
    assert len(last) <= 200 and last.endswith("...")


def test_to_dict_keys_are_stable_and_json_ready():
    d = own("modern_xnnpack_percentiles.txt")
    assert STABLE_KEYS <= set(d) and {"delegates", "partially_delegated", "memory_source"} <= set(d)
    assert set(d["warmup"]) == STAT_KEYS and set(d["inference"]) == STAT_KEYS
    assert set(d["memory_mb"]) == {"init", "overall", "peak"}
    assert all(set(r) == RUN_ORDER_KEYS for r in d["op_profile"]["run_order"])
    assert all(set(r) == BY_TYPE_KEYS for r in d["op_profile"]["summary_by_node_type"])
    assert json.loads(json.dumps(d)) == d
    empty = BenchmarkOutput().to_dict()
    assert STABLE_KEYS <= set(empty) and all(empty[k] is None for k in STABLE_KEYS - {"memory_mb"})


# ---- every logcat format, generated from the same tool output ---------------------------------------------


def _logcat(
    lines: list[str], fmt: str, when: str = "11-29 12:00:01.123", ids: tuple = ("", 4242, 4250), tag: str = "tflite"
) -> str:
    """benchmark_model's lines as `adb logcat -v FMT` prints them (AOSP logprint.cpp's layouts)."""
    uid, pid, tid = ids
    owner = f"{uid} " if uid else ""
    out = []
    for line in lines:
        if fmt == "brief":
            out.append(f"I/{tag:<8}({pid:>5}): {line}")
        elif fmt == "process":
            out.append(f"I({pid:>5}) {line}  ({tag})")
        elif fmt == "tag":
            out.append(f"I/{tag:<8}: {line}")
        elif fmt == "time":
            out.append(f"{when} I/{tag:<8}({pid:>5}): {line}")
        elif fmt == "threadtime":
            out.append(f"{when} {owner}{pid:>5} {tid:>5} I {tag:<8}: {line}")
        elif fmt == "long":
            out += [f"[ {when} {owner}{pid:>5}:{tid:>5} I/{tag:<8} ]", line, ""]
    return "\r\n".join(out)


LOGCAT_FORMATS = ["brief", "process", "tag", "time", "threadtime", "long"]


@pytest.mark.parametrize("fmt", LOGCAT_FORMATS)
@pytest.mark.parametrize(
    "variant",
    [
        {},  # logcat's defaults
        {"when": "2026-11-29 12:00:01.123456 +0000", "ids": ("u0_a123", 31337, 7), "tag": "tflite_benchmark"},
        {"when": "1796279095.323", "ids": ("1000", 12, 123456)},  # epoch seconds, a numeric uid, unpadded ids
    ],
)
def test_every_logcat_format_parses_as_the_plain_output(fmt, variant):
    plain = (OWN / "modern_xnnpack_percentiles.txt").read_text().splitlines()
    expected = parse_benchmark_output("\n".join(plain)).to_dict()
    assert expected["inference"] is not None and expected["op_profile"] is not None  # a full output, tables too
    assert parse_benchmark_output(_logcat(plain, fmt, **variant)).to_dict() == expected


def test_the_package_exports_the_parser():
    from edgepipe import android_bench

    assert android_bench.parse_benchmark_output is parse_benchmark_output
