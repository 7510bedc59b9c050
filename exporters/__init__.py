"""torch -> ONNX -> TFLite conversion and the numerics ledger that checks every hop."""

import os

# TensorFlow's oneDNN kernels (on by default on x86) corrupt the heap on 2 threads in a batched
# MatMul that onnx2tf's translation runs on a ConvNeXt-style graph (_MklBatchMatMulV2, then a
# segfault; tests/exporters/test_onnx_fixes.py). TensorFlow reads this once, when it is first
# imported, and every TensorFlow import in edgepipe comes after this package's.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
