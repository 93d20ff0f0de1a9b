import numpy as np

from keras_reformer.ops import portable_normal
from tests.test_case import to_numpy

# Drawn once (jax, tensorflow and torch agreed to 5e-7): the numbers must not
# depend on the backend, or saved LSH models would hash differently elsewhere.
EXPECTED_FIRST = [-1.0220238, 1.6480995, 0.10639524, -0.35815462]


def test_same_numbers_on_every_backend():
    samples = to_numpy(portable_normal((100000,), np.array([7, 3], "int32")))
    np.testing.assert_allclose(samples[:4], EXPECTED_FIRST, rtol=1e-6)


def test_standard_normal_statistics():
    samples = to_numpy(portable_normal((200, 500), np.array([1, 0], "int32")))
    assert samples.shape == (200, 500)
    assert abs(samples.mean()) < 0.01 and abs(samples.std() - 1) < 0.01
    assert abs((np.abs(samples) > 2).mean() - 0.0455) < 0.003


def test_seed_changes_the_numbers():
    a = to_numpy(portable_normal((64,), np.array([5, 0], "int32")))
    b = to_numpy(portable_normal((64,), np.array([5, 1], "int32")))
    c = to_numpy(portable_normal((64,), np.array([6, 0], "int32")))
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_array_equal(a, to_numpy(portable_normal((64,), np.array([5, 0], "int32"))))
