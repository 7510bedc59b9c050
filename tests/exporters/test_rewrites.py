"""export_friendly: rewritten layers match the originals in torch, and through edgepipe's own
torch -> ONNX -> TFLite path they convert to builtin ops only and still match."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.exporters.convert import export_tflite
from edgepipe.exporters.tflite.inspect import custom_ops
from edgepipe.exporters.tflite.record import TfliteExport
from edgepipe.exporters.torch.rewrite_transformer import PlainMultiheadAttention
from edgepipe.exporters.torch.rewrites import export_friendly
from edgepipe.exporters.torch.to_onnx import export_onnx
from edgepipe.models.shared.specs import FROM_CHANNELS_LAST, InputSpec, convert_layout
from edgepipe.profilers.runtimes import open_tflite

TORCH_ATOL = 1e-5  # rewritten vs original module, both in torch
TFLITE_REL = 1e-4  # TFLite vs original torch module, relative to the largest reference value


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These models are tiny: with other jobs on the cores, intra-op threads only spin and wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _leaves(out) -> list[torch.Tensor]:
    """Tensors of a (nested) forward() result in flattened order, Nones dropped."""
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _leaves(item)]
    return [] if out is None else [out]


def _max_diff(reference, candidate) -> float:
    """Largest absolute difference over all outputs, after checking they have the same shapes."""
    ref, got = _leaves(reference), _leaves(candidate)
    assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in ref]
    return max((float((a - b).abs().max()) for a, b in zip(ref, got)), default=0.0)


def _seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """An eval-mode module with seeded weights, LayerNorm affine terms included."""
    torch.manual_seed(seed)
    module = build()
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return module.eval()


def _same_in_torch(original: nn.Module, *args, **kwargs) -> nn.Module:
    """Rewrite original, check it agrees on these arguments, and return the rewritten module."""
    rewritten, _ = export_friendly(original)
    with torch.no_grad():
        assert _max_diff(original(*args, **kwargs), rewritten(*args, **kwargs)) <= TORCH_ATOL
    return rewritten


class WithState(nn.Module):
    """Calls a recurrent layer with explicit initial states, so they become model inputs."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, h0, c0=None):
        return self.rnn(x, h0 if c0 is None else (h0, c0))


class SelfAttention(nn.Module):
    """Self-attention with an optional fixed attention mask, returning output and weights."""

    def __init__(self, attention: nn.MultiheadAttention, mask: torch.Tensor | None = None):
        super().__init__()
        self.attention = attention
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self.attention(x, x, x, attn_mask=self.mask)


# --- torch: rewritten vs original -------------------------------------------------------------


@pytest.mark.parametrize(
    "cell,layers,bidirectional,batch_first,bias,with_state",
    list(itertools.product((nn.LSTM, nn.GRU), (1, 2), (False, True), (False, True), (True, False), (False, True))),
)
def test_recurrent_layers_match(cell, layers, bidirectional, batch_first, bias, with_state):
    rnn = _seeded(
        lambda: cell(
            8,
            16,
            num_layers=layers,
            bidirectional=bidirectional,
            batch_first=batch_first,
            bias=bias,
            dropout=0.3 if layers > 1 else 0.0,
        )
    )
    x = torch.randn(3, 7, 8) if batch_first else torch.randn(7, 3, 8)
    states = (layers * (2 if bidirectional else 1), 3, 16)
    hx = None
    if with_state:
        hx = (torch.randn(states), torch.randn(states)) if cell is nn.LSTM else torch.randn(states)
    _same_in_torch(rnn, x, hx)


@pytest.mark.parametrize("cell", (nn.LSTM, nn.GRU))
def test_unbatched_sequences_match(cell):
    rnn = _seeded(lambda: cell(8, 16, bidirectional=True))
    _same_in_torch(rnn, torch.randn(5, 8))
    hx = (torch.randn(2, 16), torch.randn(2, 16)) if cell is nn.LSTM else torch.randn(2, 16)
    _same_in_torch(rnn, torch.randn(5, 8), hx)


def test_lstm_with_projection_matches():
    lstm = _seeded(lambda: nn.LSTM(8, 16, num_layers=2, proj_size=5, bidirectional=True, batch_first=True))
    _same_in_torch(lstm, torch.randn(2, 6, 8), (torch.randn(4, 2, 5), torch.randn(4, 2, 16)))


