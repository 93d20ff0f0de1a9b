import numpy as np
from keras import ops

from keras_reformer.ops import window_attention
from keras_reformer.ops.bucket_order import add_token
from keras_reformer.ops.bucket_order import merge_recent
from keras_reformer.ops.bucket_order import order_from_sort
from keras_reformer.ops.bucket_order import recent_token_ranks
from keras_reformer.ops.bucket_order import recent_tokens
from keras_reformer.ops.bucket_order import token_ranks
from keras_reformer.ops.cached_attention import write_position
from keras_reformer.ops.masks import mask_values
from tests.test_case import assert_allclose
from tests.test_case import to_numpy


def test_bucket_order_ranks_every_token_and_merges_into_a_sorted_base():
    # Tokens arrive one by one with random buckets after a prefix of 5; at every
    # step every token's rank (the new one's from `add_token`, base and recent
    # ones from `token_ranks`) is its index in the stable sort of the buckets
    # so far, and after every merge the base is that sort and `ranks` its inverse.
    rng = np.random.default_rng(0)
    capacity, rows, num_buckets, slots, known = 17, 3, 4, 3, 5
    buckets = rng.integers(0, num_buckets, size=(rows, capacity)).astype("int32")
    state = np.where(np.arange(capacity) < known, buckets, num_buckets).astype("int32")
    sort = np.argsort(state, axis=-1, kind="stable").astype("int32")
    order, base_starts, ranks = order_from_sort(
        ops.convert_to_tensor(state),
        ops.convert_to_tensor(sort),
        ops.convert_to_tensor(np.argsort(sort, axis=-1).astype("int32")),
        num_buckets,
    )
    starts, merges = base_starts, 0
    for t in range(known, capacity):
        state[:, t] = buckets[:, t]
        expected = np.argsort(np.argsort(buckets[:, : t + 1], axis=-1, kind="stable"), axis=-1)
        rank, starts = add_token(starts, ops.convert_to_tensor(buckets[:, t : t + 1]))
        np.testing.assert_array_equal(to_numpy(rank)[:, 0], expected[:, t])
        recent = recent_tokens(ops.convert_to_tensor(state), base_starts, t, slots)
        # Every position at once (one shape for all steps); those after t hold no token.
        positions = np.broadcast_to(np.arange(capacity, dtype="int32"), (rows, capacity))
        every = token_ranks(
            ops.convert_to_tensor(positions),
            ops.convert_to_tensor(state),
            base_starts,
            starts,
            ranks,
            recent,
        )
        np.testing.assert_array_equal(to_numpy(every)[:, : t + 1], expected, err_msg=f"step {t}")
        base = int(to_numpy(base_starts)[0, -1])
        if t + 1 - base == slots:
            recent_ranks = recent_token_ranks(*recent[:2], base_starts, starts, recent)
            order, base_starts, ranks = merge_recent(
                ops.convert_to_tensor(state),
                order,
                base_starts,
                starts,
                ranks,
                recent,
                recent_ranks,
            )
            merges += 1
            np.testing.assert_array_equal(
                to_numpy(order)[:, : t + 1], np.argsort(buckets[:, : t + 1], axis=-1, kind="stable")
            )
            np.testing.assert_array_equal(
                to_numpy(order)[:, t + 1 :],
                np.broadcast_to(np.arange(t + 1, capacity), (rows, capacity - t - 1)),
            )
            np.testing.assert_array_equal(to_numpy(ranks)[:, : t + 1], expected)
            per_bucket = [
                [np.sum(buckets[r, : t + 1] < b) for b in range(num_buckets + 1)]
                for r in range(rows)
            ]
            np.testing.assert_array_equal(to_numpy(base_starts), per_bucket)
    assert merges == 4


def test_window_attention_is_a_masked_softmax():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(2, 4)).astype("float32")
    keys = rng.normal(size=(2, 3, 5, 4)).astype("float32")
    values = rng.normal(size=(2, 3, 5, 6)).astype("float32")
    positions = rng.permutation(5)[None, None].repeat(3, 1).astype("int32")
    valid = rng.random((2, 3, 5)) < 0.7
    valid[..., 0] = True
    offsets = rng.random((2, 3, 5)).astype("float32")
    outputs, logsumexp = window_attention(
        query, keys, values, positions, valid, 2, mask_self=True, logit_offsets=offsets
    )
    logits = np.einsum("nd,nrwd->nrw", query, keys) - offsets
    logits = np.where(positions == 2, mask_values("float32")[1], logits)
    logits = np.where(valid, logits, mask_values("float32")[0])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    expected = np.einsum("nrw,nrwd->nrd", weights / weights.sum(-1, keepdims=True), values)
    assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    total = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    assert_allclose(logsumexp, total, rtol=1e-5, atol=1e-5)


def test_write_position_writes_one_slot():
    cache = np.zeros((2, 3, 5, 4), "float32")
    update = np.ones((2, 3, 1, 4), "float32")
    written = to_numpy(
        write_position(
            ops.convert_to_tensor(cache), update, ops.convert_to_tensor(3, "int32"), axis=2
        )
    )
    expected = cache.copy()
    expected[:, :, 3] = 1
    np.testing.assert_array_equal(written, expected)
