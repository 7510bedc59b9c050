"""Train every zoo model with its defaults and record the measured metric and time in trained.json.

Run `python -m models.record` after changing a model; `edgepipe models --json` reports the file.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata, resources
from pathlib import Path

import torch

from models.registry import ModelSpec
from models.training import TrainSettings, fit

RECORD = "trained.json"
SEED = 0


def train_default(spec: ModelSpec, seed: int = SEED, threads: int = 2) -> dict:
    """Train one model exactly as the default job does; its held-out metrics and training seconds."""
    fitted = fit(spec, TrainSettings(**{**spec.train_defaults, "seed": seed}), threads)
    return {
        "metrics": fitted.metrics,
        "train_seconds": round(fitted.result.seconds, 2),
        "epochs": fitted.result.epochs_run,
        "best_epoch": fitted.result.best_epoch,
        "parameters": sum(p.numel() for p in fitted.module.parameters()),
    }


def recorded() -> dict:
    """The recorded figures shipped with the package ({} when none were recorded)."""
    try:
        return json.loads(resources.files("models").joinpath(RECORD).read_text())["models"]
    except FileNotFoundError:
        return {}


def main() -> None:
    """Train all models and rewrite models/trained.json."""
    from models.zoo import MODELS

    figures = {}
    for name, spec in MODELS.items():
        figures[name] = train_default(spec)
        print(f"{name:18s} {figures[name]['train_seconds']:6.1f} s  {figures[name]['metrics']}", flush=True)
    record = {
        "seed": SEED,
        "threads": 2,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": metadata.version("torch"),
        "models": figures,
    }
    (Path(__file__).parent / RECORD).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
