"""The torch replacements of `backend.overridable` functions equal the shared keras.ops code.

The shared code runs on the active backend; the replacement on torch tensors
(torch is installed with every backend's test run), so each backend's run
compares the two.
"""

import keras
import numpy as np
import pytest
import torch
from keras import ops

import keras_reformer.ops  # noqa: F401  (registers the overridable functions)
from keras_reformer import backend
from keras_reformer.backend import torch_backend
from tests.gradients import gradients

RNG = np.random.default_rng(0)
PERMUTATIONS = np.stack([RNG.permutation(11) for _ in range(3)]).astype("int32")
SEEDS = [(7, 0), (-5, 2**31 - 1), (2**31 - 1, -(2**31)), (123456, -98765)]
TIES = np.array([[0, 0, 0], [1, -1, 0], [-1, 1, 0], [-2, 1, 2], [2, -2, 2]])
SAMPLE_ARGS = {
    "angular_bucket": [
        (RNG.normal(size=(2, 3, 5, 4)).astype("float32"),),
        (TIES.astype("float32"),),  # ties go to the first index, of the first half first
        (RNG.normal(size=(3, 4)).astype("float16"),),
    ],
    "combine_hash_rounds": [
        (
            RNG.normal(size=(2, rounds, 5, 3)).astype(dtype),
            RNG.normal(size=(2, rounds, 5)).astype(dtype),
        )
        for rounds in (1, 3)
        for dtype in ("float32", "float16")
    ],
    "gather_along_sequence": [
        (RNG.normal(size=(3, 11, 2, 4)).astype("float32"), PERMUTATIONS[:, :7]),
        (RNG.normal(size=(3, 11)).astype("float32"), PERMUTATIONS),
        (np.arange(33).reshape(3, 11) % 2 == 0, PERMUTATIONS),
    ],
    "inverse_permutation": [(PERMUTATIONS,)],
    "portable_normal": [((3, 5, 7), np.array(seed, "int32")) for seed in SEEDS],
    "scalar_like": [(-1e9, np.zeros(3, "float32")), (5, np.zeros(3, "int32"))],
    "shared_qk_keys": [
        (np.concatenate([RNG.normal(size=(2, 5, 8)), np.zeros((2, 1, 8))], 1).astype(dtype),)
        for dtype in ("float32", "float16")
    ],
    "clip_ids": [
        (np.array([[-3, -1, 0, 1, 4, 5, 2**31 - 1]], dtype), 5) for dtype in ("int32", "int64")
    ],
    "valid_ids": [
        (np.array([[-3, -1, 0, 1, 4, 5, 2**31 - 1]], dtype), 5) for dtype in ("int32", "int64")
    ],
    "zero_padding": [
        (
            np.where(RNG.random((2, 5, 1)) > 0.5, np.nan, RNG.normal(size=(2, 5, 3))).astype(dtype),
            mask,
        )
        for dtype in ("float32", "float16")
        for mask in (PERMUTATIONS[:2, :5] % 2, PERMUTATIONS[:2, :5] % 3 > 0)
    ],
    "layer_norm": [
        (RNG.normal(size=(2, 5, 8)).astype(dtype), *RNG.normal(size=(2, 8)).astype(dtype), 1e-6)
        for dtype in ("float32", "float16")
    ],
    "reshape": [
        (RNG.normal(size=(2, 3, 4)).astype("float32"), (6, -1)),
        (np.arange(6, dtype="int32").reshape(2, 3).T, -1),  # not contiguous
        (np.arange(6, dtype="int32"), [3, 2]),
        (np.arange(6, dtype="int32").reshape(2, 3), -1),
    ],
    "sort_by_bucket": [
        (RNG.integers(0, 5, size=(2, 3, 11)).astype("int32"), 5),
        (RNG.integers(0, 2, size=(1, 1, 16)).astype("int32"), 3),
    ],
}


