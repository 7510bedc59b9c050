"""Per-op time that cannot be measured is reported with the reason, whether the child refused the file or died."""

from __future__ import annotations

import numpy as np

from edgepipe.pipeline.profile.details import measured_or_unavailable
from edgepipe.profilers.op_profile import profile_ops
from tests.profilers.test_isolation import _dies


def test_a_file_the_profiler_refuses_is_unavailable_with_its_reason(tmp_path):
    missing = tmp_path / "missing.tflite"
    found = measured_or_unavailable(profile_ops, "tflite", missing, {"x": np.zeros(1)}, log_path=tmp_path / "log")
    assert found == {"status": "unavailable", "reason": f"{missing} does not exist or is not a file"}


def test_a_crash_is_unavailable_naming_the_runtime_and_the_file(tmp_path):
    path = tmp_path / "model.tflite"
    found = measured_or_unavailable(_dies, "tflite", path, log_path=tmp_path / "log")
    assert found["status"] == "unavailable" and f"crashed on tflite, {path}" in found["reason"]
