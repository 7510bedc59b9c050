"""Every zoo model goes PyTorch -> ONNX -> TFLite fp32 with its ledger in tolerance and its metric kept.

Runs in one process (TensorFlow loads once) through the same runner `edgepipe export` uses, then
proves in a fresh process that has not imported TensorFlow that every artifact runs on the plain
TFLite runtime (no Flex ops).
"""

import json
import subprocess
import sys

import pytest

from edgepipe.models.record import recorded
from edgepipe.models.zoo import MODELS
from edgepipe.pipeline.core.exporting import export_job, export_summary
from edgepipe.pipeline.core.runner import EXPORT_ONLY, run_job

# How far a fresh training run may land from the recorded figure (thread scheduling can
# reorder float sums): a tenth of a point of accuracy, or a fifth of a dB of PSNR.
RETRAIN_TOLERANCE = {"accuracy": 0.01, "psnr_db": 0.2}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    results = {}
    for name in MODELS:
        job = export_job(name, ("fp32",))
        results[name] = export_summary(job, run_job(job, root / name, only=EXPORT_ONLY))
    return results


@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_model_converts_with_numerics_and_metric(exports, name):
    out = exports[name]
    spec = MODELS[name]
    torch_art = next(a for a in out["artifacts"] if a["format"] == "torch")
    tflite = next(a for a in out["artifacts"] if a["format"] == "tflite")
    assert tflite["ledger"]["ok"] and tflite["ledger"]["max_abs"] <= 1e-4 * 50, tflite["ledger"]
    assert tflite["custom_ops"] == []
    for metric, value in torch_art["metrics"].items():
        assert abs(tflite["metrics"][metric] - value) <= (0.005 if metric != "psnr_db" else 0.05), (metric, value)
    primary = spec.primary_metric
    expected = recorded()[name]["metrics"][primary]
    assert abs(torch_art["metrics"][primary] - expected) <= RETRAIN_TOLERANCE[primary], (name, expected)
    assert [i["name"] for i in tflite["inputs"]] == spec.input_names


def test_rewrites_are_recorded_in_the_manifest(exports):
    manifest = json.loads(
        (__import__("pathlib").Path(exports["tiny_transformer"]["run_dir"]) / "manifest.json").read_text()
    )
    rewrites = manifest["stages"]["export"]["result"]["rewrites"]
    assert any("gelu" in r for r in rewrites) and exports["cnn_digits"]["rewrites"] == []


def test_the_onnx_passes_that_ran_are_recorded_in_order(exports):
    from edgepipe.exporters.onnx.passes import PASSES

    for out in exports.values():
        names = [p["name"] for p in out["onnx_passes"]]
        assert names[0] == "onnxsim" and all(name in PASSES for name in names[1:]), names
        assert names[1:] == [name for name in PASSES if name in names[1:]]  # the registry's order
    # mobilenet_digits' Hardswish is spelt as the chain TFLite keeps as one op
    (hard_swish,) = [p for p in exports["mobilenet_digits"]["onnx_passes"] if p["name"] == "spelt_hard_swish"]
    assert int(hard_swish["detail"].split()[0]) >= 1, hard_swish


def test_every_zoo_artifact_runs_without_tensorflow(exports):
    paths = [next(a["path"] for a in out["artifacts"] if a["format"] == "tflite") for out in exports.values()]
    script = (
        "import sys, numpy as np\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "for path in sys.argv[1:]:\n"
        "    it = Interpreter(model_path=path)\n"
        "    it.allocate_tensors()\n"
        "    for d in it.get_input_details():\n"
        "        it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))\n"
        "    it.invoke()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('ran', len(sys.argv) - 1)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"ran {len(MODELS)}" in result.stdout
