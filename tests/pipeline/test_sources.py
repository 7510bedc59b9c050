"""The model source: a user's data split for training, class folders, the user's metric and its direction."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from edgepipe.models.shared.specs import InputSpec
from edgepipe.pipeline.core.config import parse_job
from edgepipe.pipeline.core.sources import SourceSettings, _user_task, metric_drop, user_splits
from edgepipe.pipeline.core.user_data import load_labelled
from edgepipe.pipeline.stages.validate import _metric_drops

IMAGE = (InputSpec("x", (1, 3, 8, 8), "float32", "NCHW"),)


def _job(tmp_path, extra: str = ""):
    return parse_job(f'[job]\nname = "t"\nmodel = "userpkg.net:build"\n{extra}', str(tmp_path / "job.toml"))


def test_training_data_is_split_seeded_and_per_class(tmp_path):
    labels = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "train.npz", x=np.random.default_rng(0).random((100, 3, 8, 8), np.float32), labels=labels)
    job = _job(tmp_path, f'[train]\ndata = "{tmp_path / "train.npz"}"\nval_fraction = 0.2\n')
    settings = SourceSettings.of(job)
    first, second = user_splits(settings, IMAGE), user_splits(settings, IMAGE)
    assert np.array_equal(first.y_val, second.y_val) and np.array_equal(first.x_train["x"], second.x_train["x"])
    assert np.bincount(first.y_val).tolist() == [5, 5, 5, 5] and len(first.y_train) == 80
    assert np.array_equal(first.y_test, first.y_val), "without eval_data, the metric is read on the held-back part"


def test_a_folder_of_class_subfolders_is_labelled_in_sorted_order(tmp_path):
    for label, colour in (("cat", 40), ("dog", 200)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (16, 16), (colour, colour, colour)).save(tmp_path / label / f"{i}.png")
    inputs, labels = load_labelled(str(tmp_path), IMAGE, "[train] data")
    assert inputs["x"].shape == (6, 3, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert inputs["x"][0].max() < inputs["x"][3].min(), "the images are read, resized and scaled"


def test_a_lower_is_better_metric_drops_when_it_rises(tmp_path, monkeypatch):
    (tmp_path / "usermetric.py").write_text(
        "def error(outputs, labels):\n"
        "    return float((outputs.argmax(1) != labels).mean())\n\n\n"
        "error.higher_is_better = False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    job = parse_job(
        f'[job]\nname = "t"\nmodel = "{tmp_path / "m.onnx"}"\n[validate]\nmetric = "usermetric:error"\n', "j"
    )
    made = _user_task(SourceSettings.of(job), None)
    assert made.primary == "error" and made.lower_is_better == ("error",)
    assert made.metric(np.eye(4), np.array([0, 1, 2, 0])) == {"error": 0.25}
    assert metric_drop(0.10, 0.15, lower_is_better=True) == pytest.approx(0.05)
    metrics = {"torch": {"error": 0.10}, "tflite:int8": {"error": 0.15}, "tflite:fp32": {"error": 0.08}}

    class Limit:
        max_metric_drop, min_sqnr_db = 0.01, None

    problems = _metric_drops(metrics, "torch", {"tflite:int8": Limit, "tflite:fp32": Limit}, ("error",))
    assert len(problems) == 1 and "tflite:int8 error 0.1500 is 0.0500 above torch" in problems[0]
    sys.modules.pop("usermetric", None)
