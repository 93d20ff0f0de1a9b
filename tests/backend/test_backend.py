import keras
import numpy as np
from keras import ops

from keras_reformer import backend
from tests.test_case import assert_allclose
from tests.test_case import to_numpy


def test_exp_nonpositive_is_exp_down_to_negligible_values_and_zero_below():
    x = np.array([0.0, -1.0, -30.0, -79.0, -100.0, -1e5, -1e9], "float32")
    got = to_numpy(backend.exp_nonpositive(ops.convert_to_tensor(x)))
    assert_allclose(got[:4], np.exp(x[:4]), rtol=1e-6)
    assert np.all(got[4:] >= 0) and np.all(got[4:] < 1e-34)
    assert np.all(np.isfinite(got))


def test_exp_nonpositive_gradient_is_exp():
    x = np.array([0.0, -0.5, -3.0], "float32")
    _, _, grad = backend.vjp(
        lambda weights, t: backend.exp_nonpositive(t),
        [],
        ops.convert_to_tensor(x),
        ops.ones((3,)),
    )
    assert_allclose(grad, np.exp(x), rtol=1e-6)


def test_run_in_sequence_applies_steps_in_order():
    steps = [lambda a, b: (a * 2, b + a), lambda a, b: (a + 1, b * a)]
    a, b = backend.run_in_sequence(steps, (ops.ones(()), ops.zeros(())))
    # (1, 0) -> (2, 1) -> (3, 2)
    assert float(to_numpy(a)) == 3.0 and float(to_numpy(b)) == 2.0


def test_scan_stacks_outputs_and_threads_the_carry():
    xs = ops.convert_to_tensor(np.arange(4, dtype="float32"))
    carry, (ys,) = backend.scan(lambda c, x: (c + x[0], (c * 10,)), ops.zeros(()), (xs,))
    assert float(to_numpy(carry)) == 6.0
    np.testing.assert_array_equal(to_numpy(ys), [0, 0, 10, 30])


def test_stable_argsort_keeps_equal_values_in_order():
    # Many ties in a long row: an unstable sort would reorder some of them.
    values = np.random.default_rng(0).integers(0, 3, size=(2, 5000)).astype("int32")
    got = to_numpy(backend.stable_argsort(ops.convert_to_tensor(values)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argsort(values, axis=-1, kind="stable"))


def test_sum_carried_through_run_in_sequence_adds_its_terms():
    like = ops.zeros((2,))
    terms = [ops.convert_to_tensor(np.array(t, "float32")) for t in ([1, 2], [10, 20])]
    steps = [lambda total, t=t: (backend.add_to_sum(total, t),) for t in terms]
    (total,) = backend.run_in_sequence(steps, (backend.sum_start(like),))
    np.testing.assert_array_equal(to_numpy(backend.finish_sum(total, like)), [11, 22])


def test_a_sum_without_terms_finishes_as_zeros():
    like = ops.ones((3,), dtype="float16")
    empty = backend.finish_sum(backend.sum_start(like), like)
    np.testing.assert_array_equal(to_numpy(empty), np.zeros(3))
    assert keras.backend.standardize_dtype(empty.dtype) == "float16"