@pytest.fixture
def documented_path():
    """PyTorch's fused eval path returns NaN for a float src_mask: compare with the documented one."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    yield
    torch.backends.mha.set_fastpath_enabled(before)


@pytest.mark.parametrize(
    "activation,norm_first,batch_first", list(itertools.product(("relu", "gelu"), (False, True), (False, True)))
)
def test_encoder_layers_match(activation, norm_first, batch_first):
    layer = _seeded(
        lambda: nn.TransformerEncoderLayer(
            16, 4, 32, activation=activation, norm_first=norm_first, batch_first=batch_first
        )
    )
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    _same_in_torch(layer, x)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    _same_in_torch(layer, x, src_mask=causal, is_causal=True)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    _same_in_torch(layer, x, src_key_padding_mask=padding)


@pytest.mark.parametrize("batch_first", (False, True))
def test_encoder_layer_with_additive_mask_matches(documented_path, batch_first):
    layer = _seeded(lambda: nn.TransformerEncoderLayer(16, 4, 32, batch_first=batch_first))
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    _same_in_torch(layer, x, src_mask=torch.randn(5, 5))


def test_encoder_stack_matches(documented_path):  # the nested-tensor path zeroes padded positions
    encoder = _seeded(
        lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(16, 4, 32, activation=nn.GELU(), batch_first=True), 2, norm=nn.LayerNorm(16)
        )
    )
    x = torch.randn(2, 5, 16)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    rewritten = _same_in_torch(encoder, x, src_key_padding_mask=padding)
    _same_in_torch(encoder, x)
    assert not any(isinstance(m, (nn.TransformerEncoderLayer, nn.MultiheadAttention)) for m in rewritten.modules())


@pytest.mark.parametrize(
    "batch_first,need_weights,average",
    [(False, True, True), (False, True, False), (False, False, True), (True, True, True), (True, False, False)],
)
def test_attention_matches(batch_first, need_weights, average):
    attention = _seeded(lambda: nn.MultiheadAttention(16, 4, batch_first=batch_first))
    x, y = (torch.randn(3, n, 16) if batch_first else torch.randn(n, 3, 16) for n in (6, 4))
    options = {"need_weights": need_weights, "average_attn_weights": average}
    _same_in_torch(attention, x, x, x, **options)
    _same_in_torch(attention, x, y, y, **options)  # cross-attention: separate projections
    _same_in_torch(attention, x, x, x, attn_mask=torch.randn(3 * 4, 6, 6), **options)
    _same_in_torch(attention, x, x, x, key_padding_mask=torch.rand(3, 6) > 0.7, **options)
    single = x[0] if batch_first else x[:, 0]
    _same_in_torch(attention, single, single, single, **options)  # unbatched


def test_attention_with_own_key_and_value_sizes_matches():
    attention = _seeded(lambda: nn.MultiheadAttention(16, 2, kdim=5, vdim=7, batch_first=True))
    _same_in_torch(attention, torch.randn(2, 4, 16), torch.randn(2, 6, 5), torch.randn(2, 6, 7))


def test_attention_options_without_rewrite_are_refused_at_rewrite_time():
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        export_friendly(nn.MultiheadAttention(16, 4, add_bias_kv=True))


def test_gelu_is_left_to_the_onnx_fix():  # exporters.onnx_fixes.canonical_gelu makes it TFLite's GELU
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.GELU(approximate="tanh"))
    rewritten, notes = export_friendly(model)
    assert isinstance(rewritten[1], nn.GELU) and isinstance(rewritten[2], nn.GELU) and notes == []


def test_a_module_that_needs_no_rewrite_is_not_copied():
    """A copy would hold a second set of the weights through the whole export."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU())
    assert export_friendly(model) == (model, [])
    with_gru = nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 4))
    rewritten, notes = export_friendly(with_gru)
    assert rewritten is not with_gru and isinstance(with_gru[1], nn.GRU) and len(notes) == 1


def test_descriptions_name_each_rewrite_and_where():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 32, bidirectional=True, batch_first=True)
            self.encoder = nn.TransformerEncoderLayer(64, 4, 32, activation="gelu", norm_first=True)

    _, notes = export_friendly(Tagger())
    assert notes == [
        "lstm: nn.LSTM(8->32, bidirectional, batch_first) at 'rnn' unrolled per time step",
        "encoder_layer: nn.TransformerEncoderLayer(d_model 64, 4 heads, gelu, pre-norm) at 'encoder' "
        "with plain attention",
    ]


def test_subclass_with_its_own_forward_is_left_alone():
    class Reversed(nn.GRU):
        def forward(self, x, hx=None):
            return super().forward(x.flip(0), hx)

    rewritten, notes = export_friendly(nn.Sequential(Reversed(4, 4), nn.MultiheadAttention(4, 1)))
    assert type(rewritten[0]) is Reversed and isinstance(rewritten[1], PlainMultiheadAttention)
    assert len(notes) == 1


def test_training_mode_is_kept():
    model = nn.Sequential(nn.GRU(4, 4), nn.TransformerEncoderLayer(8, 2, 8))
    model[1].eval()
    rewritten, _ = export_friendly(model)
    assert rewritten[0].training and not rewritten[1].training and not rewritten[1].self_attn.training


