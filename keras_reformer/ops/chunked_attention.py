"""Chunked dot-product attention and the combination of hash rounds.

Queries are split into chunks; each chunk attends to itself and to `lookback`
previous and `lookahead` next chunks of keys (Reformer, Kitaev et al. 2020,
section 3). Every tensor is linear in the sequence length: the largest holds
`length * (lookback + 1 + lookahead) * chunk_length` logits.
"""

import keras
from keras import ops

from keras_reformer.ops.chunking import look_around
from keras_reformer.ops.chunking import merge_chunks
from keras_reformer.ops.chunking import split_chunks
from keras_reformer.ops.masks import apply_attention_masks


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
    inverse_norm = ops.rsqrt(ops.maximum(squared_norm, ops.cast(epsilon, queries.dtype)))
    return queries * (inverse_norm * ops.cast(dim**-0.5, queries.dtype))


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
    window = dict(lookback=lookback, lookahead=lookahead)
    q = split_chunks(queries, chunk_length)
    k = look_around(split_chunks(keys, chunk_length), **window)
    v = look_around(split_chunks(values, chunk_length), **window)
    q_pos = split_chunks(query_positions, chunk_length)
    k_pos = look_around(split_chunks(key_positions, chunk_length), **window, fill_value=-1)
    # Chunks beyond the ends of the sequence are invalid keys.
    in_range = look_around(
        split_chunks(ops.ones_like(key_positions, dtype="bool"), chunk_length),
        **window,
        fill_value=False,
    )
    if key_mask is not None:
        in_range = ops.logical_and(
            in_range,
            look_around(split_chunks(ops.cast(key_mask, "bool"), chunk_length), **window,
                        fill_value=False),
        )
    logits = ops.einsum("bncd,bnkd->bnck", q, k)
    logits = apply_attention_masks(
        logits,
        ops.expand_dims(q_pos, -1),
        ops.expand_dims(k_pos, -2),
        ops.expand_dims(in_range, -2),
        causal=causal,
        mask_self=mask_self,
    )
    logsumexp = ops.logsumexp(logits, axis=-1, keepdims=True)
    probabilities = ops.exp(logits - logsumexp)
    if dropout_rate > 0.0:
        probabilities = keras.random.dropout(probabilities, dropout_rate, seed=seed)
    outputs = ops.einsum("bnck,bnkd->bncd", probabilities, v)
    return merge_chunks(outputs), merge_chunks(ops.squeeze(logsumexp, -1))


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
