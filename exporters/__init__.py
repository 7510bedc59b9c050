"""torch -> ONNX -> TFLite conversion and the numerics ledger that checks every hop."""
