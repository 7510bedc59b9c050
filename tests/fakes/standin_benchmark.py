"""A stand-in for TensorFlow Lite's benchmark_model on the fake phone.

It really runs the model with the LiteRT interpreter and prints the real tool's output format
(TFLite 2.x, to stderr with `INFO: `). While the measured phase runs it holds the fake phone's
`load` flag, so the fuel gauge adds the scripted load current, and it records the phase's
/proc/uptime bounds and run count in truth.json for the energy test.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

STATE = Path(os.environ.get("FAKE_PHONE_STATE", "."))


def log(text: str) -> None:
    print(f"INFO: {text}", file=sys.stderr, flush=True)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def stats_line(times_us: list[float], percentiles: bool) -> str:
    t = np.asarray(times_us)
    if len(t) == 1:
        return f"count=1 curr={t[0]:.0f}"
    line = (
        f"count={len(t)} first={t[0]:.0f} curr={t[-1]:.0f} min={t.min():.0f} max={t.max():.0f} "
        f"avg={t.mean():g} std={t.std():.0f}"
    )
    if percentiles:
        line += f" p5={np.percentile(t, 5):.0f} median={np.percentile(t, 50):.0f} p95={np.percentile(t, 95):.0f}"
    return line


def phase(invoke, runs: int, min_secs: float, max_secs: float) -> list[float]:
    times, start = [], time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_secs:
        t0 = time.perf_counter_ns()
        invoke()
        times.append((time.perf_counter_ns() - t0) / 1e3)
        if time.perf_counter() - start > max_secs:
            break
    return times


def main(argv: list[str]) -> int:
    f = flags(argv)
    graph = f.get("graph", "")
    shown = graph.replace(os.environ.get("FAKE_PHONE_ROOT", "\0"), "")
    threads, delegate = int(f.get("num_threads", "1")), _delegate(f)
    log("STARTING!")
    log(f"Log parameter values verbosely: [0]\nINFO: Min num runs: [{f.get('num_runs', '50')}]")
    log(f"Num threads: [{threads}]\nINFO: Graph: [{shown}]")
    if f.get("enable_op_profiling") == "true":
        log("Enable op profiling: [1]")
    if not Path(graph).is_file():
        print(f"ERROR: Could not open '{shown}'.\nERROR: Failed to mmap model {shown}", file=sys.stderr)
        log("Benchmarking failed.")
        return 1
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    t0 = time.perf_counter()
    resolver = OpResolverType.AUTO if delegate == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=graph, num_threads=threads, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    nodes = len(interp._get_ops_details())
    log(f"Loaded model {shown}\nINFO: The input model file size (MB): {Path(graph).stat().st_size / 1e6:g}")
    init_us = (time.perf_counter() - t0) * 1e6
    log(f"Initialized session in {init_us / 1e3:.3f}ms.")
    _delegate_lines(delegate, nodes)
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
        data = rng.integers(info.min, info.max, d["shape"]) if info else rng.standard_normal(d["shape"])
        interp.set_tensor(d["index"], data.astype(d["dtype"]))
    max_secs = float(f.get("max_secs", "150"))
    warm_runs, warm_secs = int(f.get("warmup_runs", "1")), float(f.get("warmup_min_secs", "0.5"))
    runs, secs = int(f.get("num_runs", "50")), float(f.get("min_secs", "1"))
    log(
        f"Running benchmark for at least {warm_runs} iterations and at least {warm_secs:g} seconds but terminate "
        f"if exceeding {max_secs:g} seconds."
    )
    warm = phase(interp.invoke, warm_runs, warm_secs, max_secs)
    log(stats_line(warm, False) + "\n")
    log(
        f"Running benchmark for at least {runs} iterations and at least {secs:g} seconds but terminate "
        f"if exceeding {max_secs:g} seconds."
    )
    (STATE / "load").write_text("1")
    start = uptime()
    measured = phase(interp.invoke, runs, secs, max_secs)
    end = uptime()
    (STATE / "load").unlink()
    log(stats_line(measured, True) + "\n")
    if f.get("enable_op_profiling") != "true":  # the profiling pass is not the measured one
        (STATE / "truth.json").write_text(
            json.dumps({"start": start, "end": end, "count": len(measured), "argv": argv, "graph": shown})
        )
    log(
        f"Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
        f"Warmup (avg): {np.mean(warm):g}, Inference (avg): {np.mean(measured):g}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(
        "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the "
        "actual memory footprint of the model at runtime. Take the information at your discretion."
    )
    log(f"Memory footprint delta from the start of the tool (MB): init={peak_mb * 0.8:.4f} overall={peak_mb:.4f}")
    if f.get("report_peak_memory_footprint") == "true":
        log(f"Overall peak memory footprint (MB) via periodic monitoring: {peak_mb:.4f}")
    if f.get("enable_op_profiling") == "true":
        _op_table(graph, interp, threads)
    return 0


def _delegate(f: dict) -> str:
    for name in ("gpu", "nnapi"):
        if f.get(f"use_{name}") == "true":
            return name
    return "cpu" if f.get("use_xnnpack") == "false" else "xnnpack"


def _delegate_lines(delegate: str, nodes: int) -> None:
    if delegate == "xnnpack":
        log("Created TensorFlow Lite XNNPACK delegate for CPU.")
        log(
            f"Replacing {nodes} out of {nodes} node(s) with delegate (TfLiteXNNPackDelegate) node, "
            "yielding 1 partitions for the whole graph."
        )
    elif delegate == "gpu":  # this phone's GPU lacks the last op: a partial delegation, the rest on the CPU
        log("Created TensorFlow Lite delegate for GPU.")
        log(
            f"Replacing {nodes - 1} out of {nodes} node(s) with delegate (TfLiteGpuDelegateV2) node, "
            "yielding 2 partitions for the whole graph."
        )
    elif delegate == "nnapi":
        log(
            f"Replacing {nodes} out of {nodes} node(s) with delegate (TfLiteNnapiDelegate) node, "
            "yielding 1 partitions for the whole graph."
        )


def _op_table(graph: str, interp, threads: int) -> None:
    """The per-op tables, timed by LiteRT's own profiler over a few runs."""
    from edgepipe.profilers.op_profile import profile_ops

    details = interp.get_signature_runner().get_input_details()
    feeds = {name: np.zeros(d["shape"], d["dtype"]) for name, d in details.items()}
    ops = profile_ops("tflite", Path(graph), feeds, threads, runs=10)
    header = "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]"  # noqa: E501 (the tool's header)
    log("Operator-wise Profiling Info for Regular Benchmark Runs:")
    log("============================== Run Order ==============================")
    log(header)
    start = cdf = 0.0
    for i, op in enumerate(ops.ops):
        cdf += op.share * 100
        log(
            f"\t{op.op_type:>24}\t{start:17.3f}\t{op.total_ms:9.3f}\t{op.total_ms:9.3f}\t{op.share * 100:7.3f}%\t"
            f"{cdf:7.3f}%\t{0:10.3f}\t{op.count:14d}\t[{op.op_type}]:{i}"
        )
        start += op.total_ms
    log("")
    log("============================== Summary by node type ==============================")
    log("\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]")
    cdf = 0.0
    for op in ops.ops:
        cdf += op.share * 100
        log(
            f"\t{op.op_type:>24}\t{op.count:9d}\t{op.total_ms:10.3f}\t{op.share * 100:10.3f}%\t{cdf:10.3f}%\t"
            f"{0:10.3f}\t{op.count:14d}"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
