"""The TFLite step: onnx2tf's translation (and its patch), the boundary and layouts decided by one
ONNX Runtime run of evidence, the files written from a SavedModel, and what a file holds."""
