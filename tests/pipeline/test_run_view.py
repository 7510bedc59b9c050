"""RunView: the one read-only view of a run directory that report, gate, batch summary and CLI use."""

import json

import pytest

from edgepipe.models.shared.errors import InputFileError
from edgepipe.pipeline.core.run_view import RunView


def _manifest() -> dict:
    export = {
        "artifacts": [
            {"format": "onnx", "variant": "fp32", "path": "model.onnx", "inputs": []},
            {"format": "tflite", "variant": "int8", "path": "model_int8.tflite", "inputs": [], "ops": 7},
        ]
    }
    validate = {
        "reference": "onnx:fp32",
        "ledger": {"tflite:int8": {"max_abs": 0.02, "sqnr_db": 31.5, "ok": True}},
        "metrics": {"onnx:fp32": {"accuracy": 0.97}, "tflite:int8": {"accuracy": 0.96}},
    }
    return {
        "job": {"job": {"name": "j", "model": "cnn_digits"}},
        "versions": {"onnx": "1.19.1"},
        "artifacts": [
            {"path": "model.onnx", "size_bytes": 4000, "sha256": "a", "stage": "export"},
            {"path": "model_int8.tflite", "size_bytes": 1100, "sha256": "b", "stage": "export"},
            {"path": "ledger.json", "size_bytes": 90, "sha256": "c", "stage": "validate"},
        ],
        "stages": {"export": {"result": export}, "validate": {"result": validate}},
    }


def test_artifacts_carry_their_key_size_and_record(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest()))
    run = RunView.read(tmp_path)
    assert [(a.key, a.size_bytes) for a in run.artifacts] == [("onnx:fp32", 4000), ("tflite:int8", 1100)]
    int8 = run.artifacts[1]
    assert int8.record["ops"] == 7
    assert run.ledger(int8.key)["sqnr_db"] == 31.5 and run.ledger("onnx:fp32") == {}
    assert run.metrics(int8.key) == {"accuracy": 0.96} and run.metrics("tflite:fp16") == {}
    assert run.result("profile") == {} and run.versions["onnx"] == "1.19.1"
    assert RunView.read(tmp_path / "manifest.json").artifacts == run.artifacts


def test_the_view_cannot_change_the_run(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest()))
    run = RunView.read(tmp_path)
    with pytest.raises(TypeError):
        run.results["export"] = {}
    with pytest.raises(TypeError):
        run.artifacts[0].record["path"] = "elsewhere"
    with pytest.raises(TypeError):
        run.sizes["model.onnx"] = 1


def test_a_stage_of_a_running_job_sees_its_declared_results_only(tmp_path):
    from edgepipe.pipeline.core.context import DeclaredResults

    manifest = _manifest()
    results = {name: record["result"] for name, record in manifest["stages"].items()}
    run = RunView.of_manifest(manifest, tmp_path, DeclaredResults("report", ("export",), results))
    assert len(run.artifacts) == 2
    with pytest.raises(RuntimeError, match="does not declare"):
        run.ledger("tflite:int8")


@pytest.mark.parametrize(
    "content, message",
    [(None, "not a run directory"), ("{", "is not JSON"), ('{"runs": []}', "not an edgepipe manifest")],
)
def test_what_is_not_a_run_is_one_clear_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(InputFileError, match=message) as caught:
        RunView.read(tmp_path)
    assert "\n" not in str(caught.value)
