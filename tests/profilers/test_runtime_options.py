"""Runtime knobs on real runtimes: XNNPACK off, ORT optimisation levels, batch resizing, the tflite_runtime fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepipe.models.shared.errors import ConfigError
from edgepipe.profilers.harness import QUICK, TimingSettings
from edgepipe.profilers.profile import profile_in_process
from edgepipe.profilers.runtimes import ORT_OPTIMIZATION, RuntimeOptions, open_onnxruntime, open_tflite, open_torch
from tests.profile_models import onnx_graph

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)  # NHWC, real values in [0, 1)


@pytest.fixture(scope="module")
def models(cnn_files) -> dict[str, Path]:
    return cnn_files


def _output_scale(path: Path) -> float:
    from ai_edge_litert.interpreter import Interpreter

    return float(Interpreter(model_path=str(path)).get_output_details()[0]["quantization"][0])


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_xnnpack_off_runs_builtin_kernels_with_the_same_outputs(models, variant):
    on, off = open_tflite(models[variant]), open_tflite(models[variant], 1, RuntimeOptions(xnnpack=False))
    assert (on.kernels, on.note) == ("xnnpack", None)
    assert off.kernels == "builtin" and "by request" in off.note
    a, b = on.run({"x": SAMPLES[:1]})["output_0"], off.run({"x": SAMPLES[:1]})["output_0"]
    # Float kernels differ in summation order only; int8 ones may round one step apart.
    tolerance = 1e-6 if variant == "fp32" else 1.01 * _output_scale(models[variant])
    assert np.abs(a - b).max() <= tolerance


def test_ort_optimization_levels_load_label_and_agree(models):
    x = np.transpose(SAMPLES[:1], (0, 3, 1, 2)).copy()
    outputs = {}
    for level in ORT_OPTIMIZATION:
        session = open_onnxruntime(models["onnx"], 1, RuntimeOptions(ort_optimization=level))
        assert session.kernels == f"cpu, optimization {level}" and session.library.startswith("onnxruntime ")
        outputs[level] = session.run({"x": x})[session.output_names[0]]
    for level, out in outputs.items():
        np.testing.assert_allclose(out, outputs["disable"], rtol=1e-5, atol=1e-6, err_msg=level)


def test_unknown_ort_level_and_bad_batch_are_config_errors():
    with pytest.raises(ConfigError, match="'fast' is unknown; choose one of disable, basic, extended, all"):
        RuntimeOptions(ort_optimization="fast")
    with pytest.raises(ConfigError, match="batch 0"):
        RuntimeOptions(batch=0)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_tflite_batch_resize_gives_each_sample_its_batch_one_result(models, variant):
    batched = open_tflite(models[variant], 1, RuntimeOptions(batch=4))
    assert batched.inputs[0].shape == (4, 8, 8, 1)
    single = open_tflite(models[variant])
    expected = np.concatenate([single.run({"x": SAMPLES[i : i + 1]})["output_0"] for i in range(4)])
    np.testing.assert_array_equal(batched.run({"x": SAMPLES})["output_0"], expected)


def test_fixed_batch_onnx_and_pt2_refuse_another_batch(models, tmp_path):
    with pytest.raises(ConfigError, match=r"input 'x' has a fixed batch of 1 .*dynamic first dimension"):
        open_onnxruntime(models["onnx"], 1, RuntimeOptions(batch=4))
    with pytest.raises(ConfigError, match="does not run at batch 4"):
        open_torch(models["pt2"], 1, RuntimeOptions(batch=4))
    dynamic = open_onnxruntime(onnx_graph(tmp_path / "dyn.onnx", ["N", 3]), 1, RuntimeOptions(batch=4))
    assert dynamic.inputs[0].shape == (4, 3) and open_torch(models["pt2"]).kernels == "eager"


def test_profile_reports_load_peak_library_and_options(models):
    timing = TimingSettings(2, 0.0, 20, 0.0, 2.0)
    result = profile_in_process(
        "tflite",
        models["int8"],
        {"x": np.zeros((1, 8, 8, 1), np.int8)},
        1,
        timing,
        options=RuntimeOptions(xnnpack=False),
    )
    memory = result["memory"]
    assert 0 < memory["peak_rss_load_mb"] <= memory["peak_rss_mb"]
    assert result["library"].startswith("ai_edge_litert ") and result["kernels"] == "builtin"
    assert result["settings"]["xnnpack"] is False and result["batch"] == 1
    assert QUICK.max_seconds <= 5 and TimingSettings().min_runs >= 1024


# Runs in a child interpreter that cannot import ai_edge_litert, as on a board with only tflite_runtime.
_BLOCKED_RUN = """
import json, sys
import numpy as np

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in sys.argv[1].split(","):
            raise ImportError(f"{name} is blocked for this test")

sys.meta_path.insert(0, Block())
from edgepipe.profilers.runtimes import RuntimeOptions, open_tflite
x = np.load(sys.argv[2])
out = {}
for path in sys.argv[3:]:
    for xnnpack in (True, False):
        session = open_tflite(path, 1, RuntimeOptions(xnnpack=xnnpack, batch=len(x)))
        out[f"{path}|{xnnpack}"] = [session.library, session.kernels, session.run({"x": x})["output_0"].tolist()]
assert "ai_edge_litert" not in sys.modules
print(json.dumps(out))
"""


def _blocked(blocked: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED_RUN, blocked, *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_tflite_runtime_fallback_runs_the_model_like_ai_edge_litert(models, tmp_path):
    np.save(tmp_path / "x.npy", SAMPLES)
    paths = [str(models["fp32"]), str(models["int8"])]
    child = _blocked("ai_edge_litert", str(tmp_path / "x.npy"), *paths)
    assert child.returncode == 0, child.stderr
    for key, (library, kernels, values) in json.loads(child.stdout).items():
        path, xnnpack = key.split("|")
        assert library == "tflite_runtime 2.14.0" and kernels == ("xnnpack" if xnnpack == "True" else "builtin")
        batched = open_tflite(Path(path), 1, RuntimeOptions(xnnpack=xnnpack == "True", batch=4))
        assert batched.library.startswith("ai_edge_litert ")
        ours = batched.run({"x": SAMPLES})["output_0"]
        # TFLite's built-in kernels give identical results; XNNPACK changed between TFLite 2.14 and
        # LiteRT 2.x: float sums in another order, int8 rounding one step apart at most.
        if xnnpack == "False":
            np.testing.assert_array_equal(np.asarray(values, np.float32), ours, err_msg=key)
        elif path.endswith("fp32.tflite"):
            np.testing.assert_allclose(np.asarray(values, np.float32), ours, rtol=1e-6, atol=1e-7, err_msg=key)
        else:
            assert np.abs(np.asarray(values) - ours).max() <= 1.01 * _output_scale(Path(path)), key


def test_no_tflite_interpreter_at_all_names_both_packages(models, tmp_path):
    np.save(tmp_path / "x.npy", SAMPLES[:1])
    child = _blocked("ai_edge_litert,tflite_runtime", str(tmp_path / "x.npy"), str(models["fp32"]))
    assert child.returncode != 0
    assert "ProfileError" in child.stderr and "ai_edge_litert" in child.stderr and "tflite_runtime" in child.stderr
    assert "pip install tflite-runtime" in child.stderr
