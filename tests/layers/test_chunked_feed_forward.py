"""ChunkedFeedForward equals the unchunked feed-forward (outputs and gradients)."""

import keras
import numpy as np
import pytest

from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from tests.gradients import layer_gradients
from tests.gradients import snapshot_state
from tests.test_case import assert_allclose
from tests.test_case import jit_compile_modes
from tests.test_case import run_layer_test


def reference(layer, x):
    """numpy feed-forward with the layer's weights, no chunking, no dropout."""
    w1, b1, w2, b2 = [keras.ops.convert_to_numpy(v) for v in layer.trainable_variables]
    hidden = x @ w1 + b1
    hidden = 0.5 * hidden * (1 + np.tanh(np.sqrt(2 / np.pi) * (hidden + 0.044715 * hidden**3)))
    return hidden @ w2 + b2


@pytest.mark.parametrize("length", [1, 7, 8, 13])
@pytest.mark.parametrize("chunking", [{"chunk_length": 4}, {"num_chunks": 3}, {}])
def test_equals_unchunked_feed_forward(length, chunking):
    x = np.random.default_rng(0).normal(size=(2, length, 6)).astype("float32")
    layer = ChunkedFeedForward(10, activation="gelu", **chunking)
    unchunked = ChunkedFeedForward(10, activation="gelu")
    layer.build(x.shape)
    unchunked.build(x.shape)
    unchunked.set_weights(layer.get_weights())
    # keras' "gelu" is the exact erf form; compare with the unchunked layer
    # exactly and with the numpy tanh approximation loosely.
    assert_allclose(layer(x), unchunked(x), rtol=1e-6, atol=1e-6)
    assert_allclose(layer(x), reference(layer, x), rtol=1e-2, atol=1e-3)
    cotangent = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    chunked_grads = layer_gradients(layer, x, cotangent)
    plain_grads = layer_gradients(unchunked, x, cotangent)
    assert_allclose(chunked_grads[1], plain_grads[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(chunked_grads[2].values(), plain_grads[2].values()):
        assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_chunk_size():
    assert ChunkedFeedForward(4, chunk_length=4).chunk_size(10) == 4
    assert ChunkedFeedForward(4, num_chunks=3).chunk_size(10) == 4
    assert ChunkedFeedForward(4).chunk_size(10) == 10
    assert ChunkedFeedForward(4).chunk_size(None) is None
    assert ChunkedFeedForward(4).position_wise


@pytest.mark.parametrize("jit", jit_compile_modes())
def test_a_chunk_recomputed_alone_replays_its_dropout_mask(jit):
    x = np.random.default_rng(0).normal(size=(2, 10, 6)).astype("float32")
    layer = ChunkedFeedForward(12, chunk_length=4, dropout=0.5, seed=3)
    layer.build(x.shape)
    restore = snapshot_state(layer)
    full = layer(x, training=True)
    for start, stop in [(0, 4), (4, 8), (8, 10)]:
        restore()
        alone = layer(x[:, start:stop], training=True, position_offset=start)
        assert_allclose(alone, keras.ops.convert_to_numpy(full)[:, start:stop])
    # Masks differ between chunks and between calls, and dropout is active.
    again = layer(x, training=True)
    assert not np.allclose(keras.ops.convert_to_numpy(full), keras.ops.convert_to_numpy(again))
    assert not np.allclose(
        keras.ops.convert_to_numpy(full), keras.ops.convert_to_numpy(layer(x, training=False))
    )


def test_layer_contract(tmp_path):
    run_layer_test(
        ChunkedFeedForward,
        {"intermediate_dim": 8, "chunk_length": 3, "dropout": 0.1, "seed": 1},
        np.random.default_rng(0).normal(size=(2, 7, 4)).astype("float32"),
        (2, 7, 4),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"intermediate_dim": 0}, "intermediate_dim"),
        ({"intermediate_dim": 2.5}, "intermediate_dim"),
        ({"intermediate_dim": 4, "chunk_length": 0}, "chunk_length"),
        ({"intermediate_dim": 4, "num_chunks": -1}, "num_chunks"),
        ({"intermediate_dim": 4, "chunk_length": 2, "num_chunks": 2}, "num_chunks"),
        ({"intermediate_dim": 4, "dropout": 1.0}, "dropout"),
        ({"intermediate_dim": 4, "dropout": -0.1}, "dropout"),
    ],
)
def test_errors(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ChunkedFeedForward(**kwargs)
