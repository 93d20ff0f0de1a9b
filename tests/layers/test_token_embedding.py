import keras
import numpy as np
import pytest

from keras_reformer.layers import TokenEmbedding
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def test_layer_contract(tmp_path):
    ids = np.array([[1, 2, 3, 0], [4, 5, 6, 7]], dtype="int32")
    run_layer_test(
        TokenEmbedding, {"vocabulary_size": 8, "output_dim": 6}, ids, (2, 4, 6), tmp_path=tmp_path
    )


def test_embedding_looks_up_rows():
    layer = TokenEmbedding(10, 4)
    ids = np.array([[3, 9, 0]])
    out = layer(ids)
    table = to_numpy(layer.embeddings)
    assert_allclose(out, table[ids])


@pytest.mark.parametrize("tie_weights", [True, False])
def test_reverse_projects_summed_halves(tie_weights):
    layer = TokenEmbedding(10, 4, tie_weights=tie_weights, reverse_input_halves=2)
    layer(np.array([[1]]))
    hidden = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    kernel = to_numpy(layer.embeddings).T if tie_weights else to_numpy(layer.reverse_kernel)
    expected = (hidden[..., :4] + hidden[..., 4:]) @ kernel
    assert_allclose(layer(hidden, reverse=True), expected, rtol=1e-5, atol=1e-5)
    symbolic = layer(keras.KerasTensor((2, 3, 8)), reverse=True)
    assert tuple(symbolic.shape) == (2, 3, 10)


@pytest.mark.parametrize("argument", ["vocabulary_size", "output_dim", "reverse_input_halves"])
def test_bad_arguments_name_the_argument(argument):
    kwargs = {"vocabulary_size": 8, "output_dim": 4, argument: 0}
    with pytest.raises(ValueError, match=f"{argument}=0"):
        TokenEmbedding(**kwargs)
