"""Attention computed a few (head, hash round) slices at a time: the attention memory mode.

Multi-round LSH attention is `num_heads * num_hashes` independent slices (one
per head and round: its own sorted queries, keys, values and logits), combined
per head with the rounds' log-sum-exp weights. Computed together, every
slice's tensors and their gradients are alive at once, which is most of a
layer's training memory at long lengths. `stream_slices` computes them
`group_size` at a time in one sequential loop and keeps only a running
combination per head:

    acc_h = sum_r exp(lse_r - m_h) * out_r,   total_h = sum_r exp(lse_r - m_h),
    output_h = acc_h / total_h = sum_r softmax_r(lse) * out_r,

where `m_h` is the running maximum of the head's log-sum-exps, without
gradient: the ratio does not depend on it, so the gradient is exact. When a
larger `m_h` arrives, `acc_h` and `total_h` are rescaled by a constant
`exp(m_old - m_new)`, so the combination is linear in the carried sums and
their backward keeps only the small rescale factors, not the carried sums.
Each group's attention is rematerialised (`keras.remat`): the backward
recomputes it from the layer's (unsorted) queries and values and the group's
indices, so no slice's tensors outlive its step.
"""

import keras
import numpy as np
from keras import ops

from keras_reformer import backend
from keras_reformer.ops.shapes import reshape

# Below every log-sum-exp (masked logits are about -1e9 in float32), finite so
# that `0 * _NO_PEAK` is 0 in the one-hot products and `exp(_NO_PEAK - m)` is 0.
_NO_PEAK = -3.0e38


def slice_group_size(num_slices, max_slices):
    """The number of slices computed at a time: the largest divisor of
    `num_slices` that is at most `max_slices`.

    Args:
        num_slices: number of slices, e.g. `num_heads * num_hashes`.
        max_slices: the most slices to compute at a time, or `None` for all.

    Returns:
        An integer in `[1, num_slices]` that divides `num_slices`.
    """
    if max_slices is None or max_slices >= num_slices:
        return num_slices
    return max(d for d in range(1, max_slices + 1) if num_slices % d == 0)


def stream_slices(attend, invariants, slice_inputs, slice_heads, num_heads, max_slices, like):
    """Runs `attend` on groups of slices, one group at a time, and combines each head's slices.

    Args:
        attend: `attend(*invariants, first_slice, *group_inputs)` returns
            `(outputs, logsumexp)` of the group's slices in the original token
            order: `(batch, group, length, value_dim)` and `(batch, group,
            length)`. `first_slice` is the int32 index of the group's first
            slice (e.g. to derive a dropout seed); `group_inputs` are
            `slice_inputs` cut to the group's slices. It is rematerialised, so
            every tensor it reads must be an argument.
        invariants: tuple of tensors every group reads (queries, values, ...).
        slice_inputs: tuple of tensors with one entry per slice along their
            leading axis (`num_slices, ...`): the slices' heads, indices, ...
        slice_heads: sequence of Python ints, the head of every slice.
        num_heads: the number of heads.
        max_slices: the most slices computed at a time (see
            `slice_group_size`), or `None` for all.
        like: a `(batch, num_heads, length, value_dim)` tensor giving the
            outputs' shape (its values are not read).

    Returns:
        `(batch, num_heads, length, value_dim)` float32 outputs: for each head,
        the softmax-over-log-sum-exps combination of its slices (as
        `combine_hash_rounds`).
    """
    num_slices = len(slice_heads)
    group = slice_group_size(num_slices, max_slices)
    num_groups = num_slices // group
    heads = np.asarray(slice_heads, dtype="int64").reshape(num_groups, group)
    one_hot = np.eye(num_heads, dtype="float32")[heads]  # (groups, group, heads)
    first_slices = np.arange(num_groups, dtype="int32") * group
    grouped = tuple(reshape(x, (num_groups, group) + tuple(x.shape[1:])) for x in slice_inputs)

    def attend_group(*args):
        *attend_args, one_hot, peak = args
        outputs, logsumexp = attend(*attend_args)
        outputs = ops.cast(outputs, "float32")
        logsumexp = ops.cast(logsumexp, "float32")
        fixed = ops.stop_gradient(logsumexp)
        candidates = ops.where(
            reshape(one_hot, (1, group, num_heads, 1)) > 0,
            ops.expand_dims(fixed, 2),
            _NO_PEAK,
        )  # (batch, group, heads, length)
        peak = ops.stop_gradient(ops.maximum(peak, ops.max(candidates, axis=1)))
        weights = ops.exp(logsumexp - ops.einsum("bhl,gh->bgl", peak, one_hot))
        scaled = ops.einsum("bgld,gh->bhld", outputs * ops.expand_dims(weights, -1), one_hot)
        return scaled, ops.einsum("bgl,gh->bhl", weights, one_hot), peak

    attend_group = keras.remat(attend_group)

    def step(carry, xs):
        acc, total, peak = carry
        first_slice, one_hot, *group_inputs = xs
        scaled, weights, new_peak = attend_group(
            *invariants, first_slice, *group_inputs, one_hot, peak
        )
        rescale = ops.stop_gradient(ops.exp(peak - new_peak))
        acc = acc * ops.expand_dims(rescale, -1) + scaled
        return (acc, total * rescale + weights, new_peak), ()

    acc = ops.zeros_like(like, dtype="float32")
    total = ops.zeros_like(like[..., 0], dtype="float32")
    init = (acc, total, total + _NO_PEAK)
    xs = (ops.convert_to_tensor(first_slices), ops.convert_to_tensor(one_hot)) + grouped
    (acc, total, _), _ = backend.scan(step, init, xs)
    return acc / ops.expand_dims(total, -1)
