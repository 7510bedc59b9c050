"""Google's two int8 routes for a benchmark model, run in litert-torch's own venv.

Usage: python google_int8.py MODEL DATA.npz OUT_DIR [WEIGHTS]
MODEL is the user model's weights (user_mobilenet, a .pt state dict), or a real_model_zoo name whose
weights are WEIGHTS (a state dict, so that every route converts the same random weights).
Prints {"files": {route: path}, "errors": {route: message}} as JSON on its last line:
- "ai-edge-quantizer static int8": litert-torch's fp32 file, then ai-edge-quantizer's static_wi8_ai8 recipe
  calibrated on the first 200 samples of DATA.npz;
- "litert-torch PT2E int8": PT2E per-channel symmetric int8, observers fed the same samples.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from user_mobilenet import build  # noqa: E402

CALIBRATION_SAMPLES = 200


def static_int8(module, example, samples: np.ndarray, out: Path) -> Path:
    """litert-torch's fp32 file quantized by ai-edge-quantizer (static, int8 weights and activations)."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    fp32 = out / "litert_fp32.tflite"
    litert_torch.convert(module, example).export(str(fp32))
    signature = Interpreter(model_path=str(fp32)).get_signature_list()
    key, details = next(iter(signature.items()))
    name = details["inputs"][0]
    q = quantizer.Quantizer(str(fp32))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    calibration = q.calibrate({key: [{name: s[None]} for s in samples]})
    path = out / "aeq_static_int8.tflite"
    q.quantize(calibration).export_model(str(path), overwrite=True)
    return path


def pt2e_int8(module, example, samples: np.ndarray, out: Path) -> Path:
    """litert-torch's PT2E route: per-channel symmetric int8, calibrated by running the samples."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    )
    captured = torch.export.export(module, example).module()
    prepared = quantize_pt2e.prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for sample in samples:
            prepared(torch.from_numpy(sample[None]))
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    path = out / "pt2e_int8.tflite"
    litert_torch.convert(converted, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return path


def main() -> None:
    model, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if model.endswith(".pt"):
        module = build()[0]
        module.load_state_dict(torch.load(model, weights_only=True))
    else:
        import real_model_zoo

        module = real_model_zoo.factory(model)()[0]
        module.load_state_dict(torch.load(sys.argv[4], weights_only=True))
    module.eval()
    samples = np.load(data)["x"][:CALIBRATION_SAMPLES].astype(np.float32)
    example = (torch.from_numpy(samples[:1]),)
    files, errors = {}, {}
    for route, make in (("ai-edge-quantizer static int8", static_int8), ("litert-torch PT2E int8", pt2e_int8)):
        try:
            files[route] = str(make(module, example, samples, out).resolve())
        except Exception as exc:  # one route failing is a finding, not the end of the benchmark
            errors[route] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    print(json.dumps({"files": files, "errors": errors}))


if __name__ == "__main__":
    main()
