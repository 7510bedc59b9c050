"""`edgepipe export pkg.module:factory` for both factory kinds, named inputs, weights and their refusal."""

import json
import textwrap

import pytest
import torch

from tests.conftest import edgepipe, edgepipe_here

FACTORIES = textwrap.dedent("""
    import torch
    from torch import nn


    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 + 4, 5)

        def forward(self, image, extra):
            return self.fc(torch.cat([self.conv(image).mean(dim=(2, 3)), extra], dim=1))


    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(6, 12, batch_first=True)
            self.head = nn.Linear(12, 3)

        def forward(self, steps):
            out, last = self.gru(steps)
            return self.head(out[:, -1]), last


    def bare():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


    def with_examples():
        return TwoInputs(), (torch.randn(1, 3, 16, 16), torch.randn(1, 4))


    def sequence():
        return Sequence(), torch.randn(1, 5, 6)


    def square_sequence():
        return nn.GRU(8, 8, batch_first=True), torch.randn(1, 8, 8)


    def broken():
        raise RuntimeError("no such weights")
""")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    (root / "my_models.py").write_text(FACTORIES)
    return root


def _export(project, *args):
    result = edgepipe("export", *args, "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _tflite(out):
    return next(a for a in out["artifacts"] if a["format"] == "tflite")


def test_factory_returning_module_and_two_named_inputs(project):
    out = _export(project, "my_models:with_examples", "-o", str(project / "a"))
    tflite = _tflite(out)
    assert [i["name"] for i in tflite["inputs"]] == ["image", "extra"]
    assert tflite["inputs"][0]["shape"] == [1, 16, 16, 3] and tflite["inputs"][0]["layout"] == "NHWC"
    assert tflite["ledger"]["ok"] and tflite["ledger"]["reference"] == "torch" and tflite["custom_ops"] == []


def test_bare_module_with_input_option(project):
    out = _export(project, "my_models:bare", "--input", "1x1x8x8:float32", "-o", str(project / "b"))
    assert _tflite(out)["inputs"][0]["shape"] == [1, 8, 8, 1] and _tflite(out)["ledger"]["ok"]


def test_sequence_model_with_two_outputs_keeps_its_layout(project):
    out = _export(project, "my_models:sequence", "-o", str(project / "c"))
    tflite = _tflite(out)
    assert tflite["inputs"][0]["shape"] == [1, 5, 6] and tflite["ledger"]["ok"]
    ledger = json.loads((project / "c" / "ledger.json").read_text())
    hop = next(h for h in ledger["hops"] if h["hop"] == "torch -> tflite:fp32")
    assert [o["output"] for o in hop["outputs"]] == ["output_0", "output_1"]


def test_tensors_whose_shape_reads_both_ways_keep_the_right_layout(project):
    # (1, 8, 8) in and out: NCW and NWC look alike, so the records must come from evidence.
    out = _export(project, "my_models:square_sequence", "-o", str(project / "sq"))
    tflite = _tflite(out)
    assert tflite["ledger"]["ok"], tflite["ledger"]
    assert tflite["inputs"][0]["shape"] == [1, 8, 8]


def test_weights_are_loaded_and_change_the_outputs(project):
    from tests.e2e.conftest_helpers import load_factory

    module, examples = load_factory(project, "with_examples")
    for p in module.parameters():
        torch.nn.init.constant_(p, 0.01)
    torch.save(module.state_dict(), project / "w.pt")
    out = _export(project, "my_models:with_examples", "--weights", "w.pt", "-o", str(project / "d"))
    saved = torch.load(project / "d" / "model.pt", weights_only=True)
    assert torch.allclose(saved["fc.weight"], torch.full_like(saved["fc.weight"], 0.01))
    assert _tflite(out)["ledger"]["ok"]


def test_weights_needing_unsafe_unpickling_are_refused(project):
    torch.save({"x": torch.nn.Linear(1, 1)}, project / "module.pt")  # a whole module: needs unpickling
    result = edgepipe(
        "export", "my_models:with_examples", "--weights", "module.pt", "-o", str(project / "e"), cwd=project
    )
    assert result.returncode == 2 and "needs unsafe unpickling" in result.stderr and "state_dict" in result.stderr
    assert not (project / "e").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("my_models:bare",), "give its inputs with --input"),
        (("my_models:bare", "--input", "1xAx8"), "expected a shape like 1x3x32x32"),
        (("my_models:nothing",), "has no callable 'nothing'"),
        (("no_such_pkg.mod:f",), "cannot import 'no_such_pkg.mod'"),
        (("my_models:broken",), "raised RuntimeError: no such weights"),
    ],
)
def test_bad_factory_input_is_one_clear_line(project, args, message):
    result = edgepipe_here("export", *args, "-o", str(project / "bad"), cwd=project)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (project / "bad").exists()
