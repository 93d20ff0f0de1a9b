"""Chunked dot-product attention and the combination of hash rounds.

Queries are split into chunks; each chunk attends to itself and to `lookback`
previous and `lookahead` next chunks of keys (Reformer, Kitaev et al. 2020,
section 3). Every tensor is linear in the sequence length: the largest holds
`length * (lookback + 1 + lookahead) * chunk_length` logits.
"""

import functools

import keras
from keras import ops

from keras_reformer import backend
from keras_reformer.ops.chunking import merge_chunks
from keras_reformer.ops.chunking import shift_chunks
from keras_reformer.ops.chunking import split_chunks
from keras_reformer.ops.masks import apply_attention_masks
from keras_reformer.ops.masks import mask_values
from keras_reformer.ops.scalars import scalar_like
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape


@backend.overridable
def shared_qk_keys(queries, epsilon=1e-6):
    """Keys of shared-QK attention: queries unit-normalised and scaled by `1/sqrt(d)`.

    The norm is computed in float32 (float64 for float64 queries): squared in
    float16, a component above 256 would overflow and the key become 0 or NaN.

    Args:
        queries: `(..., d)` shared query/key vectors.
        epsilon: lower bound on the squared norm (all-zero vectors stay finite).

    Returns:
        `queries / (||queries|| * sqrt(d))`, in the dtype of `queries`.
    """
    dim = queries.shape[-1]
    dtype = keras.backend.standardize_dtype(queries.dtype)
    wide = ops.cast(queries, "float64" if dtype == "float64" else "float32")
    squared_norm = ops.sum(ops.square(wide), axis=-1, keepdims=True)
    inverse_norm = ops.rsqrt(ops.maximum(squared_norm, scalar_like(epsilon, squared_norm)))
    return ops.cast(wide * (inverse_norm * dim**-0.5), dtype)


