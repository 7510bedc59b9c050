import numpy as np
import pytest

from edgepipe.models.shared.errors import ParityError
from edgepipe.pipeline.core.ledger import (
    compare,
    judged_by_float64,
    output_figures,
    rejudged_by_float64,
    require_parity,
)


def test_figures_of_a_known_error():
    ref = np.array([3.0, -4.0, 0.0, 0.0])
    got = ref + np.array([0.0, 0.0, 0.3, -0.4])
    f = output_figures("y", ref, got, rel_tolerance=0.1)
    assert f.max_abs == pytest.approx(0.4)
    assert f.mean_abs == pytest.approx(0.175)
    assert f.scale == 4.0 and f.tolerance == pytest.approx(0.4) and f.ok
    assert f.sqnr_db == pytest.approx(10 * np.log10(25 / 0.25))
    assert f.cosine == pytest.approx(25 / (5 * np.sqrt(25.25)))


def test_identical_outputs_have_infinite_sqnr():
    f = output_figures("y", np.ones(5), np.ones(5), 1e-4)
    assert f.max_abs == 0 and f.sqnr_db == float("inf") and f.cosine == pytest.approx(1.0)


def test_every_mismatch_is_collected_then_raised_once():
    ref = {"a": np.ones(4), "b": np.ones(4), "c": np.ones(4)}
    bad = {"a": np.ones(4) * 1.1, "b": np.ones(4), "c": np.ones(4) * 0.5}
    hop = compare("torch -> tflite:fp32", "torch", "tflite:fp32", ref, bad, 1e-4)
    assert not hop.ok and [o.ok for o in hop.outputs] == [False, True, False]
    assert hop.summary()["max_abs"] == pytest.approx(0.5)
    with pytest.raises(ParityError) as err:
        require_parity([hop])
    assert "'a'" in str(err.value) and "'c'" in str(err.value) and "'b'" not in str(err.value)


def test_missing_or_misshapen_output_is_a_parity_error():
    with pytest.raises(ParityError, match="lacks output"):
        compare("h", "r", "c", {"a": np.ones(2)}, {}, 1e-4)
    with pytest.raises(ParityError, match="values"):
        output_figures("a", np.ones(3), np.ones(4), 1e-4)


def test_sqnr_floor_judges_quantized_outputs_by_noise_power():
    ref = np.linspace(-1.0, 1.0, 101)
    spike = ref.copy()
    spike[50] += 0.5  # one large rounding error: SQNR 10*log10(34.3 / 0.25) = 21.4 dB
    assert output_figures("y", ref, spike, None, min_sqnr_db=20.0).ok
    noisy = ref + np.random.default_rng(0).normal(0, 0.2, ref.size)  # about 9 dB
    hop = compare("torch -> tflite:int8", "torch", "tflite:int8", {"y": ref}, {"y": noisy}, None, 20.0)
    assert not hop.ok and hop.outputs[0].tolerance is None
    with pytest.raises(ParityError, match=r"SQNR [0-9.]+ dB < 20 dB"):
        require_parity([hop])


@pytest.mark.parametrize("magnitude", [1e-20, 1e-12, 1e-6, 1.0, 1e6, 1e12, 1e20])
def test_identical_outputs_have_cosine_one_at_any_magnitude(magnitude):
    values = np.random.default_rng(1).standard_normal(1000) * magnitude
    f = output_figures("y", values, values.copy(), 1e-4)
    assert f.cosine == 1.0 and f.sqnr_db == float("inf") and f.ok


@pytest.mark.parametrize("magnitude", [1e-20, 1e-9, 1.0, 1e20])
def test_figures_do_not_depend_on_the_outputs_magnitude(magnitude):
    # A 1 % error is 40 dB and a cosine near 1 whether the logits are 1e-20 or 1e20: no floor decides.
    ref = np.random.default_rng(2).standard_normal(500)
    noise = np.random.default_rng(3).standard_normal(500) * 0.01
    unit = output_figures("y", ref, ref + noise, None, min_sqnr_db=20.0)
    scaled = output_figures("y", ref * magnitude, (ref + noise) * magnitude, None, min_sqnr_db=20.0)
    assert scaled.sqnr_db == pytest.approx(unit.sqnr_db, abs=1e-9) and unit.sqnr_db == pytest.approx(40, abs=1)
    assert scaled.cosine == pytest.approx(unit.cosine, abs=1e-12) and scaled.cosine > 0.9999


def test_tiny_outputs_are_judged_by_their_own_scale():
    ref = np.full(10, 1e-15)
    wrong = output_figures("y", ref, -ref, 1e-4, min_sqnr_db=20.0)  # the sign flipped: all wrong
    assert wrong.cosine == -1.0 and wrong.sqnr_db < 0 and not wrong.ok
    zeros = output_figures("y", np.zeros(4), np.zeros(4), 1e-4)
    assert zeros.cosine == 1.0 and zeros.ok
    assert not output_figures("y", np.zeros(4), np.full(4, 1e-20), 1e-4).ok


def _lrn_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A reference peaking at 2.84 and a candidate off by 3e-5 of a typical value and 1.2e-4 of the peak, as
    ONNX's LRN test reads in TFLite: transcendental rounding."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(5 * 5 * 5 * 3)
    ref *= 2.84 / np.abs(ref).max()
    got = ref * (1 + 3e-5 * rng.standard_normal(ref.shape))
    peak = np.abs(ref).argmax()
    got[peak] = ref[peak] * (1 + 1.2e-4)
    return ref, got


def test_float_rounding_over_the_tolerance_is_agreement_and_said():
    ref, got = _lrn_like()
    f = output_figures("y", ref, got, 1e-4)
    assert f.max_abs > f.tolerance and f.sqnr_db >= 80
    assert f.ok and f.float_rounding


