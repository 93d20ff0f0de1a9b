"""Backend-specific helpers for gradient tests: loss gradients of a layer,
eager or inside a jit-compiled step, w.r.t. its input and every weight."""

import keras
import numpy as np

BACKEND = keras.backend.backend()


def snapshot_state(layer):
    """Copies of `layer`'s non-trainable values (seed-generator states)."""
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in layer.non_trainable_variables]


def restore_state(layer, snapshot):
    for variable, value in zip(layer.non_trainable_variables, snapshot):
        variable.assign(value)


def loss_grads(layer, x, cotangent, jit=False, **call_kwargs):
    """Gradients of `sum(layer(x, **call_kwargs) * cotangent)`.

    Runs from the layer's current non-trainable state (on TensorFlow and torch
    the call advances it; callers restore it between runs) and, on torch, from
    the same global RNG state every time.

    Returns:
        `(output, x_grad, weight_grads)`, numpy arrays, `weight_grads` a dict
        keyed by `variable.path`.
    """
    variables = layer.trainable_variables
    if BACKEND == "jax":
        import jax

        def loss(values, inputs):
            output, _ = layer.stateless_call(
                values, [v.value for v in layer.non_trainable_variables], inputs, **call_kwargs
            )
            return (output.astype("float32") * cotangent).sum(), output

        step = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        if jit:
            step = jax.jit(step)
        (_, output), (weight_grads, x_grad) = step([v.value for v in variables], x)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        def step(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                output = layer(inputs, **call_kwargs)
                loss = tf.reduce_sum(tf.cast(output, "float32") * cotangent)
            x_grad, weight_grads = tape.gradient(loss, (inputs, variables))
            return output, x_grad, weight_grads

        if jit:
            step = tf.function(step, jit_compile=True)
        output, x_grad, weight_grads = step(tf.constant(x))
    else:
        import torch

        torch.manual_seed(0)  # unseeded Keras dropout on torch draws from the global RNG
        # On Keras' device (the GPU if there is one), as the layer's weights are.
        inputs = keras.ops.convert_to_tensor(x).requires_grad_(True)
        output = layer(inputs, **call_kwargs)
        loss = (output.float() * keras.ops.convert_to_tensor(cotangent)).sum()
        grads = torch.autograd.grad(loss, [inputs] + [v.value for v in variables])
        x_grad, weight_grads = grads[0], grads[1:]
    to_np = lambda t: np.asarray(keras.ops.convert_to_numpy(t), dtype="float64")
    return to_np(output), to_np(x_grad), {
        v.path: to_np(g) for v, g in zip(variables, weight_grads)
    }
