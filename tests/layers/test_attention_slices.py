"""The attention memory mode (`attention_slices`): the default's results and
gradients, a few (head, hash round) slices at a time."""

import keras
import numpy as np
import pytest

import keras_reformer
from keras_reformer.layers import FullSelfAttention
from keras_reformer.layers import LocalSelfAttention
from keras_reformer.layers import LSHSelfAttention
from keras_reformer.ops.attention_slices import slice_group_size
from tests.gradients import layer_gradients
from tests.gradients import snapshot_state
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy

LAYERS = {
    "lsh_causal": (LSHSelfAttention, dict(num_hashes=3, causal=True)),
    "lsh_duplicates": (LSHSelfAttention, dict(num_hashes=2, correct_duplicates=True)),
    "lsh_factorised": (LSHSelfAttention, dict(num_hashes=2, num_buckets=[2, 4], lookahead=1)),
    "local": (LocalSelfAttention, dict(lookahead=1)),
    "local_separate_qk": (LocalSelfAttention, dict(shared_qk=False, causal=True)),
    "full_causal": (FullSelfAttention, dict(causal=True)),
    "full_separate_qk": (FullSelfAttention, dict(shared_qk=False)),
}


def _pair(kind, attention_slices, **overrides):
    """The default layer and the memory-mode one, with the same weights and seed."""
    layer_class, kwargs = LAYERS[kind]
    kwargs = dict(num_heads=2, key_dim=8, chunk_length=8, seed=3, **kwargs, **overrides)
    default = layer_class(**kwargs)
    sliced = layer_class(attention_slices=attention_slices, **kwargs)
    default.build((2, 45, 16))
    sliced.build((2, 45, 16))
    sliced.set_weights(default.get_weights())
    return default, sliced


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 45, 16)).astype("float32")
    padding_mask = np.ones((2, 45), "int32")
    padding_mask[1, 30:] = 0
    cotangent = rng.normal(size=x.shape).astype("float32")
    return x, padding_mask, cotangent


def _assert_same_weight_gradients(actual, expected):
    # Keyed by variable path; the two layers' names differ, their order does not.
    for (path, gradient), other in zip(expected.items(), actual.values()):
        scale = np.abs(gradient).max()
        assert_allclose(other, gradient, rtol=0, atol=2e-6 * scale, err_msg=path)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("attention_slices", [1, 4])
def test_outputs_and_gradients_equal_the_default(kind, attention_slices):
    # 45 positions: padded inside to a multiple of 8; a padded second row.
    # 4 slices at a time of 2 heads x 3 rounds groups 3 slices (a divisor).
    default, sliced = _pair(kind, attention_slices)
    x, padding_mask, cotangent = _data()
    real = padding_mask.astype(bool)
    # (Compiled on JAX, where op-by-op autodiff is slow; the next test compiles the others.)
    call = dict(jit=BACKEND == "jax", training=True, padding_mask=padding_mask)
    expected = layer_gradients(default, x, cotangent, **call)
    actual = layer_gradients(sliced, x, cotangent, **call)
    assert_allclose(actual[0][real], expected[0][real], rtol=0, atol=2e-6)
    assert_allclose(actual[1], expected[1], rtol=0, atol=2e-6 * np.abs(expected[1]).max())
    _assert_same_weight_gradients(actual[2], expected[2])


@pytest.mark.parametrize("kind", ["lsh_causal", "local", "full_causal"])
def test_compiled_gradients_equal_the_default(kind):
    default, sliced = _pair(kind, 1)
    x, padding_mask, cotangent = _data()
    expected = layer_gradients(default, x, cotangent, jit=True, training=True)
    actual = layer_gradients(sliced, x, cotangent, jit=True, training=True)
    assert_allclose(actual[0], expected[0], rtol=0, atol=2e-6)
    _assert_same_weight_gradients(actual[2], expected[2])


@pytest.mark.parametrize("kind", ["lsh_causal", "local", "full_causal"])
def test_dropout_masks_are_replayed_in_the_backward(kind):
    # The output is linear in the value kernel, so a central difference along
    # it is exact: it equals the gradient only if the rematerialised backward
    # drew the forward's dropout masks.
    _, layer = _pair(kind, 1, dropout=0.5)
    x, _, cotangent = _data()
    kernel = next(v for v in layer.trainable_variables if v.path.endswith("value/kernel"))
    direction = np.random.default_rng(2).normal(size=kernel.shape).astype("float32")
    restore = snapshot_state(layer)
    _, _, gradients = layer_gradients(layer, x, cotangent, training=True)
    start = to_numpy(kernel)
    losses = []
    for step in (1.0, -1.0):
        restore()
        kernel.assign(start + step * direction)
        losses.append(np.sum(to_numpy(layer(x, training=True)) * cotangent, dtype="float64"))
    restore()
    kernel.assign(start)
    assert losses[0] != losses[1]
    derivative = (losses[0] - losses[1]) / 2
    assert_allclose(derivative, np.sum(gradients[kernel.path] * direction), rtol=1e-4, atol=1e-4)


