"""Which TFLite op type a profiler's event stands for.

LiteRT's profiler (host) and benchmark_model's op profiling (phone) name an op that XNNPACK runs
by XNNPACK's operator, "Convolution (NHWC, QC8) IGEMM", and an op that TFLite's own kernels run by
its builtin op type, "SOFTMAX". Comparing an int8 file's op times with its float32 twin's needs
both in one vocabulary: the builtin op type, which is also what the quantizer's denylist takes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

# XNNPACK operator (the name before its " (layout, types)") -> the TFLite builtin op it runs.
# Operators that several builtins lower to (Clamp, Copy, Slice, Convert, Static Reshape) are left
# out: their time cannot be charged to one op type.
_XNNPACK_TO_BUILTIN = {
    "Abs": "ABS",
    "Add": "ADD",
    "ApproxGELU": "GELU",
    "Average Pooling": "AVERAGE_POOL_2D",
    "Batch Matrix Multiply": "BATCH_MATMUL",
    "Ceiling": "CEIL",
    "Constant Pad": "PAD",
    "Cosine": "COS",
    "Deconvolution": "TRANSPOSE_CONV",
    "Depth To Space": "DEPTH_TO_SPACE",
    "Divide": "DIV",
    "Dynamic Fully Connected": "FULLY_CONNECTED",
    "ELU": "ELU",
    "Exp": "EXP",
    "Floor": "FLOOR",
    "Fully Connected": "FULLY_CONNECTED",
    "GELU": "GELU",
    "HardSwish": "HARD_SWISH",
    "LeakyReLU": "LEAKY_RELU",
    "Log": "LOG",
    "Max Pooling": "MAX_POOL_2D",
    "Maximum": "MAXIMUM",
    "Mean": "MEAN",
    "Minimum": "MINIMUM",
    "Multiply": "MUL",
    "Negate": "NEG",
    "PReLU": "PRELU",
    "Power": "POW",
    "Reciprocal Square Root": "RSQRT",
    "Reduce Max": "REDUCE_MAX",
    "Reduce Min": "REDUCE_MIN",
    "Resize Bilinear": "RESIZE_BILINEAR",
    "Sigmoid": "LOGISTIC",
    "Sign": "SIGN",
    "Sine": "SIN",
    "Softmax": "SOFTMAX",
    "Space To Depth": "SPACE_TO_DEPTH",
    "Square": "SQUARE",
    "Square Root": "SQRT",
    "Squared Difference": "SQUARED_DIFFERENCE",
    "Subtract": "SUB",
    "Sum": "SUM",
    "TanH": "TANH",
    "Transpose": "TRANSPOSE",
}
_BUILTIN = re.compile(r"[A-Z][A-Z0-9_]*")


def builtin_op(event: str) -> str | None:
    """The TFLite builtin op type a profiler event name stands for, or None when it cannot be told."""
    name = event.strip().removeprefix("Delegate/")
    if _BUILTIN.fullmatch(name):
        return name  # a TFLite kernel's own event
    operator, _, rest = name.partition(" (")
    if operator == "Convolution" and rest:
        return "DEPTHWISE_CONV_2D" if name.endswith("DWConv") else "CONV_2D"
    return _XNNPACK_TO_BUILTIN.get(operator) if rest else None


def by_builtin_op(times: Iterable[tuple[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(ms by builtin op type, ms of the events that name none, by event) from (event, ms) pairs."""
    known: dict[str, float] = defaultdict(float)
    unknown: dict[str, float] = defaultdict(float)
    for event, ms in times:
        op = builtin_op(event)
        if op is None:
            unknown[event] += ms
        else:
            known[op] += ms
    return dict(known), dict(unknown)
