import numpy as np
import pytest

from edgepipe.models.shared.errors import ModelNotFoundError
from edgepipe.models.shared.specs import InputSpec, channels_last, convert_layout
from edgepipe.models.zoo import MODELS, get_model


def test_digits_split_is_seeded_and_disjoint():
    spec = get_model("cnn_digits")
    a, b = spec.dataset(0), spec.dataset(0)
    assert np.array_equal(a.x_test["x"], b.x_test["x"]) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train["x"].shape[1:] == (1, 8, 8) and a.x_train["x"].dtype == np.float32
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert not np.array_equal(spec.dataset(1).x_test["x"], a.x_test["x"])


def test_every_zoo_dataset_matches_its_input_specs():
    assert len(MODELS) == 10
    for spec in MODELS.values():
        data = spec.dataset(0)
        assert set(data.x_train) == set(spec.input_names), spec.name
        for inp in spec.inputs:
            arr = data.x_test[inp.name]
            assert arr.shape[1:] == inp.shape[1:] and arr.dtype == np.dtype(inp.dtype), (spec.name, inp)
        assert len(data.y_test) == len(data.x_test[spec.input_names[0]])


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ModelNotFoundError, match="did you mean 'cnn_digits'"):
        get_model("cnn_digit")
    with pytest.raises(ModelNotFoundError, match="edgepipe models"):
        get_model("resnet152")


def test_synthetic_data_is_seeded():
    for name in ("text_bilstm", "audio_kws", "denoise_ae", "multimodal"):
        spec = get_model(name)
        a, b = spec.dataset(0), spec.dataset(0)
        for key in a.x_train:
            assert np.array_equal(a.x_train[key], b.x_train[key]), name


def test_zoo_lists_cnn_digits_with_an_nchw_input():
    assert MODELS["cnn_digits"].inputs == (InputSpec("x", (1, 1, 8, 8), "float32", "NCHW"),)


def test_layout_round_trip_and_channels_last_spec():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    nhwc = convert_layout(x, "NCHW", "NHWC")
    assert nhwc.shape == (2, 4, 5, 3) and nhwc[1, 2, 3, 0] == x[1, 0, 2, 3]
    assert np.array_equal(convert_layout(nhwc, "NHWC", "NCHW"), x)
    assert channels_last(InputSpec("a", (1, 3, 4, 5), "float32", "NCHW")).shape == (1, 4, 5, 3)
    assert channels_last(InputSpec("t", (1, 7), "int64", "NC")).layout == "NC"
    with pytest.raises(ValueError):
        convert_layout(x, "NCHW", "NC")
