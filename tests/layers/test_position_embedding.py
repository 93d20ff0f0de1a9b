"""PositionEmbedding (learned table) against its own weights."""

import keras
import numpy as np
import pytest

from keras_reformer.layers import PositionEmbedding
from tests.gradients import layer_gradients
from tests.layers.position_embedding_testing import random_inputs
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

MAX_LEN, HIDDEN = 16, 8


def test_layer_contract(tmp_path):
    run_layer_test(
        PositionEmbedding,
        {"max_sequence_length": MAX_LEN},
        random_inputs(2, 7, HIDDEN),
        expected_output_shape=(2, 7, HIDDEN),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("length", [1, 7, MAX_LEN])
def test_shapes_values_and_prefix(length):
    layer = PositionEmbedding(MAX_LEN)
    outputs = layer(random_inputs(2, length, HIDDEN))
    assert tuple(outputs.shape) == (2, length, HIDDEN)
    table = to_numpy(layer.embeddings)
    assert_allclose(outputs, np.broadcast_to(table[:length], (2, length, HIDDEN)))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_start_index(as_tensor):
    layer = PositionEmbedding(MAX_LEN)
    layer.build((1, MAX_LEN, HIDDEN))
    start = keras.ops.convert_to_tensor(5, "int32") if as_tensor else 5
    assert_allclose(
        layer(random_inputs(1, 4, HIDDEN), start_index=start)[0], to_numpy(layer.embeddings)[5:9]
    )


def test_weight_gradient_matches_reference():
    layer = PositionEmbedding(MAX_LEN)
    inputs = random_inputs(2, 6, HIDDEN)
    layer.build(inputs.shape)
    upstream = np.random.default_rng(1).normal(size=inputs.shape).astype("float32")
    (grad,) = layer_gradients(layer, inputs, upstream)[2].values()
    expected = np.zeros((MAX_LEN, HIDDEN))
    expected[:6] = upstream.sum(axis=0)
    assert_allclose(grad, expected, atol=1e-5)


def test_errors():
    layer = PositionEmbedding(MAX_LEN)
    with pytest.raises(ValueError, match="max_sequence_length=16"):
        layer(random_inputs(1, MAX_LEN + 1, HIDDEN))
    for bad in (0, -3, 1.5, None, True):
        with pytest.raises(ValueError, match=f"max_sequence_length={bad!r}"):
            PositionEmbedding(bad)


def test_dynamic_length_in_a_functional_model():
    inputs = keras.Input(shape=(None, HIDDEN))
    layer = PositionEmbedding(MAX_LEN)
    model = keras.Model(inputs, inputs + layer(inputs))
    for length in (5, 9):
        x = random_inputs(2, length, HIDDEN)
        assert_allclose(model.predict(x, verbose=0), x + to_numpy(layer.embeddings)[:length])
