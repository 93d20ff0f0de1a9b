"""Test helpers: plain O(L^2) attention (shared-QK and separate) and checks of a layer against it.

Nothing here is imported by the package; it exists so that tests compare the
chunked / hashed layers against an independent, obviously correct version.
"""

import keras
import numpy as np
from keras import ops

from tests.gradients import gradients
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

_JAX_CACHE = {}


def full_shared_qk_attention(
    x,
    query_key_kernel,
    value_kernel,
    output_kernel,
    causal=False,
    padding_mask=None,
    allowed=None,
):
    """Full shared-QK attention with the self-mask, written with plain keras.ops.

    Args:
        x: `(batch, length, d_model)`.
        query_key_kernel: `(d_model, heads, key_dim)`.
        value_kernel: `(d_model, heads, value_dim)`.
        output_kernel: `(heads, value_dim, d_model)`.
        causal: mask keys after the query.
        padding_mask: `(batch, length)`, 1 for real tokens.
        allowed: optional `(length, length)` booleans, the keys each query may see.

    Returns:
        `(batch, length, d_model)`.
    """
    x = ops.convert_to_tensor(x)
    length = x.shape[1]
    query_key = ops.einsum("blm,mhd->bhld", x, query_key_kernel)
    values = ops.einsum("blm,mhd->bhld", x, value_kernel)
    dim = query_key.shape[-1]
    norm = ops.sqrt(ops.maximum(ops.sum(query_key * query_key, axis=-1, keepdims=True), 1e-6))
    keys = query_key / norm / np.sqrt(dim)
    logits = ops.einsum("bhqd,bhkd->bhqk", query_key, keys)
    blocked = np.zeros((length, length), bool)
    if causal:
        blocked |= np.triu(np.ones((length, length), bool), 1)
    if allowed is not None:
        blocked |= ~np.asarray(allowed)
    blocked = ops.convert_to_tensor(blocked[None, None])
    if padding_mask is not None:
        pad = ops.convert_to_tensor(np.asarray(padding_mask) == 0)[:, None, None, :]
        blocked = ops.logical_or(blocked, pad)
    eye = ops.convert_to_tensor(np.eye(length, dtype=bool)[None, None])
    logits = ops.where(eye, -1e5, logits)
    logits = ops.where(blocked, -1e9, logits)
    probabilities = ops.softmax(logits, axis=-1)
    outputs = ops.einsum("bhqk,bhkd->bqhd", probabilities, values)
    return ops.einsum("bqhd,hdm->bqm", outputs, output_kernel)


def separate_qk_attention(x, query, key, value, output, causal, padding_mask, allowed=None):
    """Plain O(L^2) multi-head attention, q.k / sqrt(d), no self-mask.

    Args:
        x: `(batch, length, d_model)`.
        query, key, value: `(d_model, heads, dim)` kernels.
        output: `(heads, value_dim, d_model)`.
        causal: mask keys after the query.
        padding_mask: `(batch, length)`, 1 for real tokens, or `None`.
        allowed: optional `(length, length)` booleans, the keys each query may see.

    Returns:
        `(batch, length, d_model)`.
    """
    length = x.shape[1]
    q = ops.einsum("blm,mhd->bhld", x, query)
    k = ops.einsum("blm,mhd->bhld", x, key)
    v = ops.einsum("blm,mhd->bhld", x, value)
    logits = ops.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    blocked = np.zeros((1, 1, length, length), bool)
    if causal:
        blocked |= np.triu(np.ones((length, length), bool), 1)
    if allowed is not None:
        blocked |= ~np.asarray(allowed)
    if padding_mask is not None:
        blocked = blocked | (np.asarray(padding_mask) == 0)[:, None, None, :]
    logits = ops.where(ops.convert_to_tensor(blocked), -1e9, logits)
    probabilities = ops.softmax(logits, axis=-1)
    return ops.einsum("bhqk,bhkd,hdm->bqm", probabilities, v, output)


def layer_kernels(layer):
    """The (query_key, value, output) kernels of a built attention layer, as numpy."""
    by_name = {
        v.path.split("/")[-2]: to_numpy(v).astype("float32")
        for v in layer.trainable_variables
        if v.path.endswith("/kernel")
    }
    return by_name["query_key"], by_name["value"], by_name["attention_output"]


