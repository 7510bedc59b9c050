"""A run directory read, never written: its job, each stage's result, and the artifacts with their sizes.

Report, gate, batch summary and CLI all read a run through `RunView`, so the 'format:variant' key
and the join of export records with the manifest's sizes are written here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgepipe.models.shared.errors import InputFileError
from edgepipe.pipeline.core.store import MANIFEST


def format_variant(fmt: str, variant: str) -> str:
    """'format:variant' (tflite:int8, onnx:fp32): the name under which the ledger, the profile, the
    reports and the gate refer to one artifact."""
    return f"{fmt}:{variant}"


def artifact_key(record: Mapping) -> str:
    """An artifact record's format_variant."""
    return format_variant(record["format"], record["variant"])


@dataclass(frozen=True)
class Artifact:
    """One exported file: what the export stage recorded, with its size from the manifest."""

    format: str
    variant: str
    path: str  # relative to the run directory
    size_bytes: int | None  # None: the manifest does not list the file
    record: Mapping[str, Any]  # the export record (inputs, outputs, ops, size split, ...)

    @property
    def key(self) -> str:
        return format_variant(self.format, self.variant)


@dataclass(frozen=True)
class RunView:
    """What one run recorded. `results` maps a stage name to its result."""

    root: Path
    job: Mapping[str, Any]  # the job as recorded, keyed as in the TOML file
    results: Mapping[str, Mapping[str, Any]]
    sizes: Mapping[str, int]  # run-relative path -> bytes, for every file of the manifest
    versions: Mapping[str, str | None]  # the tools the artifacts depend on

    @classmethod
    def read(cls, path: Path) -> RunView:
        """A run directory or its manifest.json; a missing or foreign file is an InputFileError."""
        path = Path(path)
        manifest_path = path / MANIFEST if path.is_dir() else path
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise InputFileError(
                f"{path} is not a run directory (no {MANIFEST}); pass the -o directory of 'edgepipe run'"
            ) from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputFileError(f"{manifest_path} is not JSON ({exc}); pass a run directory or its manifest") from None
        if not isinstance(manifest, dict) or "stages" not in manifest or "job" not in manifest:
            raise InputFileError(
                f"{manifest_path} is not an edgepipe manifest (no 'stages'/'job'); pass a run directory"
            )
        return cls.of_manifest(manifest, manifest_path.parent)

    @classmethod
    def of_manifest(
        cls, manifest: Mapping, root: Path, results: Mapping | None = None, job: Mapping | None = None
    ) -> RunView:
        """A view of a manifest in memory; `results` and `job` replace the manifest's stage results and job
        (a stage of a running job passes the DeclaredResults and DeclaredSettings it may read)."""
        if results is None:
            results = MappingProxyType({name: record["result"] for name, record in manifest["stages"].items()})
        return cls(
            Path(root),
            job if job is not None else MappingProxyType(dict(manifest.get("job", {}))),
            results,
            MappingProxyType({a["path"]: a["size_bytes"] for a in manifest["artifacts"]}),
            MappingProxyType(dict(manifest.get("versions", {}))),
        )

    @cached_property
    def artifacts(self) -> tuple[Artifact, ...]:
        """Every exported file, in the order the export stage wrote them."""
        return tuple(
            Artifact(a["format"], a["variant"], a["path"], self.sizes.get(a["path"]), MappingProxyType(a))
            for a in self.result("export").get("artifacts", [])
        )

    def result(self, stage: str) -> Mapping[str, Any]:
        """A stage's result, empty when the stage did not run."""
        return self.results.get(stage) or {}

    def ledger(self, key: str) -> Mapping[str, Any]:
        """The numerics ledger entry of one artifact ('format:variant'); empty for the reference."""
        return self.result("validate").get("ledger", {}).get(key) or {}

    def metrics(self, key: str) -> Mapping[str, float]:
        """Task metrics measured on one artifact ('format:variant'), empty when none were."""
        return self.result("validate").get("metrics", {}).get(key) or {}
