import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer import backend
from keras_reformer.ops.sorting import gather_along_sequence
from keras_reformer.ops.sorting import inverse_permutation
from keras_reformer.ops.sorting import sort_by_bucket
from tests.test_case import to_numpy


def test_sort_orders_by_round_bucket_then_position_and_undo_inverts():
    rng = np.random.default_rng(0)
    num_hashes, length, num_buckets = 3, 10, 4
    buckets = rng.integers(0, num_buckets, size=(2, num_hashes, length)).astype("int32")
    sort_indices, undo_indices = (
        to_numpy(t) for t in sort_by_bucket(ops.convert_to_tensor(buckets), num_buckets)
    )
    assert sort_indices.shape == undo_indices.shape == (2, num_hashes * length)
    for b in range(2):
        rounds, positions = sort_indices[b] // length, sort_indices[b] % length
        sorted_buckets = buckets[b, rounds, positions]
        keys = list(zip(rounds, sorted_buckets, positions))
        assert keys == sorted(keys)  # round, then bucket, then position (stable)
        np.testing.assert_array_equal(
            sort_indices[b][undo_indices[b]], np.arange(num_hashes * length)
        )
        # Each round's block holds exactly that round's tokens.
        np.testing.assert_array_equal(rounds, np.repeat(np.arange(num_hashes), length))


def test_gather_along_sequence_and_unsort():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    buckets = rng.integers(0, 2, size=(2, 2, 6)).astype("int32")
    sort_indices, undo_indices = sort_by_bucket(ops.convert_to_tensor(buckets), 2)
    gathered = gather_along_sequence(ops.convert_to_tensor(x), sort_indices % 6)
    positions = to_numpy(sort_indices) % 6
    np.testing.assert_array_equal(
        to_numpy(gathered), np.take_along_axis(x, positions[..., None], 1)
    )
    restored = to_numpy(gather_along_sequence(gathered, undo_indices))
    np.testing.assert_array_equal(restored, np.concatenate([x, x], axis=1))


def test_inverse_permutation_undoes_each_row():
    rng = np.random.default_rng(0)
    permutation = np.stack([rng.permutation(50) for _ in range(3)]).astype("int32")
    inverse = to_numpy(inverse_permutation(ops.convert_to_tensor(permutation)))
    np.testing.assert_array_equal(inverse, np.argsort(permutation, axis=-1))
    assert inverse.dtype == np.int32


def test_sort_is_exact_where_a_bucket_times_length_key_would_overflow_int32():
    # 4 rounds x 32768 buckets x 32768 positions = 2^32 > int32: a key
    # `bucket * length + position` would wrap; the stable sort of the
    # round-major bucket ids needs no such key.
    rng = np.random.default_rng(2)
    num_hashes, length, num_buckets = 4, 2**15, 2**15
    buckets = rng.integers(0, num_buckets, size=(1, num_hashes, length)).astype("int32")
    sort_indices, undo_indices = (
        to_numpy(t) for t in sort_by_bucket(ops.convert_to_tensor(buckets), num_buckets)
    )
    keys = (buckets + np.arange(num_hashes)[:, None] * num_buckets).reshape(1, -1)
    np.testing.assert_array_equal(sort_indices, np.argsort(keys, axis=-1, kind="stable"))
    np.testing.assert_array_equal(undo_indices[0][sort_indices[0]], np.arange(num_hashes * length))


def test_row_numbers_beyond_int32_are_refused():
    # Symbolic tensors: the shapes alone decide, nothing of that size is allocated.
    shared_gather = backend.OVERRIDABLE["gather_along_sequence"]
    x = keras.KerasTensor((2**12, 2**19, 1))
    with pytest.raises(ValueError, match=r"batch 4096 x length 524288 = 2147483648"):
        shared_gather(x, keras.KerasTensor((2**12, 8), dtype="int32"))
    under = keras.KerasTensor((2**12 - 1, 2**19, 1))
    gathered = shared_gather(under, keras.KerasTensor((2**12 - 1, 8), dtype="int32"))
    assert tuple(gathered.shape) == (2**12 - 1, 8, 1)
