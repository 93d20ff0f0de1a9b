"""Cached generation: the cache path against recomputation and against a slow
reference of its own (strictly causal) semantics, samplers, stop tokens and
compilation."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer.backend import compile_inference
from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerModel
from keras_reformer.models import language_model_data
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

VOCABULARY = 24


def small_lm(**overrides):
    config = dict(
        vocabulary_size=VOCABULARY,
        num_layers=1,
        hidden_dim=32,
        num_heads=2,
        chunk_length=4,
        feed_forward_chunk_length=16,
        num_hashes=2,
        causal=True,
        max_sequence_length=32,
        seed=5,
        attention_layers="lsh",
    )
    return ReformerCausalLM(ReformerModel(**{**config, **overrides}))


PROMPTS = [[3, 1, 4, 1, 5], [9, 2, 6, 5, 3, 5, 8, 9]]


@pytest.mark.parametrize("sampler", ["beam", "contrastive"])
def test_one_layer_cached_generation_equals_recomputing(sampler):
    # With one layer every token's inputs are its embeddings, so the cache's
    # semantics and re-running each prefix coincide (prompts of two lengths:
    # the longer one's tail is read through the cache). Beam search repeats
    # the cache per beam and reorders it; the contrastive sampler reads the
    # hidden states. (Greedy: see the stop-token test.)
    lm = small_lm()
    lm.compile(sampler=sampler)
    cached = lm.generate(PROMPTS, max_length=30)
    np.testing.assert_array_equal(cached, lm.generate(PROMPTS, max_length=30, cache=False))
    np.testing.assert_array_equal(cached[1, :8], PROMPTS[1])


def test_local_and_full_layers_cached_equal_recomputing():
    # Without LSH the two semantics coincide at any depth.
    lm = small_lm(num_layers=3, attention_layers=["local", "full", "local"], reversible=False)
    np.testing.assert_array_equal(
        lm.generate(PROMPTS, max_length=30), lm.generate(PROMPTS, max_length=30, cache=False)
    )


def _strictly_causal_logits(lm, tokens, start):
    """Logits at positions start-1 .. end of the cache's semantics, built from
    the blocks' own calls: positions before `start` in one pass; then each
    later position t, layer by layer, from a call on the layer's inputs of
    positions 0..t as they were computed when each was processed (the
    positions after t masked as padding, which equals cutting them off)."""
    backbone = lm.backbone
    batch, length = tokens.shape
    positions = np.arange(length)

    def compiled(function, layer):
        return compile_inference(function, layer.variables)

    blocks = [compiled(lambda h, m, b=b: b(h, padding_mask=m), b) for b in backbone.blocks]
    embed = compiled(
        lambda ids: (
            backbone.token_embedding(ids)
            + backbone.position_embedding(backbone.token_embedding(ids))
        ),
        backbone,
    )
    head = compiled(lambda h: lm.vocabulary_logits(backbone.output_norm(h)), backbone)
    x = to_numpy(embed(tokens)).astype("float32")
    states = [np.concatenate([x, x], -1) if backbone.reversible else x]
    known = np.broadcast_to(positions < start, (batch, length)).astype("int32")
    for block in blocks:
        states.append(to_numpy(block(states[-1], known)).astype("float32"))
    for t in range(start, length):
        prefix = np.broadcast_to(positions <= t, (batch, length)).astype("int32")
        for layer, block in enumerate(blocks):
            states[layer + 1][:, t] = to_numpy(block(states[layer], prefix))[:, t]
    return to_numpy(head(states[-1]))[:, start - 1 :]


def test_cached_logits_equal_the_strictly_causal_reference():
    # (The non-reversible blocks' cache: see the local / full test.)
    lm = small_lm(
        num_layers=3,
        attention_layers=["lsh", "local", "lsh"],
        num_hashes=3,
        correct_duplicates=True,
    )
    tokens = np.random.default_rng(0).integers(0, VOCABULARY, size=(2, 32)).astype("int32")
    start = 9
    build_cache = compile_inference(lm.backbone.build_cache, lm.variables)
    step = compile_inference(lm.call_with_cache, lm.variables)
    known = np.broadcast_to(np.arange(32) < start, (2, 32)).astype("int32")
    hidden, cache = build_cache(tokens, known)
    head = compile_inference(lm.vocabulary_logits, lm.variables)
    logits = [to_numpy(head(hidden))[:, start - 1]]
    for t in range(start, 32):
        step_logits, _, cache = step(tokens[:, t : t + 1], cache, ops.convert_to_tensor(t, "int32"))
        logits.append(to_numpy(step_logits)[:, 0])
    assert_allclose(
        np.stack(logits, 1), _strictly_causal_logits(lm, tokens, start), rtol=1e-4, atol=1e-4
    )


def test_a_random_sampler_runs_with_the_cache_and_keeps_the_prompts():
    # (top_p and random sample like top_k: the cache does not see the sampler.)
    lm = small_lm(num_layers=2, attention_layers=["lsh", "local"])
    out = lm.generate(PROMPTS, max_length=16, sampler="top_k")
    assert out.shape == (2, 16) and out.dtype == np.int32
    np.testing.assert_array_equal(out[0, :5], PROMPTS[0])
    np.testing.assert_array_equal(out[1, :8], PROMPTS[1])
    assert ((out >= 0) & (out < VOCABULARY)).all()


def test_the_row_after_a_stop_token_is_padding():
    lm = small_lm()  # greedy
    free = lm.generate(PROMPTS, max_length=20)
    stop = int(free[0, 7])  # a token generated in row 0 (after its prompt)
    first = 5 + int(np.argmax(free[0, 5:] == stop))
    stopped = lm.generate(PROMPTS, max_length=20, stop_token_ids=[stop])
    np.testing.assert_array_equal(stopped[0, : first + 1], free[0, : first + 1])
    np.testing.assert_array_equal(stopped[0, first + 1 :], 0)
    row = free[1]  # a stop id inside a prompt does not stop it
    generated = np.flatnonzero(row[8:] == stop)
    if generated.size:
        np.testing.assert_array_equal(stopped[1, 8 + generated[0] + 1 :], 0)
    else:
        np.testing.assert_array_equal(stopped[1], row)


def test_generation_is_compiled_once_per_shape():
    lm = small_lm()
    traces, grad_enabled = [], []
    step = lm._generate_step

    def counting_step(*args):
        traces.append(1)
        if BACKEND == "torch":
            import torch

            grad_enabled.append(torch.is_grad_enabled())
        return step(*args)

    lm._generate_step = counting_step
    lm.generate([[1, 2, 3]], max_length=12)
    lm.generate([[4, 5, 6, 7, 8, 9]], max_length=12)  # another prompt length, same shape
    if BACKEND == "torch":  # eager, without autograd records
        assert traces == [1, 1] and grad_enabled == [False, False]
    else:
        assert len(traces) == 1
    lm.generate([[1, 2, 3]], max_length=13)
    assert len(traces) == 2 if BACKEND != "torch" else 3


def test_cache_needs_a_boolean_and_a_causal_backbone():
    lm = small_lm()
    with pytest.raises(ValueError, match="cache"):
        lm.generate(PROMPTS, max_length=12, cache="yes")
    backbone = ReformerModel(
        vocabulary_size=8,
        num_layers=1,
        hidden_dim=8,
        num_heads=1,
        chunk_length=4,
        max_sequence_length=16,
    )
    with pytest.raises(ValueError, match="causal=False"):
        backbone.build_cache(np.zeros((1, 16), "int32"))


def test_cache_bytes_per_token_per_layer():
    lm = small_lm(num_layers=2, attention_layers=["lsh", "local"], num_hashes=3)
    # 2 heads x (16 + 16) float32 keys and values; LSH adds 2 x 3 rounds x 2 heads int32.
    assert lm.backbone.cache_bytes_per_token() == [2 * 32 * 4 + 2 * 3 * 2 * 4, 2 * 32 * 4]


def test_mixed_precision_generation_keeps_a_half_precision_cache():
    lm = small_lm(num_layers=2, attention_layers=["lsh", "local"], dtype="mixed_bfloat16")
    assert lm.backbone.cache_bytes_per_token() == [2 * 32 * 2 + 2 * 2 * 2 * 4, 2 * 32 * 2]
    build_cache = compile_inference(lm.backbone.build_cache, lm.variables)
    _, cache = build_cache(np.zeros((1, 32), "int32"))
    assert keras.backend.standardize_dtype(cache[0][0][0].dtype) == "bfloat16"
    out = lm.generate(PROMPTS, max_length=16)
    assert ((out >= 0) & (out < VOCABULARY)).all()
    np.testing.assert_array_equal(out[1, :8], PROMPTS[1])


def test_a_trained_duplication_model_copies_through_the_cache():
    # The paper's task, tiny: `0 w 0 w`; the second `w` can only come from
    # attending back to the first, through LSH buckets. 256 steps reach
    # 80-90% per-symbol copies (chance: 1/7); generation reads the first half
    # and the separator, then writes the copy token by token from the cache.
    rng = np.random.default_rng(0)
    half, symbols = 8, 8

    def sequences(n):
        w = rng.integers(1, symbols, size=(n, half - 1))
        zero = np.zeros((n, 1), w.dtype)
        return np.concatenate([zero, w, zero, w], axis=1)

    lm = small_lm(vocabulary_size=symbols, max_sequence_length=2 * half, num_hashes=4, seed=0)
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=BACKEND != "torch")
    train = sequences(2048)
    x, y, w = language_model_data(np.concatenate([train, train[:, :1]], axis=1))
    w[:, :half] = 0  # learn the copy only
    w[:, -1] = 0  # (the appended target)
    lm.fit(x, y, sample_weight=w, batch_size=32, epochs=4, verbose=0)
    test = sequences(16)
    copied = lm.generate(test[:, : half + 1], max_length=2 * half)[:, half + 1 :]
    assert (copied == test[:, half + 1 :]).mean() > 0.7