def layer_function(layer, training=False, **call_kwargs):
    """`f(x, *trainable_values) -> output` through `layer.stateless_call`."""
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def fn(x, *trainable):
        outputs, _ = layer.stateless_call(
            list(trainable), non_trainable, x, training=training, **call_kwargs
        )
        return outputs

    return fn


def forward(layer, x, training=False, **call_kwargs):
    """`layer(x, training=..., **call_kwargs)`, compiled as one function on JAX.

    JAX compiles every eager op separately (slow on a small CPU); this runs the
    same `stateless_call` under `jax.jit` and writes the new non-trainable
    state (seed generators) back, so it behaves like a plain call.
    """
    if keras.backend.backend() != "jax":
        return layer(x, training=training, **call_kwargs)
    import jax

    if not layer.built:
        layer.build(tuple(x.shape))
    names = tuple(sorted(call_kwargs))
    key = ("forward", id(layer), bool(training), names)
    if key not in _JAX_CACHE:

        def run(trainable, non_trainable, x, *values):
            return layer.stateless_call(
                trainable, non_trainable, x, training=training, **dict(zip(names, values))
            )

        _JAX_CACHE[key] = (layer, jax.jit(run))  # keeps `layer` alive: ids stay unique
    outputs, state = _JAX_CACHE[key][1](
        [v.value for v in layer.trainable_variables],
        [v.value for v in layer.non_trainable_variables],
        x,
        *[call_kwargs[n] for n in names],
    )
    for variable, value in zip(layer.non_trainable_variables, state):
        variable.assign(value)
    return outputs


def check_against_full_attention(layer, x, causal, padding_mask=None, allowed=None):
    """Output and gradients (input and every weight) of `layer` vs the plain reference."""
    call_kwargs = {} if padding_mask is None else {"padding_mask": padding_mask}
    forward(layer, x, **call_kwargs)
    weights = [to_numpy(v) for v in layer.trainable_variables]
    cotangent = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    if padding_mask is not None:
        cotangent *= padding_mask[..., None]  # padded rows carry no meaning
    fn = layer_function(layer, **call_kwargs)

    def loss(x, *w):
        return keras.ops.sum(keras.ops.multiply(fn(x, *w), cotangent))

    value, grads = gradients(loss, [x] + weights)

    def reference(x, qk, v, out):
        y = full_shared_qk_attention(
            x, qk, v, out, causal=causal, padding_mask=padding_mask, allowed=allowed
        )
        return keras.ops.sum(keras.ops.multiply(y, cotangent))

    ref_value, ref_grads = gradients(reference, [x] + list(layer_kernels(layer)))
    assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        assert np.abs(want).max() > 0
        assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def check_against_separate_qk_attention(layer, x, causal, padding_mask, allowed=None):
    """Output and gradients (input and every weight) of a separate-QK `layer`
    vs `separate_qk_attention` with the same kernels."""
    forward(layer, x, padding_mask=padding_mask)
    names = [v.path.split("/")[-2] for v in layer.trainable_variables]
    assert sorted(names) == ["attention_output", "key", "query", "value"]
    weights = [to_numpy(v) for v in layer.trainable_variables]
    cotangent = np.random.default_rng(1).normal(size=x.shape) * padding_mask[..., None]
    fn = layer_function(layer, padding_mask=padding_mask)

    def loss(x, cotangent, *w):
        return ops.sum(fn(x, *w) * cotangent)

    def reference(x, cotangent, *w):
        k = dict(zip(names, w))
        y = separate_qk_attention(
            x,
            k["query"],
            k["key"],
            k["value"],
            k["attention_output"],
            causal,
            padding_mask,
            allowed=allowed,
        )
        return ops.sum(y * cotangent)

    value, grads = gradients(loss, [x, cotangent] + weights)
    ref_value, ref_grads = gradients(reference, [x, cotangent] + weights)
    assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    for got, want in zip([grads[0]] + grads[2:], [ref_grads[0]] + ref_grads[2:]):
        assert np.abs(want).max() > 0
        assert_allclose(got, want, rtol=1e-4, atol=1e-5)
