"""A Conv whose filter the graph computes (timm's CondConv: routing weights times the experts' filters)
converts, dense and depthwise, with the ledger ok."""

import json
import textwrap

import pytest

from tests.conftest import edgepipe

MODELS = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn


    class CondConv(nn.Module):
        # timm's CondConv2d at batch 1: the filter is the routing weights times four experts' filters
        def __init__(self, groups):
            super().__init__()
            self.groups, self.route = groups, nn.Linear(16, 4)
            self.experts = nn.Parameter(torch.randn(4, 16 * (16 // groups) * 3 * 3) * 0.1)
            self.bias = nn.Parameter(torch.randn(4, 16) * 0.1)

        def forward(self, x):
            r = torch.sigmoid(self.route(x.mean((2, 3))))
            weight = (r @ self.experts).view(16, 16 // self.groups, 3, 3)
            return F.conv2d(x, weight, (r @ self.bias).view(16), padding=1, groups=self.groups)


    def dense():
        return CondConv(1), torch.randn(1, 16, 12, 12)


    def depthwise():
        return CondConv(16), torch.randn(1, 16, 12, 12)
""")


@pytest.mark.parametrize("factory, op", [("dense", "CONV_2D"), ("depthwise", "DEPTHWISE_CONV_2D")])
def test_a_computed_filter_is_handed_to_tensorflow_in_its_layout(tmp_path, factory, op):
    (tmp_path / "cond_models.py").write_text(MODELS)
    done = edgepipe("export", f"cond_models:{factory}", "-o", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # before: "Depth of input (16) is not a multiple of input depth of filter"
    (tflite,) = [a for a in json.loads(done.stdout)["artifacts"] if a["format"] == "tflite"]
    assert tflite["ledger"]["ok"] and not tflite["ledger"]["float_rounding"] and tflite["ledger"]["sqnr_db"] > 100
    assert tflite["op_histogram"][op] == 1
