"""Gradients in the tests, on every backend: the one place that uses each
backend's autodiff for a comparison.

`gradients` differentiates a scalar function of arrays (a reference written
with `keras.ops`, or a layer's `stateless_call`); `layer_gradients`
differentiates a layer's call, eager or jit-compiled, from the layer's
current state; `snapshot_state` lets a test run a layer twice from the same
seed-generator state.
"""

import keras
import numpy as np

from tests.test_case import BACKEND
from tests.test_case import to_numpy

_JAX_COMPILED = {}


def gradients(fn, args):
    """Gradients of the scalar `fn(*args)` w.r.t. every argument, by the backend's autodiff.

    On JAX the gradient function is compiled once per `fn` (instead of hundreds
    of per-op eager compilations).

    Args:
        fn: maps backend tensors to a scalar tensor.
        args: numpy arrays (converted to float32).

    Returns:
        `(value, [gradient, ...])` as numpy float64 arrays (zeros where unused).
    """
    args = [np.asarray(a, dtype="float32") for a in args]
    if BACKEND == "jax":
        import jax

        key = (fn, len(args))
        if key not in _JAX_COMPILED:
            _JAX_COMPILED[key] = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(args)))))
        value, grads = _JAX_COMPILED[key](*args)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors)
    elif BACKEND == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        value = fn(*tensors)
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
    else:
        raise NotImplementedError(BACKEND)
    grads = [np.zeros(a.shape) if g is None else to_numpy(g) for a, g in zip(args, grads)]
    return to_numpy(value), grads


def layer_gradients(layer, x, cotangent, jit=False, **call_kwargs):
    """Gradients of `sum(float32(layer(x, **call_kwargs)) * cotangent)` w.r.t. `x`
    and every trainable weight of a built `layer`.

    Runs from the layer's current non-trainable state (on TensorFlow and torch
    the call advances it; see `snapshot_state` to run again from the same
    state) and, on torch, from the same global RNG state every time (unseeded
    Keras dropout on torch draws from it). `x` keeps its dtype.

    Args:
        layer: a built layer.
        x: numpy array, the layer's input.
        cotangent: numpy array shaped like the output.
        jit: compile the step (`jax.jit`; `tf.function(jit_compile=True)`,
            or TensorFlow's graph runtime with `"graph"`); eager on torch.
        **call_kwargs: passed to the call.

    Returns:
        `(output, x_grad, weight_grads)` as numpy float64 arrays, `x_grad`
        zeros when the output does not depend on the input's values,
        `weight_grads` a dict keyed by `variable.path` in
        `layer.trainable_variables` order.
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
            step = tf.function(step, jit_compile=jit != "graph")
        output, x_grad, weight_grads = step(tf.constant(x))
    else:
        import torch

        torch.manual_seed(0)  # unseeded Keras dropout on torch draws from the global RNG
        # On Keras' device (the GPU if there is one), as the layer's weights are.
        inputs = keras.ops.convert_to_tensor(x).requires_grad_(True)
        output = layer(inputs, **call_kwargs)
        loss = (output.float() * keras.ops.convert_to_tensor(cotangent)).sum()
        grads = torch.autograd.grad(
            loss, [inputs] + [v.value for v in variables], allow_unused=True
        )
        x_grad, weight_grads = grads[0], grads[1:]
    missing = [v.path for v, g in zip(variables, weight_grads) if g is None]
    assert not missing, f"weights that do not reach the output: {missing}"
    to_np = lambda t: np.asarray(keras.ops.convert_to_numpy(t), dtype="float64")  # noqa: E731
    x_grad = np.zeros(np.shape(x)) if x_grad is None else to_np(x_grad)
    return to_np(output), x_grad, {v.path: to_np(g) for v, g in zip(variables, weight_grads)}


def snapshot_state(layer):
    """Copies `layer`'s non-trainable values (seed-generator states) now.

    Returns:
        `restore()`, which assigns the copied values back: a layer call after
        it draws the same random numbers as the first call after the snapshot.
    """
    values = [np.array(keras.ops.convert_to_numpy(v.value)) for v in layer.non_trainable_variables]

    def restore():
        for variable, value in zip(layer.non_trainable_variables, values):
            variable.assign(value)

    return restore
