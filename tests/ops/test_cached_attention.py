import numpy as np
from keras import ops

from keras_reformer.ops import insert_in_order
from keras_reformer.ops import ranks_after_insert
from keras_reformer.ops import window_attention
from keras_reformer.ops.cached_attention import write_position
from keras_reformer.ops.masks import mask_values
from tests.test_case import assert_allclose
from tests.test_case import to_numpy


def test_insertion_keeps_a_sorted_order_and_its_ranks():
    # Tokens arrive one by one with random buckets; after each insertion the
    # order is the stable sort of the buckets so far, and the ranks its inverse.
    rng = np.random.default_rng(0)
    capacity, rows = 12, 3
    buckets = rng.integers(0, 4, size=(rows, capacity))
    order = np.zeros((rows, capacity), "int32")
    ranks = np.zeros((rows, capacity), "int32")
    for t in range(capacity):
        rank = (buckets[:, :t] <= buckets[:, t : t + 1]).sum(-1)
        order = to_numpy(insert_in_order(order, rank, t))
        ranks = to_numpy(ranks_after_insert(ranks, rank, t))
        for row in range(rows):
            expected = np.argsort(buckets[row, : t + 1], kind="stable")
            np.testing.assert_array_equal(order[row, : t + 1], expected)
            np.testing.assert_array_equal(ranks[row, expected], np.arange(t + 1))


def test_window_attention_is_a_masked_softmax():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(2, 4)).astype("float32")
    keys = rng.normal(size=(2, 3, 5, 4)).astype("float32")
    values = rng.normal(size=(2, 3, 5, 6)).astype("float32")
    positions = rng.permutation(5)[None, None].repeat(3, 1).astype("int32")
    valid = rng.random((2, 3, 5)) < 0.7
    valid[..., 0] = True
    offsets = rng.random((2, 3, 5)).astype("float32")
    outputs, logsumexp = window_attention(query, keys, values, positions, valid, 2,
                                          mask_self=True, logit_offsets=offsets)
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
    written = to_numpy(write_position(ops.convert_to_tensor(cache), update,
                                      ops.convert_to_tensor(3, "int32"), axis=2))
    expected = cache.copy()
    expected[:, :, 3] = 1
    np.testing.assert_array_equal(written, expected)
