"""Angular locality-sensitive hashing (Reformer, Kitaev et al. 2020, section 3).

A vector `x` is rotated by a random matrix `R` (entries N(0, 1)) of shape
`(d, num_buckets / 2)`; its bucket is `argmax([xR ; -xR])`. Nearby directions
land in the same bucket with high probability (Andoni et al. 2015).
"""

import math

from keras import ops

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
    target = max(2.0, 2.0 * length / chunk_length)
    return 2 ** int(math.ceil(math.log2(target)))


def hash_buckets(vectors, rotations, max_rotated_values=_MAX_ROTATED_VALUES):
    """Angular LSH bucket ids of `vectors`, one per hash round and head.

    The result carries no gradient (hashing is not differentiable).

    Args:
        vectors: `(batch, num_heads, length, dim)`.
        rotations: `(num_heads, dim, num_hashes, num_buckets // 2)` random
            rotations, one set per head.
        max_rotated_values: bound on the number of rotated values (per batch
            element) held at once; longer sequences are hashed block by block
            with `keras.ops.map`, so memory stays linear in `length`.

    Returns:
        `(batch, num_heads, num_hashes, length)` int32 bucket ids in
        `[0, num_buckets)`.
    """
    vectors = ops.stop_gradient(vectors)
    rotations = ops.cast(ops.stop_gradient(rotations), vectors.dtype)
    num_heads, length, dim = vectors.shape[1], vectors.shape[2], vectors.shape[3]
    num_hashes, half = rotations.shape[2], rotations.shape[3]

    flat_rotations = ops.reshape(rotations, (num_heads, dim, num_hashes * half))

    def hash_block(block):
        # argmax([xR ; -xR]) is the index of the largest |xR|, moved to the
        # second half where that value is negative: one reduction, no concatenation.
        rotated = ops.einsum("bhld,hdk->bhlk", block, flat_rotations)  # k: hashes * half
        rotated = ops.reshape(rotated, (-1, num_heads, block.shape[2], num_hashes, half))
        largest = ops.argmax(ops.abs(rotated), axis=-1)
        value = ops.squeeze(ops.take_along_axis(rotated, ops.expand_dims(largest, -1), -1), -1)
        buckets = ops.cast(largest, "int32") + ops.cast(value < 0, "int32") * half
        return ops.transpose(buckets, (0, 1, 3, 2))

    per_position = num_heads * num_hashes * half
    block_length = _largest_divisor_at_most(length, max(1, max_rotated_values // per_position))
    if block_length == length:
        return hash_block(vectors)
    num_blocks = length // block_length
    blocks = ops.reshape(vectors, (-1, num_heads, num_blocks, block_length, dim))
    blocks = ops.transpose(blocks, (2, 0, 1, 3, 4))
    buckets = ops.map(hash_block, blocks)  # (num_blocks, batch, heads, hashes, block)
    buckets = ops.transpose(buckets, (1, 2, 3, 0, 4))
    return ops.reshape(buckets, (-1, num_heads, num_hashes, length))


def _largest_divisor_at_most(n, bound):
    best = 1
    for d in range(1, int(math.isqrt(n)) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if candidate <= bound and candidate > best:
                    best = candidate
    return best
