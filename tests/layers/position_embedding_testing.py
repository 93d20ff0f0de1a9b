"""Helpers shared by the position-embedding tests: gradients on every backend."""

import keras
import numpy as np

from tests.test_case import BACKEND, to_numpy


def weight_gradients(layer, inputs, upstream, **call_kwargs):
    """Gradients of `sum(layer(inputs) * upstream)` for each trainable weight.

    Returns:
        A list of numpy arrays in `layer.trainable_weights` order.
    """
    upstream = keras.ops.convert_to_tensor(upstream)
    if BACKEND == "jax":
        import jax

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable):
            out, _ = layer.stateless_call(trainable, non_trainable, inputs, **call_kwargs)
            return keras.ops.sum(out * upstream)

        grads = jax.grad(loss)([v.value for v in layer.trainable_variables])
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs, **call_kwargs) * upstream)
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, layer.trainable_variables)]
    else:
        import torch

        loss = torch.sum(layer(inputs, **call_kwargs) * upstream)
        grads = torch.autograd.grad(loss, [v.value for v in layer.trainable_variables])
    return [to_numpy(g) for g in grads]


def random_inputs(batch, length, hidden, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, hidden)).astype("float32")
