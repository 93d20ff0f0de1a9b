"""Small stand-in sublayers, a plain (non-reversible) stack, and the gradient
comparison of the reversible-layer tests."""

import keras
import numpy as np
from keras import ops

from keras_reformer.layers.reversible import ReversibleSequence
from tests.gradients import layer_gradients
from tests.gradients import snapshot_state


@keras.saving.register_keras_serializable(package="keras_reformer_tests")
class TokenMixer(keras.layers.Layer):
    """A cheap stand-in for attention: Dense -> Dropout, plus the (masked)
    mean over the sequence, so every position depends on every other."""

    def __init__(self, units, dropout=0.25, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.seed = seed
        self.dense = keras.layers.Dense(units, dtype=self.dtype_policy, name="dense")
        self.dropout_layer = keras.layers.Dropout(dropout, seed=seed, dtype=self.dtype_policy)

    def build(self, inputs_shape):
        self.dense.build(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        hidden = self.dropout_layer(self.dense(inputs), training=training)
        if padding_mask is None:
            context = ops.mean(hidden, axis=1, keepdims=True)
        else:
            mask = ops.cast(padding_mask, hidden.dtype)[:, :, None]
            context = ops.sum(hidden * mask, axis=1, keepdims=True) / ops.maximum(
                ops.sum(mask, axis=1, keepdims=True), 1
            )
        return ops.tanh(hidden + context)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "dropout": self.dropout, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="keras_reformer_tests")
class SelfAttention(keras.layers.Layer):
    """keras.layers.MultiHeadAttention as a one-input self-attention layer
    (its dropout is unseeded: on torch it uses the global RNG)."""

    def __init__(self, num_heads=2, key_dim=4, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout = dropout
        self.attention = None

    def build(self, inputs_shape):
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads,
            self.key_dim,
            dropout=self.dropout,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention.build(inputs_shape, inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        mask = None
        if padding_mask is not None:
            mask = ops.cast(padding_mask, "bool")[:, None, :]
        return self.attention(inputs, inputs, attention_mask=mask, training=training)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_heads": self.num_heads, "key_dim": self.key_dim, "dropout": self.dropout}
        )
        return config


class PlainStack(keras.layers.Layer):
    """The same blocks called one after the other under ordinary autodiff."""

    def __init__(self, blocks, **kwargs):
        super().__init__(**kwargs)
        self.blocks = list(blocks)

    def build(self, inputs_shape):
        for block in self.blocks:
            if not block.built:
                block.build(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        for block in self.blocks:
            inputs = block(inputs, padding_mask=padding_mask, training=training)
        return inputs

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)


def assert_close_relative(actual, expected, tolerance=1e-5, name="", floor=1e-3):
    """max |actual - expected| / max |expected| <= tolerance (float32 noise of the
    reconstruction X1 = Y1 - F(X2) is relative to the tensor's scale)."""
    error = np.abs(actual - expected).max() / max(np.abs(expected).max(), floor)
    assert error <= tolerance, f"{name}: relative error {error:.2e} > {tolerance:.0e}"


def assert_same_gradients(blocks, x, jit, call_kwargs, tolerance=1e-5):
    """Reversible and plain stacks of the SAME blocks, from the same state."""
    reversible, plain = ReversibleSequence(blocks, seed=3), PlainStack(blocks)
    reversible.build(x.shape)
    plain.build(x.shape)
    cotangent = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    restore = snapshot_state(plain)
    expected = layer_gradients(plain, x, cotangent, jit=jit, **call_kwargs)
    restore()
    actual = layer_gradients(reversible, x, cotangent, jit=jit, **call_kwargs)
    assert_close_relative(actual[0], expected[0], tolerance, "outputs")
    assert_close_relative(actual[1], expected[1], tolerance, "input gradient")
    assert set(actual[2]) == set(expected[2]) and len(expected[2]) == len(plain.trainable_variables)
    for path, grad in expected[2].items():
        # Attention is invariant to a key bias: its true gradient is 0, both
        # stacks give float noise, compared on an absolute scale.
        zero_gradient = path.endswith("key/bias")
        if not zero_gradient:
            assert np.abs(grad).max() > 1e-4, f"{path}: zero gradient, the test is vacuous"
        assert_close_relative(
            actual[2][path], grad, tolerance, path, floor=1.0 if zero_gradient else 1e-3
        )
