"""A right file whose float rounding exceeds the tolerance is exported once PyTorch in float64 says so."""

import json
import textwrap

from tests.conftest import edgepipe

MODEL = textwrap.dedent("""
    import numpy as np
    import torch
    from torch import nn


    class Cancelling(nn.Module):
        # Activations in the thousands that the next layer cancels: float32 rounds the output by about 1e-3
        # of its peak in PyTorch, ONNX Runtime and TFLite alike.

        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            w1 = rng.normal(0, 300, (512, 64))
            null = np.linalg.svd(w1.T)[2][64:]  # rows orthogonal to every column of w1
            self.up = nn.Linear(64, 512, bias=False)
            self.down = nn.Linear(512, 8, bias=False)
            self.side = nn.Linear(64, 8)
            with torch.no_grad():
                self.up.weight.copy_(torch.from_numpy(w1))
                self.down.weight.copy_(torch.from_numpy(null[:8] * 3))

        def forward(self, x):
            return self.down(self.up(x)) + self.side(x)


    def cancelling():
        return Cancelling(), torch.randn(1, 64)
""")


def test_float_rounding_beyond_the_tolerance_is_told_from_an_error_by_pytorch_in_float64(tmp_path):
    (tmp_path / "cancel_models.py").write_text(MODEL)
    done = edgepipe("export", "cancel_models:cancelling", "-o", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ledger = json.loads((tmp_path / "out" / "ledger.json").read_text())
    assert ledger["float64_reference"] == "measured"
    judged = {h["hop"]: h for h in ledger["hops"]}
    for hop in ("torch -> onnx:fp32", "torch -> tflite:fp32", "onnx:fp32 -> tflite:fp32"):
        (out,) = judged[hop]["outputs"]
        # beyond the tolerance and the 80 dB that float rounding against float32 alone allows ...
        assert out["max_abs"] > 10 * out["tolerance"] and out["sqnr_db"] < 80
        # ... and as close to float64 as PyTorch's own float32
        assert out["ok"] and out["float_rounding"]
        assert 0 < out["float64_max_abs"] <= 2 * out["torch_float32_max_abs"]
    assert judged["torch -> torch:fp32"]["outputs"][0]["float64_max_abs"] is None  # within tolerance: not asked
