"""The reversible stack with the Reformer's own F: LSH attention's random
rotations and dropout are replayed exactly in the backward pass."""

import keras
import numpy as np
import pytest

from keras_reformer import backend
from keras_reformer.layers import forward_memo
from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from keras_reformer.layers.lsh_self_attention import LSHSelfAttention
from keras_reformer.layers.pre_layer_norm import PreLayerNorm
from keras_reformer.layers.reversible import ReversibleBlock
from keras_reformer.layers.reversible import ReversibleSequence
from tests.gradients import layer_gradients
from tests.layers.reversible_testing import assert_same_gradients
from tests.test_case import BACKEND
from tests.test_case import jit_compile_modes

WIDTH = 8


def lsh_blocks(depth):
    return [
        ReversibleBlock(
            PreLayerNorm(
                LSHSelfAttention(
                    num_heads=2, key_dim=8, chunk_length=8, num_hashes=2, dropout=0.1, seed=1 + i
                )
            ),
            PreLayerNorm(ChunkedFeedForward(16, chunk_length=8, dropout=0.1, seed=11 + i)),
        )
        for i in range(depth)
    ]


# TensorFlow's graph runtime too: its walks are unrolled, so the recompute
# reuses the forward's sort there (under XLA it hashes again).
@pytest.mark.parametrize(
    "jit", jit_compile_modes() + (["graph"] if BACKEND == "tensorflow" else [])
)
def test_gradients_equal_plain_stack_with_lsh_attention(jit):
    # Length 20 with chunks of 8: LSH pads internally, the FF's last chunk is short.
    x = np.random.default_rng(0).normal(size=(2, 20, 2 * WIDTH)).astype("float32")
    padding_mask = np.ones((2, 20), "int32")
    padding_mask[1, 15:] = 0
    assert_same_gradients(lsh_blocks(2), x, jit, {"training": True, "padding_mask": padding_mask})


def test_recompute_reuses_the_forward_sort_where_the_walks_are_unrolled(monkeypatch):
    # torch and TensorFlow, eagerly: each LSH layer hashes and sorts once per
    # step (its recompute replays the forward's sort, see forward_memo); in
    # JAX's compiled loop the recompute hashes again from the same seeds. The
    # gradient tests above show that both give the plain stack's gradients.
    calls = []
    hash_and_sort = LSHSelfAttention._hash_and_sort

    def counted(self, *args, **kwargs):
        calls.append(self.name)
        return hash_and_sort(self, *args, **kwargs)

    stack = ReversibleSequence(lsh_blocks(2))
    x = np.random.default_rng(1).normal(size=(2, 20, 2 * WIDTH)).astype("float32")
    stack.build(x.shape)
    monkeypatch.setattr(LSHSelfAttention, "_hash_and_sort", counted)
    layer_gradients(stack, x, np.ones_like(x), training=True)
    expected = 1 if backend.walks_are_unrolled() else 2
    assert sorted(calls) == sorted([block.f.layer.name for block in stack.blocks] * expected)
    assert backend.walks_are_unrolled() == (BACKEND != "jax")


def test_gradients_equal_plain_stack_with_a_reversible_stack_nested_in_a_sublayer():
    # The inner stack runs its forward again inside the outer recompute: it
    # must hash for itself, not take the outer sublayer's remembered sort.
    def lsh(seed):
        return PreLayerNorm(
            LSHSelfAttention(num_heads=2, key_dim=4, chunk_length=4, num_hashes=2, seed=seed)
        )

    inner = ReversibleSequence([ReversibleBlock(lsh(1), PreLayerNorm(ChunkedFeedForward(8)))])
    x = np.random.default_rng(2).normal(size=(2, 12, 2 * WIDTH)).astype("float32")
    assert_same_gradients([ReversibleBlock(inner, lsh(2))], x, False, {"training": True})


def test_lsh_remembers_its_sort_only_8_bytes_per_token_head_and_round():
    # What the reversible stack keeps per LSH layer for its recompute (on
    # torch; see forward_memo and the ReversibleSequence docstring).
    layer = LSHSelfAttention(num_heads=2, key_dim=4, chunk_length=4, num_hashes=3, seed=0)
    x = np.random.default_rng(3).normal(size=(2, 16, 8)).astype("float32")
    layer.build(x.shape)
    with forward_memo.recording() as record:
        layer(x, training=True)
    ((sort_indices, undo_indices),) = record
    for indices in (sort_indices, undo_indices):
        assert keras.backend.standardize_dtype(indices.dtype) == "int32"
        assert tuple(indices.shape) == (2 * 2, 3 * 16)  # (batch * heads, rounds * length)
