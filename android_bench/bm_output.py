"""Read the output of TensorFlow Lite's benchmark_model, any version from 1.12 on, into one record.

benchmark_model's output has changed many times. Plain stdout, lines prefixed "INFO: " (TFLite 2.x)
and Android logcat captures in any of logcat's formats (tag tflite) all parse the same way, and
CRLF line ends are fine. A figure the tool did not print is None: it is never 0 and never estimated.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Callable

from edgepipe.models.shared.errors import DeviceError

# adb logcat's formats (AOSP liblog logprint.cpp), each with any padding inside the tag and the ids:
#   threadtime  "11-29 12:00:01.123  4242  4250 I tflite  : msg"     (uid modifier: "... u0_a12  4242  4250 I ...")
#   time        "11-29 12:00:01.123 I/tflite  ( 4242): msg"
#   brief       "I/tflite  ( 4242): msg"
#   tag         "I/tflite  : msg"
#   process     "I( 4242) msg  (tflite)"
#   long        "[ 11-29 12:00:01.123  4242: 4250 I/tflite ]" on a line of its own, then msg, then a blank line
# Times may carry a year, be epoch or monotonic seconds ("1796279095.323") and end in a zone.
_TIME = r"\s*(?:(?:\d{4}-)?\d\d-\d\d\s+\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)(?:\s+(?:[+-]\d{4}|[A-Z]{2,5}))?"
_PRIORITY = r"[VDIWEFAS]"
_LOGCAT_PREFIX = re.compile(
    rf"^{_TIME}\s+(?:\S+\s+)?\d+\s+\d+\s+{_PRIORITY}\s+[^:]*?\s*: ?"  # threadtime
    rf"|^(?:{_TIME}\s+)?{_PRIORITY}/[^(:]*?\s*\([^)]*\): ?"  # time, brief
    rf"|^{_PRIORITY}/[^\s(:]+\s*: ?"
)  # tag
_LOGCAT_PROCESS = re.compile(rf"^{_PRIORITY}\(\s*[^)]*\) (.*?)(?:\s+\([^()]*\))?$")
_LOGCAT_LONG_HEADER = re.compile(rf"^\[{_TIME}\s+(?:\S+\s+)?\d+:\s*\d+\s+{_PRIORITY}/[^\]]*\]$")
# TFLite 2.x starts each log message with its level; continuation lines of a message have no prefix.
_LEVEL_PREFIX = re.compile(r"^(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG|FATAL): ")

_RUNNING = re.compile(r"^Running benchmark for (?:at least )?\d+ iterations")
# Stat<>::OutputToStream; "curr=.. count=.." is the field order of TensorFlow's older StatSummarizer.
_STAT_LINE = re.compile(r"^(?=.*\bcount=\d)(?:count|curr)=")
_STAT_FIELD = re.compile(r"(\w+)=([-+]?(?:nan|inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))", re.IGNORECASE)
_STAT_KEYS = {
    "first": "first_us",
    "curr": "curr_us",
    "min": "min_us",
    "max": "max_us",
    "avg": "avg_us",
    "std": "std_us",
    "p5": "p5_us",
    "median": "median_us",
    "p50": "median_us",
    "p95": "p95_us",
}

# "Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): .." (2.x) and
# "Average inference timings in us: Warmup: .., Init: .., no stats: .." (1.x, where Warmup is the average).
_SUMMARY = re.compile(r"^(?:Average )?[Ii]nference timings in us: (.+)$")
_SUMMARY_LABELS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup (avg)": "warmup_avg_us",
    "inference (avg)": "inference_avg_us",
    "warmup": "warmup_avg_us",
    "no stats": "inference_avg_us",
}

_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]*)\) node")
# "28 operations will run on the GPU, and the remaining 3 operations will run on the CPU." (older builds:
# "First 28 operations will run on the GPU, and the remaining 3 on the CPU.")
_GPU_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+)")
_GPU_KERNELS = re.compile(r"Created [1-9]\d* GPU delegate kernels|GPU delegate created")
_APPLIED = re.compile(r"Explicitly applied (.+?) delegate, and the model graph will be (completely|partially)")

_INIT_HEADING = "Profiling Info for Benchmark Initialization"
_REGULAR_HEADING = "Operator-wise Profiling Info for Regular Benchmark Runs"
# Tables after these belong to other subgraphs or to a delegate's internal ops, not to the model's nodes.
_OTHER_HEADING = re.compile(r"^(?:Subgraph \(index: \d+\) \w+:|Delegate internal:)$")
_TITLE = re.compile(r"^=+ (.+?) =+$")
_COLUMNS = {
    "nodetype": "node_type",
    "start": "start_ms",
    "first": "first_ms",
    "avgms": "avg_ms",
    "%": "percent",
    "avg%": "avg_percent",
    "cdf%": "cdf_percent",
    "memkb": "mem_kb",
    "timescalled": "times_called",
    "name": "name",
    "count": "count",
}
_RUN_ORDER_KEYS = (
    "node_type",
    "start_ms",
    "first_ms",
    "avg_ms",
    "percent",
    "cdf_percent",
    "mem_kb",
    "times_called",
    "name",
)
_BY_TYPE_KEYS = ("node_type", "count", "avg_ms", "avg_percent", "cdf_percent", "mem_kb", "times_called")
_TABLE_KEYS = {"Run Order": _RUN_ORDER_KEYS, "Summary by node type": _BY_TYPE_KEYS}


def _number(text: str) -> float | None:
    """A printed number as a float; nan (an empty Stat's average) and non-numbers are None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


_FACTS: dict[str, tuple[re.Pattern, Callable[[re.Match], object]]] = {
    "model_size_mb": (re.compile(r"^The input model file size \(MB\): (\S+)"), lambda m: _number(m[1])),
    "graph": (re.compile(r"^Graph: \[(.*)\]$"), lambda m: m[1]),
    "num_threads": (re.compile(r"^Num threads: \[(-?\d+)\]"), lambda m: int(m[1])),
    "cpu_threads": (re.compile(r"^#threads used for CPU inference: \[(-?\d+)\]"), lambda m: int(m[1])),
    "init_session_ms": (re.compile(r"^Initialized session in ([-+.\deE]+)\s*ms"), lambda m: _number(m[1])),
    "peak_footprint": (
        re.compile(r"^Peak memory footprint \(MB\): init=(\S+) overall=(\S+)"),
        lambda m: (_number(m[1]), _number(m[2])),
    ),
    "footprint_delta": (
        re.compile(
            r"^Memory footprint delta from the start of the tool \(MB\): "
            r"init=(\S+) overall=(\S+)"
        ),
        lambda m: (_number(m[1]), _number(m[2])),
    ),
    "periodic_peak_mb": (
        re.compile(r"^Overall peak memory footprint \(MB\) via periodic monitoring: (\S+)"),
        lambda m: _number(m[1]),
    ),
}


@dataclass(frozen=True)
class RunStats:
    """One stat line: microseconds per run over a warm-up or measured phase."""

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None

    def to_dict(self) -> dict:
        """JSON form: count and the nine *_us fields."""
        return asdict(self)


@dataclass(frozen=True)
class OpTables:
    """The op-profiling tables of one phase (--enable_op_profiling), rows as dicts keyed by column."""

    run_order: tuple[dict, ...]
    by_node_type: tuple[dict, ...]
    nodes_executed: int | None
    timings: RunStats | None  # the profiler's own "Timings (microseconds)" line, not the benchmark's

    def to_dict(self) -> dict:
        """JSON form."""
        return {
            "run_order": [dict(r) for r in self.run_order],
            "summary_by_node_type": [dict(r) for r in self.by_node_type],
            "nodes_executed": self.nodes_executed,
            "timings": self.timings.to_dict() if self.timings else None,
        }


@dataclass(frozen=True)
class BenchmarkOutput:
    """What one benchmark_model run printed; anything it did not print is None.

    Timings: init_us only comes from the "Inference timings in us" summary line. If the summary does
    not give the other three, they come from the stat lines, which hold the same figures (the tool
    computes its summary from them): inference_avg_us is the measured line's avg, warmup_avg_us the
    warm-up line's avg and first_inference_us the warm-up line's first. An "(all same)" line
    (count=N curr=X) means every run took X, so first, min, max, avg and the percentiles are X and
    std is 0.
    Memory: memory_init_mb and memory_overall_mb come from "Peak memory footprint (MB): init= overall="
    if it is printed, otherwise from "Memory footprint delta from the start of the tool (MB)".
    memory_source says which line was used ("peak_footprint" or "footprint_delta"). memory_peak_mb is
    "Overall peak memory footprint (MB) via periodic monitoring".
    """

    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: RunStats | None = None
    inference: RunStats | None = None
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    memory_source: str | None = None
    num_threads: int | None = None  # "Num threads", else "#threads used for CPU inference"; -1 = runtime default
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    delegates: tuple[str, ...] = ()
    partially_delegated: bool | None = None
    op_profile: OpTables | None = None
    init_op_profile: OpTables | None = None
    graph: str | None = None
    init_session_ms: float | None = None

    def to_dict(self) -> dict:
        """JSON form: the stable keys, then delegates, partially_delegated and the other extras."""

        def maybe(part: RunStats | OpTables | None) -> dict | None:
            return part.to_dict() if part is not None else None

        return {
            "init_us": self.init_us,
            "first_inference_us": self.first_inference_us,
            "warmup_avg_us": self.warmup_avg_us,
            "inference_avg_us": self.inference_avg_us,
            "warmup": maybe(self.warmup),
            "inference": maybe(self.inference),
            "model_size_mb": self.model_size_mb,
            "memory_mb": {"init": self.memory_init_mb, "overall": self.memory_overall_mb, "peak": self.memory_peak_mb},
            "num_threads": self.num_threads,
            "delegated_nodes": self.delegated_nodes,
            "total_nodes": self.total_nodes,
            "op_profile": maybe(self.op_profile),
            "delegates": list(self.delegates),
            "partially_delegated": self.partially_delegated,
            "memory_source": self.memory_source,
            "init_op_profile": maybe(self.init_op_profile),
            "graph": self.graph,
            "init_session_ms": self.init_session_ms,
        }


def _parse_stat(text: str) -> RunStats:
    """One Stat<> line ("count=.. first=.. curr=.. ..", or "count=N curr=X(all same)")."""
    fields = dict((k.lower(), v) for k, v in _STAT_FIELD.findall(text))
    count = int(float(fields.pop("count")))
    values = {_STAT_KEYS[k]: _number(v) for k, v in fields.items() if k in _STAT_KEYS}
    curr = values.get("curr_us")
    if count > 0 and "avg" not in fields and curr is not None:
        # OutputToStream prints only count and curr when min == max, so every run took curr: this follows
        # from the format, it is not an estimate.
        values = {key: curr for key in _STAT_KEYS.values()} | {"std_us": 0.0}
    return RunStats(count=count, **values)


def _run_stats(lines: list[str]) -> list[RunStats]:
    """The benchmark's own stat lines, in order: the warm-up phase, then the measured one."""
    found, waiting = [], False
    for line in lines:
        if _RUNNING.match(line):
            waiting = True
        elif waiting and _STAT_LINE.match(line):
            found.append(_parse_stat(line))
            waiting = False
    if found or any(_RUNNING.match(line) for line in lines):
        return found
    # Output reduced to its figures (grep, a lossy log) lacks the "Running benchmark" lines. Then the bare
    # stat lines before the op-profile tables are the run stats; the tables' "Timings" lines never are.
    bare = []
    for line in lines:
        if line.startswith((_INIT_HEADING, _REGULAR_HEADING)) or _TITLE.match(line):
            break
        if _STAT_LINE.match(line):
            bare.append(_parse_stat(line))
    return bare


def _summary(lines: list[str]) -> dict[str, float | None]:
    """The figures of the first "Inference timings in us" line, keyed like BenchmarkOutput's fields."""
    for line in lines:
        match = _SUMMARY.match(line)
        if match:
            out = {}
            for part in match[1].split(","):
                label, _, value = part.partition(":")
                key = _SUMMARY_LABELS.get(label.strip().lower())
                if key:
                    out[key] = _number(value.strip())
            return out
    return {}


def _facts(lines: list[str]) -> dict[str, object]:
    """The single-line facts (model size, memory, threads, ...); the first printing of each wins."""
    found: dict[str, object] = {}
    for line in lines:
        for key, (pattern, convert) in _FACTS.items():
            if key not in found and (match := pattern.match(line)):
                found[key] = convert(match)
    return found


def _delegation(lines: list[str]) -> tuple[int | None, int | None, tuple[str, ...], bool | None]:
    """(delegated nodes, total nodes, delegate names, partially delegated) from the delegates' log lines."""
    replaced = [m for m in map(_REPLACING.search, lines) if m]
    gpu = [m for m in map(_GPU_SPLIT.search, lines) if m]
    applied = [m for m in map(_APPLIED.search, lines) if m]
    delegated = total = None
    if replaced:  # one line per delegated subgraph
        delegated = sum(int(m[1]) for m in replaced)
        # Builds before "out of Y" only say how many nodes were delegated, so the total is unknown.
        total = sum(int(m[2]) for m in replaced) if all(m[2] for m in replaced) else None
        names = [m[3] for m in replaced]
    elif gpu:  # the GPU delegate's own count, when the "Replacing" line is not shown (VERBOSE level)
        delegated = sum(int(m[1]) for m in gpu)
        total = sum(int(m[1]) + int(m[2]) for m in gpu)
        names = ["GPU"]
    else:
        names = [m[1] for m in applied]
        if not names and any(_GPU_KERNELS.search(line) for line in lines):
            names = ["GPU"]
    if delegated is not None and total is not None:
        partial = delegated < total
    elif applied:
        partial = any(m[2] == "partially" for m in applied)
    else:
        partial = None
    return delegated, total, tuple(dict.fromkeys(names)), partial


def _profile_sections(lines: list[str]) -> dict[str, list[str]]:
    """The op-profile lines of benchmark initialisation ("init") and of the measured runs ("regular")."""
    sections: dict[str, list[str]] = {"init": [], "regular": []}
    current = None
    for line in lines:
        if line.startswith(_INIT_HEADING):
            current = "init"
        elif line.startswith(_REGULAR_HEADING):
            current = "regular"
        elif _OTHER_HEADING.match(line):
            current = "other"
        elif current is None and _TITLE.match(line):
            current = "regular"  # builds before 2.2 print the measured runs' tables without a heading
            sections[current].append(line)
        elif current in sections:
            sections[current].append(line)
    return sections


def _cell(key: str, text: str) -> str | int | float | None:
    """One table cell: names stay text, counts become ints, times and percentages floats."""
    if key in ("node_type", "name"):
        return text
    value = _number(text.rstrip("%"))
    if key in ("count", "times_called") and value is not None and value.is_integer():
        return int(value)
    return value


def _op_tables(lines: list[str]) -> OpTables | None:
    """Parse one section's tables, mapping columns by their header names since the columns vary by version."""
    tables: dict[str, list[dict]] = {}
    title, header, nodes, timings = None, None, None, None
    for line in lines:
        stripped = line.strip()
        if match := _TITLE.match(stripped):
            title, header = match[1].strip(), None
        elif not stripped:
            title = None  # a blank line ends a table
        elif title in _TABLE_KEYS and header is None and stripped.startswith("["):
            header = [_COLUMNS.get(re.sub(r"\s", "", h).lower()) for h in re.findall(r"\[([^\]]*)\]", stripped)]
        elif title in _TABLE_KEYS and header:
            cells = [c.strip() for c in stripped.split("\t")]
            if len(cells) == len(header):
                row = {key: _cell(key, c) for key, c in zip(header, cells) if key}
                tables.setdefault(title, []).append({key: row.get(key) for key in _TABLE_KEYS[title]})
        elif match := re.match(r"^Number of nodes executed: (\d+)", stripped):
            nodes = int(match[1])
        elif (match := re.match(r"^Timings \(microseconds\): (.+)$", stripped)) and _STAT_LINE.match(match[1]):
            timings = _parse_stat(match[1])
    if not tables:
        return None
    return OpTables(tuple(tables.get("Run Order", ())), tuple(tables.get("Summary by node type", ())), nodes, timings)


def _no_timings_message(lines: list[str]) -> str:
    """One line for a run that printed no timings, quoting the line that most likely says why."""
    said = [" ".join(line.split()) for line in lines if line.strip()]
    # The tool ends every failure with "Benchmarking failed.", which says nothing of the cause; the line
    # before it ("Failed to mmap model ...", "Failed to allocate tensors!") does.
    telling = [line for line in said if _LEVEL_PREFIX.sub("", line) != "Benchmarking failed."]
    last = (telling or said or ["(no output at all)"])[-1]
    if len(last) > 200:
        last = last[:197] + "..."
    return f"benchmark_model printed no timings; the last line of its output: {last}"


def _messages(text: str) -> list[str]:
    """The tool's own lines: every logcat prefix (or suffix, or header line) taken off."""
    lines: list[str] = []
    long_entry = False
    for line in text.splitlines():
        line = line.rstrip()
        if _LOGCAT_LONG_HEADER.match(line):
            if long_entry and lines and lines[-1] == "":
                lines.pop()  # -v long ends every entry with a blank line of its own
            long_entry = True
            continue
        process = _LOGCAT_PROCESS.match(line)
        lines.append(process.group(1) if process else _LOGCAT_PREFIX.sub("", line, count=1))
    if long_entry and lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse benchmark_model's output (any version, plain or logcat); DeviceError if it printed no timings."""
    raw = _messages(text)
    lines = [_LEVEL_PREFIX.sub("", line, count=1) for line in raw]
    stats = _run_stats(lines)
    warmup = stats[0] if stats else None
    inference = stats[1] if len(stats) > 1 else None
    summary = _summary(lines)
    if inference is None and not summary:
        raise DeviceError(_no_timings_message(raw))

    facts = _facts(lines)
    memory_source = next((k for k in ("peak_footprint", "footprint_delta") if k in facts), None)
    memory_init, memory_overall = facts[memory_source] if memory_source else (None, None)
    delegated, total, delegates, partial = _delegation(lines)
    sections = _profile_sections(lines)
    threads = facts.get("num_threads")

    def summary_or_stat(key: str, stat: RunStats | None, attr: str) -> float | None:
        printed = summary.get(key)
        return printed if printed is not None else (getattr(stat, attr) if stat else None)

    return BenchmarkOutput(
        init_us=summary.get("init_us"),
        first_inference_us=summary_or_stat("first_inference_us", warmup, "first_us"),
        warmup_avg_us=summary_or_stat("warmup_avg_us", warmup, "avg_us"),
        inference_avg_us=summary_or_stat("inference_avg_us", inference, "avg_us"),
        warmup=warmup,
        inference=inference,
        model_size_mb=facts.get("model_size_mb"),
        memory_init_mb=memory_init,
        memory_overall_mb=memory_overall,
        memory_peak_mb=facts.get("periodic_peak_mb"),
        memory_source=memory_source,
        num_threads=threads if threads is not None else facts.get("cpu_threads"),
        delegated_nodes=delegated,
        total_nodes=total,
        delegates=delegates,
        partially_delegated=partial,
        op_profile=_op_tables(sections["regular"]),
        init_op_profile=_op_tables(sections["init"]),
        graph=facts.get("graph"),
        init_session_ms=facts.get("init_session_ms"),
    )
