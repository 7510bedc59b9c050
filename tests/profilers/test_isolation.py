"""One generic call runs a measurement in a spawned child: its result or its exception comes back, and a child
that dies is one line naming the function, the runtimes and the files it was given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgepipe.models.shared.errors import InputFileError, ProfileError
from edgepipe.profilers.isolation import in_child


def _pid_and_settings(runtime: str, path: Path, *, threads: int = 1) -> tuple[int, str, str, int]:
    print("native banner")  # what a runtime prints lands in the log, not on the terminal
    return os.getpid(), runtime, Path(path).name, threads


def _dies(*_sides) -> None:
    os._exit(3)  # as a runtime's abort() would: no exception, no result


def _refuses(path: Path) -> None:
    raise InputFileError(f"{path} is not a model")


def test_the_call_runs_in_another_process_with_its_keywords_and_its_output_in_the_log(tmp_path):
    log = tmp_path / "child.log"
    pid, runtime, name, threads = in_child(_pid_and_settings, "tflite", tmp_path / "m.tflite", threads=2, log_path=log)
    assert pid != os.getpid() and (runtime, name, threads) == ("tflite", "m.tflite", 2)
    assert "native banner" in log.read_text()


def test_a_child_that_dies_names_the_function_the_runtimes_and_the_files(tmp_path):
    target, reference = ("onnxruntime", tmp_path / "a.onnx", {}), ("tflite", tmp_path / "b.tflite", {})
    with pytest.raises(ProfileError) as caught:
        in_child(_dies, target, reference)
    assert str(caught.value).startswith(f"_dies crashed on onnxruntime, {target[1]}, tflite, {reference[1]}: ")


def test_an_exception_raised_in_the_child_comes_back_as_it_is(tmp_path):
    with pytest.raises(InputFileError, match="x.onnx is not a model"):
        in_child(_refuses, tmp_path / "x.onnx")
