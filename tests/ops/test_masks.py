import numpy as np
import pytest
from keras import ops

from keras_reformer.ops.masks import apply_attention_masks
from keras_reformer.ops.masks import mask_values
from tests.test_case import to_numpy


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_mask_values_are_finite_and_ordered(dtype):
    mask_value, self_value = mask_values(dtype)
    assert mask_value < self_value < 0
    tensor = to_numpy(ops.cast(ops.convert_to_tensor([mask_value, self_value]), dtype))
    assert np.all(np.isfinite(tensor))
    # Subtracting a moderate logit (softmax's max shift) stays finite.
    shifted = ops.subtract(
        ops.cast(ops.convert_to_tensor([mask_value]), dtype),
        ops.cast(ops.convert_to_tensor([100.0]), dtype),
    )
    assert np.all(np.isfinite(to_numpy(shifted)))
    if dtype == "float32":
        assert self_value == pytest.approx(-1e5)


def test_masks_self_causal_and_padding():
    positions = np.array([[3, 0, 2, 1]])  # a permuted order, as after sorting
    logits = np.zeros((1, 4, 4), "float32")
    key_mask = np.array([[True, True, False, True]])
    out = to_numpy(
        apply_attention_masks(
            ops.convert_to_tensor(logits),
            ops.convert_to_tensor(positions[:, :, None]),
            ops.convert_to_tensor(positions[:, None, :]),
            ops.convert_to_tensor(key_mask[:, None, :]),
            causal=True,
        )
    )[0]
    mask_value, self_value = mask_values("float32")
    for i, qp in enumerate(positions[0]):
        for j, kp in enumerate(positions[0]):
            if not key_mask[0, j] or kp > qp:
                assert out[i, j] == mask_value
            elif kp == qp:
                assert out[i, j] == self_value
            else:
                assert out[i, j] == 0.0


def test_token_that_sees_nothing_else_attends_to_itself():
    # Position 0 under a causal mask sees only itself.
    positions = np.arange(3)
    logits = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(3, 3)).astype("float32"))
    masked = apply_attention_masks(
        logits,
        ops.convert_to_tensor(positions[:, None]),
        ops.convert_to_tensor(positions[None]),
        causal=True,
    )
    probabilities = to_numpy(ops.softmax(masked, axis=-1))
    np.testing.assert_allclose(probabilities[0], [1.0, 0.0, 0.0])
    assert probabilities[1, 1] < 1e-30 and probabilities[2, 2] < 1e-30
