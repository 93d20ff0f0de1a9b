import numpy as np
import pytest
from keras import ops

from keras_reformer.ops.hashing import default_bucket_factors
from keras_reformer.ops.hashing import default_num_buckets
from keras_reformer.ops.hashing import hash_buckets
from tests.test_case import to_numpy


@pytest.mark.parametrize(
    "length, chunk_length, expected",
    [
        (64, 64, 2),
        (128, 64, 4),
        (1024, 64, 32),
        (1000, 64, 32),
        (1000 + 24, 64, 32),
        (4096, 64, 128),
        (192, 64, 8),
        (65536, 64, 2048),
    ],
)
def test_default_num_buckets(length, chunk_length, expected):
    assert default_num_buckets(length, chunk_length) == expected


def _numpy_hash(vectors, rotations):
    rotated = np.einsum("bhld,hdrk->bhrlk", vectors, rotations)
    return np.argmax(np.concatenate([rotated, -rotated], axis=-1), axis=-1)


def test_hash_shapes_range_and_reference():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2, 3, 20, 8)).astype("float32")
    rotations = rng.normal(size=(3, 8, 4, 5)).astype("float32")  # 10 buckets, 4 rounds
    buckets = to_numpy(
        hash_buckets(ops.convert_to_tensor(vectors), ops.convert_to_tensor(rotations))
    )
    assert buckets.shape == (2, 3, 4, 20)
    assert buckets.min() >= 0 and buckets.max() < 10
    np.testing.assert_array_equal(buckets, _numpy_hash(vectors, rotations))
    # Angular: a positive rescaling keeps the bucket, negation moves to the opposite one.
    scaled = to_numpy(
        hash_buckets(ops.convert_to_tensor(3 * vectors), ops.convert_to_tensor(rotations))
    )
    np.testing.assert_array_equal(scaled, buckets)
    negated = to_numpy(
        hash_buckets(ops.convert_to_tensor(-vectors), ops.convert_to_tensor(rotations))
    )
    np.testing.assert_array_equal(negated, (buckets + 5) % 10)


def test_blocked_hashing_matches_one_piece():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1, 2, 24, 4)).astype("float32")
    rotations = rng.normal(size=(2, 4, 3, 4)).astype("float32")
    whole = hash_buckets(ops.convert_to_tensor(vectors), ops.convert_to_tensor(rotations))
    blocked = hash_buckets(
        ops.convert_to_tensor(vectors), ops.convert_to_tensor(rotations), max_rotated_values=100
    )
    np.testing.assert_array_equal(to_numpy(blocked), to_numpy(whole))


@pytest.mark.parametrize(
    "num_buckets, chunk_length, expected",
    [
        (128, 64, (128,)),
        (256, 64, (256,)),
        (512, 64, (16, 32)),
        (2048, 64, (32, 64)),
        (64, 8, (8, 8)),
        (24, 4, (24,)),
    ],  # 24: not a power of two, left whole
)
def test_default_bucket_factors(num_buckets, chunk_length, expected):
    assert default_bucket_factors(num_buckets, chunk_length) == expected


def _numpy_factorised_hash(vectors, rotations, factors):
    """trax's factorised hashing: one argmax of [xR ; -xR] per factor, mixed radix."""
    rotated = np.einsum("bhld,hdrk->bhrlk", vectors, rotations)
    buckets, start, radix = 0, 0, 1
    for factor in factors:
        part = rotated[..., start : start + factor // 2]
        buckets = buckets + radix * np.argmax(np.concatenate([part, -part], axis=-1), axis=-1)
        start, radix = start + factor // 2, radix * factor
    return buckets


def test_factorised_hash_matches_reference_and_fills_every_bucket():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(1, 2, 400, 8)).astype("float32")
    rotations = rng.normal(size=(2, 8, 3, 2 + 4)).astype("float32")  # factors 4 x 8 = 32
    buckets = to_numpy(
        hash_buckets(
            ops.convert_to_tensor(vectors), ops.convert_to_tensor(rotations), bucket_factors=(4, 8)
        )
    )
    assert buckets.shape == (1, 2, 3, 400)
    np.testing.assert_array_equal(buckets, _numpy_factorised_hash(vectors, rotations, (4, 8)))
    assert set(np.unique(buckets)) == set(range(32))
    blocked = to_numpy(
        hash_buckets(
            ops.convert_to_tensor(vectors),
            ops.convert_to_tensor(rotations),
            bucket_factors=(4, 8),
            max_rotated_values=500,
        )
    )
    np.testing.assert_array_equal(blocked, buckets)


@pytest.mark.parametrize("factors", [(4, 4), (3, 9), (12, 0)])
def test_bucket_factors_must_fit_the_rotations(factors):
    rotations = ops.zeros((1, 4, 1, 6))  # 12 = sum of the factors' halves doubled
    with pytest.raises(ValueError, match="bucket_factors"):
        hash_buckets(ops.zeros((1, 1, 8, 4)), rotations, bucket_factors=factors)
