"""Train every zoo model with its defaults and record the measured metric and time in trained.json.

Run `python -m edgepipe.models.record` after changing a model; `edgepipe models --json` reports the file.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata, resources
from pathlib import Path

from edgepipe.models.registry import ModelSpec

RECORD = "trained.json"
SEED = 0


def train_default(spec: ModelSpec, seed: int = SEED, threads: int | None = None) -> dict:
    """Train one model exactly as the default job does; its held-out metrics and training seconds."""
    from edgepipe.models.registry import DEFAULT_THREADS
    from edgepipe.models.training import TrainSettings, fit

    fitted = fit(spec, TrainSettings(**{**spec.train_defaults, "seed": seed}), threads or DEFAULT_THREADS)
    return {
        "metrics": fitted.metrics,
        "train_seconds": round(fitted.result.seconds, 2),
        "epochs": fitted.result.epochs_run,
        "best_epoch": fitted.result.best_epoch,
        "parameters": sum(p.numel() for p in fitted.module.parameters()),
    }


def recorded() -> dict:
    """The recorded figures shipped with the package ({} when none were recorded)."""
    return recording().get("models", {})


def recording() -> dict:
    """The whole record: the figures and the settings and machine they were measured with."""
    try:
        return json.loads(resources.files("edgepipe.models").joinpath(RECORD).read_text())
    except FileNotFoundError:
        return {}


def recorded_with() -> str:
    """One sentence naming what the recorded figures were measured with."""
    r = recording()
    if not r:
        return "no figures recorded: run python -m edgepipe.models.record"
    return (
        f"trained with each model's defaults, seed {r['seed']}, {r['threads']} training thread(s), "
        f"torch {r['torch']}, on {r['machine']} (python -m edgepipe.models.record)"
    )


def main() -> None:
    """Train all models and rewrite models/trained.json."""

    from edgepipe.models.registry import DEFAULT_THREADS
    from edgepipe.models.zoo import MODELS

    figures = {}
    for name, spec in MODELS.items():
        figures[name] = train_default(spec)
        print(f"{name:18s} {figures[name]['train_seconds']:6.1f} s  {figures[name]['metrics']}", flush=True)
    record = {
        "seed": SEED,
        "threads": DEFAULT_THREADS,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch": metadata.version("torch"),
        "models": figures,
    }
    (Path(__file__).parent / RECORD).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
