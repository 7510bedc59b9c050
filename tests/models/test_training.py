import numpy as np
import torch
from torch import nn

from models.registry import DatasetSplits
from models.training import TrainSettings, train_classifier


def _blobs(seed: int) -> DatasetSplits:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return DatasetSplits(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:])


def test_early_stopping_keeps_the_best_validation_epoch():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    data = _blobs(0)
    result = train_classifier(model, data, TrainSettings(epochs=200, lr=0.05, batch_size=32, patience=3))
    assert result.epochs_run < 200, "patience should stop training before the epoch limit"
    assert result.epochs_run - result.best_epoch == 3
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(torch.from_numpy(data.x_val)), torch.from_numpy(data.y_val))
    assert abs(float(loss) - result.best_val_loss) < 1e-6, "weights of the best epoch must be restored"
