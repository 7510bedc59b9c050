"""Every bad input gets one clear line on stderr, exit code 2 and nothing half-written.

The subprocess tests keep the console contract (exit code and stderr of a real process); the rest run the
same entry point in-process (`edgepipe_here`), which costs no interpreter start-up.
"""

from tests.conftest import edgepipe, edgepipe_here, quick_job


def _one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgepipe: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_config(tmp_path):
    result = edgepipe("run", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "out"))
    _one_line_error(result, "nope.toml", "not found", "--print-config")
    assert not (tmp_path / "out").exists()


def test_unparsable_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[job]\nname = \n")
    result = edgepipe_here("run", str(bad), "-o", str(tmp_path / "out"))
    _one_line_error(result, "bad.toml", "not valid TOML")
    assert not (tmp_path / "out").exists()


def test_config_typo_names_the_key_path(tmp_path):
    job = quick_job(tmp_path)
    job.write_text(job.read_text().replace("threads = 1", "threads = 1\npatiense = 3", 1))
    result = edgepipe_here("run", str(job), "-o", str(tmp_path / "out"))
    _one_line_error(result, "train.patiense: unknown key", "did you mean 'train.patience'?")
    assert not (tmp_path / "out").exists()


def test_unknown_model_in_config_and_on_the_command_line(tmp_path):
    job = quick_job(tmp_path)
    job.write_text(job.read_text().replace('model = "cnn_digits"', 'model = "cnn_digit"'))
    result = edgepipe_here("run", str(job), "-o", str(tmp_path / "out"))
    _one_line_error(result, "unknown model 'cnn_digit'", "did you mean 'cnn_digits'?")
    assert not (tmp_path / "out").exists()
    result = edgepipe_here("export", "cnn_digts", "-o", str(tmp_path / "out2"))
    _one_line_error(result, "did you mean 'cnn_digits'?")
    assert not (tmp_path / "out2").exists()


def test_corrupted_onnx(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    result = edgepipe_here("export", str(bad), "-o", str(tmp_path / "out"))
    _one_line_error(result, "broken.onnx", "not a valid ONNX model")
    assert not (tmp_path / "out").exists()


def test_corrupted_tflite(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 64)
    result = edgepipe_here("profile", str(bad))
    _one_line_error(result, "broken.tflite", "not a loadable TFLite model")


def test_unknown_variant_is_refused_before_work(tmp_path):
    result = edgepipe_here("export", "cnn_digits", "--variant", "fp32,int3", "-o", str(tmp_path / "out"))
    _one_line_error(result, "int3", "available")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = edgepipe_here("run", str(quick_job(tmp_path)), "-o", str(blocker / "run"))
    _one_line_error(result, "cannot write output directory", "-o DIR")


def test_flex_op_fails_naming_the_op_and_allow_flex_accepts_it(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="my_det")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, tmp_path / "det.onnx")
    result = edgepipe("export", str(tmp_path / "det.onnx"), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "FlexMatrixDeterminant" in result.stderr and "--allow-flex" in result.stderr
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert "model_fp32.tflite" not in manifest
    allowed = edgepipe("export", str(tmp_path / "det.onnx"), "--allow-flex", "-o", str(tmp_path / "ok"), "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert '"custom_ops": ["FlexMatrixDeterminant"]' in allowed.stdout


def test_unsupported_onnx_op_names_op_and_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("MyCustomOp", ["x"], ["y"], name="custom_node_7", domain="com.example")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        ir_version=8,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)],
    )
    onnx.save(model, tmp_path / "custom.onnx")
    result = edgepipe("export", str(tmp_path / "custom.onnx"), "-o", str(tmp_path / "out"))
    assert result.returncode in (1, 2), result.stderr
    assert "MyCustomOp" in result.stderr and "custom_node_7" in result.stderr, result.stderr
