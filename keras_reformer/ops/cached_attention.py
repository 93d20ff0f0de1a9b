"""Attention of one new token to cached keys: the pieces of cached generation.

In cached (incremental) decoding each attention layer keeps the keys and
values of the tokens it has seen; a new token attends to a window of them.
For LSH attention the layer also keeps, per hash round, every token's bucket
and the order of the tokens sorted by (bucket, position): the new token's rank
in that order fixes its chunk, and so the keys it sees
(`keras_reformer.ops.bucket_order`).
"""

from keras import ops

from keras_reformer import backend
from keras_reformer.ops.masks import apply_attention_masks
from keras_reformer.ops.shapes import reshape


def write_position(cache, update, index, axis):
    """`cache` with `update` written at `index` along `axis` (one position).

    Args:
        cache: a tensor, e.g. `(batch, heads, capacity, d)`.
        update: a tensor of `cache`'s shape with size 1 along `axis`.
        index: int32 scalar (tensor), the position to write.
        axis: the position axis of `cache`.

    Returns:
        The updated tensor (a copy on JAX and TensorFlow; in place inside a
        compiled loop).
    """
    start = [0] * len(cache.shape)
    start[axis] = index
    return ops.slice_update(cache, start, ops.cast(update, cache.dtype))


def window_attention(
    queries,
    keys,
    values,
    key_positions,
    key_valid,
    query_position,
    mask_self=True,
    logit_offsets=None,
):
    """Attention of one query per row to each of several windows of keys.

    Args:
        queries: `(n, d)`, one query per row (scaled as in `chunked_attention`).
        keys: `(n, rounds, window, d)`, already scaled.
        values: `(n, rounds, window, d_v)`.
        key_positions: `(n or 1, rounds or 1, window)` original positions of the keys.
        key_valid: booleans broadcasting like `key_positions`: which keys the
            query may see (causality included).
        query_position: int32 scalar, the query's position.
        mask_self: give the key at the query's own position the self-mask
            value (shared-QK attention). Defaults to `True`.
        logit_offsets: optional `(n, rounds, window)` values subtracted from
            the logits (the duplicate correction of LSH attention).

    Returns:
        `(outputs, logsumexp)`: `(n, rounds, d_v)` and `(n, rounds)`, as
        `chunked_attention` returns them for each window.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops import window_attention
    query = np.ones((1, 4), "float32")           # the token at position 3
    keys = np.ones((1, 1, 3, 4), "float32")      # one window of 3 keys
    values = np.arange(3, dtype="float32").reshape(1, 1, 3, 1)
    positions = np.array([[[0, 1, 3]]])
    valid = np.array([[[True, True, True]]])
    outputs, _ = window_attention(query, keys, values, positions, valid, 3)
    # (1, 1, 1): the mean of the values at positions 0 and 1 (its own key is masked), 0.5
    ```
    """
    logits = ops.einsum("nd,nrwd->nrw", queries, keys)
    if logit_offsets is not None:
        logits = logits - ops.cast(logit_offsets, logits.dtype)
    logits = apply_attention_masks(
        logits,
        reshape(query_position, (1, 1, 1)),
        key_positions,
        key_valid,
        causal=False,
        mask_self=mask_self,
    )
    shift = ops.max(logits, axis=-1, keepdims=True)
    weights = backend.exp_nonpositive(logits - shift)
    total = ops.sum(weights, axis=-1, keepdims=True)
    outputs = ops.einsum("nrw,nrwd->nrd", weights, values) / total
    return outputs, ops.squeeze(shift + ops.log(total), -1)
