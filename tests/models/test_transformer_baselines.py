"""ReformerModel as its own Transformer baseline: full attention, separate QK,
ordinary residual blocks, and evaluation with other attention (`with_attention`)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer.layers import FullSelfAttention
from keras_reformer.layers import LocalSelfAttention
from keras_reformer.layers import LSHSelfAttention
from keras_reformer.layers import ResidualBlock
from keras_reformer.layers import ReversibleBlock
from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerClassifier
from keras_reformer.models import ReformerModel
from keras_reformer.models import language_model_data
from keras_reformer.models import with_attention
from tests.gradients import gradients
from tests.ops.attention_reference import separate_qk_attention
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

SMALL = dict(
    vocabulary_size=32,
    num_layers=2,
    hidden_dim=16,
    num_heads=2,
    chunk_length=8,
    num_hashes=2,
    max_sequence_length=32,
    seed=3,
)
JIT = BACKEND in ("jax", "tensorflow")


def small_model(**overrides):
    return ReformerModel(**{**SMALL, **overrides})


def token_data(batch=2, length=24, seed=0, padded=True):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), "int32")
    if padded:
        mask[1, length - 5 :] = 0
    return {
        "token_ids": rng.integers(0, 32, size=(batch, length)).astype("int32"),
        "padding_mask": mask,
    }


def attention_layers(model):
    """The attention layer of every block, in order."""
    return [block.f.layer for block in model.blocks]


def model_gradients(model, data, cotangent):
    """`(value, weight gradients)` of `sum(model(data) * cotangent)` by the backend's autodiff."""
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(*weights):
        outputs, _ = model.stateless_call(list(weights), non_trainable, data)
        return ops.sum(ops.multiply(outputs, ops.convert_to_tensor(cotangent)))

    return gradients(loss, [to_numpy(v) for v in model.trainable_variables])


def test_attention_kinds_build_their_layers_and_mix():
    model = small_model(num_layers=3, attention_layers=["full", "lsh", "local"])
    layers = attention_layers(model)
    assert [type(layer) for layer in layers] == [
        FullSelfAttention,
        LSHSelfAttention,
        LocalSelfAttention,
    ]
    assert all(layer.shared_qk and layer.causal is False for layer in layers)
    assert layers[0].chunk_length == SMALL["chunk_length"]
    assert ReformerModel.from_config(model.get_config()).get_config() == model.get_config()


@pytest.mark.parametrize("causal", [False, True])
def test_full_attention_model_equals_one_chunk_local_attention_with_gradients(causal):
    # Local attention whose one chunk covers the sequence is exact full
    # shared-QK attention (tested against numpy in tests/layers): the full
    # model, query chunks inside the reversible stack's backward included,
    # must compute the same outputs and weight gradients.
    full = small_model(attention_layers="full", causal=causal)
    local = small_model(attention_layers="local", chunk_length=32, causal=causal)
    data = token_data()
    full(data), local(data)
    local.set_weights(full.get_weights())
    cotangent = np.random.default_rng(1).normal(size=(2, 24, 32)).astype("float32")
    cotangent *= data["padding_mask"][..., None]
    value, grads = model_gradients(full, data, cotangent)
    want_value, want_grads = model_gradients(local, data, cotangent)
    assert_allclose(value, want_value, rtol=1e-5, atol=1e-4)
    for got, want in zip(grads, want_grads):
        # float32 sums of gradients up to about 20 in size: the two (exact)
        # algorithms round differently by about 1e-6 of the largest entry.
        scale = max(1.0, float(np.abs(want).max()))
        assert_allclose(got, want, rtol=1e-4, atol=2e-6 * scale)


def test_separate_qk_reaches_every_layer_and_lsh_refuses_it():
    model = small_model(attention_layers=["full", "local"], shared_qk=False)
    assert all(not layer.shared_qk for layer in attention_layers(model))
    kernels = {v.path.split("/")[-2] for v in model.trainable_variables}
    assert {"query", "key"} <= kernels and "query_key" not in kernels
    for attention in ("lsh", ["full", "lsh"]):
        with pytest.raises(ValueError, match="shared_qk=False"):
            small_model(attention_layers=attention, shared_qk=False)


def _layer_norm(x, gamma, beta, epsilon=1e-6):
    mean = ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / ops.sqrt(variance + epsilon) * gamma + beta


def _plain_transformer(model, data, weights):
    """The pre-norm Transformer, written out from the weights: embedding plus
    learned positions, per layer x + Attention(LN(x)) and x + FF(LN(x)), LN."""
    w = {v.path: value for v, value in zip(model.trainable_variables, weights)}
    ids, mask = data["token_ids"], data["padding_mask"]
    length = ids.shape[1]
    real = ops.convert_to_tensor(mask[..., None].astype("float32"))
    x = ops.take(w["token_embedding/embeddings"], ops.convert_to_tensor(ids), axis=0)
    x = x + w["position_embedding/embeddings"][:length][None]
    x = x * real
    for i in range(model.num_layers):
        attention = f"residual_block_{i}/attention_block_{i}/"
        kernel = lambda name: w[f"{attention}full_attention_{i}/{name}/kernel"]  # noqa: E731
        h = _layer_norm(x, w[attention + "layer_norm/gamma"], w[attention + "layer_norm/beta"])
        h = h * real
        x = x + separate_qk_attention(
            h,
            kernel("query"),
            kernel("key"),
            kernel("value"),
            kernel("attention_output"),
            model.causal,
            mask,
        )
        ff = f"residual_block_{i}/feed_forward_block_{i}/"
        h = _layer_norm(x, w[ff + "layer_norm/gamma"], w[ff + "layer_norm/beta"])
        h = h * real
        dense = f"{ff}feed_forward_{i}/"
        h = ops.gelu(
            ops.matmul(h, w[dense + "intermediate_dense/kernel"])
            + w[dense + "intermediate_dense/bias"],
            approximate=False,
        )
        x = x + ops.matmul(h, w[dense + "output_dense/kernel"]) + w[dense + "output_dense/bias"]
    return _layer_norm(x, w["output_norm/gamma"], w["output_norm/beta"])


