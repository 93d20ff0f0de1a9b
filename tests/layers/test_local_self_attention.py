import keras
import numpy as np
import pytest

from keras_reformer.layers import LocalSelfAttention
from keras_reformer.layers import LSHSelfAttention
from tests.gradients import gradients
from tests.ops.attention_reference import check_against_full_attention
from tests.ops.attention_reference import check_against_separate_qk_attention
from tests.ops.attention_reference import forward
from tests.ops.attention_reference import layer_function
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _inputs(batch=2, length=16, d_model=12, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, d_model)).astype("float32")


def _band(length, chunk_length, lookback, lookahead):
    chunk = np.arange(length) // chunk_length
    return (chunk[None, :] >= chunk[:, None] - lookback) & (
        chunk[None, :] <= chunk[:, None] + lookahead
    )


@pytest.mark.parametrize("causal, lookahead", [(False, 1), (True, 0)])
def test_two_chunks_equal_full_attention(causal, lookahead):
    layer = LocalSelfAttention(
        num_heads=2, key_dim=6, value_dim=5, chunk_length=8, causal=causal, lookahead=lookahead
    )
    check_against_full_attention(layer, _inputs(length=16), causal)


@pytest.mark.parametrize("causal", [False, True])
def test_banded_attention_with_internal_padding(causal):
    # 20 positions, chunks of 8: padded to 24 inside, chunk 2 sees chunks 1 and 2.
    mask = np.ones((2, 20), "int32")
    mask[1, 15:] = 0
    layer = LocalSelfAttention(num_heads=2, key_dim=4, chunk_length=8, causal=causal)
    check_against_full_attention(
        layer, _inputs(length=20), causal, padding_mask=mask, allowed=_band(20, 8, 1, 0)
    )


@pytest.mark.parametrize("causal, length", [(False, 20), (True, 6)])
def test_separate_qk_equals_standard_banded_attention(causal, length):
    # 20 positions in chunks of 8 (padded inside, chunk 2 sees chunks 1 and 2);
    # 6 positions take the one-chunk path. No self-mask with separate QK.
    x = _inputs(length=length, d_model=6)
    mask = np.ones((2, length), "int32")
    mask[1, length - 3 :] = 0
    layer = LocalSelfAttention(
        num_heads=2, key_dim=4, value_dim=3, chunk_length=8, shared_qk=False, causal=causal
    )
    check_against_separate_qk_attention(layer, x, causal, mask, allowed=_band(length, 8, 1, 0))


def test_lsh_refuses_separate_queries_and_keys():
    with pytest.raises(ValueError, match="shared_qk=False"):
        LSHSelfAttention(num_heads=2, key_dim=4, shared_qk=False)
    assert LSHSelfAttention(num_heads=2, key_dim=4).get_config()["shared_qk"] is True


def test_causality_through_gradients():
    length = 24
    layer = LocalSelfAttention(num_heads=2, key_dim=4, chunk_length=4, lookahead=1, causal=True)
    x = _inputs(batch=1, length=length, d_model=8)
    forward(layer, x)
    weights = [to_numpy(v) for v in layer.trainable_variables]
    fn = layer_function(layer)

    def loss(x, cotangent, *w):
        return keras.ops.sum(keras.ops.multiply(fn(x, *w), cotangent))

    for t in range(0, length, 5):
        cotangent = np.zeros(x.shape, "float32")
        cotangent[:, t] = 1.0
        _, (grad_x, *_) = gradients(loss, [x, cotangent] + weights)
        assert np.all(grad_x[:, t + 1 :] == 0.0), f"output {t} depends on a later input"
        assert np.abs(grad_x[:, : t + 1]).max() > 0


@pytest.mark.parametrize("length", [1, 63, 65, 130])
def test_any_length_and_padding_content_is_ignored(length):
    rng = np.random.default_rng(length)
    x = rng.normal(size=(2, length, 8)).astype("float32")
    mask = np.ones((2, length), "int32")
    mask[0, (2 * length) // 3 + 1 :] = 0
    mask[1, : length // 4] = 0
    changed = np.where(mask[..., None] == 1, x, 5.0 * rng.normal(size=x.shape)).astype("float32")
    layer = LocalSelfAttention(num_heads=2, key_dim=4, chunk_length=64, causal=True)
    y = to_numpy(forward(layer, x, padding_mask=mask))
    y_changed = to_numpy(forward(layer, changed, padding_mask=mask))
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert_allclose(y_changed[mask == 1], y[mask == 1], rtol=1e-5, atol=1e-5)


def test_shares_code_with_lsh_attention():
    # LSH attention is local attention on a bucket-sorted sequence: with one
    # bucket (the sort keeps the order) both layers agree.
    x = _inputs(batch=1, length=32, d_model=8)
    kwargs = dict(num_heads=2, key_dim=4, chunk_length=8, causal=True)
    local = LocalSelfAttention(**kwargs)
    lsh = LSHSelfAttention(**kwargs, num_hashes=1, num_buckets=2)
    local.build(x.shape), lsh.build(x.shape)
    lsh.set_weights(local.get_weights())
    # Two buckets can reorder tokens; force one bucket with an all-zero
    # rotation (argmax of [0, 0] is bucket 0 for every token).
    lsh._draw_rotations = lambda shape, training: keras.ops.zeros(shape)
    assert_allclose(lsh(x), local(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_outputs_and_gradients_are_finite(policy):
    x = 3.0 * _inputs(batch=2, length=20, d_model=8)
    mask = np.ones((2, 20), "int32")
    mask[1, 12:] = 0
    layer = LocalSelfAttention(num_heads=2, key_dim=4, chunk_length=8, causal=True, dtype=policy)
    forward(layer, x, padding_mask=mask)
    weights = [to_numpy(v) for v in layer.trainable_variables]
    fn = layer_function(layer, training=True, padding_mask=mask)
    value, grads = gradients(
        lambda x, *w: keras.ops.sum(keras.ops.cast(fn(x, *w), "float32")), [x] + weights
    )
    assert np.isfinite(value)
    for grad in grads:
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_heads": 0}, "num_heads"),
        ({"key_dim": 0}, "key_dim"),
        ({"chunk_length": -4}, "chunk_length"),
        ({"lookback": -1}, "lookback"),
        ({"lookahead": -1}, "lookahead"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LocalSelfAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def test_bad_padding_mask_raises():
    layer = LocalSelfAttention(num_heads=2, key_dim=4, chunk_length=8)
    with pytest.raises(ValueError, match="padding_mask"):
        layer(_inputs(length=16), padding_mask=np.ones((2, 16, 1), "int32"))


def test_layer_harness(tmp_path):
    mask = np.ones((2, 20), "int32")
    mask[0, 17:] = 0
    run_layer_test(
        LocalSelfAttention,
        dict(
            num_heads=2,
            key_dim=4,
            chunk_length=8,
            causal=True,
            dropout=0.1,
            use_bias=True,
            seed=3,
            shared_qk=False,
        ),
        _inputs(length=20, d_model=6),
        (2, 20, 6),
        call_kwargs={"padding_mask": mask},
        tmp_path=tmp_path,
    )
