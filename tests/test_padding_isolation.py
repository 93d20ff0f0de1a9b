"""Padding never produces NaN and what padded positions hold never reaches a real one.

Hidden states at padded positions are set to NaN, +Inf and -Inf; the outputs at
real positions and every gradient must stay finite and equal those with clean
padding (a 0 attention probability times NaN is NaN: masks must use `where`).
"""

import keras
import numpy as np
import pytest

from keras_reformer.layers import ChunkedFeedForward
from keras_reformer.layers import LocalSelfAttention
from keras_reformer.layers import LSHSelfAttention
from keras_reformer.layers import PreLayerNorm
from keras_reformer.layers import ReversibleBlock
from keras_reformer.layers import ReversibleSequence
from keras_reformer.models import ReformerClassifier
from keras_reformer.models import ReformerModel
from tests.gradients import layer_gradients
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

LENGTH, WIDTH = 20, 8


def padding_mask():
    mask = np.ones((2, LENGTH), "int32")
    mask[0, 13:] = 0
    mask[1, :2] = 0
    mask[1, 17:] = 0
    return mask


def poisoned(x, mask):
    """`x` with NaN, +Inf and -Inf cycling through its padded positions."""
    x = x.copy()
    poison = np.array([np.nan, np.inf, -np.inf], x.dtype)
    rows, cols = np.nonzero(mask == 0)
    for i, (row, col) in enumerate(zip(rows, cols)):
        x[row, col] = poison[i % 3]
    return x


def layers():
    def lsh():
        return LSHSelfAttention(num_heads=2, key_dim=4, chunk_length=4, num_hashes=2, seed=1)

    def local():
        return LocalSelfAttention(num_heads=2, key_dim=4, chunk_length=4, seed=1)

    def feed_forward():
        return PreLayerNorm(ChunkedFeedForward(16, chunk_length=4))

    def reversible():
        return ReversibleSequence([ReversibleBlock(PreLayerNorm(lsh()), feed_forward())], seed=2)

    return {
        "lsh": (lsh, WIDTH),
        "local": (local, WIDTH),
        "pre_layer_norm_feed_forward": (feed_forward, WIDTH),
        "reversible_stack": (reversible, 2 * WIDTH),
    }


@pytest.mark.parametrize("name", sorted(layers()))
def test_layers_keep_nan_and_inf_at_padded_positions_out_of_real_ones(name):
    build, width = layers()[name]
    layer = build()
    mask = padding_mask()
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(2, LENGTH, width)).astype("float32")
    cotangent = rng.normal(size=clean.shape).astype("float32") * mask[..., None]
    layer(clean, padding_mask=mask)  # build
    real = mask.astype(bool)
    out, x_grad, weight_grads = layer_gradients(layer, clean, cotangent, padding_mask=mask)
    bad_out, bad_x_grad, bad_weight_grads = layer_gradients(
        layer, poisoned(clean, mask), cotangent, padding_mask=mask
    )
    assert np.isfinite(bad_out[real]).all()
    assert_allclose(bad_out[real], out[real], rtol=1e-5, atol=1e-5)
    assert np.isfinite(bad_x_grad).all()
    assert_allclose(bad_x_grad, x_grad, rtol=1e-5, atol=1e-5)
    assert weight_grads and set(bad_weight_grads) == set(weight_grads)
    for path, grad in weight_grads.items():
        assert np.isfinite(bad_weight_grads[path]).all(), path
        assert_allclose(bad_weight_grads[path], grad, rtol=1e-5, atol=1e-5, err_msg=path)


def small_classifier():
    backbone = ReformerModel(
        vocabulary_size=16,
        num_layers=2,
        hidden_dim=8,
        num_heads=2,
        chunk_length=4,
        num_hashes=2,
        max_sequence_length=32,
        seed=3,
        attention_layers=["lsh", "local"],
    )
    return ReformerClassifier(backbone, num_classes=2)


def test_classifier_pools_an_all_padding_row_to_zeros_and_trains_finitely():
    model = small_classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    ids = np.random.default_rng(0).integers(0, 16, size=(2, LENGTH)).astype("int32")
    mask = np.ones_like(ids)
    mask[1] = 0
    data = {"token_ids": ids, "padding_mask": mask}
    scores = to_numpy(model(data))
    bias = to_numpy(model.get_layer("logits").bias)
    assert_allclose(scores[1], bias)  # the pooled vector of the empty row is zero
    model.train_on_batch(data, np.array([0, 1]))
    assert all(np.isfinite(to_numpy(v)).all() for v in model.weights)


def test_nan_embeddings_at_padded_positions_change_no_real_output_or_update():
    """A NaN / Inf row of the embedding, used only at padded positions: the
    real outputs and one training step equal those of a clean model."""
    pad_id = 15
    ids = np.random.default_rng(1).integers(0, pad_id, size=(2, LENGTH)).astype("int32")
    mask = padding_mask()
    ids[mask == 0] = pad_id
    data = {"token_ids": ids, "padding_mask": mask}
    labels = np.array([0, 1])
    # One model and one compiled step for the three runs, each from the same
    # variables (weights and seed states); plain SGD keeps no other state.
    model = small_classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    embeddings = model.backbone.token_embedding.embeddings
    initial = [(v, keras.ops.convert_to_numpy(v).copy()) for v in model.variables]
    runs = []
    for poison in (None, np.nan, np.inf):
        for variable, value in initial:
            variable.assign(value)
        if poison is not None:
            table = to_numpy(embeddings).astype("float32")
            table[pad_id] = poison
            embeddings.assign(table)
        hidden = to_numpy(model.backbone(data))[mask.astype(bool)]
        scores = to_numpy(model(data))
        model.train_on_batch(data, labels)
        runs.append((hidden, scores, [to_numpy(v) for v in model.trainable_variables]))
    clean_hidden, clean_scores, clean_values = runs[0]
    for hidden, scores, values in runs[1:]:
        assert np.isfinite(hidden).all() and np.isfinite(scores).all()
        assert_allclose(hidden, clean_hidden, rtol=1e-5, atol=1e-5)
        assert_allclose(scores, clean_scores, rtol=1e-5, atol=1e-5)
        for variable, value, expected in zip(model.trainable_variables, values, clean_values):
            if variable is embeddings:
                value, expected = value[:pad_id], expected[:pad_id]
            assert np.isfinite(value).all(), variable.path
            assert_allclose(value, expected, rtol=1e-5, atol=1e-5, err_msg=variable.path)
