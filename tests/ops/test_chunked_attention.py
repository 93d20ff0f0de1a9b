import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer.ops.chunked_attention import chunked_attention
from keras_reformer.ops.chunked_attention import combine_hash_rounds
from keras_reformer.ops.chunked_attention import duplicate_counts
from keras_reformer.ops.chunked_attention import shared_qk_keys
from keras_reformer.ops.masks import mask_values
from tests.gradients import layer_gradients
from tests.test_case import assert_allclose
from tests.test_case import to_numpy


def _numpy_attention(q, k, v, allowed, positions):
    logits = np.einsum("bqd,bkd->bqk", q, k)
    logits = np.where(positions[:, :, None] == positions[:, None, :], -1e5, logits)
    logits = np.where(allowed, logits, -1e9)
    lse = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1)) + logits.max(-1)
    return np.einsum("bqk,bkd->bqd", np.exp(logits - lse[..., None]), v), lse


@pytest.mark.parametrize(
    "causal, lookback, lookahead", [(False, 1, 0), (True, 1, 0), (False, 1, 1), (True, 2, 1)]
)
def test_chunked_attention_matches_banded_reference(causal, lookback, lookahead):
    rng = np.random.default_rng(0)
    batch, length, chunk, dim = 2, 16, 4, 5
    q = rng.normal(size=(batch, length, dim)).astype("float32")
    k = rng.normal(size=(batch, length, dim)).astype("float32")
    v = rng.normal(size=(batch, length, 3)).astype("float32")
    positions = np.stack([rng.permutation(length), np.arange(length)]).astype("int32")
    key_mask = np.ones((batch, length), bool)
    key_mask[1, -3:] = False
    query_chunk = np.arange(length)[:, None] // chunk
    key_chunk = np.arange(length)[None, :] // chunk
    band = (key_chunk >= query_chunk - lookback) & (key_chunk <= query_chunk + lookahead)
    allowed = band[None] & key_mask[:, None, :]
    if causal:
        allowed &= positions[:, None, :] <= positions[:, :, None]
    want_out, want_lse = _numpy_attention(q, k, v, allowed, positions)
    out, lse = chunked_attention(
        *(ops.convert_to_tensor(a) for a in (q, k, v, positions, positions, key_mask)),
        chunk_length=chunk,
        lookback=lookback,
        lookahead=lookahead,
        causal=causal,
    )
    assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
    assert_allclose(lse, want_lse, rtol=1e-5, atol=1e-4)


def test_combine_hash_rounds_matches_manual_reference():
    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(2, 3, 5, 4)).astype("float32")
    lse = rng.normal(size=(2, 3, 5)).astype("float32")
    weights = np.exp(lse) / np.exp(lse).sum(axis=1, keepdims=True)
    want = (outputs * weights[..., None]).sum(axis=1)
    got = combine_hash_rounds(ops.convert_to_tensor(outputs), ops.convert_to_tensor(lse))
    assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("bfloat16", 1e-2)])
def test_combined_round_weights_sum_to_one_for_queries_that_see_only_themselves(dtype, tolerance):
    # Such a query's log-normaliser is the self-mask value (-1e5) in every
    # round; subtracting a rounded logsumexp of those gave weights summing to
    # 1 +- 0.4% in float32 and 3 in bfloat16 (with three rounds).
    outputs = np.broadcast_to(
        np.random.default_rng(3).normal(size=(2, 1, 5, 4)), (2, 3, 5, 4)
    ).astype("float32")
    lse = np.full((2, 3, 5), mask_values(dtype)[1], "float32")
    got = combine_hash_rounds(
        ops.cast(ops.convert_to_tensor(outputs), dtype), ops.cast(ops.convert_to_tensor(lse), dtype)
    )
    want = to_numpy(ops.cast(ops.cast(outputs[:, 0], dtype), "float32"))
    assert_allclose(ops.cast(got, "float32"), want, rtol=tolerance, atol=tolerance)


def test_combining_rounds_over_disjoint_keys_is_attention_over_their_union():
    # Paper, appendix A: softmax over a union = lse-weighted mix of the parts.
    rng = np.random.default_rng(2)
    q = rng.normal(size=(1, 4, 3)).astype("float32")
    k = rng.normal(size=(1, 8, 3)).astype("float32")
    v = rng.normal(size=(1, 8, 2)).astype("float32")
    logits = np.einsum("bqd,bkd->bqk", q, k)
    full = np.einsum("bqk,bkd->bqd", np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), v)
    parts, lses = [], []
    for keys in (slice(0, 5), slice(5, 8)):
        part = logits[..., keys]
        lses.append(np.log(np.exp(part).sum(-1)))
        parts.append(np.einsum("bqk,bkd->bqd", np.exp(part - lses[-1][..., None]), v[:, keys]))
    got = combine_hash_rounds(
        ops.convert_to_tensor(np.stack(parts, 1)), ops.convert_to_tensor(np.stack(lses, 1))
    )
    assert_allclose(got, full, rtol=1e-5, atol=1e-6)


