"""The run directory: atomic writes, sha256 per artifact, and the manifest that records them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from edgepipe.models.shared.errors import OutputDirError
from edgepipe.models.shared.files import write_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, obj: object) -> None:
    """Atomic, indented JSON."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def prepare_run_dir(run_dir: Path) -> Path:
    """Create run_dir (and parents) and prove it is writable, or fail with a clear line."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        raise OutputDirError(
            f"cannot write output directory {run_dir}: {exc.strerror or exc}; choose another with -o DIR"
        ) from None
    return run_dir.resolve()


class Store:
    """Artifacts of one run directory and the manifest that lists them."""

    def __init__(self, run_dir: Path, manifest: dict):
        self.run_dir = run_dir
        self.manifest = manifest

    @classmethod
    def open(cls, run_dir: Path) -> "Store":
        """Open (creating if needed) a run directory, loading its manifest when there is one."""
        run_dir = prepare_run_dir(run_dir)
        path = run_dir / MANIFEST
        manifest: dict = {"artifacts": [], "stages": {}}
        if path.exists():
            try:
                manifest = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                log.warning(
                    "%s is not readable JSON (%s): nothing in it is trusted, so every stage runs again", path, exc
                )
                manifest = {"artifacts": [], "stages": {}}
        return cls(run_dir, manifest)

    def staging_dir(self, stage: str) -> Path:
        """A fresh directory inside the run dir (same filesystem, so renames are atomic)."""
        return Path(tempfile.mkdtemp(prefix=f".staging-{stage}-", dir=self.run_dir))

    def artifacts_of(self, stage: str) -> list[dict]:
        """Manifest entries made by one stage."""
        return [a for a in self.manifest["artifacts"] if a["stage"] == stage]

    def verify(self, stage: str) -> bool:
        """True when every artifact of stage exists with the recorded sha256."""
        for entry in self.artifacts_of(stage):
            path = self.run_dir / entry["path"]
            if not path.is_file() or path.stat().st_size != entry["size_bytes"] or sha256_file(path) != entry["sha256"]:
                return False
        return True

    def forget(self, stage: str) -> None:
        """Drop a stage's record and files from the manifest (it failed, or is being redone)."""
        self.manifest["artifacts"] = [a for a in self.manifest["artifacts"] if a["stage"] != stage]
        self.manifest["stages"].pop(stage, None)
        self.save()

    def commit_stage(self, stage: str, staging: Path, record: dict) -> None:
        """Move a stage's staged files into place and record them; the manifest never lists a stale file.

        The stage's old entries leave the manifest before any file is replaced, and the new
        ones enter only after every file has been renamed into place.
        """
        self.forget(stage)
        entries = []
        for src in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = src.relative_to(staging)
            dst = self.run_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            entries.append(
                {"path": str(rel), "sha256": sha256_file(dst), "size_bytes": dst.stat().st_size, "stage": stage}
            )
        shutil.rmtree(staging, ignore_errors=True)
        self.manifest["artifacts"].extend(entries)
        self.manifest["stages"][stage] = record
        self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        write_json(self.run_dir / MANIFEST, self.manifest)
