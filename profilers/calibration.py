"""A fixed calibration model: a yardstick timed next to a user's model, so budgets can be machine-relative.

"At most 20x the calibration model" holds on a fast laptop and a slow CI runner alike, where
"at most 2 ms" holds on one of them. The model never changes: a seeded 8-layer MatMul+Relu chain
on a 16x128 input (about 2 MFLOP), run by ONNX Runtime. `matmul_chain` also builds the models
whose cost tests and benchmarks need to set exactly (the work grows linearly with the depth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION = "calibration"
CALIBRATION_SHAPE, CALIBRATION_DEPTH = (16, 128), 8


def matmul_chain(path: Path, depth: int, shape: tuple[int, ...], seed: int = 0) -> Path:
    """y = relu(...relu(x @ W0)... @ W{depth-1}) as an ONNX file; x has `shape`, its last axis the width."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    width = shape[-1]
    rng = np.random.default_rng(seed)
    nodes, weights, previous = [], [], "x"
    for i in range(depth):
        # scaled by 1/sqrt(width) so activations stay O(1) along the chain instead of overflowing
        weights.append(
            numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"w{i}")
        )
        out = "y" if i == depth - 1 else f"r{i}"
        nodes += [
            helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [out]),
        ]
        previous = out
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9  # what onnxruntime 1.23 reads
    onnx.save(model, str(path))
    return Path(path)


def calibration_model(directory: Path) -> tuple[str, Path, dict[str, np.ndarray]]:
    """(runtime, path, feeds) of the calibration model, written into directory."""
    path = matmul_chain(Path(directory) / f"{CALIBRATION}.onnx", CALIBRATION_DEPTH, CALIBRATION_SHAPE, seed=20261129)
    feeds = {"x": np.random.default_rng(1).standard_normal(CALIBRATION_SHAPE).astype(np.float32)}
    return "onnxruntime", path, feeds