def test_shared_qk_keys_are_unit_vectors_scaled():
    q = np.array([[[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], "float32")
    keys = to_numpy(shared_qk_keys(ops.convert_to_tensor(q)))
    np.testing.assert_allclose(keys[0, 0], [0.3, 0.4, 0.0, 0.0], rtol=1e-6)
    assert np.all(np.isfinite(keys)) and np.all(keys[0, 1] == 0)


def test_dropout_is_one_draw_over_each_chunks_window():
    # The kept probabilities are those of ONE dropout mask over the window of
    # neighbouring chunks (previous, own, next), whatever the blocks inside.
    rng = np.random.default_rng(3)
    batch, length, chunk, dim, rate, seed = 1, 12, 4, 3, 0.4, 7
    q = rng.normal(size=(batch, length, dim)).astype("float32")
    v = rng.normal(size=(batch, length, 2)).astype("float32")
    positions = np.arange(length, dtype="int32")[None]
    out, _ = chunked_attention(
        *(ops.convert_to_tensor(a) for a in (q, q, v, positions, positions)),
        chunk_length=chunk,
        lookback=1,
        lookahead=1,
        mask_self=False,
        dropout_rate=rate,
        seed=seed,
    )
    num_chunks = length // chunk
    keep = to_numpy(
        keras.random.dropout(ops.ones((batch, num_chunks, chunk, 3 * chunk)), rate, seed=seed)
    )
    padded_q = np.concatenate([np.zeros((chunk, dim)), q[0], np.zeros((chunk, dim))])
    padded_v = np.concatenate([np.zeros((chunk, 2)), v[0], np.zeros((chunk, 2))])
    for n in range(num_chunks):
        window = slice(n * chunk, (n + 3) * chunk)  # chunks n-1, n, n+1 of the padded sequence
        logits = q[0, n * chunk : (n + 1) * chunk] @ padded_q[window].T
        exists = np.repeat([n > 0, True, n < num_chunks - 1], chunk)
        logits = np.where(exists, logits, -1e9)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        want = (probabilities * keep[0, n]) @ padded_v[window]
        assert_allclose(to_numpy(out)[0, n * chunk : (n + 1) * chunk], want, rtol=1e-5, atol=1e-5)
    assert np.any(keep == 0) and np.any(keep > 1)


@pytest.mark.parametrize("lookback, lookahead", [(1, 0), (0, 0), (2, 1)])
def test_duplicate_counts_match_a_loop_over_rounds(lookback, lookahead):
    rng = np.random.default_rng(0)
    query_chunks = rng.integers(0, 6, size=(2, 5, 3))  # (batch, queries, rounds)
    key_chunks = rng.integers(0, 6, size=(2, 7, 3))
    expected = np.zeros((2, 5, 7), int)
    for b in range(2):
        for i in range(5):
            for j in range(7):
                for r in range(3):
                    distance = key_chunks[b, j, r] - query_chunks[b, i, r]
                    expected[b, i, j] += -lookback <= distance <= lookahead
    got = duplicate_counts(query_chunks[:, :, None], key_chunks[:, None], lookback, lookahead)
    np.testing.assert_array_equal(to_numpy(got), expected)
    assert expected.max() >= 2  # the data has duplicates to count


def test_round_chunks_come_in_pairs():
    q = np.zeros((1, 8, 4), "float32")
    positions = np.arange(8)[None]
    with pytest.raises(ValueError, match="key_round_chunks"):
        chunked_attention(
            q,
            q,
            q,
            positions,
            positions,
            chunk_length=4,
            query_round_chunks=np.zeros((1, 8, 2), "int32"),
        )


class _SharedQKKeys(keras.layers.Layer):
    def call(self, queries):
        return shared_qk_keys(queries)


@pytest.mark.parametrize("dtype, rtol", [("float16", 2e-3), ("bfloat16", 1.6e-2)])
@pytest.mark.parametrize("scale", [1.0, 100.0, 300.0, 1e4])
def test_shared_qk_keys_in_low_precision_match_float32_at_any_magnitude(dtype, rtol, scale):
    # Squared in float16, a component above 256 overflows: the keys became 0, then NaN.
    rng = np.random.default_rng(0)
    queries = (rng.normal(size=(2, 6, 8)) * scale).astype(dtype)
    cotangent = rng.normal(size=queries.shape).astype("float32")
    layer = _SharedQKKeys(dtype=dtype)
    layer(queries)  # build
    keys, grads, _ = layer_gradients(layer, queries, cotangent)
    q = queries.astype("float64")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    want = q / (norm * np.sqrt(8))
    # d/dq of sum(c * q / (|q| sqrt(d))) = (c - (c . q) q / |q|^2) / (|q| sqrt(d))
    dot = np.sum(cotangent * q, axis=-1, keepdims=True)
    want_grads = (cotangent - dot * q / norm**2) / (norm * np.sqrt(8))
    assert np.isfinite(keys).all() and np.isfinite(grads).all()
    np.testing.assert_allclose(keys, want, rtol=rtol, atol=rtol * np.abs(want).max())
    np.testing.assert_allclose(
        grads, want_grads, rtol=rtol, atol=2 * rtol * np.abs(want_grads).max()
    )


def test_one_hash_round_is_passed_through_without_a_softmax():
    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(2, 1, 5, 3)).astype("float32")
    logsumexp = rng.normal(size=(2, 1, 5)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns on a softmax over an axis of size 1
        combined = combine_hash_rounds(outputs, logsumexp)
    assert_allclose(combined, outputs[:, 0])
