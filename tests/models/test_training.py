import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.models.metrics import binary, psnr
from edgepipe.models.registry import DatasetSplits
from edgepipe.models.training import TrainSettings, class_weights, predict_outputs, shift, train


def _blobs(seed: int, positive_share: float = 0.5) -> DatasetSplits:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    y = (x[:, 0] > np.quantile(x[:, 0], 1 - positive_share)).astype(np.int64)
    return DatasetSplits({"x": x[:200]}, y[:200], {"x": x[200:250]}, y[200:250], {"x": x[250:]}, y[250:])


def test_early_stopping_keeps_the_best_validation_epoch():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    data = _blobs(0)
    result = train(model, data, TrainSettings(epochs=200, lr=0.05, batch_size=32, patience=3), "classification", ["x"])
    assert result.epochs_run < 200, "patience should stop training before the epoch limit"
    assert result.epochs_run - result.best_epoch == 3
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(torch.from_numpy(data.x_val["x"])), torch.from_numpy(data.y_val))
    assert abs(float(loss) - result.best_val_loss) < 1e-6, "weights of the best epoch must be restored"


def test_a_fine_tune_whose_every_epoch_is_worse_hands_back_the_starting_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0]]) + 0.1 * rng.normal(size=(300, 1))).astype(np.float32)
    data = DatasetSplits({"x": x[:200]}, y[:200], {"x": x[200:250]}, y[200:250], {"x": x[250:]}, y[250:])
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    train(model, data, TrainSettings(epochs=30, lr=0.05, batch_size=32), "regression", ["x"])
    start = {name: value.clone() for name, value in model.state_dict().items()}
    wild = TrainSettings(epochs=3, lr=10.0, optimizer="sgd")  # each epoch lands far from the minimum
    result = train(model, data, wild, "regression", ["x"])
    assert (result.best_epoch, result.epochs_run) == (0, 3)
    assert all(torch.equal(start[name], value) for name, value in model.state_dict().items())


def test_class_weights_from_counts():
    w = class_weights(np.array([0] * 90 + [1] * 10))
    assert w[1] / w[0] == pytest.approx(9.0) and float(w.mean()) == pytest.approx((100 / 180 + 100 / 20) / 2)


def test_class_weighting_raises_minority_recall():
    data = _blobs(1, positive_share=0.1)
    recalls = []
    for weighting in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 2))
        train(
            model,
            data,
            TrainSettings(epochs=5, lr=0.01, class_weighting=weighting, patience=50),
            "classification",
            ["x"],
        )
        recalls.append(binary(predict_outputs(model, data.x_train, ["x"])[0], data.y_train)["recall"])
    assert recalls[1] > recalls[0]


def test_schedules_and_clipping_run(tmp_path):
    for schedule in ("step", "cosine"):
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        r = train(
            model,
            _blobs(0),
            TrainSettings(epochs=4, lr_schedule=schedule, lr_step_size=1, grad_clip_norm=0.5, patience=50),
            "classification",
            ["x"],
        )
        assert r.epochs_run == 4


def test_shift_moves_images_by_at_most_one_pixel():
    images = torch.zeros(64, 1, 8, 8)
    images[:, 0, 4, 4] = 1
    moved = shift(images, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(moved[:, 0], as_tuple=True)[1:]
    assert moved.sum() == 64 and set(rows.tolist()) == {3, 4, 5} and set(cols.tolist()) == {3, 4, 5}


def test_regression_task_uses_mse_and_psnr():
    rng = np.random.default_rng(0)
    x = rng.random((100, 4)).astype(np.float32)
    data = DatasetSplits({"x": x[:60]}, x[:60], {"x": x[60:80]}, x[60:80], {"x": x[80:]}, x[80:])
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    train(model, data, TrainSettings(epochs=200, lr=0.05, patience=20), "regression", ["x"])
    assert psnr(predict_outputs(model, data.x_test, ["x"])[0], data.y_test)["psnr_db"] > 25


def test_binary_metrics_use_probabilities_for_auc():
    logits = np.array([[0, 1], [0, 2], [0, -1], [0, 0.5]])
    m = binary(logits, np.array([1, 1, 0, 0]))
    assert m["accuracy"] == 0.75 and m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["roc_auc"] == 1.0  # ranking is perfect even though one thresholded label is wrong
