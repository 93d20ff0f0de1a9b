"""PreLayerNorm: LayerNorm then the wrapped layer, arguments forwarded."""

import keras
import numpy as np
import pytest

from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from keras_reformer.layers.pre_layer_norm import PreLayerNorm
from tests.gradients import layer_gradients
from tests.layers.reversible_testing import TokenMixer
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def test_normalises_then_applies_the_layer():
    x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32") * 3 + 1
    layer = PreLayerNorm(keras.layers.Dense(6), epsilon=1e-6)
    output = to_numpy(layer(x))
    normalised = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    kernel, bias = [to_numpy(w) for w in layer.layer.trainable_variables]
    assert_allclose(output, normalised @ kernel + bias, rtol=1e-4, atol=1e-5)


def test_forwards_padding_mask_and_training():
    x = np.random.default_rng(0).normal(size=(1, 6, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0]], "int32")
    layer = PreLayerNorm(TokenMixer(4, dropout=0.5, seed=1))
    assert not np.allclose(to_numpy(layer(x)), to_numpy(layer(x, padding_mask=mask)))
    assert not np.allclose(to_numpy(layer(x)), to_numpy(layer(x, training=True)))
    # A layer without those arguments is still callable through the wrapper.
    dense = PreLayerNorm(keras.layers.Dense(4))
    dense(x, padding_mask=mask, training=True)
    assert not dense.position_wise


def test_position_wise_when_the_wrapped_layer_is():
    layer = PreLayerNorm(ChunkedFeedForward(8, chunk_length=4))
    assert layer.position_wise
    assert layer.chunk_size(10) == 4


def test_layer_contract(tmp_path):
    run_layer_test(
        PreLayerNorm,
        {"layer": ChunkedFeedForward(8, chunk_length=3, dropout=0.1, seed=2), "epsilon": 1e-5},
        np.random.default_rng(0).normal(size=(2, 7, 4)).astype("float32"),
        (2, 7, 4),
        run_mixed_precision=False,  # the wrapped layer has its own policy: below
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    layer = PreLayerNorm(ChunkedFeedForward(8, chunk_length=3, dtype=policy), dtype=policy)
    x = np.random.default_rng(0).normal(size=(2, 7, 4)).astype("float32")
    output = layer(x)
    assert keras.backend.standardize_dtype(output.dtype) == keras.DTypePolicy(policy).compute_dtype
    assert np.all(np.isfinite(to_numpy(output)))
    # Exactly Keras' LayerNormalization (float32 weights) followed by the layer.
    np.testing.assert_array_equal(to_numpy(output), to_numpy(layer.layer(layer.layer_norm(x))))


@pytest.mark.parametrize("jit", [False, True])
def test_rematerialize_keeps_outputs_and_gradients(jit):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 8)).astype("float32") * 2 + 1
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3], "int32")
    cotangent = rng.normal(size=(2, 7, 8)).astype("float32")
    plain = PreLayerNorm(TokenMixer(8), epsilon=1e-5)
    remat = PreLayerNorm(TokenMixer(8), epsilon=1e-5, rematerialize=True)
    plain.build(x.shape)
    remat.build(x.shape)
    # A scale and an offset away from ones and zeros, so that their gradients
    # and their use in the recomputation are tested.
    weights = [rng.normal(size=w.shape).astype("float32") for w in plain.get_weights()]
    plain.set_weights(weights)
    remat.set_weights(weights)
    expected = layer_gradients(plain, x, cotangent, jit=jit, padding_mask=mask)
    actual = layer_gradients(remat, x, cotangent, jit=jit, padding_mask=mask)
    assert_allclose(actual[0], expected[0], atol=1e-6)
    assert_allclose(actual[1], expected[1], atol=1e-6)
    assert len(actual[2]) == len(expected[2]) == 4  # scale, offset, the mixer's kernel and bias
    for (path, grad), reference in zip(actual[2].items(), expected[2].values()):
        assert np.abs(reference).max() > 0, path
        assert_allclose(grad, reference, atol=1e-6, err_msg=path)


def test_rematerialize_is_checked_and_saved():
    with pytest.raises(ValueError, match="rematerialize"):
        PreLayerNorm(keras.layers.Dense(4), rematerialize="yes")
    layer = PreLayerNorm(ChunkedFeedForward(8, chunk_length=3), rematerialize=True)
    assert PreLayerNorm.from_config(layer.get_config()).rematerialize is True
