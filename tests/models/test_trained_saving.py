"""What a user trained comes back exactly: seed states, compile config, optimizer, dtype policy.

Every test here trains first: the state that changes in training (seed
generators, optimizer slots and iterations) is where saving breaks.
"""

import os
import shutil
import subprocess
import sys
import types
import warnings

import keras
import numpy as np
import pytest

from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerModel
from keras_reformer.models import language_model_data
from tests.model_testing import FIT_COMPILE_KWARGS
from tests.test_case import BACKEND
from tests.test_case import to_numpy

VOCABULARY = 24
LENGTH = 32
# XLA on TensorFlow costs a minute per model here; JAX compiles faster than it runs eagerly.
JIT = "auto" if BACKEND == "jax" else False


def backbone(**overrides):
    config = dict(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        chunk_length=8,
        num_hashes=2,
        max_sequence_length=LENGTH,
        causal=True,
        attention_layers=["lsh", "local"],
        dropout=0.1,
        seed=5,
    )
    return ReformerModel(**{**config, **overrides})


def lm_data(batch=4):
    ids = np.random.default_rng(0).integers(0, VOCABULARY, size=(batch, LENGTH + 1))
    return language_model_data(ids)


def trained_lm(sampler="top_k", callbacks=()):
    lm = ReformerCausalLM(backbone())
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), sampler=sampler, jit_compile=JIT)
    x, y, w = lm_data()
    lm.fit(
        x,
        y,
        sample_weight=w,
        batch_size=2,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
    )
    return lm


def weights_of(model):
    return [to_numpy(v) for v in model.variables]


