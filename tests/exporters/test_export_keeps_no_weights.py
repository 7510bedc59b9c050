"""After an export, nothing in the process still holds the model's weights: not PyTorch's last trace,
not onnxscript's rewrite rules, not the factory's cached module."""

from __future__ import annotations

import gc
import weakref

import torch
from torch.fx import GraphModule

from edgepipe.exporters.torch import export_onnx
from tests.conftest import edgepipe_here

FACTORY = """
import weakref

import torch

BUILT = []


def make():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    module(torch.zeros(1, 3, 10, 10))
    BUILT.append(weakref.ref(module))
    return module.eval(), torch.randn(1, 3, 10, 10)
"""


def _graph_modules_made(monkeypatch) -> list:
    """Weak references to every GraphModule built from now on."""
    made, init = [], GraphModule.__init__

    def recorded(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(GraphModule, "__init__", recorded)
    return made


def test_no_program_of_the_onnx_export_outlives_it(tmp_path, monkeypatch):
    module = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).eval()
    example = (torch.randn(2, 16),)
    made = _graph_modules_made(monkeypatch)
    program = torch.export.export(module, example)
    export_onnx(program, example, ["x"], tmp_path / "model.onnx", tmp_path / "export.log")
    del program, module
    gc.collect()
    assert made, "the export built no GraphModule: the test no longer sees what it checks"
    assert [m for m in made if m() is not None] == []


def test_nothing_of_the_module_is_alive_while_the_child_converts(tmp_path, monkeypatch):
    (tmp_path / "kept_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import kept_factory

    from edgepipe.exporters.converter_process import ConverterProcess

    made, alive = _graph_modules_made(monkeypatch), []

    def converting(self):
        gc.collect()
        alive.extend(m for m in kept_factory.BUILT + made if m() is not None)
        return result(self)

    result = ConverterProcess.result  # called while the child converts
    monkeypatch.setattr(ConverterProcess, "result", converting)
    out = str(tmp_path / "out")
    done = edgepipe_here("export", "kept_factory:make", "--variant", "fp32", "--converter", "child", "-o", out)
    assert done.returncode == 0, done.stderr
    assert kept_factory.BUILT and made, "the export built nothing: the test no longer sees what it checks"
    assert alive == []
