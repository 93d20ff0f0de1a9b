import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer.layers import FullSelfAttention
from keras_reformer.layers import LocalSelfAttention
from tests.gradients import gradients
from tests.ops.attention_reference import check_against_full_attention
from tests.ops.attention_reference import check_against_separate_qk_attention
from tests.ops.attention_reference import forward
from tests.ops.attention_reference import layer_function
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _inputs(batch=2, length=13, d_model=8, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, d_model)).astype("float32")


def _padding_mask(batch=2, length=13):
    mask = np.ones((batch, length), "int32")
    mask[1, length - 4 :] = 0  # trailing padding
    mask[0, 0] = 0  # a leading pad: under causal masking, token 1 sees only itself
    return mask


@pytest.mark.parametrize("causal, masked", [(False, False), (True, True)])
def test_shared_qk_equals_full_attention_with_self_mask(causal, masked):
    # 13 positions in chunks of 4 (three full chunks and a tail of one).
    # Under causal masking token 0 (and, with the mask, token 1) sees only
    # itself: the reference's finite self-mask lets it attend to itself.
    layer = FullSelfAttention(num_heads=2, key_dim=6, value_dim=5, chunk_length=4, causal=causal)
    check_against_full_attention(
        layer, _inputs(), causal, padding_mask=_padding_mask() if masked else None
    )


@pytest.mark.parametrize("causal", [False, True])
def test_separate_qk_equals_standard_attention(causal):
    x = _inputs()
    mask = _padding_mask()
    layer = FullSelfAttention(
        num_heads=2, key_dim=6, value_dim=5, chunk_length=4, shared_qk=False, causal=causal
    )
    check_against_separate_qk_attention(layer, x, causal, mask)


@pytest.mark.parametrize("causal", [False, True])
def test_equals_local_attention_with_one_chunk(causal):
    x = _inputs()
    mask = _padding_mask()
    kwargs = dict(
        num_heads=2,
        key_dim=4,
        value_dim=3,
        causal=causal,
        use_bias=True,
        bias_initializer="random_normal",
    )
    local = LocalSelfAttention(**kwargs, chunk_length=16)  # one chunk covers the 13 positions
    full = FullSelfAttention(**kwargs, chunk_length=5)
    local.build(x.shape), full.build(x.shape)
    full.set_weights(local.get_weights())
    assert_allclose(
        forward(full, x, padding_mask=mask),
        forward(local, x, padding_mask=mask),
        rtol=1e-5,
        atol=1e-6,
    )


def test_padding_content_is_ignored():
    x = _inputs()
    mask = _padding_mask()
    changed = np.where(mask[..., None] == 1, x, np.nan).astype("float32")
    layer = FullSelfAttention(num_heads=2, key_dim=4, chunk_length=4, causal=True)
    y = to_numpy(forward(layer, x, padding_mask=mask))
    y_changed = to_numpy(forward(layer, changed, padding_mask=mask))
    assert np.all(np.isfinite(y_changed))
    assert_allclose(y_changed[mask == 1], y[mask == 1], rtol=1e-6, atol=1e-6)


def test_dropout_is_reproducible_from_the_seed():
    x = _inputs()
    kwargs = dict(num_heads=2, key_dim=4, chunk_length=4, dropout=0.5)
    first, second, other = (FullSelfAttention(**kwargs, seed=s) for s in (7, 7, 8))
    for layer in (first, second, other):
        layer.build(x.shape)
        layer.set_weights(first.get_weights())
    a = to_numpy(forward(first, x, training=True))
    assert_allclose(forward(second, x, training=True), a, rtol=0, atol=0)
    assert not np.allclose(to_numpy(forward(other, x, training=True)), a)
    assert not np.allclose(to_numpy(forward(first, x, training=True)), a)  # fresh masks per step
    assert not np.allclose(to_numpy(forward(first, x)), a)  # no dropout in inference
    assert_allclose(forward(first, x), forward(second, x), rtol=0, atol=0)


def test_dropout_gradient_replays_the_forward_masks(monkeypatch):
    # The backward recomputes each chunk (keras.remat); its dropout masks must
    # be the forward's: gradients equal those of the same layer without remat.
    x = _inputs(batch=1)
    layer = FullSelfAttention(
        num_heads=2, key_dim=4, chunk_length=4, dropout=0.3, seed=3, causal=True
    )
    forward(layer, x)
    weights = [to_numpy(v) for v in layer.trainable_variables]

    def loss_fn():
        fn = layer_function(layer, training=True)
        return lambda x, *w: ops.sum(ops.sin(fn(x, *w)))

    value, grads = gradients(loss_fn(), [x] + weights)
    monkeypatch.setattr(keras, "remat", lambda f: f)
    plain_value, plain_grads = gradients(loss_fn(), [x] + weights)
    assert_allclose(value, plain_value, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, plain_grads):
        assert np.abs(want).max() > 0
        assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_heads": 0}, "num_heads"),
        ({"key_dim": 0}, "key_dim"),
        ({"value_dim": 2.0}, "value_dim"),
        ({"chunk_length": 0}, "chunk_length"),
        ({"shared_qk": "no"}, "shared_qk"),
        ({"causal": 1}, "causal"),
        ({"dropout": 1.0}, "dropout"),
        ({"use_bias": None}, "use_bias"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FullSelfAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def test_bad_padding_mask_and_empty_inputs_raise():
    layer = FullSelfAttention(num_heads=2, key_dim=4, chunk_length=8)
    with pytest.raises(ValueError, match="padding_mask"):
        layer(_inputs(length=16), padding_mask=np.ones((2, 16, 1), "int32"))
    with pytest.raises(ValueError, match="at least one position"):
        layer(np.zeros((2, 0, 8), "float32"))


@pytest.mark.parametrize("shared_qk", [True, False])
def test_layer_harness(tmp_path, shared_qk):
    mask = np.ones((2, 8), "int32")
    mask[0, 6:] = 0
    run_layer_test(
        FullSelfAttention,
        dict(
            num_heads=2,
            key_dim=4,
            chunk_length=4,
            shared_qk=shared_qk,
            causal=True,
            dropout=0.1,
            use_bias=True,
            seed=3,
        ),
        _inputs(length=8, d_model=6),
        (2, 8, 6),
        call_kwargs={"padding_mask": mask},
        run_mixed_precision=shared_qk,  # the same code path either way; saves time
        tmp_path=tmp_path,
    )


def test_training_memory_grows_linearly_with_the_length():
    # The docstring's promise: with query chunks and a rematerialised
    # backward, a gradient step keeps no (length, length) tensor: its memory
    # doubles with the length (JAX, torch), and stays far below one
    # (length, length) float32 matrix per head, which plain attention keeps
    # for its backward.
    from tests.backend.memory_utils import training_step_bytes

    num_heads = 2

    def step_bytes(length):
        layer = FullSelfAttention(num_heads=num_heads, key_dim=16, chunk_length=64, causal=True)
        x = _inputs(batch=1, length=length, d_model=32)
        layer.build(x.shape)
        return training_step_bytes(layer, x)

    measured = {length: step_bytes(length) for length in (1024, 2048)}
    probabilities = num_heads * 2048 * 2048 * 4
    if keras.backend.backend() == "tensorflow":
        # The documented exception: TensorFlow's loop gradient stacks inputs
        # of every rematerialised chunk, a quadratic term several times
        # smaller than plain attention's probabilities.
        assert measured[2048] < probabilities / 3, (measured, probabilities)
    else:
        assert measured[2048] <= 2.2 * measured[1024], measured
        assert measured[2048] < probabilities / 4, (measured, probabilities)
