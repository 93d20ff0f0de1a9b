"""Angular locality-sensitive hashing (Reformer, Kitaev et al. 2020, section 3).

A vector `x` is rotated by a random matrix `R` (entries N(0, 1)) of shape
`(d, num_buckets / 2)`; its bucket is `argmax([xR ; -xR])`. Nearby directions
land in the same bucket with high probability (Andoni et al. 2015).

With factorised buckets (`bucket_factors = (b1, b2, ...)`, as in the paper's
reference implementation, trax), each factor has its own `b_i / 2` columns of
`R` and its own argmax, and the bucket is the mixed-radix number
`i1 + b1 * (i2 + b2 * ...)`: `b1 * b2 * ...` buckets from
`(b1 + b2 + ...) / 2` rotated values per token instead of `b1 * b2 * ... / 2`.
"""

import math

from keras import ops

from keras_reformer import backend
from keras_reformer.ops.chunking import pad_to_multiple
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape

# Hash at most this many rotated values at once: `xR` has `num_buckets / 2`
# values per token and `num_buckets` grows with the length, so hashing a long
# sequence in one piece would cost O(L^2 / chunk_length) memory.
_MAX_ROTATED_VALUES = 2**22


def default_num_buckets(length, chunk_length):
    """The paper's number of buckets for a sequence: about `2 * length / chunk_length`.

    Args:
        length: the sequence length (after padding to a multiple of `chunk_length`).
        chunk_length: positions per chunk.

    Returns:
        The smallest power of two that is at least `2 * length / chunk_length`,
        and at least 2.
    """
    target = max(2, -(-2 * length // chunk_length))  # ceil(2 * length / chunk_length)
    return 1 << (target - 1).bit_length()


def default_bucket_factors(num_buckets, chunk_length):
    """Splits a large bucket count in two, so that hashing costs no more than attending.

    Rotating a vector for `num_buckets` buckets makes `num_buckets / 2` values;
    attending to two chunks takes `2 * chunk_length` keys. Above
    `num_buckets = 4 * chunk_length` the rotation would do more work per token than
    the attention, so the count is split into two powers of two, as equal as
    possible (the rule of Hugging Face's Reformer for the limit it computes).

    Args:
        num_buckets: the number of buckets, a power of two (see `default_num_buckets`).
        chunk_length: positions per chunk.

    Returns:
        A tuple of bucket counts whose product is `num_buckets`: `(num_buckets,)`,
        or two factors.

    Example:

    ```python
    import keras_reformer

    keras_reformer.ops.default_bucket_factors(128, 64)   # (128,)
    keras_reformer.ops.default_bucket_factors(2048, 64)  # (32, 64)
    ```
    """
    if num_buckets <= 4 * chunk_length or num_buckets & (num_buckets - 1):
        return (num_buckets,)
    power = num_buckets.bit_length() - 1
    return (2 ** (power // 2), 2 ** (power - power // 2))


def default_bucket_factors_for_length(length, chunk_length):
    """The default buckets of a sequence of `length`, as bucket factors.

    The one rule behind every default bucket count: the paper's count for the
    length (`default_num_buckets`), split in two above `4 * chunk_length`
    buckets (`default_bucket_factors`). `LSHSelfAttention` with
    `num_buckets=None` applies it to each call's (padded) length;
    `ReformerModel` applies it once to `max_sequence_length`.

    Args:
        length: the sequence length (after padding to a multiple of `chunk_length`).
        chunk_length: positions per chunk.

    Returns:
        A tuple of bucket counts whose product is the bucket count: one entry,
        or two factors.
    """
    return default_bucket_factors(default_num_buckets(length, chunk_length), chunk_length)


def hash_buckets(vectors, rotations, bucket_factors=None, max_rotated_values=_MAX_ROTATED_VALUES):
    """Angular LSH bucket ids of `vectors`, one per hash round and head.

    The result carries no gradient (hashing is not differentiable).

    Args:
        vectors: `(batch, num_heads, length, dim)`; the length may be
            unknown while tracing.
        rotations: `(num_heads, dim, num_hashes, sum(bucket_factors) // 2)`
            random rotations, one set per head.
        bucket_factors: the bucket count as a tuple of even factors (see the
            module docstring). Defaults to `None`: one factor,
            `2 * rotations.shape[-1]`.
        max_rotated_values: bound on the number of rotated values (per batch
            element) held at once; longer sequences are hashed block by block
            with `keras.ops.map`, so memory stays linear in `length`.

    Returns:
        `(batch, num_heads, num_hashes, length)` int32 bucket ids in
        `[0, prod(bucket_factors))`.
    """
    vectors = ops.stop_gradient(vectors)
    rotations = ops.cast(ops.stop_gradient(rotations), vectors.dtype)
    num_heads, length, dim = vectors.shape[1], axis_size(vectors, 2), vectors.shape[3]
    num_hashes, half = rotations.shape[2], rotations.shape[3]
    bucket_factors = tuple(bucket_factors or (2 * half,))
    if any(f < 2 or f % 2 for f in bucket_factors) or sum(bucket_factors) != 2 * half:
        raise ValueError(
            "`bucket_factors` must be even numbers >= 2 that sum to twice the rotations' last "
            f"dimension ({2 * half}). Received: bucket_factors={bucket_factors}"
        )

    flat_rotations = reshape(rotations, (num_heads, dim, num_hashes * half))

    def hash_block(block):
        rotated = ops.einsum("bhld,hdk->bhlk", block, flat_rotations)  # k: hashes * half
        rotated = reshape(rotated, (-1, num_heads, axis_size(block, 2), num_hashes, half))
        buckets, start, radix = None, 0, 1
        for factor in bucket_factors:
            bucket = angular_bucket(rotated[..., start : start + factor // 2])
            buckets = bucket if buckets is None else buckets + bucket * radix
            start, radix = start + factor // 2, radix * factor
        return ops.transpose(buckets, (0, 1, 3, 2))

    max_block = max(1, max_rotated_values // (num_heads * num_hashes * half))
    if isinstance(length, int):
        block_length = _largest_divisor_at_most(length, max_block)
        if block_length == length:
            return hash_block(vectors)
    else:
        # Known at run time only: blocks of up to `max_block` positions, the
        # last one padded (its padding's buckets are cut off below).
        block_length = ops.minimum(max_block, length)
        vectors = pad_to_multiple(vectors, block_length, axis=2)
    padded_length = axis_size(vectors, 2)
    batch = ops.shape(vectors)[0]

    def hash_block_at(index):
        # A slice of `vectors`, not a blocked copy of it: at long lengths
        # the copy would be one more sequence-wide tensor.
        start = index * block_length
        return hash_block(
            ops.slice(vectors, (0, 0, start, 0), (batch, num_heads, block_length, dim))
        )

    buckets = ops.map(hash_block_at, ops.arange(padded_length // block_length, dtype="int32"))
    buckets = ops.transpose(buckets, (1, 2, 3, 0, 4))  # (batch, heads, hashes, blocks, block)
    buckets = reshape(buckets, (-1, num_heads, num_hashes, padded_length))
    return buckets if isinstance(length, int) else buckets[..., :length]


@backend.overridable
def angular_bucket(rotated):
    """The angular bucket of rotated vectors: `argmax([xR ; -xR])`.

    Args:
        rotated: `(..., half)` rotated vectors `xR`.

    Returns:
        `(...)` int32 in `[0, 2 * half)`: the first index of the largest value
        of `[xR ; -xR]` over the last axis.
    """
    return ops.cast(ops.argmax(ops.concatenate([rotated, -rotated], axis=-1), axis=-1), "int32")


def _largest_divisor_at_most(n, bound):
    best = 1
    for d in range(1, int(math.isqrt(n)) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if candidate <= bound and candidate > best:
                    best = candidate
    return best
