"""SinusoidalPositionEmbedding against the closed form of Vaswani et al."""

import keras
import numpy as np
import pytest

from keras_reformer.layers import SinusoidalPositionEmbedding
from tests.layers.position_embedding_testing import random_inputs
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

HIDDEN = 8


def numpy_reference(positions, hidden, max_wavelength=10000.0):
    pe = np.zeros((len(positions), hidden))
    for p_index, p in enumerate(positions):
        for k in range(hidden):
            angle = p / max_wavelength ** (2 * (k // 2) / hidden)
            pe[p_index, k] = np.sin(angle) if k % 2 == 0 else np.cos(angle)
    return pe


def test_layer_contract(tmp_path):
    run_layer_test(
        SinusoidalPositionEmbedding,
        {"max_wavelength": 100},
        random_inputs(2, 7, HIDDEN),
        expected_output_shape=(2, 7, HIDDEN),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("length, hidden", [(1, 8), (7, 8), (64, 8), (5, 7)])
def test_matches_closed_form(length, hidden):
    outputs = SinusoidalPositionEmbedding()(random_inputs(2, length, hidden))
    assert tuple(outputs.shape) == (2, length, hidden)
    reference = numpy_reference(range(length), hidden)
    assert_allclose(outputs, np.broadcast_to(reference, (2, length, hidden)), atol=1e-5)


def test_custom_wavelength_start_index_and_prefix():
    layer = SinusoidalPositionEmbedding(max_wavelength=50)
    full = to_numpy(layer(random_inputs(1, 20, HIDDEN)))
    assert_allclose(full[0], numpy_reference(range(20), HIDDEN, 50.0), atol=1e-5)
    assert_allclose(layer(random_inputs(1, 4, HIDDEN)), full[:, :4])
    for start in (12, keras.ops.convert_to_tensor(12, "int32")):
        assert_allclose(
            layer(random_inputs(1, 3, HIDDEN), start_index=start), full[:, 12:15], atol=1e-5
        )


def test_float16_large_positions_stay_accurate():
    layer = SinusoidalPositionEmbedding(dtype="mixed_float16")
    outputs = layer(random_inputs(1, 256, HIDDEN))
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    assert_allclose(outputs[0], numpy_reference(range(256), HIDDEN), atol=2e-3)


def test_has_no_weights():
    layer = SinusoidalPositionEmbedding()
    layer(random_inputs(1, 4, HIDDEN))
    assert layer.weights == []


def test_errors():
    for bad in (1, 0, -5, "big", None):
        with pytest.raises(ValueError, match=f"max_wavelength={bad!r}"):
            SinusoidalPositionEmbedding(max_wavelength=bad)
    with pytest.raises(ValueError, match="start_index=-2"):
        SinusoidalPositionEmbedding()(random_inputs(1, 4, HIDDEN), start_index=-2)
