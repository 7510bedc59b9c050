"""A user's own model trained, pruned and exported on the user's own data, from a folder whose packages
are named like edgepipe's (models, pipeline, exporters, profilers, android_bench, utils)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import edgepipe, edgepipe_here

# The user's packages, each named after one of edgepipe's own folders (or a common one); the factory uses them all.
PACKAGES = {
    "utils": "WIDTH = 16\n",
    "exporters": "def channels(width):\n    return width * 2\n",
    "profilers": "from torch import nn\n\n\ndef activation():\n    return nn.ReLU()\n",
    "android_bench": "CLASSES = 10\n",
    "pipeline": "def stem(width):\n    from torch import nn\n\n    return nn.Conv2d(1, width, 3, padding=1)\n",
}
NET = textwrap.dedent(
    """
    import torch
    from torch import nn

    from android_bench import CLASSES
    from exporters import channels
    from pipeline import stem
    from profilers import activation
    from utils import WIDTH


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(stem(WIDTH), nn.BatchNorm2d(WIDTH), activation())
            self.body = nn.Sequential(
                nn.Conv2d(WIDTH, WIDTH, 3, padding=1, groups=WIDTH), nn.BatchNorm2d(WIDTH), activation(),
                nn.Conv2d(WIDTH, WIDTH, 1), nn.BatchNorm2d(WIDTH))
            self.wide = nn.Sequential(nn.Conv2d(WIDTH, channels(WIDTH), 3, stride=2, padding=1), activation())
            self.head = nn.Linear(channels(WIDTH), CLASSES)

        def forward(self, image):
            x = self.stem(image)
            x = x + self.body(x)
            return self.head(self.wide(x).mean((2, 3)))


    def build():
        return Net(), torch.zeros(1, 1, 8, 8)
    """
)
JOB = textwrap.dedent(
    """
    [job]
    name = "user"
    model = "models.net:build"

    [train]
    data = "train.npz"
    epochs = 12
    lr = 0.01

    [compress]
    prune = "channels"
    prune_amount = 0.5
    finetune_epochs = 6

    [export]
    variants = ["fp32", "int8"]

    [validate]
    eval_data = "eval.npz"

    [profile]
    runtimes = ["tflite"]
    min_runs = 20
    min_seconds = 0.05
    op_profile = false
    throughput_batches = []
    """
)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16).astype(np.float32)[:, None], data.target.astype(np.int64)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """The user's project: packages named like edgepipe's, a factory in models/net.py, data files, a job."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "models").mkdir()
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "net.py").write_text(NET)
    for name, text in PACKAGES.items():
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(text)
    x, y = _digits()
    np.savez(folder / "train.npz", image=x[:1400], labels=y[:1400])
    np.savez(folder / "eval.npz", image=x[1400:], labels=y[1400:])
    (folder / "job.toml").write_text(JOB)
    return folder


@pytest.mark.slow
def test_a_users_model_trains_prunes_and_exports_on_the_users_data(user_folder):
    done = edgepipe("run", "job.toml", "-o", "out", "--json", cwd=user_folder)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((user_folder / "out" / "manifest.json").read_text())
    train = manifest["stages"]["train"]["result"]
    assert train["train"]["epochs_run"] >= 6 and train["kept"] is None
    assert train["metrics"]["accuracy"] > 0.85, train  # on eval.npz, which training never saw
    compress = manifest["stages"]["compress"]["result"]
    step = compress["steps"][0]
    assert step["step"] == "prune_channels" and step["recovery"] == "both"
    assert compress["compressed"]["parameters"] < 0.5 * compress["trained"]["parameters"]
    assert compress["compressed"]["macs"] < 0.5 * compress["trained"]["macs"]
    assert compress["compressed"]["metrics"]["accuracy"] > 0.75
    assert step["kept_whole"] == {"head": "it writes the model's output"}
    plan = json.loads((user_folder / "out" / "prune_plan.json").read_text())
    assert plan["importance"] == "taylor" and plan["steps"][0]["params_after"] < plan["steps"][0]["params_before"]
    validate = manifest["stages"]["validate"]["result"]
    assert validate["reference"] == "torch"
    assert all(hop["ok"] for hop in validate["ledger"].values()), validate["ledger"]
    int8 = validate["metrics"]["tflite:int8"]["accuracy"]
    assert int8 > validate["metrics"]["torch"]["accuracy"] - 0.02
    # the pruned model is a program, exported as it was compressed
    assert (user_folder / "out" / "model_compressed.pt2").is_file()


@pytest.mark.slow
def test_a_factory_in_a_users_models_package_exports(user_folder):
    # a second process, from the same folder: edgepipe's own imports never see the user's packages
    done = edgepipe("export", "models.net:build", "-o", "exported", "--json", cwd=user_folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {a["format"] for a in json.loads(done.stdout)["artifacts"]} == {"torch", "onnx", "tflite"}


BAD_DATA = [
    ("no_labels.npz", "has no 'labels' array"),
    ("few_labels.npz", "labels for"),
    ("wrong_shape.npz", "has samples of shape (1, 4, 4)"),
    ("no_classes", "a folder without subfolders"),
    ("missing.npz", "not found"),
    ("bad_data:pairs", "raised ValueError: broken reader"),
]


@pytest.mark.parametrize("source,message", BAD_DATA)
def test_bad_training_data_is_one_line_and_exit_2(tmp_path, source, message):
    x, y = _digits()
    np.savez(tmp_path / "no_labels.npz", x=x[:50])
    np.savez(tmp_path / "few_labels.npz", x=x[:50], labels=y[:40])
    np.savez(tmp_path / "wrong_shape.npz", x=x[:50, :, :4, :4], labels=y[:50])
    (tmp_path / "no_classes").mkdir()
    (tmp_path / "bad_data.py").write_text("def pairs():\n    raise ValueError('broken reader')\n")
    job = JOB.replace('model = "models.net:build"', 'model = "tests.models.pruning_structures:residual"')
    job = job.replace('data = "train.npz"', f'data = "{source}"').replace('eval_data = "eval.npz"', "")
    (tmp_path / "job.toml").write_text(job)
    done = edgepipe_here("run", "job.toml", "-o", "out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "[train] data" in lines[0], done.stderr
    assert not (tmp_path / "out" / "manifest.json").exists() or "train" not in json.loads(
        (tmp_path / "out" / "manifest.json").read_text()
    ).get("stages", {})
