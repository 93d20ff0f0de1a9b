"""Token ids outside [0, vocabulary_size): a clear error on the host, finite
and counted inside compiled steps; never silent NaN or a silent wrap."""

import warnings

import keras
import numpy as np
import pytest

from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerClassifier
from keras_reformer.models import ReformerModel
from keras_reformer.models import language_model_data
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

VOCABULARY = 16
SMALL = dict(
    vocabulary_size=VOCABULARY,
    num_layers=1,
    hidden_dim=16,
    num_heads=2,
    chunk_length=8,
    num_hashes=2,
    max_sequence_length=64,
    seed=3,
)


def lm():
    return ReformerCausalLM(ReformerModel(**SMALL, causal=True))


def classifier():
    return ReformerClassifier(ReformerModel(**SMALL), num_classes=2)


def lm_data(bad_id):
    tokens = np.random.default_rng(0).integers(0, VOCABULARY, size=(4, 17)).astype("int32")
    tokens[1, 5] = bad_id
    return language_model_data(tokens)


def weights_finite(model):
    return all(np.isfinite(to_numpy(v)).all() for v in model.trainable_variables)


@pytest.mark.parametrize("bad_id", [VOCABULARY, -1])
def test_every_host_entry_point_names_token_ids_and_a_bad_value(bad_id):
    model = lm()
    model.compile(jit_compile=BACKEND != "torch")
    x, y, w = lm_data(bad_id)
    entry_points = {
        "__call__": lambda: model(x),
        "fit": lambda: model.fit(x, y, sample_weight=w, verbose=0),
        "evaluate": lambda: model.evaluate(x, y, verbose=0),
        "predict": lambda: model.predict(x, verbose=0),
        "train_on_batch": lambda: model.train_on_batch(x, y),
        "test_on_batch": lambda: model.test_on_batch(x, y),
        "predict_on_batch": lambda: model.predict_on_batch(x),
        "validation_data": lambda: model.fit(
            *lm_data(0)[:2], validation_data=(x, y), verbose=0, epochs=1
        ),
    }
    for name, run in entry_points.items():
        with pytest.raises(ValueError, match=f"token_ids={bad_id}") as error:
            run()
        assert "vocabulary_size" in str(error.value), name
    assert weights_finite(model)
    # No step was built on the bad data: predicting good data still works
    # (after an exception inside JAX's predict, Keras used to fail with
    # "'NoneType' object is not callable").
    good = model.predict(lm_data(0)[0], verbose=0)
    assert np.isfinite(good).all()


def test_language_model_targets_are_checked_too():
    model = lm()
    model.compile(jit_compile=BACKEND != "torch")
    x, y, _ = lm_data(0)
    y[2, 3] = VOCABULARY
    with pytest.raises(ValueError, match=f"y={VOCABULARY}"):
        model.fit(x, y, verbose=0)


def test_classifier_entry_points_check_ids_too():
    model = classifier()
    model.compile(jit_compile=BACKEND != "torch")
    ids = np.zeros((2, 12), "int32")
    ids[0, 3] = VOCABULARY
    with pytest.raises(ValueError, match="token_ids"):
        model.fit(ids, np.array([0, 1]), verbose=0)
    with pytest.raises(ValueError, match="token_ids"):
        model.predict(ids, verbose=0)


def _dataset(x, y, w):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(2)


def test_compiled_steps_treat_invalid_ids_as_padding_count_and_warn():
    x, y, w = lm_data(VOCABULARY)
    x["token_ids"][3, 9] = -1
    model = lm()
    if BACKEND == "torch":
        # Keras runs torch steps eagerly (`jit_compile=True` means torch.compile,
        # minutes to trace here): the ids are concrete, so the call raises.
        model.compile()
        with pytest.raises(ValueError, match="token_ids"):
            model.fit(_dataset(x, y, w), verbose=0)
        return
    model.compile(jit_compile=True)
    # ids seen by no host check: a tf.data pipeline.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(_dataset(x, y, w), epochs=2, verbose=0)
        logs = model.evaluate(_dataset(x, y, w), verbose=0, return_dict=True)
    # Two bad ids in the inputs, one among the targets.
    assert history.history["invalid_token_ids"] == [3.0, 3.0]
    assert logs["invalid_token_ids"] == 3.0
    messages = [str(w.message) for w in caught if "invalid_token_ids" in str(w.message)]
    assert len(messages) == 2 and "[0, 16)" in messages[0], messages
    assert np.isfinite(history.history["loss"]).all()
    assert weights_finite(model)
    # Each invalid id is looked up as the nearest valid id at a padded position.
    clean = {
        "token_ids": np.clip(x["token_ids"], 0, VOCABULARY - 1),
        "padding_mask": np.where(
            x["token_ids"] == np.clip(x["token_ids"], 0, VOCABULARY - 1), x["padding_mask"], 0
        ),
    }
    predicted = model.predict(_dataset(x, y, w).map(lambda x, y, w: x), verbose=0)
    # Batches of 2 as in the pipeline: the same compiled predict step.
    expected = model.predict(clean, batch_size=2, verbose=0)
    assert_allclose(predicted, expected, rtol=1e-5, atol=1e-5)


def test_clean_data_logs_zero_invalid_ids_and_no_warning():
    model = classifier()
    model.compile(jit_compile=BACKEND != "torch")
    ids = np.random.default_rng(1).integers(0, VOCABULARY, size=(4, 12)).astype("int32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(ids, np.array([0, 1, 0, 1]), verbose=0)
    assert history.history["invalid_token_ids"] == [0.0]
    assert not [w for w in caught if "invalid_token_ids" in str(w.message)]
    assert keras.ops.convert_to_numpy(model(ids)).shape == (4, 2)