@backend.overridable
def chunked_attention(
    queries,
    keys,
    values,
    query_positions,
    key_positions,
    key_mask=None,
    chunk_length=64,
    lookback=1,
    lookahead=0,
    causal=False,
    mask_self=True,
    dropout_rate=0.0,
    seed=None,
    query_round_chunks=None,
    key_round_chunks=None,
):
    """Attention of each chunk of queries to its own and neighbouring chunks of keys.

    Positions are the tokens' ORIGINAL positions (they may be permuted, e.g.
    sorted by LSH bucket): causal and self masks compare them, not the index in
    the (sorted) sequence. Keys outside the sequence and keys with a false
    `key_mask` are masked.

    Args:
        queries: `(batch, length, d)`; `length` (static, or known only at run
            time) a multiple of `chunk_length`.
        keys: `(batch, length, d)`, already scaled.
        values: `(batch, length, d_v)`.
        query_positions: `(batch or 1, length)` integers.
        key_positions: `(batch or 1, length)` integers. Passing the same
            tensor as `query_positions` (distinct positions in each row, as
            a permutation of the tokens has) lets the self-mask skip the
            comparison of positions.
        key_mask: `(batch or 1, length)` booleans, true for real keys, or `None`.
        chunk_length: positions per chunk. Defaults to `64`.
        lookback: previous chunks each chunk attends to. Defaults to `1`.
        lookahead: next chunks each chunk attends to. Defaults to `0`.
        causal: mask keys whose position is after the query's.
        mask_self: self-mask keys at the query's own position.
        dropout_rate: dropout on the attention probabilities.
        seed: a `keras.random.SeedGenerator` (or int) for the dropout.
        query_round_chunks: optional `(batch or 1, length, num_rounds)`
            integers: the chunk each query lands in, in every hash round.
            With `key_round_chunks`, each logit is lowered by the log of the
            number of rounds in which the query sees the key (see
            `duplicate_counts`), so that a key met in several rounds counts
            once when the rounds are combined (paper, appendix A).
        key_round_chunks: `(batch or 1, length, num_rounds)` integers, the same
            for the keys; given together with `query_round_chunks`.

    Returns:
        `(outputs, logsumexp)`: `(batch, length, d_v)` attention outputs and
        `(batch, length)` log-normalisers of each query's logits (after
        masking), needed to combine several hash rounds.
    """
    q = split_chunks(queries, chunk_length)
    q_pos = ops.expand_dims(split_chunks(query_positions, chunk_length), -1)
    k = split_chunks(keys, chunk_length)
    v = split_chunks(values, chunk_length)
    k_pos = split_chunks(key_positions, chunk_length)
    k_mask = None if key_mask is None else split_chunks(ops.cast(key_mask, "bool"), chunk_length)
    check_round_chunks(query_round_chunks, key_round_chunks)
    if query_round_chunks is not None:
        q_rounds = ops.expand_dims(split_chunks(query_round_chunks, chunk_length), 3)
        k_rounds = split_chunks(key_round_chunks, chunk_length)
    num_chunks = axis_size(q, 1)
    offsets = range(-lookback, lookahead + 1)
    # Positions are distinct within a row, so when queries and keys share
    # them, a query meets its own position only on the diagonal of its own
    # chunk: no comparison of positions finds it, and other blocks have none.
    self_on_diagonal = mask_self and query_positions is key_positions
    # One block of logits per neighbouring chunk instead of one block over the
    # concatenated neighbours: no copy of the keys and values per neighbour,
    # and smaller matrix products (about 25% faster on CPU).
    logits = []
    for offset in offsets:
        valid = None
        if k_mask is not None:
            # The shift fills neighbours beyond either end of the sequence with False.
            valid = ops.expand_dims(shift_chunks(k_mask, offset, fill_value=False), -2)
        elif offset != 0:  # neighbours beyond either end of the sequence are invalid keys
            valid = reshape(_chunk_in_range(num_chunks, offset), (1, num_chunks, 1, 1))
        block = ops.einsum("bncd,bnkd->bnck", q, shift_chunks(k, offset))
        if query_round_chunks is not None:
            # Keys beyond the sequence are masked below: their count does not matter.
            shifted = ops.expand_dims(shift_chunks(k_rounds, offset), 2)
            counts = duplicate_counts(q_rounds, shifted, lookback, lookahead)
            block = block - ops.log(ops.cast(ops.maximum(counts, 1), block.dtype))
        if self_on_diagonal and offset == 0:
            diagonal = ops.arange(chunk_length, dtype="int32")
            is_self = ops.equal(ops.expand_dims(diagonal, 1), ops.expand_dims(diagonal, 0))
            block = ops.where(is_self, scalar_like(mask_values(block.dtype)[1], block), block)
        logits.append(
            apply_attention_masks(
                block,
                q_pos,
                ops.expand_dims(shift_chunks(k_pos, offset, fill_value=-1), -2),
                valid,
                causal=causal,
                mask_self=mask_self and not self_on_diagonal,
            )
        )
    # Softmax over the union of the blocks. The shift by the maximum only keeps
    # exp in range; the result does not depend on it, hence no gradient.
    shift = ops.stop_gradient(
        functools.reduce(ops.maximum, [ops.max(block, axis=-1, keepdims=True) for block in logits])
    )
    weights = [backend.exp_nonpositive(block - shift) for block in logits]
    total = functools.reduce(ops.add, [ops.sum(w, axis=-1, keepdims=True) for w in weights])
    if dropout_rate > 0.0:
        # One draw over the whole window, as dropout of the concatenated
        # probabilities would make; dropout(w) / total == dropout(w / total).
        window_shape = tuple(ops.shape(weights[0])[:-1]) + (len(weights) * chunk_length,)
        keep = keras.random.dropout(
            ops.ones(window_shape, dtype=weights[0].dtype), dropout_rate, seed=seed
        )
        weights = [
            w * keep[..., i * chunk_length : (i + 1) * chunk_length] for i, w in enumerate(weights)
        ]
    outputs = (
        functools.reduce(
            ops.add,
            [
                ops.einsum("bnck,bnkd->bncd", w, shift_chunks(v, offset))
                for w, offset in zip(weights, offsets)
            ],
        )
        / total
    )
    logsumexp = ops.squeeze(shift + ops.log(total), -1)
    return merge_chunks(outputs), merge_chunks(logsumexp)


