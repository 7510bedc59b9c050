"""The TFLite step: onnx2tf's translation (and its patch), the boundary and layouts decided by one
ONNX Runtime run of evidence, the files written from a SavedModel, what a file holds, and which op type
a profiler's event stands for."""

from edgepipe.exporters.tflite.op_names import builtin_op, by_builtin_op

__all__ = ["builtin_op", "by_builtin_op"]
