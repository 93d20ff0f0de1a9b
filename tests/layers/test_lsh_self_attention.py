import keras
import numpy as np
import pytest

from keras_reformer.layers import LSHSelfAttention
from keras_reformer.ops import hash_buckets
from tests.gradients import gradients
from tests.ops.attention_reference import check_against_full_attention
from tests.ops.attention_reference import forward
from tests.ops.attention_reference import full_shared_qk_attention
from tests.ops.attention_reference import layer_function
from tests.ops.attention_reference import layer_kernels
from tests.test_case import assert_allclose
from tests.test_case import run_layer_test
from tests.test_case import to_numpy


def _inputs(batch=2, length=16, d_model=12, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, d_model)).astype("float32")


@pytest.mark.parametrize("causal", [False, True])
def test_lsh_path_equals_full_attention_when_every_key_is_visible(causal):
    # One round, two chunks, each chunk sees both: every query meets every key
    # exactly once whatever the buckets, so LSH attention is full attention.
    layer = LSHSelfAttention(
        num_heads=2,
        key_dim=6,
        value_dim=5,
        chunk_length=8,
        num_hashes=1,
        num_buckets=4,
        causal=causal,
        lookback=1,
        lookahead=1,
        seed=3,
    )
    check_against_full_attention(layer, _inputs(length=16), causal)


def test_factorised_buckets_equal_full_attention_when_every_key_is_visible():
    # The same setting with 2 x 4 factorised buckets: checks the plumbing
    # (rotation shape, bucket range) forward and backward.
    layer = LSHSelfAttention(
        num_heads=2,
        key_dim=6,
        chunk_length=8,
        num_hashes=1,
        num_buckets=[2, 4],
        causal=True,
        lookback=1,
        lookahead=1,
        seed=3,
    )
    check_against_full_attention(layer, _inputs(length=16), True)


def test_factorised_buckets_find_neighbours_as_well_as_whole_ones():
    # Clustered tokens (as in the hash-rounds test below): 4 x 4 factorised
    # buckets approximate full attention about as well as 16 whole ones.
    rng = np.random.default_rng(1)
    length, dim = 128, 16
    centers = rng.normal(size=(16, dim))
    eye = np.eye(dim, dtype="float32")
    errors = {}
    for num_buckets in (16, [4, 4]):
        layer = LSHSelfAttention(
            num_heads=1, key_dim=dim, chunk_length=8, num_hashes=4, num_buckets=num_buckets
        )
        layer.build((1, length, dim))
        layer.set_weights([16.0 * eye[:, None], eye[:, None], eye[None]])
        errors[str(num_buckets)] = []
        for trial in range(3):
            labels = np.random.default_rng(trial).integers(0, 16, size=(1, length))
            noise = np.random.default_rng(10 + trial).normal(size=(1, length, dim))
            x = (centers[labels] + 0.3 * noise).astype("float32")
            reference = to_numpy(full_shared_qk_attention(x, *layer_kernels(layer)))
            layer.rotation_seed_generator.state.assign(np.array([trial, 0]))
            errors[str(num_buckets)].append(
                np.mean(np.abs(to_numpy(forward(layer, x)) - reference))
            )
    whole, factorised = np.mean(errors["16"]), np.mean(errors["[4, 4]"])
    assert factorised < 1.5 * whole, errors


def test_lsh_path_equals_full_attention_with_padding():
    mask = np.ones((2, 16), "int32")
    mask[0, 11:] = 0
    mask[1, :3] = 0
    layer = LSHSelfAttention(
        num_heads=2, key_dim=6, chunk_length=8, num_hashes=1, lookback=1, lookahead=1, seed=3
    )
    check_against_full_attention(layer, _inputs(length=16), False, padding_mask=mask)


@pytest.mark.parametrize("length", [5, 8])
def test_short_sequence_equals_full_causal_attention(length):
    layer = LSHSelfAttention(num_heads=2, key_dim=4, chunk_length=8, causal=True, seed=0)
    check_against_full_attention(layer, _inputs(length=length), True)


