"""AxialPositionEmbedding against a numpy reference built from its weights."""

import keras
import numpy as np
import pytest

from keras_reformer.layers import AxialPositionEmbedding
from keras_reformer.layers.axial_position_embedding import default_axial_shape
from tests.gradients import layer_gradients
from tests.layers.position_embedding_testing import random_inputs
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

MAX_LEN, HIDDEN = 16, 8


def numpy_reference(layer):
    """Hugging Face's construction: broadcast each table to the grid, concatenate
    on the last axis, flatten row-major to (prod(axial_shape), hidden)."""
    grid = tuple(layer.axial_shape)
    tables = [np.broadcast_to(to_numpy(w), grid + (w.shape[-1],)) for w in layer.axis_embeddings]
    return np.concatenate(tables, axis=-1).reshape(int(np.prod(grid)), -1)


def test_layer_contract(tmp_path):
    run_layer_test(
        AxialPositionEmbedding,
        {"max_sequence_length": MAX_LEN, "axial_shape": (4, 4), "axial_dims": (3, 5)},
        random_inputs(2, 7, HIDDEN),
        expected_output_shape=(2, 7, HIDDEN),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("length", [1, 7, MAX_LEN])
def test_shapes_and_values_match_reference(length):
    layer = AxialPositionEmbedding(MAX_LEN, axial_shape=(4, 4), axial_dims=(3, 5))
    inputs = random_inputs(2, length, HIDDEN)
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (2, length, HIDDEN)
    reference = numpy_reference(layer)[:length]
    assert_allclose(outputs, np.broadcast_to(reference, (2, length, HIDDEN)))
    # Each half comes from its own table: rows repeat along the other axis.
    out = to_numpy(outputs)[0]
    w0 = to_numpy(layer.axis_embeddings[0])[:, 0, :]
    w1 = to_numpy(layer.axis_embeddings[1])[0, :, :]
    for p in range(length):
        assert_allclose(out[p, :3], w0[p // 4])
        assert_allclose(out[p, 3:], w1[p % 4])


def test_three_axes_and_uneven_grid_match_reference():
    layer = AxialPositionEmbedding(20, axial_shape=(2, 3, 4), axial_dims=(2, 2, 4))
    outputs = layer(random_inputs(1, 20, HIDDEN))
    assert [tuple(w.shape) for w in layer.axis_embeddings] == [
        (2, 1, 1, 2),
        (1, 3, 1, 2),
        (1, 1, 4, 4),
    ]
    assert_allclose(outputs[0], numpy_reference(layer)[:20])


def test_prefix_property():
    layer = AxialPositionEmbedding(MAX_LEN, axial_shape=(4, 4))
    full = to_numpy(layer(random_inputs(1, MAX_LEN, HIDDEN)))
    for length in (1, 5, 11):
        assert_allclose(layer(random_inputs(1, length, HIDDEN)), full[:, :length])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_start_index_selects_later_rows(as_tensor):
    layer = AxialPositionEmbedding(MAX_LEN, axial_shape=(4, 4))
    full = to_numpy(layer(random_inputs(1, MAX_LEN, HIDDEN)))
    start = keras.ops.convert_to_tensor(9, "int32") if as_tensor else 9
    assert_allclose(layer(random_inputs(1, 3, HIDDEN), start_index=start), full[:, 9:12])


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("start, length", [(0, 20), (1, 3), (5, 7), (11, 1), (12, 8), (19, 1)])
def test_every_span_of_three_uneven_axes_matches_reference(start, length, as_tensor):
    # A Python start slices the grid rows that hold the span, a tensor one gathers.
    layer = AxialPositionEmbedding(20, axial_shape=(2, 3, 4), axial_dims=(2, 2, 4))
    inputs = random_inputs(1, length, HIDDEN)
    layer.build(inputs.shape)
    offset = keras.ops.convert_to_tensor(start, "int32") if as_tensor else start
    reference = numpy_reference(layer)[start : start + length]
    assert_allclose(layer(inputs, start_index=offset)[0], reference)


def test_weight_gradients_match_reference():
    layer = AxialPositionEmbedding(MAX_LEN, axial_shape=(4, 4), axial_dims=(3, 5))
    inputs = random_inputs(2, 10, HIDDEN)
    layer.build(inputs.shape)
    upstream = np.random.default_rng(1).normal(size=inputs.shape).astype("float32")
    grad0, grad1 = layer_gradients(layer, inputs, upstream)[2].values()
    rows = upstream.sum(axis=0)  # the embedding is shared across the batch
    expected0, expected1 = np.zeros((4, 1, 3)), np.zeros((1, 4, 5))
    for p in range(10):
        expected0[p // 4, 0] += rows[p, :3]
        expected1[0, p % 4] += rows[p, 3:]
    assert_allclose(grad0, expected0, atol=1e-5)
    assert_allclose(grad1, expected1, atol=1e-5)


def test_parameter_count_is_far_below_a_full_table():
    layer = AxialPositionEmbedding(4096)
    layer.build((1, 4096, 64))
    assert layer.axial_shape == (64, 64)
    assert layer.count_params() == 64 * 32 + 64 * 32  # vs 4096 * 64 for a full table


@pytest.mark.parametrize(
    "max_len, expected",
    [
        (1, (1, 1)),
        (2, (2, 1)),
        (16, (4, 4)),
        (100, (16, 8)),
        (1000, (32, 32)),
        (4096, (64, 64)),
        (4097, (128, 64)),
    ],
)
def test_default_axial_shape(max_len, expected):
    assert default_axial_shape(max_len) == expected
    assert AxialPositionEmbedding(max_len).axial_shape == expected


def test_default_dims_split_hidden_in_half():
    layer = AxialPositionEmbedding(MAX_LEN)
    layer.build((1, MAX_LEN, 9))
    assert [w.shape[-1] for w in layer.axis_embeddings] == [5, 4]


def test_too_long_input_raises():
    layer = AxialPositionEmbedding(MAX_LEN)
    with pytest.raises(ValueError, match="max_sequence_length=16"):
        layer(random_inputs(1, MAX_LEN + 1, HIDDEN))
    with pytest.raises(ValueError, match="start_index=10"):
        layer(random_inputs(1, 7, HIDDEN), start_index=10)
    with pytest.raises(ValueError, match="start_index=-1"):
        layer(random_inputs(1, 7, HIDDEN), start_index=-1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_sequence_length": 0}, "max_sequence_length=0"),
        ({"max_sequence_length": 2.5}, "max_sequence_length=2.5"),
        ({"max_sequence_length": None}, "max_sequence_length=None"),
        ({"max_sequence_length": 16, "axial_shape": (3, 5)}, r"axial_shape=\(3, 5\)"),
        ({"max_sequence_length": 16, "axial_shape": (4, 0)}, r"axial_shape=\(4, 0\)"),
        ({"max_sequence_length": 16, "axial_shape": 16}, "axial_shape=16"),
        (
            {"max_sequence_length": 16, "axial_shape": (4, 4), "axial_dims": (8,)},
            r"axial_dims=\(8,\)",
        ),
        ({"max_sequence_length": 16, "axial_dims": (4, -4)}, r"axial_dims=\(4, -4\)"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AxialPositionEmbedding(**kwargs)


def test_axial_dims_must_sum_to_hidden():
    layer = AxialPositionEmbedding(MAX_LEN, axial_dims=(4, 5))
    with pytest.raises(ValueError, match=r"axial_dims=\(4, 5\)"):
        layer(random_inputs(1, 4, HIDDEN))


def test_dynamic_length_in_a_functional_model():
    inputs = keras.Input(shape=(None, HIDDEN))
    layer = AxialPositionEmbedding(MAX_LEN, axial_shape=(4, 4))
    model = keras.Model(inputs, inputs + layer(inputs))
    reference = numpy_reference(layer)
    for length in (5, 9):
        x = random_inputs(2, length, HIDDEN)
        assert_allclose(model.predict(x, verbose=0), x + reference[:length])
