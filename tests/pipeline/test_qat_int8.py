"""Issue 31: on a model whose post-training int8 loses measurably, QAT's int8 file loses less.

Real files both ways from one run per seed: with `[compress] qat = true` the export writes the QAT
model's int8 file and, beside it, the trained model's own (post-training) int8 file, calibrated on the
same samples. Both are scored with edgepipe's TFLite runner on 497 held-out digits against the same
trained float model. The model (tests/pipeline/coarse_concat.py) puts ReLU features on the coarse grid
of a concatenation with a raw-scale input, which post-training int8 cannot help and QAT trains through.

Measured (accuracy drop in points; cross-entropy increase) on seeds 0-5: post-training 4.0, 8.7, 7.0,
3.8, 12.9, 2.2 (0.11, 0.23, 0.21, 0.13, 0.43, 0.11); QAT 2.8, 2.4, 4.8, 1.4, 3.0, 1.4 (0.09, 0.04,
0.19, 0.04, 0.11, 0.05). QAT's int8 loss jumps from epoch to epoch, and the margin is thin on some
seeds, so the test holds the mean over three seeds to a margin, each seed's QAT file to no more loss
than its post-training file, and each seed's post-training loss to a floor, so that it cannot pass
vacuously. (With qat_lr 0.001 instead, QAT lost less on the mean, but more on seeds 0, 3 and 5.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgepipe.pipeline.core.config import load_job
from edgepipe.pipeline.core.feeding import run_artifact
from edgepipe.pipeline.core.runner import run_job
from tests.pipeline.coarse_concat import build

SEEDS = (0, 1, 2)
TRAIN = 1300  # of scikit-learn's 1797 digits; the other 497 are held out
JOB = """
[job]
name = "qat-vs-ptq"
model = "tests.pipeline.coarse_concat:build"
seed = {seed}
[train]
data = "{data}"
epochs = 60
lr = 0.01
[compress]
prune = "none"
qat = true
qat_epochs = 20
qat_lr = 0.003
[export]
variants = ["int8"]
calibration_samples = 200
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    """(train.npz, held-out inputs, held-out labels): pixels in [0, 1] and ink = 2 x the pixel sum, up to 640."""
    from sklearn.datasets import load_digits

    bundled = load_digits()
    raw = bundled.images.reshape(-1, 64).astype(np.float32)
    inputs = {"pixels": raw / 16, "ink": np.minimum(2 * raw.sum(1, keepdims=True), 640)}
    order = np.random.default_rng(0).permutation(len(raw))
    inputs, labels = {k: v[order] for k, v in inputs.items()}, bundled.target[order].astype(np.int64)
    path = tmp_path_factory.mktemp("digits") / "train.npz"
    np.savez(path, **{k: v[:TRAIN] for k, v in inputs.items()}, labels=labels[:TRAIN])
    return path, {k: v[TRAIN:] for k, v in inputs.items()}, labels[TRAIN:]


def _scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(accuracy, cross-entropy)."""
    cross_entropy = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    return np.array([float((logits.argmax(1) == labels).mean()), float(cross_entropy)])


def _losses(tmp_path: Path, seed: int, digits) -> dict[str, np.ndarray]:
    """Each int8 file's (accuracy drop, cross-entropy increase) against the trained float model."""
    data, inputs, labels = digits
    job = tmp_path / f"job{seed}.toml"
    job.write_text(JOB.format(seed=seed, data=data))
    run_dir = tmp_path / f"run{seed}"
    export = run_job(load_job(job), run_dir, only=("train", "compress", "export")).results["export"]
    module = build()[0]
    module.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    with torch.no_grad():
        trained = _scores(module.eval()(*[torch.from_numpy(inputs[n]) for n in ("pixels", "ink")]).numpy(), labels)
    files = {
        "ptq": next(a for a in export["uncompressed"] if a["variant"] == "int8"),
        "qat": next(a for a in export["artifacts"] if (a["format"], a["variant"]) == ("tflite", "int8")),
    }
    losses = {}
    for route, art in files.items():
        (logits,) = run_artifact(run_dir / art["path"], art, inputs).values()
        losses[route] = (trained - _scores(logits, labels)) * [1, -1]  # a drop in accuracy, a rise in loss
    return losses


@pytest.mark.slow
def test_qat_int8_file_loses_less_than_post_training_int8_on_a_coarse_concatenation(tmp_path, digits):
    runs = {seed: _losses(tmp_path, seed, digits) for seed in SEEDS}
    table = "; ".join(
        f"seed {s}: ptq {r['ptq'][0]:.2%} ({r['ptq'][1]:+.3f}), qat {r['qat'][0]:.2%} ({r['qat'][1]:+.3f})"
        for s, r in runs.items()
    )
    ptq = np.mean([r["ptq"] for r in runs.values()], axis=0)
    qat = np.mean([r["qat"] for r in runs.values()], axis=0)
    # post-training int8 loses measurably on every seed: 20 of 497 digits or more (measured 4.0-8.7 pt)
    assert all(r["ptq"][0] >= 0.02 and r["ptq"][1] >= 0.05 for r in runs.values()), table
    # QAT's file loses less: 1.5 pt fewer on average (measured 3.3 against 6.6) and less cross-entropy,
    # and no more than post-training int8's on any seed (held on all six measured; before issue 31's fixes
    # QAT lost 8.1 pt on seed 2 against post-training's 7.0)
    assert qat[0] <= ptq[0] - 0.015 and qat[1] < ptq[1], table
    assert all(r["qat"][0] <= r["ptq"][0] for r in runs.values()), table
