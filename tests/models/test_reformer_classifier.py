import keras
import numpy as np
import pytest

from keras_reformer.models import ReformerClassifier
from keras_reformer.models import ReformerModel
from tests.model_testing import run_task_test
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

SMALL = dict(
    vocabulary_size=16,
    num_layers=1,
    hidden_dim=16,
    num_heads=2,
    chunk_length=8,
    num_hashes=2,
    max_sequence_length=64,
    seed=3,
)


def classifier(**overrides):
    return ReformerClassifier(ReformerModel(**SMALL), num_classes=3, **overrides)


def token_data(batch=4, length=40, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(0, 16, size=(batch, length)).astype("int32"),
        "padding_mask": np.ones((batch, length), dtype="int32"),
    }


def test_scores_are_the_head_on_the_mean_of_the_real_positions():
    model = classifier()
    data = token_data()
    data["padding_mask"][1, 25:] = 0
    hidden = to_numpy(model.backbone(data))
    mask = data["padding_mask"][..., None]
    pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
    kernel, bias = (to_numpy(w) for w in model.get_layer("logits").weights)
    assert_allclose(model(data), pooled @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_padding_content_and_a_missing_mask_change_nothing():
    model = classifier()
    data = token_data(length=33)
    assert tuple(model(data).shape) == (4, 3)
    assert_allclose(model(data["token_ids"]), model(data))
    data["padding_mask"][:, 20:] = 0
    other = {k: v.copy() for k, v in data.items()}
    other["token_ids"][:, 20:] = (other["token_ids"][:, 20:] + 5) % 16
    assert_allclose(model(data), model(other), rtol=1e-5, atol=1e-5)


def test_fit_learns_which_half_of_the_vocabulary_a_sequence_uses():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=64)
    token_ids = (rng.integers(0, 8, size=(64, 24)) + 8 * labels[:, None]).astype("int32")
    model = ReformerClassifier(ReformerModel(**SMALL), num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(token_ids, labels, batch_size=16, epochs=8, verbose=0)
    assert history.history["accuracy"][-1] > 0.9, history.history


def test_softmax_head_gives_probabilities():
    model = classifier(activation="softmax", dropout=0.1)
    scores = to_numpy(model(token_data()))
    assert_allclose(scores.sum(axis=-1), np.ones(4), rtol=1e-5, atol=1e-5)
    assert model.get_config()["activation"] == "softmax"


def test_task_contract(tmp_path):
    # LSH and local attention, dropout in the backbone and the head (seed states to save).
    def backbone():
        return ReformerModel(
            **{**SMALL, "num_layers": 2},
            feed_forward_chunk_length=16,
            attention_layers=["lsh", "local"],
            dropout=0.1,
        )

    x = token_data(batch=2, length=32)
    x["padding_mask"][1, 25:] = 0
    run_task_test(
        ReformerClassifier,
        backbone,
        {"num_classes": 3, "dropout": 0.1},
        (x, np.array([2, 0])),
        expected_output_shape=(2, 3),
        other_length=17,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"num_classes": 2, "dropout": 1.0}, "dropout"),
        ({"num_classes": 2, "activation": "relu"}, "activation"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ReformerClassifier(ReformerModel(**SMALL), **kwargs)


def test_backbone_must_be_a_reformer_model():
    with pytest.raises(ValueError, match="backbone"):
        ReformerClassifier(keras.Sequential([keras.layers.Dense(2)]), num_classes=2)