def check_round_chunks(query_round_chunks, key_round_chunks):
    """Raises a ValueError unless both or neither of the round chunks are given."""
    if (query_round_chunks is None) != (key_round_chunks is None):
        raise ValueError(
            "`query_round_chunks` and `key_round_chunks` must be given together. Received: "
            f"query_round_chunks={'None' if query_round_chunks is None else 'a tensor'}, "
            f"key_round_chunks={'None' if key_round_chunks is None else 'a tensor'}"
        )


def duplicate_counts(query_chunks, key_chunks, lookback=1, lookahead=0):
    """In how many hash rounds each query sees each key (`N_ij` of the paper's appendix A).

    A query in chunk `c` of a round sees the keys in chunks `c - lookback` to
    `c + lookahead` of that round. Attention combined over rounds counts a key
    once per round that shows it; dividing its weight by this count (subtracting
    `log N_ij` from the logit) counts it once in all.

    Args:
        query_chunks: `(..., num_queries, 1, num_rounds)` integers, each
            query's chunk in every round.
        key_chunks: `(..., 1, num_keys, num_rounds)` integers, each key's chunk
            in every round.
        lookback: previous chunks a chunk attends to. Defaults to `1`.
        lookahead: next chunks a chunk attends to. Defaults to `0`.

    Returns:
        `(..., num_queries, num_keys)` int32 counts in `[0, num_rounds]`.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops import duplicate_counts
    query = np.array([[[3, 5]]])        # one query: chunk 3, then chunk 5
    keys = np.array([[[3, 0], [2, 5]]])  # two keys
    duplicate_counts(query[:, :, None], keys[:, None])  # [[[1, 2]]]
    ```
    """
    query_chunks = ops.cast(query_chunks, "int32")
    key_chunks = ops.cast(key_chunks, "int32")
    counts = None
    for round_index in range(query_chunks.shape[-1]):
        distance = key_chunks[..., round_index] - query_chunks[..., round_index]
        seen = ops.cast(ops.logical_and(distance >= -lookback, distance <= lookahead), "int32")
        counts = seen if counts is None else counts + seen
    return counts


def _chunk_in_range(num_chunks, offset):
    """`(num_chunks,)` booleans: whether chunk `i + offset` exists."""
    neighbour = ops.arange(num_chunks, dtype="int32") + offset
    return ops.logical_and(neighbour >= 0, neighbour < num_chunks)


@backend.overridable
def combine_hash_rounds(outputs, logsumexp):
    """Combines the attention outputs of several hash rounds (paper, appendix A).

    Round `r` is weighted by `exp(lse_r - logsumexp_r' lse_r')`, i.e. by the
    share of the total attention mass its keys received: a softmax over the
    rounds, so the weights sum to one in any dtype. (Subtracting a rounded
    `logsumexp` instead would not: a query that sees only itself has
    `lse_r = -1e5` in every round, where float32 is 0.008 apart and bfloat16 512.)

    Args:
        outputs: `(batch, num_hashes, length, d_v)`.
        logsumexp: `(batch, num_hashes, length)`.

    Returns:
        `(batch, length, d_v)`.
    """
    if logsumexp.shape[1] == 1:  # one round: its weight is 1 (Keras warns on a size-1 softmax)
        return outputs[:, 0]
    weights = ops.softmax(logsumexp, axis=1)
    return ops.sum(outputs * ops.expand_dims(weights, -1), axis=1)
