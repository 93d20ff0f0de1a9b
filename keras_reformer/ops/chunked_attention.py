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
from keras_reformer.ops.scalars import scalar_like


def shared_qk_keys(queries, epsilon=1e-6):
    """Keys of shared-QK attention: queries unit-normalised and scaled by `1/sqrt(d)`.

    Args:
        queries: `(..., d)` shared query/key vectors.
        epsilon: lower bound on the squared norm (all-zero vectors stay finite).

    Returns:
        `queries / (||queries|| * sqrt(d))`.
    """
    dim = queries.shape[-1]
    squared_norm = ops.sum(ops.square(queries), axis=-1, keepdims=True)
    inverse_norm = ops.rsqrt(ops.maximum(squared_norm, scalar_like(epsilon, squared_norm)))
    return queries * (inverse_norm * dim**-0.5)


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
):
    """Attention of each chunk of queries to its own and neighbouring chunks of keys.

    Positions are the tokens' ORIGINAL positions (they may be permuted, e.g.
    sorted by LSH bucket): causal and self masks compare them, not the index in
    the (sorted) sequence. Keys outside the sequence and keys with a false
    `key_mask` are masked.

    Args:
        queries: `(batch, length, d)`; `length` a multiple of `chunk_length`.
        keys: `(batch, length, d)`, already scaled.
        values: `(batch, length, d_v)`.
        query_positions: `(batch or 1, length)` integers.
        key_positions: `(batch or 1, length)` integers.
        key_mask: `(batch or 1, length)` booleans, true for real keys, or `None`.
        chunk_length: positions per chunk. Defaults to `64`.
        lookback: previous chunks each chunk attends to. Defaults to `1`.
        lookahead: next chunks each chunk attends to. Defaults to `0`.
        causal: mask keys whose position is after the query's.
        mask_self: self-mask keys at the query's own position.
        dropout_rate: dropout on the attention probabilities.
        seed: a `keras.random.SeedGenerator` (or int) for the dropout.

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
    num_chunks = q.shape[1]
    offsets = range(-lookback, lookahead + 1)
    # One block of logits per neighbouring chunk instead of one block over the
    # concatenated neighbours: no copy of the keys and values per neighbour,
    # and smaller matrix products (about 25% faster on CPU).
    logits = []
    for offset in offsets:
        valid = None
        if offset != 0:  # neighbours beyond either end of the sequence are invalid keys
            valid = ops.reshape(_chunk_in_range(num_chunks, offset), (1, num_chunks, 1, 1))
        if k_mask is not None:
            shifted_mask = ops.expand_dims(shift_chunks(k_mask, offset, fill_value=False), -2)
            valid = shifted_mask if valid is None else ops.logical_and(valid, shifted_mask)
        block = ops.einsum("bncd,bnkd->bnck", q, shift_chunks(k, offset))
        logits.append(apply_attention_masks(
            block, q_pos, ops.expand_dims(shift_chunks(k_pos, offset, fill_value=-1), -2),
            valid, causal=causal, mask_self=mask_self,
        ))
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
    outputs = functools.reduce(ops.add, [
        ops.einsum("bnck,bnkd->bncd", w, shift_chunks(v, offset))
        for w, offset in zip(weights, offsets)
    ]) / total
    logsumexp = ops.squeeze(shift + ops.log(total), -1)
    return merge_chunks(outputs), merge_chunks(logsumexp)


def _chunk_in_range(num_chunks, offset):
    """`(num_chunks,)` booleans: whether chunk `i + offset` exists."""
    neighbour = ops.arange(num_chunks, dtype="int32") + offset
    return ops.logical_and(neighbour >= 0, neighbour < num_chunks)


def combine_hash_rounds(outputs, logsumexp):
    """Combines the attention outputs of several hash rounds (paper, appendix A).

    Round `r` is weighted by `exp(lse_r - logsumexp_r' lse_r')`, i.e. by the
    share of the total attention mass its keys received.

    Args:
        outputs: `(batch, num_hashes, length, d_v)`.
        logsumexp: `(batch, num_hashes, length)`.

    Returns:
        `(batch, length, d_v)`.
    """
    total = ops.logsumexp(logsumexp, axis=1, keepdims=True)
    weights = ops.exp(logsumexp - total)
    return ops.sum(outputs * ops.expand_dims(weights, -1), axis=1)
