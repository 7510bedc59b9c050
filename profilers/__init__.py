"""One timing harness over PyTorch, ONNX Runtime and TFLite; statistics, memory, host energy."""
