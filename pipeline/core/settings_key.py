"""The settings part of a stage's cache key: the job settings it declares, and what the ones naming files hold.

Every setting of a job is enumerated from the config models (pipeline/core/config.py) by its TOML
path ("export.opset", "export.images.mean"). A stage declares setting paths or whole sections
(runner.Stage.settings) and its key holds exactly the settings they cover, so a new setting is keyed
by every stage that declares its section without a line here. A setting marked `Names` adds the
fingerprint of what it names: a rewritten file or function under the same name reruns its stages.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from edgepipe.pipeline.core.config import JobConfig, Names
from edgepipe.pipeline.core.context import covers
from edgepipe.pipeline.core.user_data import fingerprint


def setting_fields(model: type[BaseModel] = JobConfig, prefix: str = "") -> dict[str, FieldInfo]:
    """Every setting of a job by its path; a table's settings one by one ("export.images.mean")."""
    settings = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        table = table_model(info.annotation)
        settings.update(setting_fields(table, f"{path}.") if table else {path: info})
    return settings


def table_model(annotation) -> type[BaseModel] | None:
    """The settings model of a section or table (`ImageSection`, `GateSection | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((table for a in typing.get_args(annotation) if (table := table_model(a))), None)
    return None


SETTINGS = setting_fields()


def setting(job: JobConfig, path: str):
    """One setting's value by its path; None inside a section the job leaves out (a job without [gate])."""
    node = job
    for key in path.split("."):
        if node is None:
            return None
        node = getattr(node, next(n for n, f in type(node).model_fields.items() if (f.alias or n) == key))
    return node


def job_settings(job: JobConfig) -> dict[str, object]:
    """Every setting's value by path, with the fingerprint of what a `Names` setting names. Computed once
    per run (a fingerprint reads a whole data set); each stage's key then takes its share."""
    return {path: _keyed(setting(job, path), info) for path, info in SETTINGS.items()}


def declared_share(settings: dict[str, object], declared: tuple[str, ...], key_free: tuple[str, ...]) -> dict:
    """What of job_settings() a stage's key holds: the settings it declares, less those it reads key-free."""
    return {path: value for path, value in settings.items() if covers(declared, path) and not covers(key_free, path)}


def _keyed(value, info: FieldInfo):
    names = next((m for m in info.metadata if isinstance(m, Names)), None)
    plain = to_jsonable_python(value)
    if names is None or not value:
        return plain
    return {"value": plain, "content": FINGERPRINTS[names](value)}


def _run_fingerprint(run: str) -> str | None:
    """A run directory is identified by its manifest."""
    path = Path(run)
    return fingerprint(str(path / "manifest.json" if path.is_dir() else path))


FINGERPRINTS = {
    # a file's or a folder's contents, or the module file of 'pkg.module:function'; a phone's benchmark
    # binary may be given from the home directory
    Names.CONTENT: lambda value: fingerprint(os.path.expanduser(value)),
    Names.RUN: _run_fingerprint,
}