def _attention_case(
    causal=False,
    lookback=1,
    lookahead=0,
    mask_self=True,
    key_mask=False,
    rounds=0,
    same_positions=True,
):
    """Arguments of `chunked_attention` (batch 2, length 12, chunks of 4), as numpy."""
    rng = np.random.default_rng(lookback + 2 * lookahead + 4 * causal + 8 * rounds)
    q, k, v = (rng.normal(size=(2, 12, d)).astype("float32") for d in (4, 4, 3))
    positions = np.stack([rng.permutation(12) for _ in range(2)]).astype("int32")
    kwargs = dict(
        chunk_length=4, lookback=lookback, lookahead=lookahead, causal=causal, mask_self=mask_self
    )
    if key_mask:
        mask = rng.random((2, 12)) > 0.3
        mask[1] = False  # a row whose every key is padding: uniform weights
        kwargs["key_mask"] = mask
    if rounds:
        round_chunks = rng.integers(0, 3, size=(2, 12, rounds)).astype("int32")
        kwargs.update(query_round_chunks=round_chunks, key_round_chunks=round_chunks)
    key_positions = positions if same_positions else positions.copy()
    return (q, k, v, positions, key_positions), kwargs


ATTENTION_CASES = {
    "lsh": _attention_case(),
    "causal_padded_separate_positions": _attention_case(
        causal=True, key_mask=True, same_positions=False
    ),
    "look_ahead_no_self_mask": _attention_case(lookahead=1, mask_self=False, key_mask=True),
    "duplicates": _attention_case(causal=True, rounds=3),
    "own_chunk_only": _attention_case(lookback=0, key_mask=True),
    # Windows of 4 chunks over 3: slots beyond the sequence in every chunk.
    "window_wider_than_the_sequence": _attention_case(lookback=2, lookahead=1, key_mask=True),
}


# log, cos, rsqrt, a mean and a variance, a softmax: equal to the last bits of each backend's kernels.
ROUNDED = ("portable_normal", "shared_qk_keys", "layer_norm", "combine_hash_rounds")


def _torch(x):
    return torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x


def test_every_torch_replacement_has_a_shared_function_and_samples():
    replaced = {name for name in backend.OVERRIDABLE if hasattr(torch_backend, name)}
    assert replaced == set(SAMPLE_ARGS) | {"chunked_attention"}


@pytest.mark.parametrize("name", sorted(SAMPLE_ARGS))
def test_torch_replacement_equals_the_shared_code(name):
    shared, replacement = backend.OVERRIDABLE[name], getattr(torch_backend, name)
    for args in SAMPLE_ARGS[name]:
        expected = shared(
            *(ops.convert_to_tensor(a) if isinstance(a, np.ndarray) else a for a in args)
        )
        got = replacement(*(_torch(a) for a in args))
        if not isinstance(expected, tuple):
            expected, got = (expected,), (got,)
        for e, g in zip(expected, got, strict=True):
            e, g = ops.convert_to_numpy(e), g.numpy()
            assert g.dtype == e.dtype and g.shape == e.shape
            if name in ROUNDED:
                eps = np.finfo(e.dtype).eps
                np.testing.assert_allclose(g, e, rtol=8 * eps, atol=8 * eps)  # values of order 1
            else:
                np.testing.assert_array_equal(g, e)


def test_torch_gather_along_sequence_gradient_scatters_the_cotangent():
    x = torch.zeros(3, 11, 4, requires_grad=True)
    indices = torch.from_numpy(PERMUTATIONS[:, :7])
    cotangent = torch.from_numpy(RNG.normal(size=(3, 7, 4)).astype("float32"))
    (grad,) = torch.autograd.grad(torch_backend.gather_along_sequence(x, indices), x, cotangent)
    expected = np.zeros((3, 11, 4), "float32")
    for b in range(3):
        np.add.at(expected[b], PERMUTATIONS[b, :7], cotangent[b].numpy())
    np.testing.assert_array_equal(grad.numpy(), expected)


