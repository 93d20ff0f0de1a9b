import keras
import numpy as np
import pytest

from keras_reformer.layers import TokenEmbedding
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


# The layer contract trains on the forward lookup only: the untied reverse matrix gets no gradient.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize("tie_weights", [True, False])
def test_layer_contract(tmp_path, tie_weights):
    ids = np.array([[1, 2, 3, 0], [4, 5, 6, 7]], dtype="int32")
    run_layer_test(
        TokenEmbedding,
        {"vocabulary_size": 8, "output_dim": 6, "tie_weights": tie_weights},
        ids,
        (2, 4, 6),
        tmp_path=tmp_path,
    )


def test_is_keras_reversible_embedding():
    layer = TokenEmbedding(10, 4, tie_weights=False, name="tokens")
    layer.build()
    assert isinstance(layer, keras.layers.ReversibleEmbedding)
    assert layer.vocabulary_size == layer.input_dim == 10
    assert [(v.path, tuple(v.shape)) for v in layer.weights] == [
        ("tokens/embeddings", (10, 4)),
        ("tokens/reverse_embeddings", (4, 10)),
    ]


def test_embedding_looks_up_rows():
    layer = TokenEmbedding(10, 4)
    ids = np.array([[3, 9, 0]])
    out = layer(ids)
    table = to_numpy(layer.embeddings)
    assert_allclose(out, table[ids])


def test_out_of_range_ids_are_clipped():
    layer = TokenEmbedding(10, 4)
    out = layer(np.array([[-3, 10, 99, 5]]))
    table = to_numpy(layer.embeddings)
    assert_allclose(out, table[np.array([[0, 9, 9, 5]])])


def test_default_initializer_is_scaled_to_the_width():
    layer = TokenEmbedding(4000, 64)
    layer.build()
    assert np.std(to_numpy(layer.embeddings)) == pytest.approx(64**-0.5, rel=0.05)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_reverse_projects_to_the_vocabulary(tie_weights):
    layer = TokenEmbedding(10, 4, tie_weights=tie_weights)
    layer(np.array([[1]]))
    hidden = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    kernel = to_numpy(layer.embeddings).T if tie_weights else to_numpy(layer.reverse_embeddings)
    assert_allclose(layer(hidden, reverse=True), hidden @ kernel, rtol=1e-5, atol=1e-5)
    symbolic = layer(keras.KerasTensor((2, 3, 4)), reverse=True)
    assert tuple(symbolic.shape) == (2, 3, 10)


def test_logits_keep_the_compute_dtype_under_a_mixed_policy():
    layer = TokenEmbedding(10, 4, tie_weights=False, dtype="mixed_bfloat16")
    vectors = layer(np.array([[1, 2]]))
    logits = layer(vectors, reverse=True)
    assert keras.backend.standardize_dtype(vectors.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.embeddings.dtype) == "float32"


def test_config_round_trip_names_the_vocabulary_size():
    layer = TokenEmbedding(10, 4, tie_weights=False, logit_soft_cap=30.0, name="tokens")
    config = layer.get_config()
    assert config["vocabulary_size"] == 10
    assert "input_dim" not in config and "reverse_input_halves" not in config
    restored = TokenEmbedding.from_config(config)
    assert restored.get_config() == config


def _old_config(reverse_input_halves):
    # As saved by keras_reformer before TokenEmbedding built on ReversibleEmbedding.
    return {
        "name": "token_embedding",
        "trainable": True,
        "dtype": "float32",
        "vocabulary_size": 10,
        "output_dim": 4,
        "tie_weights": False,
        "embeddings_initializer": keras.initializers.serialize(
            keras.initializers.RandomNormal(stddev=0.5)
        ),
        "reverse_input_halves": reverse_input_halves,
    }


def test_an_old_config_loads():
    layer = TokenEmbedding.from_config(_old_config(1))
    assert layer(np.array([[1, 2]])).shape == (1, 2, 4)
    assert "reverse_input_halves" not in layer.get_config()


@pytest.mark.parametrize("tie_weights", [True, False])
def test_deprecated_reverse_input_halves_sums_the_halves(tie_weights):
    with pytest.warns(DeprecationWarning, match="reverse_input_halves"):
        layer = TokenEmbedding.from_config({**_old_config(2), "tie_weights": tie_weights})
    layer(np.array([[1]]))
    hidden = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    kernel = to_numpy(layer.embeddings).T if tie_weights else to_numpy(layer.reverse_embeddings)
    expected = (hidden[..., :4] + hidden[..., 4:]) @ kernel
    assert_allclose(layer(hidden, reverse=True), expected, rtol=1e-5, atol=1e-5)
    assert layer.get_config()["reverse_input_halves"] == 2


def test_lora_starts_at_the_embedding():
    layer = TokenEmbedding(10, 4)
    ids = np.array([[1, 2, 12]])
    before = to_numpy(layer(ids))
    layer.enable_lora(2)
    assert_allclose(layer(ids), before, rtol=1e-6, atol=1e-6)
    assert {v.name for v in layer.trainable_weights} == {"lora_embeddings_a", "lora_embeddings_b"}


def test_int8_quantization_keeps_the_clipping():
    layer = TokenEmbedding(10, 4, tie_weights=False)
    ids = np.array([[-1, 3, 10]])
    vectors = to_numpy(layer(ids))
    logits = to_numpy(layer(vectors, reverse=True))
    layer.quantize("int8")
    assert_allclose(layer(ids), vectors, rtol=0.05, atol=0.05)
    assert_allclose(layer(vectors, reverse=True), logits, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("argument", ["vocabulary_size", "output_dim", "reverse_input_halves"])
def test_bad_arguments_name_the_argument(argument):
    kwargs = {"vocabulary_size": 8, "output_dim": 4, argument: 0}
    with pytest.raises(ValueError, match=f"{argument}=0"):
        TokenEmbedding(**kwargs)


def test_tie_weights_must_be_a_bool():
    with pytest.raises(ValueError, match="tie_weights"):
        TokenEmbedding(8, 4, tie_weights="yes")