def test_lsh_layer_in_memory_mode_passes_the_layer_checks(tmp_path):
    # Config round trip, symbolic call, fit (compiled too), mixed precision, saving.
    run_layer_test(
        LSHSelfAttention,
        dict(num_heads=2, key_dim=4, chunk_length=4, num_hashes=2, seed=1, attention_slices=1),
        np.random.default_rng(0).normal(size=(2, 12, 8)).astype("float32"),
        (2, 12, 8),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("value", [0, -1, 1.0, True, "2"])
@pytest.mark.parametrize("layer_class", [LSHSelfAttention, LocalSelfAttention, FullSelfAttention])
def test_invalid_attention_slices_is_a_value_error(layer_class, value):
    with pytest.raises(ValueError, match=f"attention_slices.*{value!r}"):
        layer_class(num_heads=2, key_dim=4, attention_slices=value)


@pytest.mark.parametrize(
    "num_slices, max_slices, expected",
    [(8, None, 8), (8, 100, 8), (8, 1, 1), (8, 3, 2), (12, 5, 4), (7, 6, 1), (6, 6, 6)],
)
def test_slice_group_size_is_the_largest_divisor_at_most_the_request(
    num_slices, max_slices, expected
):
    assert slice_group_size(num_slices, max_slices) == expected


def _model(**overrides):
    kwargs = dict(
        vocabulary_size=40,
        num_layers=3,
        hidden_dim=16,
        num_heads=2,
        chunk_length=8,
        num_hashes=2,
        causal=True,
        max_sequence_length=64,
        seed=1,
        attention_layers=["lsh", "local", "full"],
    )
    kwargs.update(overrides)
    return keras_reformer.models.ReformerCausalLM(keras_reformer.models.ReformerModel(**kwargs))


def test_model_in_memory_mode_trains_as_the_default():
    # Reversible recompute, compiled train step, the three attention kinds.
    default, sliced = _model(), _model(attention_slices=1)
    sliced.set_weights(default.get_weights())
    ids = np.random.default_rng(0).integers(0, 40, size=(2, 50))
    padding_mask = np.ones((2, 50), "int32")
    padding_mask[1, 35:] = 0
    inputs = {"token_ids": ids, "padding_mask": padding_mask}
    assert_allclose(sliced.predict(inputs, verbose=0), default.predict(inputs, verbose=0))
    for model in (default, sliced):
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        model.train_on_batch(inputs, np.roll(ids, -1, 1), sample_weight=padding_mask)
    for expected, actual in zip(default.get_weights(), sliced.get_weights()):
        assert_allclose(actual, expected, rtol=0, atol=1e-6)
    config = sliced.backbone.get_config()
    assert config["attention_slices"] == 1
    layers = [layer for layer in sliced.backbone._flatten_layers() if "_attention_" in layer.name]
    assert len(layers) == 3 and all(layer.attention_slices == 1 for layer in layers)
    # The attention blocks' layer normalisation is recomputed in the backward pass, so the
    # weight comparison above covers it; the feed-forward blocks' is not.
    norms = {
        (layer.name.split("_block")[0], layer.rematerialize)
        for layer in sliced.backbone._flatten_layers()
        if isinstance(layer, keras_reformer.layers.PreLayerNorm)
    }
    assert norms == {("attention", True), ("feed_forward", False)}
    assert not any(
        layer.rematerialize
        for layer in default.backbone._flatten_layers()
        if isinstance(layer, keras_reformer.layers.PreLayerNorm)
    )
    copy = keras_reformer.models.with_attention(default, attention_slices=2)
    assert copy.backbone.attention_slices == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda: _model(foo_bar=1),
        lambda: keras_reformer.models.ReformerCausalLM(_model().backbone, foo_bar=1),
        lambda: keras_reformer.models.ReformerClassifier(_model().backbone, 2, foo_bar=1),
    ],
)
def test_unknown_model_arguments_are_a_value_error(build):
    # Keras' functional Model accepts any keyword silently.
    with pytest.raises(ValueError, match="foo_bar.*1"):
        build()
