"""A user's own mobile networks: torchvision-style blocks, LeViT-style attention, int8 from the user's data."""

import json
import re
import textwrap

import numpy as np
import pytest
from PIL import Image

from tests.conftest import edgepipe, edgepipe_here

FACTORIES = textwrap.dedent('''
    import numpy as np
    import torch
    from torch import nn


    class SqueezeExcite(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(channels, channels // 4, 1), nn.Conv2d(channels // 4, channels, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))


    class InvertedResidual(nn.Module):
        """MobileNetV3's block: expand, depthwise, squeeze-excite, hardswish, project, residual."""

        def __init__(self, channels, expand=4):
            super().__init__()
            hidden = channels * expand
            self.block = nn.Sequential(
                nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
                nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                nn.Hardswish(), SqueezeExcite(hidden), nn.Conv2d(hidden, channels, 1, bias=False),
                nn.BatchNorm2d(channels))

        def forward(self, x):
            return x + self.block(x)


    class Mobile(nn.Module):
        def __init__(self, blocks=3, width=16):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.Hardswish())
            # a grouped (not depthwise) convolution, as ResNeXt / RegNet use
            self.grouped = nn.Conv2d(width, width, 3, padding=1, groups=4)
            self.blocks = nn.Sequential(*[InvertedResidual(width) for _ in range(blocks)])
            self.head = nn.Linear(width, 10)

        def forward(self, image):
            return self.head(self.blocks(self.grouped(self.stem(image))).mean((2, 3)))


    class BiasedAttention(nn.Module):
        """LeViT's attention: a learned bias per head and relative offset, gathered by an index buffer."""

        def __init__(self, dim=32, heads=4, side=4):
            super().__init__()
            self.heads, self.scale = heads, (dim // heads) ** -0.5
            self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
            points = [(i, j) for i in range(side) for j in range(side)]
            offsets = {}
            idxs = []
            for p in points:
                for q in points:
                    off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
                    idxs.append(offsets.setdefault(off, len(offsets)))
            self.biases = nn.Parameter(torch.randn(heads, len(offsets)) * 0.5)
            self.register_buffer("bias_idxs", torch.tensor(idxs).view(len(points), len(points)), persistent=False)

        def forward(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1)) * self.scale + self.biases[:, self.bias_idxs]
            return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


    class LinearNorm(nn.Module):
        """LeViT's Linear + BatchNorm1d, run on the tokens flattened to (B * N, C)."""

        def __init__(self, inputs, outputs):
            super().__init__()
            self.linear, self.bn = nn.Linear(inputs, outputs, bias=False), nn.BatchNorm1d(outputs)
            with torch.no_grad():
                self.bn.running_mean.uniform_(-1, 1), self.bn.running_var.uniform_(0.5, 2)
                self.bn.weight.uniform_(0.5, 2)

        def forward(self, x):
            x = self.linear(x)
            return self.bn(x.flatten(0, 1)).reshape_as(x)


    class LeVitLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 32, 4, stride=4)
            self.attn = BiasedAttention()
            self.mlp = nn.Sequential(LinearNorm(32, 64), nn.Hardswish(), LinearNorm(64, 32))
            self.head = nn.Linear(32, 5)

        def forward(self, image):
            tokens = self.patch(image).flatten(2).transpose(1, 2)
            tokens = tokens + self.attn(tokens)
            tokens = tokens + self.mlp(tokens)
            return self.head(nn.functional.hardswish(tokens).mean(1))


    def mobile():
        return Mobile(), torch.randn(1, 3, 32, 32)


    def mobile_deep():
        return Mobile(blocks=12), torch.randn(1, 3, 32, 32)


    def levit_like():
        return LeVitLike(), torch.randn(1, 3, 16, 16)


    def samples():
        rng = np.random.default_rng(3)
        return (rng.standard_normal((3, 32, 32)).astype(np.float32) for _ in range(16))


    def labelled():
        rng = np.random.default_rng(4)
        return [(rng.standard_normal((1, 3, 32, 32)).astype(np.float32), int(rng.integers(0, 10)))
                for _ in range(24)]
''')


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    (root / "own_models.py").write_text(FACTORIES)
    rng = np.random.default_rng(0)
    np.savez(root / "calib.npz", image=rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    return root


def _export(project, *args):
    result = edgepipe("export", *args, "--json", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _tflite(out, variant="fp32"):
    return next(a for a in out["artifacts"] if a["format"] == "tflite" and a["variant"] == variant)


def test_mobile_blocks_convert_with_native_depthwise_and_grouped_convolutions(project):
    out = _export(project, "own_models:mobile", "-o", str(project / "mobile"))
    tflite = _tflite(out)
    assert tflite["ledger"]["ok"] and tflite["ledger"]["cosine"] >= 0.9999, tflite["ledger"]
    ops = tflite["op_histogram"]
    # 3 depthwise convolutions stay 3 ops; the 4-group convolution stays one CONV_2D, not four plus a concat
    assert ops.get("DEPTHWISE_CONV_2D") == 3, ops
    assert ops.get("CONV_2D") == 1 + 1 + 3 * 2 + 3 * 2, ops  # stem, grouped, expand+project, SE reduce+expand
    assert "CONCATENATION" not in ops and "SPLIT" not in ops, ops
    assert tflite["op_count"] == sum(ops.values())
    split = tflite["size_split"]
    assert split["total_bytes"] == tflite["size_bytes"]
    assert (
        split["tensor_data_bytes"] + split["quantization_bytes"] + split["name_bytes"] + split["structure_bytes"]
        == split["total_bytes"]
    )
    manifest = json.loads((project / "mobile" / "manifest.json").read_text())
    recorded = next(a for a in manifest["stages"]["export"]["result"]["artifacts"] if a["format"] == "tflite")
    assert recorded["op_histogram"] == ops and recorded["size_split"] == split
    # A fresh process converts in a child that loaded TensorFlow while PyTorch exported, and meanwhile
    # ran validation's PyTorch and ONNX side, which the validate stage then took instead of rerunning.
    log = (project / "mobile" / "logs" / "convert.log").read_text()
    assert re.search(r"edgepipe: converter \d+ loaded TensorFlow in [\d.]+ s", log), log[-2000:]
    assert "not run ahead" not in log


def test_levit_style_attention_with_learned_position_bias_converts(project):
    out = _export(project, "own_models:levit_like", "-o", str(project / "levit"))
    tflite = _tflite(out)
    assert tflite["ledger"]["ok"] and tflite["ledger"]["cosine"] >= 0.9999, tflite["ledger"]
    assert tflite["custom_ops"] == []
    ops = tflite["op_histogram"]
    # each Linear one FULLY_CONNECTED (its BatchNorm folded in), each Hardswish one HARD_SWISH: no
    # matmul copied to absorb a hard swish's "+ 3"
    assert ops.get("FULLY_CONNECTED") == 5 and ops.get("HARD_SWISH") == 2, ops


def test_int8_from_the_users_npz_for_a_factory_and_for_its_onnx_file(project):
    out = _export(
        project,
        "own_models:mobile",
        "--variant",
        "fp32,int8",
        "--calibration",
        "calib.npz",
        "-o",
        str(project / "int8"),
    )
    int8 = _tflite(out, "int8")
    assert int8["inputs"][0]["dtype"] == "int8" and int8["ledger"]["ok"]
    assert int8["ledger"]["sqnr_db"] >= 20, int8["ledger"]
    onnx_file = str(project / "int8" / "model.onnx")
    out = _export(project, onnx_file, "--variant", "int8", "--calibration", "calib.npz", "-o", str(project / "onnx8"))
    again = _tflite(out, "int8")
    assert again["inputs"][0]["dtype"] == "int8" and again["ledger"]["sqnr_db"] >= 20, again["ledger"]


def test_calibration_from_a_function_and_accuracy_from_eval_data(project):
    out = _export(
        project,
        "own_models:mobile",
        "--variant",
        "int8_float_io",
        "--calibration",
        "own_models:samples",
        "--eval-data",
        "own_models:labelled",
        "-o",
        str(project / "fn"),
    )
    art = _tflite(out, "int8_float_io")
    assert set(art["metrics"]) == {"accuracy"} and 0 <= art["metrics"]["accuracy"] <= 1
    ledger = json.loads((project / "fn" / "ledger.json").read_text())
    assert ledger["samples"] == 24 and "accuracy" in ledger["metrics"]["torch"]


def test_calibration_from_a_folder_of_images(project):
    folder = project / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = _export(
        project,
        "own_models:mobile",
        "--variant",
        "int8",
        "--calibration",
        "images",
        "--image-mean",
        "0.5,0.5,0.5",
        "--image-std",
        "0.25,0.25,0.25",
        "-o",
        str(project / "img"),
    )
    assert _tflite(out, "int8")["ledger"]["ok"]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: np.savez(p, wrong=np.zeros((16, 3, 32, 32), np.float32)), "no array for input(s) 'image'"),
        (lambda p: np.savez(p, image=np.zeros((16, 3, 8, 8), np.float32)), "samples of shape (3, 8, 8)"),
        (lambda p: np.savez(p, image=np.zeros((16, 3, 32, 32), np.int64)), "is int64, the model takes float32"),
        (lambda p: np.savez(p, image=np.zeros((3, 3, 32, 32), np.float32)), "holds 3 sample(s)"),
        (lambda p: p.write_bytes(b"not a zip"), "not a readable .npz"),
    ],
)
def test_bad_calibration_data_is_one_line_and_exit_2(project, make, expected):
    path = project / "bad.npz"
    make(path)
    result = edgepipe_here(
        "export",
        "own_models:mobile",
        "--variant",
        "int8",
        "--calibration",
        str(path),
        "-o",
        str(project / "bad"),
        cwd=project,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert (
        not (project / "bad" / "manifest.json").exists()
        or "export" not in json.loads((project / "bad" / "manifest.json").read_text())["stages"]
    )


def test_an_unreadable_image_is_named(project):
    folder = project / "broken_images"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "good.png")
    (folder / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    result = edgepipe(
        "export",
        "own_models:mobile",
        "--variant",
        "int8",
        "--calibration",
        str(folder),
        "-o",
        str(project / "bi"),
        cwd=project,
    )
    assert result.returncode == 2 and "bad.jpg cannot be read" in result.stderr, result.stderr


@pytest.mark.timing
def test_conversion_time_grows_at_most_linearly_with_model_size(project, tmp_path):
    """Four times the blocks must not cost more than about four times the conversion (ratio in one run)."""
    import time

    import torch

    from edgepipe.exporters.convert import export_tflite_variants
    from edgepipe.exporters.torch.to_onnx import export_onnx
    from tests.e2e.conftest_helpers import load_factory

    seconds = {}
    for name in ("mobile", "mobile_deep", "mobile"):  # the small one twice: the first also warms TensorFlow
        module, example = load_factory(project, name, module_file="own_models.py")
        program = torch.export.export(module.eval(), (example,))
        onnx_path = tmp_path / f"{name}.onnx"
        export_onnx(program, (example,), ["image"], onnx_path, tmp_path / "log.txt", 18)
        start = time.perf_counter()
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        export_tflite_variants(onnx_path, out, ["fp32"], tmp_path / "convert.log")
        seconds[name] = time.perf_counter() - start
    ratio = seconds["mobile_deep"] / seconds["mobile"]
    print(
        f"conversion: 3 blocks {seconds['mobile']:.2f} s, 12 blocks {seconds['mobile_deep']:.2f} s, ratio {ratio:.2f}"
    )
    assert ratio <= 4 * 1.25, seconds
