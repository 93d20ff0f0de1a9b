"""PreLayerNorm: LayerNorm then the wrapped layer, arguments forwarded."""

import keras
import numpy as np
import pytest

from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from keras_reformer.layers.pre_layer_norm import PreLayerNorm
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
    output = layer(np.random.default_rng(0).normal(size=(2, 7, 4)).astype("float32"))
    assert keras.backend.standardize_dtype(output.dtype) == keras.DTypePolicy(policy).compute_dtype
    assert np.all(np.isfinite(to_numpy(output)))
