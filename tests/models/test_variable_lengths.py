"""Sequences of several lengths through one model, in every entry point.

Keras' TensorFlow trainer traces its step with `reduce_retracing=True`, so the
second sequence length it meets is traced with an unknown (`None`) length, as
is every batch of a `tf.data` pipeline with a `(None, None)` element spec. The
layers then compute with run-time lengths; outputs must equal those of the
same sequence run on its own (an eager call, where every length is known).
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
from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerModel
from keras_reformer.ops import hash_buckets
from keras_reformer.ops import scan_sequence_chunks
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

VOCABULARY = 16
MAX_LENGTH = 64
# A length over several attention and feed-forward chunks (16), one below a
# chunk, and the maximum. (Few lengths: JAX compiles a program for each.)
LENGTHS = (40, 12, MAX_LENGTH)

tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="only TensorFlow graphs have lengths unknown while tracing"
)


def _backbone():
    return ReformerModel(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        chunk_length=16,
        num_hashes=2,
        causal=True,
        max_sequence_length=MAX_LENGTH,
        attention_layers=["lsh", "local"],
        feed_forward_chunk_length=16,
        seed=3,
    )


def _language_model(jit_compile=BACKEND == "jax"):
    lm = ReformerCausalLM(_backbone())
    lm.compile(optimizer="adam", jit_compile=jit_compile)
    return lm


def _ids(length, batch=2, seed=0):
    return (
        np.random.default_rng(seed + length)
        .integers(0, VOCABULARY, size=(batch, length))
        .astype("int32")
    )


def _none_length_dataset(lengths):
    """A tf.data pipeline of (ids, ids) batches whose element spec has a None length."""
    tf = pytest.importorskip("tensorflow")
    spec = tf.TensorSpec((None, None), tf.int32)
    return tf.data.Dataset.from_generator(
        lambda: ((_ids(n), _ids(n)) for n in lengths), output_signature=(spec, spec)
    )


@pytest.fixture(scope="module")
def lm():
    # One model for the tests below: on TensorFlow every new trace of a step
    # costs seconds, and a step traced once with a None length serves them all.
    return _language_model()


def test_evaluate_then_predict_at_other_lengths(lm):
    for length in (32, 40):  # on TensorFlow, 40 is traced with a None length
        loss = lm.evaluate(_ids(length), _ids(length), batch_size=2, verbose=0)
        assert np.all(np.isfinite(loss))
    for length in LENGTHS:
        x = _ids(length)
        assert_allclose(lm.predict(x, verbose=0), to_numpy(lm(x)), atol=1e-5)
    # A padded row equals that sequence alone.
    x, mask = _ids(40), np.ones((2, 40), "int32")
    mask[1, 21:] = 0
    padded = lm.predict({"token_ids": x, "padding_mask": mask}, verbose=0)
    assert_allclose(padded[1:, :21], to_numpy(lm(x[1:, :21])), atol=1e-5)


def test_generator_of_several_lengths(lm):
    def batches():
        for length in (12, 64):
            yield _ids(length), _ids(length)

    assert np.all(np.isfinite(lm.evaluate(batches(), steps=2, verbose=0)))


def test_tf_data_with_none_length(lm):
    lm.fit(_none_length_dataset((20, 36)), epochs=1, verbose=0)
    assert np.isfinite(lm.evaluate(_none_length_dataset((40, 12)), verbose=0)[0])
    for length in (40,):
        x = _none_length_dataset((length,)).map(lambda ids, _: ids)
        assert_allclose(lm.predict(x, verbose=0), to_numpy(lm(_ids(length))), atol=1e-5)


def test_too_long_sequences_raise_in_every_entry_point(lm):
    if BACKEND == "tensorflow":  # the next traces have a None length
        for length in (20, 30):
            lm.predict(_ids(length), verbose=0)
            lm.evaluate(_ids(length), _ids(length), verbose=0)
    too_long = _ids(MAX_LENGTH + 1)
    for run in (
        lambda: lm(too_long),
        lambda: lm.backbone(too_long),
        lambda: lm.predict(too_long, verbose=0),
        lambda: lm.evaluate(too_long, too_long, verbose=0),
        lambda: lm.fit(too_long, too_long, verbose=0),
        lambda: lm.train_on_batch(too_long, too_long),
        lambda: lm.predict_on_batch(too_long),
    ):
        with pytest.raises(ValueError, match="max_sequence_length"):
            run()


def test_too_long_sequences_in_a_none_length_pipeline_raise(lm):
    tf = pytest.importorskip("tensorflow")
    # TensorFlow checks the run-time length in the graph; JAX and torch trace
    # (or run) every batch with its length known, and raise a ValueError.
    expected = (ValueError, tf.errors.InvalidArgumentError)
    ids = _ids(12)
    before = to_numpy(lm(ids))
    with pytest.raises(expected, match="max_sequence_length"):
        lm.evaluate(_none_length_dataset((MAX_LENGTH + 1, 20)), verbose=0)
    with pytest.raises(expected, match="max_sequence_length"):
        lm.fit(_none_length_dataset((MAX_LENGTH + 3,)), epochs=1, verbose=0)
    with pytest.raises(expected, match="max_sequence_length"):
        lm.predict(_none_length_dataset((MAX_LENGTH + 2,)).map(lambda x, _: x), verbose=0)
    # The failed first steps leave the model as it was, and usable (on JAX,
    # Keras' trainer had detached its variables: backend.variables_kept_on_error).
    assert_allclose(to_numpy(lm(ids)), before, atol=1e-6)
    assert np.isfinite(lm.evaluate(_none_length_dataset((20,)), verbose=0)[0])
    with pytest.raises(expected, match="max_sequence_length"):  # checked batch by batch
        lm.fit(((_ids(n), _ids(n)) for n in (20, 30, MAX_LENGTH + 1)), verbose=0)


@tf_only
def test_too_long_sequences_in_a_pipeline_raise_under_xla():
    # XLA drops the assertions of a step traced with a None length; the
    # pipeline's own check (outside XLA) still raises.
    import tensorflow as tf

    lm = _language_model(jit_compile=True)
    assert np.isfinite(lm.evaluate(_none_length_dataset((20, 30)), verbose=0)[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_sequence_length"):
        lm.evaluate(_none_length_dataset((20, MAX_LENGTH + 1)), verbose=0)


# --- Layers and ops in TensorFlow graphs traced with a None length ---------


def _traced_with_none_length(fn, *arrays, jit_compile=False):
    """`fn` as a tf.function for arrays like `arrays`, with axis 1 unknown."""
    import tensorflow as tf

    specs = [tf.TensorSpec((None, None) + a.shape[2:], tf.as_dtype(a.dtype)) for a in arrays]
    return tf.function(fn, input_signature=specs, autograph=False, jit_compile=jit_compile)


@tf_only
@pytest.mark.parametrize("layer_class", [LocalSelfAttention, LSHSelfAttention])
def test_attention_with_none_length_equals_known_length(layer_class):
    extra = {"num_buckets": 4, "num_hashes": 2} if layer_class is LSHSelfAttention else {}
    layer = layer_class(num_heads=2, key_dim=8, chunk_length=8, causal=True, seed=2, **extra)
    traced = _traced_with_none_length(
        lambda a, m: layer(a, padding_mask=m),
        np.zeros((2, 1, 16), "float32"),
        np.ones((2, 1), "int32"),
    )
    for length in (5, 8, 21, 32):
        x = np.random.default_rng(length).normal(size=(2, length, 16)).astype("float32")
        mask = np.ones((2, length), "int32")
        mask[0, length // 2 :] = 0
        expected = to_numpy(layer(x, padding_mask=mask))
        assert_allclose(to_numpy(traced(x, mask)), expected, atol=1e-5)


@tf_only
def test_lsh_without_num_buckets_needs_a_known_length():
    layer = LSHSelfAttention(num_heads=2, key_dim=8, chunk_length=8)
    x = np.ones((1, 20, 16), "float32")
    layer(x)  # a known length picks its own bucket count
    with pytest.raises(ValueError, match="num_buckets"):
        _traced_with_none_length(layer, x)(x)


@tf_only
def test_scan_sequence_chunks_with_none_length():
    def run(x):
        return scan_sequence_chunks(
            lambda carry, start, chunk: (
                carry + keras.ops.sum(chunk),
                (2 * chunk + keras.ops.cast(start, chunk.dtype),),
            ),
            keras.ops.zeros(()),
            (x,),
            chunk_length=4,
        )

    traced = _traced_with_none_length(run, np.zeros((1, 1, 2), "float32"))
    for length in (3, 8, 10):
        x = np.arange(2 * length, dtype="float32").reshape(1, length, 2)
        (total, (doubled,)), (expected_total, (expected,)) = traced(x), run(x)
        assert_allclose(to_numpy(total), to_numpy(expected_total))
        assert_allclose(to_numpy(doubled), to_numpy(expected))


@tf_only
def test_hash_buckets_in_blocks_with_none_length():
    rotations = np.random.default_rng(0).normal(size=(2, 4, 3, 4)).astype("float32")
    for length in (5, 24):
        vectors = np.random.default_rng(length).normal(size=(1, 2, length, 4)).astype("float32")
        expected = to_numpy(hash_buckets(vectors, rotations, max_rotated_values=48))
        by_position = np.transpose(vectors, (0, 2, 1, 3))
        traced = _traced_with_none_length(
            lambda v: hash_buckets(
                keras.ops.transpose(v, (0, 2, 1, 3)), rotations, max_rotated_values=48
            ),
            by_position,
        )
        np.testing.assert_array_equal(to_numpy(traced(by_position)), expected)


@tf_only
def test_reversible_lsh_training_step_with_none_length_under_xla():
    import tensorflow as tf

    stack = ReversibleSequence(
        [
            ReversibleBlock(
                PreLayerNorm(
                    LSHSelfAttention(
                        num_heads=2,
                        key_dim=8,
                        chunk_length=16,
                        num_buckets=4,
                        num_hashes=2,
                        causal=True,
                        seed=1,
                    )
                ),
                PreLayerNorm(ChunkedFeedForward(32, chunk_length=16)),
            )
        ]
    )

    def loss_and_grads(x, mask):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(stack(x, padding_mask=mask, training=True) ** 2)
        return loss, tape.gradient(loss, stack.trainable_variables)

    x = np.random.default_rng(0).normal(size=(2, 40, 32)).astype("float32")
    mask = np.ones((2, 40), "int32")
    mask[1, 30:] = 0
    stack(x[:, :8])  # build
    states = [to_numpy(v) for v in stack.non_trainable_variables]
    xla = _traced_with_none_length(loss_and_grads, x, mask, jit_compile=True)
    loss, grads = xla(x, mask)
    for variable, state in zip(stack.non_trainable_variables, states):
        variable.assign(state)  # the same rotations and masks again
    expected_loss, expected_grads = loss_and_grads(x, mask)
    assert_allclose(loss, expected_loss, rtol=1e-4)
    for grad, expected in zip(grads, expected_grads):
        assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