def test_causality_through_gradients():
    length = 32
    layer = LSHSelfAttention(
        num_heads=2, key_dim=4, chunk_length=4, num_hashes=2, causal=True, seed=5
    )
    x = _inputs(batch=1, length=length, d_model=8)
    forward(layer, x)
    weights = [to_numpy(v) for v in layer.trainable_variables]
    fn = layer_function(layer)

    def loss(x, cotangent, *w):
        return keras.ops.sum(keras.ops.multiply(fn(x, *w), cotangent))

    for t in range(0, length, 3):
        cotangent = np.zeros(x.shape, "float32")
        cotangent[:, t] = 1.0
        _, (grad_x, *_) = gradients(loss, [x, cotangent] + weights)
        assert np.all(grad_x[:, t + 1 :] == 0.0), f"output {t} depends on a later input"
        assert np.abs(grad_x[:, : t + 1]).max() > 0


def _padding_invariance(length, causal, chunk_length=64, d_model=8, key_dim=4, heads=2):
    rng = np.random.default_rng(length)
    x = rng.normal(size=(2, length, d_model)).astype("float32")
    mask = np.ones((2, length), "int32")
    mask[0, (2 * length) // 3 + 1 :] = 0  # right padding
    mask[1, : length // 4] = 0  # left padding
    changed = np.where(mask[..., None] == 1, x, 7.0 * rng.normal(size=x.shape)).astype("float32")
    layer = LSHSelfAttention(
        num_heads=heads,
        key_dim=key_dim,
        chunk_length=chunk_length,
        num_hashes=2,
        causal=causal,
        seed=2,
    )
    layer.build(x.shape)
    for training in (False, True):
        state = [to_numpy(v) for v in layer.non_trainable_variables]
        y = to_numpy(forward(layer, x, padding_mask=mask, training=training))
        for variable, value in zip(layer.non_trainable_variables, state):
            variable.assign(value)  # the same rotations for the second call
        y_changed = to_numpy(forward(layer, changed, padding_mask=mask, training=training))
        assert y.shape == x.shape and np.all(np.isfinite(y))
        real = mask == 1
        assert_allclose(y_changed[real], y[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [1, 63, 64, 65])
@pytest.mark.parametrize("causal", [False, True])
def test_any_length_and_padding_content_is_ignored(length, causal):
    _padding_invariance(length, causal)


def test_trailing_padding_does_not_change_what_real_tokens_see():
    # Generation runs the model on a fixed-length buffer whose tail is padding;
    # the real tokens must come out as if the sequence ended with them.
    layer = LSHSelfAttention(
        num_heads=2, key_dim=4, chunk_length=8, num_hashes=4, num_buckets=8, causal=True, seed=3
    )
    x = _inputs(batch=1, length=70, d_model=8)
    mask = np.zeros((1, 70), "int32")
    mask[:, :21] = 1
    alone = forward(layer, x[:, :21])
    in_buffer = forward(layer, x, padding_mask=mask)
    assert_allclose(in_buffer[:, :21], alone, rtol=1e-5, atol=1e-5)


def test_long_sequence_of_1000():
    _padding_invariance(1000, causal=True, d_model=4, key_dim=2, heads=1)


def test_more_hash_rounds_approach_full_attention():
    # Clustered tokens and peaked attention (queries 16 x): attention mass lies
    # inside each cluster, which LSH finds; more rounds miss fewer neighbours.
    rng = np.random.default_rng(0)
    length, dim, rounds = 128, 16, (1, 2, 4, 8)
    centers = rng.normal(size=(16, dim))
    eye = np.eye(dim, dtype="float32")
    layers = {}
    for num_hashes in rounds:
        layer = LSHSelfAttention(num_heads=1, key_dim=dim, chunk_length=8, num_hashes=num_hashes)
        layer.build((1, length, dim))
        layer.set_weights([16.0 * eye[:, None], eye[:, None], eye[None]])
        layers[num_hashes] = layer
    errors = {r: [] for r in rounds}
    for trial in range(3):
        labels = rng.integers(0, 16, size=(1, length))
        x = (centers[labels] + 0.3 * rng.normal(size=(1, length, dim))).astype("float32")
        reference = to_numpy(full_shared_qk_attention(x, *layer_kernels(layers[1])))
        for num_hashes, layer in layers.items():
            layer.rotation_seed_generator.state.assign(np.array([trial, 0]))
            y = to_numpy(forward(layer, x))
            errors[num_hashes].append(np.mean(np.abs(y - reference)))
    mean = [np.mean(errors[r]) for r in rounds]
    assert mean[3] < 0.35 * mean[0], mean
    for fewer, more in zip(rounds, rounds[1:]):
        assert np.all(np.array(errors[more]) < np.array(errors[fewer]) * 1.05), errors


def _keys_seen_in_any_round(layer, x):
    """`(length, length)` booleans: the keys each query sees in at least one round.

    Recomputed in numpy from the layer's buckets (inference rotations): each
    round sorts by (bucket, position), and a chunk sees itself and `lookback`
    previous / `lookahead` next chunks of its round.
    """
    length = x.shape[1]
    query_key = np.einsum("blm,mhd->bhld", x, layer_kernels(layer)[0])
    factors = layer._bucket_factors(length)
    rotations = layer._draw_rotations(
        (layer.num_heads, layer.key_dim, layer.num_hashes, sum(factors) // 2), training=False
    )
    buckets = to_numpy(
        hash_buckets(keras.ops.convert_to_tensor(query_key.astype("float32")), rotations, factors)
    )[0, 0]
    chunk = layer.chunk_length
    seen = np.zeros((length, length), bool)
    for round_buckets in buckets:
        order = np.lexsort((np.arange(length), round_buckets))  # by bucket, then position
        chunk_of = np.empty(length, int)
        chunk_of[order] = np.arange(length) // chunk
        distance = chunk_of[None, :] - chunk_of[:, None]  # key's chunk minus query's
        seen |= (distance >= -layer.lookback) & (distance <= layer.lookahead)
    return seen


@pytest.mark.parametrize("causal", [False, True])
def test_corrected_duplicates_make_one_softmax_over_the_keys_seen(causal):
    # Paper, appendix A: with log N_ij subtracted, the combined rounds are
    # exactly attention over the union of the keys seen in any round, each
    # counted once; without it, keys seen in several rounds weigh more.
    x = _inputs(batch=1, length=48, d_model=8, seed=2)
    kwargs = dict(
        num_heads=1, key_dim=6, chunk_length=4, num_hashes=3, num_buckets=4, causal=causal, seed=5
    )
    layer = LSHSelfAttention(correct_duplicates=True, **kwargs)
    layer.build(x.shape)
    seen = _keys_seen_in_any_round(layer, x)
    assert 0 < seen.sum() < seen.size  # a real subset, not full attention
    check_against_full_attention(layer, x, causal, allowed=seen)

    plain = LSHSelfAttention(**kwargs)
    plain.build(x.shape)
    plain.set_weights(layer.get_weights())
    reference = to_numpy(
        full_shared_qk_attention(x, *layer_kernels(layer), causal=causal, allowed=seen)
    )
    assert np.abs(to_numpy(forward(plain, x)) - reference).max() > 1e-3


def test_seeds_training_and_inference():
    x = _inputs(batch=1, length=40, d_model=8)
    kwargs = dict(num_heads=2, key_dim=4, chunk_length=8, num_hashes=2, seed=11)
    a, b = LSHSelfAttention(**kwargs), LSHSelfAttention(**kwargs)
    c = LSHSelfAttention(**{**kwargs, "seed": 12})
    for layer in (a, b, c):
        layer.build(x.shape)
        layer.set_weights(a.get_weights())
    # A different seed hashes differently.
    assert np.abs(to_numpy(forward(c, x)) - to_numpy(forward(a, x))).max() > 1e-4
    # Same seed and weights: same training output.
    assert_allclose(forward(a, x, training=True), forward(b, x, training=True), rtol=0, atol=0)
    # Fresh rotations on every training call.
    first = to_numpy(forward(a, x, training=True))
    second = to_numpy(forward(a, x, training=True))
    assert np.abs(first - second).max() > 1e-4
    # Inference is deterministic and leaves the generators alone.
    state = [to_numpy(v) for v in a.non_trainable_variables]
    assert_allclose(forward(a, x), forward(a, x), rtol=0, atol=0)
    assert_allclose(a(x), forward(a, x), rtol=1e-6, atol=1e-6)  # eager too
    for variable, value in zip(a.non_trainable_variables, state):
        np.testing.assert_array_equal(to_numpy(variable), value)


def test_stateless_call_replays_rotations_and_dropout():
    x = _inputs(batch=1, length=40, d_model=8)
    layer = LSHSelfAttention(num_heads=2, key_dim=4, chunk_length=8, dropout=0.3, seed=4)
    layer.build(x.shape)
    trainable = [v.value for v in layer.trainable_variables]
    snapshot = [v.value * 1 for v in layer.non_trainable_variables]  # copies
    y1, state1 = layer.stateless_call(trainable, snapshot, x, training=True)
    y2, state2 = layer.stateless_call(trainable, snapshot, x, training=True)
    assert_allclose(y1, y2, rtol=0, atol=0)
    y3, _ = layer.stateless_call(trainable, state1, x, training=True)
    assert np.abs(to_numpy(y3) - to_numpy(y1)).max() > 1e-4


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_outputs_and_gradients_are_finite(policy):
    x = 3.0 * _inputs(batch=2, length=40, d_model=8)
    mask = np.ones((2, 40), "int32")
    mask[1, 25:] = 0
    layer = LSHSelfAttention(
        num_heads=2, key_dim=4, chunk_length=8, causal=True, seed=0, dtype=policy
    )
    y = forward(layer, x, padding_mask=mask)
    assert keras.backend.standardize_dtype(y.dtype) == keras.DTypePolicy(policy).compute_dtype
    assert np.all(np.isfinite(to_numpy(y)))
    weights = [to_numpy(v) for v in layer.trainable_variables]
    fn = layer_function(layer, training=True, padding_mask=mask)
    value, grads = gradients(
        lambda x, *w: keras.ops.sum(keras.ops.cast(fn(x, *w), "float32")), [x] + weights
    )
    assert np.isfinite(value)
    for grad in grads:
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


@pytest.mark.parametrize(
    "policy, tolerance", [("float32", 1e-5), ("mixed_float16", 2e-2), ("mixed_bfloat16", 5e-2)]
)
def test_a_token_that_sees_only_itself_gets_its_own_value(policy, tolerance):
    # The first token of a causal sequence sees itself in every hash round;
    # combining the rounds must give its value once (not num_hashes times, as a
    # rounded logsumexp of the self-mask value did in half precision).
    x = _inputs(batch=2, length=40, d_model=8)
    layer = LSHSelfAttention(
        num_heads=2, key_dim=4, chunk_length=8, num_hashes=4, causal=True, seed=0, dtype=policy
    )
    y = to_numpy(keras.ops.cast(forward(layer, x), "float32"))
    _, value_kernel, output_kernel = layer_kernels(layer)
    own_value = np.einsum("bm,mhd,hde->be", x[:, 0], value_kernel, output_kernel)
    assert_allclose(y[:, 0], own_value, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_heads": 0}, "num_heads"),
        ({"key_dim": -1}, "key_dim"),
        ({"chunk_length": 0}, "chunk_length"),
        ({"num_hashes": 0}, "num_hashes"),
        ({"num_buckets": 3}, "num_buckets"),
        ({"num_buckets": 1}, "num_buckets"),
        ({"num_buckets": [4, 3]}, "num_buckets"),
        ({"num_buckets": []}, "num_buckets"),
        ({"num_buckets": "8"}, "num_buckets"),
        ({"lookback": -1}, "lookback"),
        ({"lookahead": -2}, "lookahead"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"correct_duplicates": 1}, "correct_duplicates"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LSHSelfAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def test_bad_padding_mask_raises():
    layer = LSHSelfAttention(num_heads=2, key_dim=4, chunk_length=8)
    with pytest.raises(ValueError, match="padding_mask"):
        layer(_inputs(length=16), padding_mask=np.ones((2, 15), "int32"))


def test_layer_harness(tmp_path):
    mask = np.ones((2, 20), "int32")
    mask[1, 14:] = 0
    run_layer_test(
        LSHSelfAttention,
        dict(
            num_heads=2,
            key_dim=4,
            chunk_length=8,
            num_hashes=2,
            num_buckets=[2, 4],
            causal=True,
            dropout=0.1,
            use_bias=True,
            seed=1,
            correct_duplicates=True,
        ),
        _inputs(length=20, d_model=6),
        (2, 20, 6),
        call_kwargs={"padding_mask": mask},
        tmp_path=tmp_path,
    )
