import keras
import numpy as np
import pytest

from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerModel
from keras_reformer.models import language_model_data
from tests.model_testing import run_task_test
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

VOCABULARY = 24


def small_lm(**overrides):
    config = dict(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        hidden_dim=32,
        num_heads=2,
        chunk_length=8,
        feed_forward_chunk_length=16,
        num_hashes=2,
        causal=True,
        max_sequence_length=48,
        seed=5,
        attention_layers=["lsh", "local"],
    )
    return ReformerCausalLM(ReformerModel(**{**config, **overrides}))


def test_language_model_data_shifts_by_one():
    tokens = np.arange(10).reshape(2, 5)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    x, y, w = language_model_data(tokens, mask)
    np.testing.assert_array_equal(x["token_ids"], tokens[:, :-1])
    np.testing.assert_array_equal(y, tokens[:, 1:])
    np.testing.assert_array_equal(w, [[1, 1, 1, 1], [1, 1, 0, 0]])


def test_overfits_a_fixed_batch():
    lm = small_lm()
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=BACKEND != "torch")
    tokens = np.random.default_rng(0).integers(0, VOCABULARY, size=(4, 33))
    x, y, w = language_model_data(tokens)
    history = lm.fit(x, y, sample_weight=w, batch_size=4, epochs=100, verbose=0)
    losses = history.history["loss"]
    # Training redraws the hash rotations every step, so the loss keeps jumping
    # a little (and differently on a GPU); the best of the last ten epochs is
    # 2-6x under the bound on CPU.
    best = min(losses[-10:])
    assert best < 0.1 * losses[0], f"loss went from {losses[0]:.3f} to {best:.3f}"


def _slow_greedy(lm, prompt, max_length):
    # Each prefix in a fixed buffer, the rest padding (padding never reaches
    # real positions: tests/test_padding_isolation.py), so one compiled predict.
    tokens = np.zeros((len(prompt), max_length), "int32")
    tokens[:, : prompt.shape[1]] = prompt
    for t in range(prompt.shape[1], max_length):
        mask = np.broadcast_to(np.arange(max_length) < t, tokens.shape).astype("int32")
        logits = to_numpy(lm.predict_on_batch({"token_ids": tokens, "padding_mask": mask}))
        tokens[:, t] = logits[:, t - 1].argmax(-1)
    return tokens


def test_uncached_greedy_generation_equals_recomputing_each_prefix():
    lm = small_lm()
    lm.compile(sampler="greedy")
    # Prefixes from 6 to 17 tokens cross two chunk boundaries (chunk_length 8).
    prompt = np.random.default_rng(2).integers(0, VOCABULARY, size=(2, 6))
    generated = lm.generate(prompt, max_length=18, cache=False)
    np.testing.assert_array_equal(generated, _slow_greedy(lm, prompt, 18))


def test_generation_keeps_prompts_of_different_lengths():
    lm = small_lm()
    out = lm.generate([[1, 2, 3], [4, 5, 6, 7, 8]], max_length=12, sampler="top_k")
    assert out.shape == (2, 12)
    np.testing.assert_array_equal(out[0, :3], [1, 2, 3])
    np.testing.assert_array_equal(out[1, :5], [4, 5, 6, 7, 8])


def test_generate_rejects_bad_lengths_and_ids():
    lm = small_lm()
    with pytest.raises(ValueError, match="max_length"):
        lm.generate([[1, 2]], max_length=49)
    with pytest.raises(ValueError, match="prompt"):
        lm.generate([[1, VOCABULARY]], max_length=8)


def test_trainer_takes_bare_token_ids_like_the_dict():
    # Bare ids get an all-ones padding mask on every backend's trainer, JAX's
    # included, which reaches `call` through `stateless_call`, not `__call__`.
    tokens = np.random.default_rng(4).integers(0, VOCABULARY, size=(2, 17)).astype("int32")
    x, y, _ = language_model_data(tokens)
    lm = small_lm()
    lm.compile(jit_compile=BACKEND != "torch")
    with_mask = lm.evaluate(x, y, verbose=0, return_dict=True)
    bare = lm.evaluate(x["token_ids"], y, verbose=0, return_dict=True)
    assert_allclose(bare["loss"], with_mask["loss"], rtol=1e-6, atol=1e-6)


def test_out_of_range_ids_raise_in_a_call():
    # The task model leaves value checks to its backbone's call.
    with pytest.raises(ValueError, match="vocabulary_size"):
        small_lm()(np.full((1, 8), VOCABULARY, "int32"))


def test_backbone_must_be_a_reformer_model():
    with pytest.raises(ValueError, match="backbone"):
        ReformerCausalLM(keras.Sequential([keras.layers.Dense(2)]))


def test_needs_a_causal_backbone():
    backbone = ReformerModel(
        vocabulary_size=8,
        num_layers=1,
        hidden_dim=8,
        num_heads=1,
        chunk_length=4,
        max_sequence_length=16,
    )
    with pytest.raises(ValueError, match="causal"):
        ReformerCausalLM(backbone)


def test_task_contract(tmp_path):
    # LSH and local attention, learned positions, dropout (seed states to save).
    def backbone():
        return ReformerModel(
            vocabulary_size=VOCABULARY,
            num_layers=2,
            hidden_dim=16,
            num_heads=2,
            chunk_length=8,
            feed_forward_chunk_length=16,
            num_hashes=2,
            causal=True,
            max_sequence_length=64,
            attention_layers=["lsh", "local"],
            position_embedding="learned",
            dropout=0.1,
            seed=5,
        )

    tokens = np.random.default_rng(3).integers(0, VOCABULARY, size=(2, 33))
    mask = np.ones_like(tokens)
    mask[1, 27:] = 0
    run_task_test(
        ReformerCausalLM,
        backbone,
        {},
        language_model_data(tokens, mask),
        expected_output_shape=(2, 32, VOCABULARY),
        other_length=17,
        tmp_path=tmp_path,
    )
