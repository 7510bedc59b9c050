"""torch.onnx.export's optimizer runs without onnxscript's SlicesSplit rule, whose two-output pattern
cost swin_t's export 2.9 s: the rule's pattern is a Slice of four inputs, and the exporter's Slices
carry five (the steps), so it never matched one. Every other rule still runs, and the list is restored."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxscript import rewriter

from edgepipe.exporters.torch import export_onnx


class Halves(torch.nn.Module):
    """What the rule is meant for: the last axis cut in two halves."""

    def forward(self, x):
        return x[..., 0:8] * 2.0, x[..., 8:16] - 1.0


def test_the_optimizer_runs_every_rule_but_slices_split_and_the_graph_stays_exact(tmp_path, monkeypatch):
    rules = rewriter._DEFAULT_REWRITE_RULES
    assert any(r.name == "SlicesSplit" for r in rules), "onnxscript no longer has the rule this test is about"
    given, make_pass = [], rewriter.RewritePass.__init__
    monkeypatch.setattr(rewriter.RewritePass, "__init__", lambda self, r: given.append(r) or make_pass(self, r))
    x = torch.randn(2, 3, 16)
    program = torch.export.export(Halves().eval(), (x,))
    export_onnx(program, (x,), ["x"], tmp_path / "model.onnx", tmp_path / "export.log")
    assert given and all(len(r) == len(rules) - 1 and "SlicesSplit" not in [x.name for x in r] for r in given)
    slices = [n for n in onnx.load(str(tmp_path / "model.onnx")).graph.node if n.op_type == "Slice"]
    assert [len(n.input) for n in slices] == [5, 5]  # steps given: a four-input pattern cannot match them
    got = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": x.numpy()})
    for mine, reference in zip(got, Halves()(x), strict=True):
        np.testing.assert_array_equal(mine, reference.numpy())
    assert rewriter._DEFAULT_REWRITE_RULES is rules