def load_quietly(path):
    """`load_model` that fails on any warning (e.g. Keras' "compile() was not called")."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return keras.saving.load_model(path)


class _KeepBackup(keras.callbacks.Callback):
    """Copies a `BackupAndRestore` folder at the end of the first epoch: what a
    process killed then leaves on disk (the callback deletes its folder when
    training ends). Put it after the `BackupAndRestore`, which writes first."""

    def __init__(self, source, target):
        super().__init__()
        self.source, self.target = source, target

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            shutil.copytree(self.source, self.target)


@pytest.fixture(scope="module")
def saved_lm(tmp_path_factory):
    """A causal LM (LSH and local attention, dropout) trained one epoch, saved
    three ways: `.keras`, `save_weights`, and the `BackupAndRestore` backup of
    that epoch.

    Tests read what the model computed, never the model itself: its outputs
    and variables as saved, and its weights after a second epoch in memory
    (the uninterrupted run that a loaded or a resumed model must end at).
    """
    keras.utils.set_random_seed(1234)
    folder = tmp_path_factory.mktemp("trained_lm")
    lm = trained_lm(
        callbacks=[
            keras.callbacks.BackupAndRestore(str(folder / "backup")),
            _KeepBackup(folder / "backup", folder / "backup_after_epoch_1"),
        ]
    )
    lm.save(folder / "lm.keras")
    lm.save_weights(folder / "lm.weights.h5")
    x, y, w = lm_data()
    saved = types.SimpleNamespace(
        folder=folder,
        backup=folder / "backup_after_epoch_1",
        outputs=to_numpy(lm(x)),
        variables=weights_of(lm),
        paths=[v.path for v in lm.variables],
    )
    # The second epoch of the uninterrupted run: the same model and compiled step.
    lm.fit(x, y, sample_weight=w, batch_size=2, epochs=1, shuffle=False, verbose=0)
    saved.continued = weights_of(lm)
    return saved


# A trained task model (causal LM, classifier) or backbone predicts identically
# after loading: the contracts of tests/model_testing.py (run_task_test
# and run_backbone_test).


def test_save_weights_restores_every_seed_state(saved_lm):
    fresh = ReformerCausalLM(backbone())
    fresh.load_weights(saved_lm.folder / "lm.weights.h5")
    seed_states = [path for path in saved_lm.paths if "seed_generator_state" in path]
    # Embedding dropout; rotations and dropout of the LSH layer; dropout of the
    # local one; two feed-forward dropouts; the stack's re-seeding generator.
    assert len(seed_states) == 7
    for expected, actual in zip(saved_lm.variables, weights_of(fresh)):
        np.testing.assert_array_equal(actual, expected)


def test_loaded_task_model_is_compiled_and_continues_training(saved_lm):
    restored = load_quietly(saved_lm.folder / "lm.keras")
    assert restored.sampler == "top_k"
    assert int(to_numpy(restored.optimizer.iterations)) == 2
    x, y, w = lm_data()
    restored.fit(x, y, sample_weight=w, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert int(to_numpy(restored.optimizer.iterations)) == 4
    # Where the model it was saved from got to with the same epoch.
    for expected, actual in zip(saved_lm.continued, weights_of(restored)):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_loaded_backbone_is_compiled_and_continues_training(tmp_path):
    # A backbone trained on its own: TokenIdChecks overrides `compile`, so
    # Keras' own `compile_from_config` would skip compiling it (with a
    # warning), leaving the loaded model without optimizer or loss.
    model = backbone(num_layers=1, attention_layers="lsh")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", **FIT_COMPILE_KWARGS)
    x, _, _ = lm_data()
    target = np.random.default_rng(1).normal(size=(4, LENGTH, 32)).astype("float32")
    model.fit(x, target, batch_size=2, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "backbone.keras")
    restored = load_quietly(tmp_path / "backbone.keras")
    assert int(to_numpy(restored.optimizer.iterations)) == 2
    for fitted in (model, restored):
        fitted.fit(x, target, batch_size=2, epochs=1, shuffle=False, verbose=0)
    for expected, actual in zip(weights_of(model), weights_of(restored)):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_sampler_object_survives_saving(tmp_path):
    keras_nlp = pytest.importorskip("keras_nlp")
    lm = ReformerCausalLM(backbone())
    lm.compile(sampler=keras_nlp.samplers.TopKSampler(k=3))
    lm.save(tmp_path / "lm.keras")
    restored = load_quietly(tmp_path / "lm.keras")
    assert restored._get_sampler(None).k == 3


def test_resumed_training_ends_where_uninterrupted_training_ends(saved_lm, tmp_path):
    # The fixture's run, killed after its first epoch, leaves its backup; a new
    # process (other global random state, so other initial weights) resumes it.
    shutil.copytree(saved_lm.backup, tmp_path / "backup")
    keras.utils.set_random_seed(99)
    resumed = ReformerCausalLM(backbone())
    resumed.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=JIT)
    x, y, w = lm_data()
    resumed.fit(
        x,
        y,
        sample_weight=w,
        batch_size=2,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))],
    )
    assert int(to_numpy(resumed.optimizer.iterations)) == 4
    for expected, actual in zip(saved_lm.continued, weights_of(resumed)):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_dtype_argument_is_the_models_policy(tmp_path):
    model = backbone(dtype="mixed_float16")
    assert model.dtype_policy.name == "mixed_float16"
    assert ReformerModel.from_config(model.get_config()).dtype_policy.name == "mixed_float16"
    lm = ReformerCausalLM(model)
    lm.compile(jit_compile=JIT)
    assert isinstance(lm.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y, w = lm_data()
    lm.fit(x, y, sample_weight=w, batch_size=2, epochs=1, verbose=0)
    lm.save(tmp_path / "lm.keras")
    restored = load_quietly(tmp_path / "lm.keras")
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(lm(x)))
    assert restored.dtype_policy.name == "mixed_float16"
    assert restored.backbone.dtype_policy.name == "mixed_float16"
    assert isinstance(restored.optimizer, keras.optimizers.LossScaleOptimizer)


NEXT_BACKEND = {"jax": "tensorflow", "tensorflow": "torch", "torch": "jax"}

LOAD_AND_COMPARE = """
import sys, numpy as np, keras, keras_reformer
model = keras.saving.load_model(sys.argv[1])
data = dict(np.load(sys.argv[2]))
expected = data.pop("expected")
np.testing.assert_allclose(keras.ops.convert_to_numpy(model(data)), expected,
                           rtol=1e-5, atol=1e-5)
print("ok", keras.backend.backend())
"""


def test_trained_model_predicts_alike_under_another_backend(saved_lm, tmp_path):
    x, _, _ = lm_data()
    np.savez(tmp_path / "data.npz", expected=saved_lm.outputs, **x)
    other = NEXT_BACKEND[BACKEND]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_COMPARE,
            str(saved_lm.folder / "lm.keras"),
            str(tmp_path / "data.npz"),
        ],
        env={**os.environ, "KERAS_BACKEND": other},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok {other}" in result.stdout
