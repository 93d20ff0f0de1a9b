"""ReversibleBlock and ReversibleSequence: gradients equal a plain stack's."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from keras_reformer.layers.pre_layer_norm import PreLayerNorm
from keras_reformer.layers.reversible import ReversibleBlock
from keras_reformer.layers.reversible import ReversibleSequence
from tests.gradients import layer_gradients
from tests.layers.reversible_testing import PlainStack
from tests.layers.reversible_testing import SelfAttention
from tests.layers.reversible_testing import TokenMixer
from tests.layers.reversible_testing import assert_close_relative
from tests.layers.reversible_testing import assert_same_gradients
from tests.test_case import assert_allclose
from tests.test_case import jit_compile_modes
from tests.test_case import run_layer_test
from tests.test_case import run_model_saving_test
from tests.test_case import to_numpy

HALF = 4


def mixer_blocks(depth, seeded=True, dtype=None):
    def seed(i):
        return i if seeded else None

    return [
        ReversibleBlock(
            TokenMixer(HALF, seed=seed(2 * i + 1), dtype=dtype),
            TokenMixer(HALF, seed=seed(2 * i + 2), dtype=dtype),
            dtype=dtype,
        )
        for i in range(depth)
    ]


def reformer_blocks(depth, chunk_length=3):
    """F = PreLayerNorm(stand-in attention), G = PreLayerNorm(ChunkedFeedForward):
    G is position-wise, so the backward pulls it back chunk by chunk."""
    return [
        ReversibleBlock(
            PreLayerNorm(TokenMixer(HALF, seed=10 + i)),
            PreLayerNorm(
                ChunkedFeedForward(8, chunk_length=chunk_length, dropout=0.3, seed=20 + i)
            ),
        )
        for i in range(depth)
    ]


def attention_blocks(depth):
    return [
        ReversibleBlock(SelfAttention(dropout=0.2), TokenMixer(HALF, seed=None))
        for _ in range(depth)
    ]


@pytest.mark.parametrize("jit", jit_compile_modes())
@pytest.mark.parametrize("seeded", [True, False])
def test_gradients_equal_plain_stack_with_dropout(jit, seeded):
    x = np.random.default_rng(0).normal(size=(2, 7, 2 * HALF)).astype("float32")
    assert_same_gradients(mixer_blocks(3, seeded), x, jit, {"training": True})


@pytest.mark.parametrize("jit", jit_compile_modes())
def test_gradients_equal_plain_stack_with_chunked_feed_forward(jit, monkeypatch):
    # Length 7 with chunks of 3: the last chunk is shorter.
    x = np.random.default_rng(0).normal(size=(2, 7, 2 * HALF)).astype("float32")
    blocks = reformer_blocks(2)
    recomputed_lengths = []
    call = ChunkedFeedForward.call

    def spy(self, inputs, training=None, position_offset=None):
        if position_offset is not None:
            recomputed_lengths.append(inputs.shape[1])
        return call(self, inputs, training=training, position_offset=position_offset)

    monkeypatch.setattr(ChunkedFeedForward, "call", spy)
    assert_same_gradients(blocks, x, jit, {"training": True})
    # The backward recomputed G chunk by chunk: full chunks of 3 (one loop),
    # then the last chunk of 1; never the whole sequence at once.
    assert set(recomputed_lengths) == {3, 1}


@pytest.mark.parametrize("jit", jit_compile_modes())
def test_gradients_equal_plain_stack_attention_with_padding_mask(jit):
    x = np.random.default_rng(0).normal(size=(2, 6, 2 * HALF)).astype("float32")
    padding_mask = np.array([[1] * 6, [1] * 4 + [0] * 2], "int32")
    assert_same_gradients(
        attention_blocks(2), x, jit, {"training": True, "padding_mask": padding_mask}
    )


class MixerWithUnusedWeight(TokenMixer):
    """A TokenMixer with one more weight that its output does not use."""

    def build(self, inputs_shape):
        super().build(inputs_shape)
        self.unused = self.add_weight(shape=(3,), initializer="ones", name="unused")


def test_a_weight_the_stack_does_not_use_gets_a_zero_gradient():
    blocks = [ReversibleBlock(MixerWithUnusedWeight(HALF), TokenMixer(HALF, seed=1))]
    stack = ReversibleSequence(blocks, seed=0)
    x = np.random.default_rng(0).normal(size=(1, 5, 2 * HALF)).astype("float32")
    stack.build(x.shape)
    _, _, grads = layer_gradients(stack, x, np.ones_like(x), training=True)
    unused = [path for path in grads if path.endswith("unused")]
    assert len(unused) == 1
    np.testing.assert_array_equal(grads[unused[0]], np.zeros(3))
    assert all(np.abs(g).max() > 0 for path, g in grads.items() if path not in unused)


def test_quantized_sublayers_run_through_keras_stateless_call():
    # The stack applies sublayers without `stateless_call`'s conversions, except
    # where Keras' path does more (a quantized layer calls `quantized_call`).
    blocks = [ReversibleBlock(keras.layers.Dense(HALF), keras.layers.Dense(HALF))]
    stack = ReversibleSequence(blocks)
    x = np.random.default_rng(0).normal(size=(2, 5, 2 * HALF)).astype("float32")
    stack.build(x.shape)
    for block in blocks:
        block.f.quantize("int8")
        block.g.quantize("int8")
    expected = to_numpy(PlainStack(blocks)(x))
    assert_allclose(stack(x), expected, rtol=1e-6, atol=1e-6)
    float_outputs = x[..., :HALF] + to_numpy(ops.matmul(x[..., HALF:], blocks[0].f._kernel.value))
    assert not np.allclose(expected[..., :HALF], float_outputs), "quantization changed nothing"


def test_block_computes_the_reversible_residual():
    block = ReversibleBlock(TokenMixer(HALF, dropout=0.0), TokenMixer(HALF, dropout=0.0))
    x = np.random.default_rng(0).normal(size=(2, 5, 2 * HALF)).astype("float32")
    y = to_numpy(block(x))
    x1, x2 = x[..., :HALF], x[..., HALF:]
    y1 = x1 + to_numpy(block.f(x2))
    y2 = x2 + to_numpy(block.g(y1.astype("float32")))
    assert_allclose(y, np.concatenate([y1, y2], -1), rtol=1e-6)
    # Reconstruction: the inputs come back from the outputs.
    rec_x2 = y[..., HALF:] - to_numpy(block.g(y[..., :HALF].astype("float32")))
    rec_x1 = y[..., :HALF] - to_numpy(block.f(rec_x2.astype("float32")))
    assert_allclose(np.concatenate([rec_x1, rec_x2], -1), x, rtol=1e-5, atol=1e-5)


def test_padding_mask_reaches_sublayers():
    blocks = mixer_blocks(2)
    stack = ReversibleSequence(blocks)
    x = np.random.default_rng(0).normal(size=(1, 6, 2 * HALF)).astype("float32")
    padding_mask = np.array([[1, 1, 1, 0, 0, 0]], "int32")
    full = to_numpy(stack(x, training=False))
    masked = to_numpy(stack(x, padding_mask=padding_mask, training=False))
    assert not np.allclose(full[0, :3], masked[0, :3])
    expected = to_numpy(PlainStack(blocks)(x, padding_mask=padding_mask, training=False))
    assert_allclose(masked, expected)


def test_fresh_randomness_every_call_same_within_a_call():
    stack = ReversibleSequence(mixer_blocks(2), seed=0)
    x = np.ones((1, 5, 2 * HALF), "float32")
    first = to_numpy(stack(x, training=True))
    second = to_numpy(stack(x, training=True))
    assert not np.allclose(first, second), "dropout masks did not change between calls"
    assert_allclose(stack(x, training=False), stack(x, training=False))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_gradients_are_finite(policy):
    blocks = mixer_blocks(2, dtype=policy)
    stack = ReversibleSequence(blocks, dtype=policy)
    x = np.random.default_rng(0).normal(size=(2, 6, 2 * HALF)).astype("float32")
    stack.build(x.shape)
    output, x_grad, weight_grads = layer_gradients(
        stack, x, np.ones(x.shape, "float32"), training=True
    )
    assert (
        keras.backend.standardize_dtype(stack.compute_dtype)
        == keras.DTypePolicy(policy).compute_dtype
    )
    for value in [output, x_grad, *weight_grads.values()]:
        assert np.all(np.isfinite(value))
    assert all(np.abs(g).max() > 0 for g in weight_grads.values())


def _fit_model(reversible, x, target, jit_compile):
    keras.utils.set_random_seed(7)
    blocks = mixer_blocks(2)
    stack = ReversibleSequence(blocks, seed=1) if reversible else PlainStack(blocks)
    inputs = keras.Input(batch_shape=x.shape)
    model = keras.Model(inputs, stack(inputs, training=True))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", jit_compile=jit_compile)
    model.fit(x, target, batch_size=x.shape[0], epochs=1, verbose=0)
    return [to_numpy(v) for b in blocks for v in b.trainable_variables]


@pytest.mark.parametrize("jit_compile", jit_compile_modes())
def test_one_fit_step_matches_plain_model(jit_compile):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 2 * HALF)).astype("float32")
    target = rng.normal(size=x.shape).astype("float32")
    plain = _fit_model(False, x, target, jit_compile)
    reversible = _fit_model(True, x, target, jit_compile)
    for i, (p, r) in enumerate(zip(plain, reversible)):
        assert_close_relative(r, p, 1e-5, f"weight {i}")
    # fit must have moved the weights, or the comparison proves nothing
    assert any(not np.allclose(p, q) for p, q in zip(plain, _initial_weights(x)))


def _initial_weights(x):
    keras.utils.set_random_seed(7)
    blocks = mixer_blocks(2)
    PlainStack(blocks).build(x.shape)
    return [to_numpy(v) for b in blocks for v in b.trainable_variables]


def test_sequence_layer_contract(tmp_path):
    run_layer_test(
        ReversibleSequence,
        {"blocks": mixer_blocks(2), "seed": 4},
        np.random.default_rng(0).normal(size=(2, 6, 2 * HALF)).astype("float32"),
        (2, 6, 2 * HALF),
        call_kwargs={"padding_mask": np.ones((2, 6), "int32")},
        run_mixed_precision=False,  # blocks carry their own policy: see the test above
        tmp_path=tmp_path,
    )


def test_block_layer_contract(tmp_path):
    run_layer_test(
        ReversibleBlock,
        {"f": TokenMixer(HALF, seed=1), "g": TokenMixer(HALF, seed=2)},
        np.random.default_rng(0).normal(size=(2, 6, 2 * HALF)).astype("float32"),
        (2, 6, 2 * HALF),
        run_mixed_precision=False,
        tmp_path=tmp_path,
    )


def test_saving_a_functional_model(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 6, 2 * HALF)).astype("float32")
    inputs = keras.Input(shape=(None, 2 * HALF))
    stack = ReversibleSequence(mixer_blocks(1) + reformer_blocks(1) + attention_blocks(1), seed=2)
    model = keras.Model(inputs, stack(inputs))
    restored = run_model_saving_test(model, x, tmp_path)
    assert isinstance(restored.layers[-1], ReversibleSequence)
    assert len(restored.layers[-1].blocks) == 3


def test_errors():
    with pytest.raises(ValueError, match="blocks"):
        ReversibleSequence([])
    with pytest.raises(ValueError, match="blocks"):
        ReversibleSequence([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="even last dimension"):
        ReversibleSequence(mixer_blocks(1))(np.ones((1, 3, 7), "float32"))
    with pytest.raises(ValueError, match="even last dimension"):
        mixer_blocks(1)[0](np.ones((1, 3, 7), "float32"))
