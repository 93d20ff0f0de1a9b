"""Training memory of the reversible stack does not grow with depth."""

import numpy as np

from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from keras_reformer.layers.pre_layer_norm import PreLayerNorm
from keras_reformer.layers.reversible import ReversibleBlock
from keras_reformer.layers.reversible import ReversibleSequence
from tests.backend.memory_utils import training_step_bytes
from tests.layers.reversible_testing import PlainStack
from tests.layers.reversible_testing import TokenMixer

HALF = 64
LENGTH = 512


def blocks(depth):
    return [
        ReversibleBlock(
            PreLayerNorm(TokenMixer(HALF, dropout=0.1, seed=i)),
            PreLayerNorm(ChunkedFeedForward(2 * HALF, chunk_length=128, seed=i)),
        )
        for i in range(depth)
    ]


def memory(stack_cls, depth, x):
    stack = stack_cls(blocks(depth))
    stack.build(x.shape)
    return training_step_bytes(stack, x, training=True)


def test_activation_memory_is_flat_in_depth():
    x = np.random.default_rng(0).normal(size=(4, LENGTH, 2 * HALF)).astype("float32")
    reversible = {d: memory(ReversibleSequence, d, x) for d in (2, 12)}
    plain = {d: memory(PlainStack, d, x) for d in (2, 12)}
    one_activation = x.nbytes // 2
    assert reversible[12] <= 1.3 * reversible[2], (reversible, plain)
    # The plain stack keeps several activations per block: it grows ~linearly.
    assert plain[12] - plain[2] >= 10 * one_activation, (reversible, plain)
    assert plain[12] >= 3 * plain[2], (reversible, plain)
