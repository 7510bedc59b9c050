"""Imports point one way (docs/architecture.md): read from the source, so a wrong import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "exporters", "profilers", "android_bench", "pipeline")
# What each package may import of ours (models.shared is below everything).
ALLOWED = {
    "models.shared": set(),
    "models": {"models"},
    "profilers": {"models.shared", "profilers"},
    "exporters": {"models.shared", "models", "exporters"},
    "android_bench": {"models.shared", "profilers", "android_bench"},
}


def _imports(path: Path) -> set[str]:
    """Every absolute module a file imports, anywhere in it (function-level imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= set(names)
    return found


def _ours(path: Path) -> set[str]:
    """The modules of ours a file imports, named without the edgepipe. namespace."""
    names = {n.removeprefix("edgepipe.") for n in _imports(path) if n.startswith("edgepipe.")}
    return {n for n in names if n.split(".")[0] in PACKAGES}


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def _layer(module: str) -> str:
    return "models.shared" if module.startswith("models.shared") else module.split(".")[0]


def test_our_code_is_imported_only_under_the_edgepipe_namespace():
    """A bare `import models` would load a user's own package of that name, or fail beside it."""
    sources = [p for package in PACKAGES for p in _files(package)]
    sources += [*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    bare = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources
        for module in _imports(path)
        if module.split(".")[0] in PACKAGES
    }
    assert not bare, sorted(bare)


@pytest.mark.parametrize("package", ["models.shared", "profilers", "exporters", "android_bench"])
def test_each_package_imports_only_what_is_below_it(package):
    wrong = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _files(package)
        for module in _ours(path)
        if _layer(module) not in ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_the_zoo_never_imports_the_layers_above_it():
    wrong = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _files("models")
        for module in _ours(path)
        if not module.startswith("models")
    }
    assert not wrong, sorted(wrong)


def test_nothing_imports_the_cli_and_no_stage_imports_another():
    """cli imports everything; stages share code through pipeline/core, not through each other."""
    cli = ROOT / "pipeline" / "cli"
    importers = {
        str(p.relative_to(ROOT))
        for p in [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
        if p.name != "__main__.py"  # `python -m edgepipe.pipeline` is the CLI's other entry
        and not p.is_relative_to(cli)  # the room's own modules import each other
        and any(m == "pipeline.cli" or m.startswith("pipeline.cli.") for m in _ours(p))
    }
    assert not importers, sorted(importers)
    for stage in _files("pipeline.stages"):
        assert not {m for m in _ours(stage) if m.startswith("pipeline.stages")}, stage


def test_pipeline_keeps_at_most_ten_modules_on_its_top_level():
    top = [p.name for p in (ROOT / "pipeline").glob("*.py")]
    assert len(top) <= 10, top


def test_every_pipeline_and_exporters_module_reads_in_one_sitting():
    """A module past 400 lines is split along a seam of its own, as cli/, gate/ and exporters/ were."""
    files = [*_files("pipeline"), *_files("exporters")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


# exporters/ is laid out by conversion step; the pipeline reaches each step through its package's face
# (its __init__), or the orchestration on top.
EXPORTER_FACES = {
    "exporters.torch",
    "exporters.onnx",
    "exporters.tflite",
    "exporters.quantize",
    "exporters.convert",
    "exporters.converter_process",
}


def test_the_pipeline_uses_the_exporters_step_faces_only():
    wrong = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _files("pipeline")
        for module in _ours(path)
        if module.startswith("exporters") and module not in EXPORTER_FACES
    }
    assert not wrong, sorted(wrong)


def test_no_step_of_the_conversion_imports_the_orchestration_above_it():
    wrong = {
        f"{path.relative_to(ROOT)} imports {module}"
        for step in ("torch", "onnx", "tflite", "quantize")
        for path in _files(f"exporters.{step}")
        for module in _ours(path)
        if module in ("exporters.convert", "exporters.converter_process")
    }
    assert not wrong, sorted(wrong)