def test_a_file_as_close_to_float64_as_pytorch_float32_is_float_rounding_and_a_real_error_is_not():
    # outputs in the hundreds, as visformer_tiny's: float32 on both sides is off by more than 1e-4 of the peak
    rng = np.random.default_rng(0)
    truth = {"y": rng.normal(0, 100, (32, 10))}
    float32 = {"y": truth["y"] + rng.normal(0, 0.05, (32, 10))}
    right = {"y": truth["y"] + rng.normal(0, 0.05, (32, 10))}
    hop = compare("torch -> onnx:fp32", "torch", "onnx:fp32", float32, right, 1e-4)
    assert not hop.ok  # judged against PyTorch float32 alone, float rounding is refused
    judged = rejudged_by_float64(hop, right, truth, float32)
    (o,) = judged.outputs
    assert judged.ok and o.float_rounding and 0 < o.float64_max_abs <= 2 * o.torch_float32_max_abs
    # a wrong weight in one row: five times PyTorch float32's own error, against the same truth
    wrong = {"y": right["y"].copy()}
    wrong["y"][3] += 5 * np.abs(float32["y"] - truth["y"]).max()
    bad = rejudged_by_float64(compare("h", "torch", "onnx:fp32", float32, wrong, 1e-4), wrong, truth, float32)
    assert not bad.ok and not bad.outputs[0].float_rounding and bad.outputs[0].float64_max_abs is not None
    with pytest.raises(ParityError, match="against PyTorch in float64 it is off by"):
        require_parity([bad])
    nan = {"y": right["y"].copy()}
    nan["y"][0, 0] = np.nan
    assert not rejudged_by_float64(compare("h", "torch", "x", float32, nan, 1e-4), nan, truth, float32).ok
    # a hop already within its tolerance, or judged by SQNR, is left as it was
    sqnr = compare("h", "torch", "tflite:int8", float32, wrong, None, 200.0)
    assert not sqnr.ok and rejudged_by_float64(sqnr, wrong, truth, float32) == sqnr
    # a tolerance tighter than float32 promises refuses rounding whatever float64 says; SQNR-judged: not asked
    assert judged_by_float64(1e-4) and judged_by_float64(1e-6) and not judged_by_float64(1e-12)
    assert not judged_by_float64(None)


def test_real_errors_are_not_float_rounding():
    ref, got = _lrn_like()
    one_wrong = got.copy()
    one_wrong[7] = ref[7] + 0.01  # a single wrong value: its own bound fails, whatever the SQNR
    assert not output_figures("y", ref, one_wrong, 1e-4).ok
    # An error of 1e-3 of every value, and its SQNR of 60 dB: beyond rounding
    assert not output_figures("y", ref, ref * (1 + 1e-3), 1e-4).ok
    # Within tolerance, it is judged by the tolerance alone
    f = output_figures("y", ref, ref + 1e-5, 1e-4)
    assert f.ok and not f.float_rounding
    # A stricter tolerance asks for less rounding too
    assert not output_figures("y", ref, got, 1e-6).ok


def test_the_same_infinity_agrees_and_a_nan_error_is_said():
    inf = float("inf")
    assert output_figures("y", np.array([inf, -inf, 1.0]), np.array([inf, -inf, 1.0]), 1e-4).ok
    wrong = output_figures("y", np.array([inf, 1.0]), np.array([-inf, 1.0]), 1e-4)
    assert not wrong.ok
    with pytest.raises(ParityError, match="max_abs"):
        require_parity([compare("h", "r", "c", {"y": np.array([1.0, 2.0])}, {"y": np.array([np.nan, 2.0])}, 1e-4)])


def test_an_output_compared_in_chunks_gets_the_figures_of_one_piece(monkeypatch):
    """Large outputs are compared a chunk at a time; the figures are those of the whole output."""
    import edgepipe.pipeline.core.ledger as ledger

    rng = np.random.default_rng(2)
    ref = rng.standard_normal((3, 5, 7)).astype(np.float32)
    got = ref + rng.normal(0, 1e-5, ref.shape).astype(np.float32)
    ref[0, 0, :2], got[0, 0, :2] = np.nan, np.nan  # agreement, in the first chunk only
    ref[2, 4, 6], got[2, 4, 6] = 4.0, 4.0 * (1 + 1.5e-4)  # the peak, over the tolerance as float rounding, last
    whole = output_figures("y", ref, got, 1e-4)
    assert whole.float_rounding and whole.ok and whole.scale == 4.0
    monkeypatch.setattr(ledger, "_CHUNK", 8)
    chunked = output_figures("y", ref, got, 1e-4)
    for field in ("max_abs", "mean_abs", "cosine", "sqnr_db", "scale", "tolerance"):
        assert getattr(chunked, field) == pytest.approx(getattr(whole, field), rel=1e-12), field
    assert chunked.float_rounding and chunked.ok
    as_read = output_figures("y", ref, np.ascontiguousarray(got.transpose(0, 2, 1)).transpose(0, 2, 1), 1e-4)
    flat = output_figures("y", ref.reshape(-1), got.reshape(15, 7), 1e-4)  # same values, other shapes
    for other in (as_read, flat):  # a transposed view read by rows, and differing shapes read flat
        assert (other.max_abs, other.cosine, other.sqnr_db) == pytest.approx(
            (chunked.max_abs, chunked.cosine, chunked.sqnr_db), rel=1e-12
        )
    got[1, 2, 3] = np.nan  # a NaN the reference lacks fails, in a middle chunk too
    assert not output_figures("y", ref, got, 1e-4).ok
