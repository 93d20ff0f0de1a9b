"""The torch replacements of `backend.overridable` functions equal the shared keras.ops code.

The shared code runs on the active backend; the replacement on torch tensors
(torch is installed with every backend's test run), so each backend's run
compares the two.
"""

import numpy as np
import pytest
import torch
from keras import ops

import keras_reformer.ops  # noqa: F401  (registers the overridable functions)
from keras_reformer import backend
from keras_reformer.backend import torch_backend

RNG = np.random.default_rng(0)
PERMUTATIONS = np.stack([RNG.permutation(11) for _ in range(3)]).astype("int32")
SEEDS = [(7, 0), (-5, 2**31 - 1), (2**31 - 1, -(2**31)), (123456, -98765)]
SAMPLE_ARGS = {
    "gather_along_sequence": [
        (RNG.normal(size=(3, 11, 2, 4)).astype("float32"), PERMUTATIONS[:, :7]),
        (RNG.normal(size=(3, 11)).astype("float32"), PERMUTATIONS),
        (np.arange(33).reshape(3, 11) % 2 == 0, PERMUTATIONS),
    ],
    "inverse_permutation": [(PERMUTATIONS,)],
    "portable_normal": [((3, 5, 7), np.array(seed, "int32")) for seed in SEEDS],
    "scalar_like": [(-1e9, np.zeros(3, "float32")), (5, np.zeros(3, "int32"))],
}


def _torch(x):
    return torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x


def test_every_torch_replacement_has_a_shared_function_and_samples():
    replaced = {name for name in backend.OVERRIDABLE if hasattr(torch_backend, name)}
    assert replaced == set(SAMPLE_ARGS)


@pytest.mark.parametrize("name", sorted(SAMPLE_ARGS))
def test_torch_replacement_equals_the_shared_code(name):
    shared, replacement = backend.OVERRIDABLE[name], getattr(torch_backend, name)
    for args in SAMPLE_ARGS[name]:
        expected = ops.convert_to_numpy(shared(*args))
        got = replacement(*(_torch(a) for a in args)).numpy()
        assert got.dtype == expected.dtype and got.shape == expected.shape
        if name == "portable_normal":  # the same integers; log and cos to the last bit
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(got, expected)


def test_torch_gather_along_sequence_gradient_scatters_the_cotangent():
    x = torch.zeros(3, 11, 4, requires_grad=True)
    indices = torch.from_numpy(PERMUTATIONS[:, :7])
    cotangent = torch.from_numpy(RNG.normal(size=(3, 7, 4)).astype("float32"))
    (grad,) = torch.autograd.grad(torch_backend.gather_along_sequence(x, indices), x, cotangent)
    expected = np.zeros((3, 11, 4), "float32")
    for b in range(3):
        np.add.at(expected[b], PERMUTATIONS[b, :7], cotangent[b].numpy())
    np.testing.assert_array_equal(grad.numpy(), expected)