def test_non_reversible_model_is_a_plain_transformer_with_its_gradients():
    model = small_model(
        attention_layers="full",
        shared_qk=False,
        reversible=False,
        causal=True,
        position_embedding="learned",
    )
    assert all(isinstance(block, ResidualBlock) for block in model.blocks)
    assert model.reversible_stack is None and model.output_dim == SMALL["hidden_dim"]
    data = token_data()
    assert tuple(model(data).shape) == (2, 24, SMALL["hidden_dim"])
    cotangent = np.random.default_rng(1).normal(size=(2, 24, 16)).astype("float32")
    cotangent *= data["padding_mask"][..., None]
    value, grads = model_gradients(model, data, cotangent)

    def reference(*weights):
        outputs = _plain_transformer(model, data, weights)
        return ops.sum(ops.multiply(outputs, ops.convert_to_tensor(cotangent)))

    want_value, want_grads = gradients(reference, [to_numpy(v) for v in model.trainable_variables])
    assert_allclose(value, want_value, rtol=1e-4, atol=1e-3)
    for variable, got, want in zip(model.trainable_variables, grads, want_grads):
        # Relative to the gradient's scale: float32 sums over every position.
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error < 1e-4, variable.path


def test_reversible_model_keeps_two_streams():
    model = small_model()
    assert all(isinstance(block, ReversibleBlock) for block in model.blocks)
    assert model.output_dim == 2 * SMALL["hidden_dim"]


def test_transformer_baseline_trains_as_a_language_model():
    # Full and local attention with separate QK in ordinary residual blocks;
    # full attention inside the reversible stack trains in the with_attention
    # test below. (Saving such a model trained: tests/models/test_reformer_model.py's
    # backbone contract.)
    options = dict(attention_layers=["full", "local"], shared_qk=False, reversible=False)
    lm = ReformerCausalLM(small_model(causal=True, dropout=0.1, **options))
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=JIT)
    x, y, weights = language_model_data(np.random.default_rng(0).integers(0, 32, (4, 25)))
    history = lm.fit(x, y, sample_weight=weights, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_non_reversible_classifier_and_mixed_precision():
    backbone = small_model(attention_layers="full", reversible=False, dtype="mixed_bfloat16")
    classifier = ReformerClassifier(backbone, num_classes=3)
    classifier.compile(optimizer="adam", jit_compile=JIT)
    data = token_data(batch=4)
    history = classifier.fit(data, np.array([0, 1, 2, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert keras.backend.standardize_dtype(backbone(data).dtype) == "bfloat16"


def test_with_attention_copies_the_trained_model_with_other_attention():
    # Trained (weights and seed states moved) with full attention and LSH in
    # the reversible stack, under jit.
    lm = ReformerCausalLM(small_model(causal=True, attention_layers=["full", "lsh"]))
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=JIT)
    x, y, _ = language_model_data(np.random.default_rng(0).integers(0, 32, (4, 33)))
    history = lm.fit(x, y, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    same = with_attention(lm)
    assert_allclose(same(x), lm(x), rtol=0, atol=0)
    assert same.compiled and same.get_compile_config() == lm.get_compile_config()

    eight = with_attention(lm, num_hashes=8)
    assert [layer.num_hashes for layer in attention_layers(eight.backbone)[1:]] == [8]
    full = with_attention(lm, attention_layers="full")
    assert all(type(layer) is FullSelfAttention for layer in attention_layers(full.backbone))
    for copy in (eight, full):
        assert isinstance(copy, ReformerCausalLM)
        for got, want in zip(copy.trainable_variables, lm.trainable_variables):
            assert_allclose(got, want, rtol=0, atol=0)
    # With one chunk covering the sequence, local attention is full attention.
    one_chunk = with_attention(lm, attention_layers="local", chunk_length=32)
    assert_allclose(full(x), one_chunk(x), rtol=1e-5, atol=1e-4)

    # The copy's variables are its own.
    before = to_numpy(lm.trainable_variables[0])
    full.trainable_variables[0].assign(np.zeros(before.shape, "float32"))
    assert_allclose(lm.trainable_variables[0], before, rtol=0, atol=0)


def test_with_attention_on_a_backbone_and_bad_arguments():
    model = small_model()
    full = with_attention(model, attention_layers="full")
    assert isinstance(full, ReformerModel) and not full.compiled
    with pytest.raises(ValueError, match="hidden_dim=8"):
        with_attention(model, hidden_dim=8)
    with pytest.raises(ValueError, match="model=Sequential"):
        with_attention(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="attention_layers"):
        with_attention(model, attention_layers="dense")