# --- TFLite through edgepipe's own export path ------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A model to convert: how to build it, its example inputs, and optionally their layouts.

    Without layouts, 3-D inputs are declared NCW, and their shapes are chosen so the
    channels-last form differs: the layout export_tflite records is then unambiguous.
    """

    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    names: tuple[str, ...] = ("x",)
    layouts: tuple[str, ...] | None = None  # None: the ONNX defaults (NCW for 3-D)
    rewritten: bool = True  # export_friendly changes the model


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).triu(1)


CASES = MappingProxyType(
    {
        # The zoo's lstm_digits input: 8 rows of 8 pixels, declared as a sequence (NTC).
        "lstm_rows": Case(lambda: nn.LSTM(8, 16, batch_first=True), lambda: (torch.randn(1, 8, 8),), layouts=("NTC",)),
        "lstm_2layer_bidir_states": Case(
            lambda: WithState(nn.LSTM(8, 12, num_layers=2, bidirectional=True)),
            lambda: (torch.randn(2, 3, 8), torch.randn(4, 3, 12), torch.randn(4, 3, 12)),
            ("x", "h0", "c0"),
        ),
        "gru_seqfirst": Case(lambda: nn.GRU(8, 12), lambda: (torch.randn(4, 1, 8),)),
        "gru_bidir_nobias_state": Case(
            lambda: WithState(nn.GRU(8, 12, bidirectional=True, batch_first=True, bias=False)),
            lambda: (torch.randn(2, 3, 8), torch.randn(2, 2, 12)),
            ("x", "h0"),
        ),
        "encoder_gelu_postnorm": Case(
            lambda: nn.TransformerEncoderLayer(16, 4, 32, activation="gelu", batch_first=True),
            lambda: (torch.randn(1, 6, 16),),
        ),
        "encoder_relu_prenorm_seqfirst": Case(
            lambda: nn.TransformerEncoderLayer(16, 4, 32, norm_first=True), lambda: (torch.randn(6, 2, 16),)
        ),
        "attention_causal_weights": Case(
            lambda: SelfAttention(nn.MultiheadAttention(16, 4), _causal(6)), lambda: (torch.randn(6, 2, 16),)
        ),
        "gelu_exact_and_tanh": Case(
            lambda: nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(approximate="tanh")),
            lambda: (3 * torch.randn(4, 16),),
            rewritten=False,
        ),
    }
)


@dataclass(frozen=True)
class Converted:
    """One case after export: reference outputs, the TFLite export record and TFLite outputs."""

    reference: list[np.ndarray]
    rewritten: list[np.ndarray]
    export: TfliteExport
    outputs: dict[str, np.ndarray]


# One recurrent, one attention and one GELU case in the quick tier; every case in `make test`.
QUICK_CASES = ("lstm_rows", "encoder_gelu_postnorm", "gelu_exact_and_tanh")


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=() if name in QUICK_CASES else pytest.mark.slow) for name in CASES],
)
def converted(request, tmp_path_factory) -> Converted:
    """The case's model rewritten, exported torch -> ONNX -> TFLite, and run once in TFLite."""
    case = CASES[request.param]
    original = _seeded(case.build)
    torch.manual_seed(1)
    inputs = case.inputs()
    rewritten, notes = export_friendly(original)
    assert bool(notes) == case.rewritten
    work = tmp_path_factory.mktemp(request.param)
    program = torch.export.export(rewritten, inputs)
    onnx_file = export_onnx(program, inputs, list(case.names), work / "model.onnx", work / "convert.log")
    specs = None
    if case.layouts:
        specs = tuple(
            InputSpec(n, tuple(t.shape), "float32", layout) for n, t, layout in zip(case.names, inputs, case.layouts)
        )
    result = export_tflite(onnx_file.path, work / "model.tflite", "fp32", work / "convert.log", onnx_inputs=specs)
    # Fed as edgepipe feeds an artifact: from the PyTorch layout into the one recorded for TFLite.
    feeds = {
        s.name: convert_layout(t.numpy(), FROM_CHANNELS_LAST.get(s.layout, s.layout), s.layout)
        for s, t in zip(result.inputs, inputs)
    }
    with torch.no_grad():
        reference, ours = _leaves(original(*inputs)), _leaves(rewritten(*inputs))
    return Converted(
        [t.numpy() for t in reference], [t.numpy() for t in ours], result, open_tflite(result.path).run(feeds)
    )


def test_rewritten_model_matches_in_torch(converted):
    for ref, ours in zip(converted.reference, converted.rewritten, strict=True):
        assert np.abs(ref - ours).max() <= TORCH_ATOL


def test_tflite_has_builtin_ops_only(converted):
    assert custom_ops(converted.export.path) == [] and tuple(converted.export.custom_ops) == ()


def test_tflite_matches_original(converted):
    assert len(converted.outputs) == len(converted.reference)
    for i, ref in enumerate(converted.reference):
        got = converted.outputs[f"output_{i}"]
        assert got.shape == ref.shape, f"output_{i}"  # onnx2tf keeps these outputs in the ONNX layout
        assert np.abs(got - ref).max() <= TFLITE_REL * np.abs(ref).max(), f"output_{i}"