def test_torch_zero_padding_gradient_equals_the_shared_codes():
    mask = PERMUTATIONS[:2, :5] % 2
    x = np.where(mask[..., None] == 0, np.nan, RNG.normal(size=(2, 5, 3))).astype("float32")
    cotangent = RNG.normal(size=(2, 5, 3)).astype("float32")
    shared = backend.OVERRIDABLE["zero_padding"]
    _, (expected,) = gradients(
        lambda x: ops.sum(shared(x, mask) * ops.convert_to_tensor(cotangent)), (x,)
    )
    x = torch.tensor(x, requires_grad=True)
    (got,) = torch.autograd.grad(
        torch_backend.zero_padding(x, torch.from_numpy(mask)), x, _torch(cotangent)
    )
    np.testing.assert_array_equal(got.numpy(), expected)


def _attention_loss(attend, args, kwargs, cotangents):
    """`sum(outputs * c1) + sum(logsumexp * c2)` of `attend(q, k, v, *args, **kwargs)`."""

    def loss(q, k, v):
        outputs, logsumexp = attend(q, k, v, *args, **kwargs)
        return ops.sum(ops.multiply(outputs, cotangents[0])) + ops.sum(
            ops.multiply(logsumexp, cotangents[1])
        )

    return loss


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_torch_chunked_attention_equals_the_shared_code_with_gradients(case):
    (q, k, v, *positions), kwargs = ATTENTION_CASES[case]
    shared = backend.OVERRIDABLE["chunked_attention"]
    expected = [ops.convert_to_numpy(t) for t in shared(q, k, v, *positions, **kwargs)]
    torch_kwargs = {name: _torch(value) for name, value in kwargs.items()}
    # One torch tensor for both positions where the case passes one array (the diagonal self-mask).
    torch_positions = [_torch(p) for p in positions]
    if positions[0] is positions[1]:
        torch_positions[1] = torch_positions[0]
    inputs = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    got = torch_backend.chunked_attention(*inputs, *torch_positions, **torch_kwargs)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.detach().numpy(), e, rtol=1e-5, atol=1e-5)

    rng = np.random.default_rng(1)
    cotangents = [rng.normal(size=e.shape).astype("float32") for e in expected]
    _, expected_grads = gradients(_attention_loss(shared, positions, kwargs, cotangents), (q, k, v))
    got_loss = sum((g * torch.from_numpy(c)).sum() for g, c in zip(got, cotangents))
    got_grads = torch.autograd.grad(got_loss, inputs)
    for g, e in zip(got_grads, expected_grads):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="keras.random on torch tensors: runs in the KERAS_BACKEND=torch run",
)
def test_torch_chunked_attention_draws_the_shared_codes_dropout():
    # Both draw one keep-mask of the same shape from the same seed state; the
    # gradients (torch's autograd through the shared code) agree too.
    (q, k, v, *positions), kwargs = ATTENTION_CASES["causal_padded_separate_positions"]
    shared = backend.OVERRIDABLE["chunked_attention"]
    cotangents = [
        torch.from_numpy(RNG.normal(size=s).astype("float32")) for s in ((2, 12, 3), (2, 12))
    ]
    results, grads = [], []
    for attend in (shared, torch_backend.chunked_attention):
        seed = keras.random.SeedGenerator(5)
        inputs = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
        got = attend(
            *inputs,
            *(_torch(p) for p in positions),
            dropout_rate=0.4,
            seed=seed,
            **{n: _torch(x) for n, x in kwargs.items()},
        )
        loss = sum((g * c).sum() for g, c in zip(got, cotangents))
        grads.append(torch.autograd.grad(loss, inputs))
        results.append([g.detach() for g in got])
    for got, expected in zip(*results):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    for got, expected in zip(*grads):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(results[0][0].numpy(), shared(q, k, v, *positions, **kwargs)[0].numpy())
