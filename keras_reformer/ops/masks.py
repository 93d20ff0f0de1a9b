"""Attention masks of the Reformer: padding, causal and the shared-QK self-mask.

With shared queries and keys a token's key is its own query direction, so it
would attend mostly to itself; the Reformer forbids that (section 2, "Shared-QK
Transformer") unless nothing else is visible. Masks are applied with
`where` (never by adding a large number), with values that are finite in
the logits' dtype, so float16 and bfloat16 never overflow.
"""

from keras import backend
from keras import ops

from keras_reformer.backend import overridable
from keras_reformer.ops.scalars import scalar_like

# (mask value for padding / causal / out-of-range keys, mask value for self).
# The self value is smaller in magnitude, so a token that sees nothing else
# still attends to itself. Both are finite in their dtype.
_MASK_VALUES = {
    "float16": (-5.0e4, -1.0e4),
    "bfloat16": (-1.0e9, -1.0e5),
    "float32": (-1.0e9, -1.0e5),
    "float64": (-1.0e9, -1.0e5),
}


def mask_values(dtype):
    """The (masked, self-masked) logit values for `dtype`.

    Args:
        dtype: a float dtype (name or backend dtype).

    Returns:
        A tuple `(mask_value, self_mask_value)` of Python floats with
        `mask_value < self_mask_value < 0`; about `(-1e9, -1e5)` in float32.
    """
    return _MASK_VALUES[backend.standardize_dtype(dtype)]


def apply_attention_masks(
    logits, query_positions, key_positions, key_mask=None, causal=False, mask_self=True
):
    """Masks attention logits by padding, causality and self-attention.

    All position / mask arguments broadcast against `logits`.

    Args:
        logits: `(..., num_queries, num_keys)` attention logits.
        query_positions: original positions of the queries, `(..., num_queries, 1)`.
        key_positions: original positions of the keys, `(..., 1, num_keys)`.
        key_mask: `(..., 1, num_keys)` booleans, true for keys that may be
            attended to (real tokens). `None` means all keys are valid.
        causal: also mask keys whose position is after the query's.
        mask_self: give keys at the query's own position the (finite)
            self-mask value.

    Returns:
        `logits` with masked entries replaced.
    """
    mask_value, self_mask_value = mask_values(logits.dtype)
    if mask_self:
        is_self = ops.equal(query_positions, key_positions)
        logits = ops.where(is_self, scalar_like(self_mask_value, logits), logits)
    masked = None
    if key_mask is not None:
        masked = ops.logical_not(key_mask)
    if causal:
        after = ops.greater(key_positions, query_positions)
        masked = after if masked is None else ops.logical_or(masked, after)
    if masked is not None:
        logits = ops.where(masked, scalar_like(mask_value, logits), logits)
    return logits


@overridable
def zero_padding(x, padding_mask):
    """`x` with its padded positions replaced by zeros.

    `where`, not a product (0 * NaN is NaN): whatever padded positions hold,
    NaN and Inf included, reaches no later output and no gradient.

    Args:
        x: `(batch, length, features)`.
        padding_mask: `(batch, length)`, true / 1 for real tokens.

    Returns:
        A tensor like `x`, zero where `padding_mask` is false / 0.
    """
    real = ops.expand_dims(ops.cast(padding_mask, "bool"), -1)
    return ops.where(real, x, ops.zeros_like(x))


@overridable
def valid_ids(ids, limit):
    """Which of `ids` lie in `[0, limit)`.

    Args:
        ids: an integer tensor.
        limit: a Python int, the number of valid ids.

    Returns:
        Booleans of the shape of `ids`.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops.masks import valid_ids

    valid_ids(np.array([-1, 0, 3, 4]), 4)  # [False, True, True, False]
    ```
    """
    return ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, limit))


@overridable
def clip_ids(ids, limit):
    """`ids` as int32, each clipped into `[0, limit)`: an id every lookup accepts.

    Args:
        ids: an integer tensor.
        limit: a Python int, the number of valid ids.

    Returns:
        int32 of the shape of `ids`.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops.masks import clip_ids

    clip_ids(np.array([-1, 0, 3, 4]), 4)  # [0, 0, 3, 3]
    ```
    """
    return ops.clip(ops.cast(ids, "int32"), 0, limit - 1)
