"""Constructor arguments and call inputs: accepted and working, or a ValueError
that names the argument and the value received.

A property-based sweep (hypothesis, derandomized) over the public layers and
models, and the cases of issue 15, point 8.
"""

import json

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_reformer.argument_checks import MAX_SEED
from keras_reformer.layers import ChunkedFeedForward
from keras_reformer.layers import LocalSelfAttention
from keras_reformer.layers import LSHSelfAttention
from keras_reformer.layers import PreLayerNorm
from keras_reformer.layers import ReversibleBlock
from keras_reformer.layers import ReversibleSequence
from keras_reformer.models import ReformerCausalLM
from keras_reformer.models import ReformerClassifier
from keras_reformer.models import ReformerModel
from tests.test_case import to_numpy

SWEEP = settings(
    max_examples=16,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# Values that no argument of these constructors should take silently.
BAD_VALUES = [0, -1, -5, 1.5, float("nan"), float("inf"), "3", "False", 2**31, 2**40, [3], True]

MODEL_ARGUMENTS = dict(
    vocabulary_size=[2, 16, np.int64(16)],
    num_layers=[1, 2],
    hidden_dim=[4, np.int32(8)],
    num_heads=[1, 2],
    key_dim=[None, 2, 4],
    intermediate_dim=[None, 8],
    chunk_length=[2, 4, 8],
    num_hashes=[1, 2],
    num_buckets=[None, 2, np.int64(4), [2, 2]],
    causal=[False, True, np.bool_(True)],
    dropout=[0.0, 0.1, np.float32(0.2)],
    max_sequence_length=[8, 16, 32],
    attention_layers=["lsh", "local", "full"],
    position_embedding=["axial", "learned", "sinusoidal"],
    lookback=[0, 1],
    lookahead=[0, 1],
    feed_forward_chunk_length=[2, 8],
    layer_norm_epsilon=[1e-6, 1e-3],
    tie_weights=[True, False],
    seed=[None, 0, 5, MAX_SEED],
    correct_duplicates=[False, True],
    shared_qk=[True, False],
    reversible=[True, False],
)


def _valid_for(name, value):
    """Whether a value of BAD_VALUES happens to be valid for `name`."""
    if name in ("lookback", "lookahead"):
        return value == 0 and not isinstance(value, bool)
    if name in ("causal", "tie_weights", "correct_duplicates", "shared_qk", "reversible"):
        return isinstance(value, bool)
    if name == "seed":
        return value == 0 and not isinstance(value, bool)
    return False


@st.composite
def arguments(draw, choices):
    """One valid value per argument; in most examples one of them replaced by a bad one."""
    kwargs = {name: draw(st.sampled_from(values)) for name, values in choices.items()}
    broken = draw(st.sampled_from([None, None] + sorted(choices)))
    if broken is not None:
        value = draw(st.sampled_from(BAD_VALUES))
        if not _valid_for(broken, value):
            kwargs[broken] = value
        else:
            broken = None
    return kwargs, broken


def assert_names(error, name):
    message = str(error)
    assert f"`{name}`" in message or f"{name}=" in message, (name, message)


def _token_data(batch, length, vocabulary_size, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32")
    mask = np.ones((batch, length), "int32")
    if batch > 1:
        mask[1, length // 2 :] = 0
    if batch > 2:
        mask[2] = 0
    return {"token_ids": ids, "padding_mask": mask}


@SWEEP
@given(
    arguments(MODEL_ARGUMENTS), st.integers(0, 3), st.sampled_from([0, 1, 7, 17, 40]), st.booleans()
)
def test_model_arguments_and_inputs_work_or_name_what_is_wrong(drawn, batch, length, training):
    kwargs, broken = drawn
    if isinstance(kwargs["attention_layers"], str) and broken not in (
        "attention_layers",
        "num_layers",
    ):
        kwargs["attention_layers"] = [kwargs["attention_layers"]] * kwargs["num_layers"]
    if broken is None and kwargs["shared_qk"] is False and "lsh" in kwargs["attention_layers"]:
        broken = "shared_qk"  # LSH needs shared queries and keys
    try:
        model = ReformerModel(**kwargs)
    except ValueError as error:
        assert broken is not None, error
        assert_names(error, broken)
        return
    assert broken is None, f"{broken}={kwargs[broken]!r} was accepted"
    json.dumps(model.get_config())  # every value stored as a plain Python value
    data = _token_data(batch, length, int(kwargs["vocabulary_size"]), seed=length)
    if batch == 0 or length == 0:
        with pytest.raises(ValueError, match="token_ids"):
            model(data)
    elif length > kwargs["max_sequence_length"]:
        with pytest.raises(ValueError, match="max_sequence_length"):
            model(data)
    else:
        hidden = to_numpy(model(data, training=training))
        width = int(kwargs["hidden_dim"]) * (2 if kwargs["reversible"] else 1)
        assert hidden.shape == (batch, length, width)
        assert np.isfinite(hidden).all()


ATTENTION_ARGUMENTS = dict(
    num_heads=[1, 2],
    key_dim=[2, np.int64(4)],
    value_dim=[None, 3],
    chunk_length=[2, 4],
    causal=[False, True],
    lookback=[0, 1],
    lookahead=[0, 1],
    dropout=[0.0, 0.1],
    use_bias=[False, True],
    seed=[None, 3, MAX_SEED],
)
LSH_ARGUMENTS = dict(
    ATTENTION_ARGUMENTS,
    num_hashes=[1, 2],
    num_buckets=[None, 2, [2, 2]],
    correct_duplicates=[False, True],
)
FEED_FORWARD_ARGUMENTS = dict(
    intermediate_dim=[1, 8], chunk_length=[None, 3], dropout=[0.0, 0.1], seed=[None, 2]
)
LAYERS = {
    "lsh": (LSHSelfAttention, LSH_ARGUMENTS),
    "local": (LocalSelfAttention, ATTENTION_ARGUMENTS),
    "feed_forward": (ChunkedFeedForward, FEED_FORWARD_ARGUMENTS),
}


@st.composite
def layer_arguments(draw):
    kind = draw(st.sampled_from(sorted(LAYERS)))
    kwargs, broken = draw(arguments(LAYERS[kind][1]))
    if kind == "feed_forward" and broken == "use_bias":
        broken = None
    return kind, kwargs, broken


@SWEEP
@given(layer_arguments(), st.integers(0, 2), st.sampled_from([0, 1, 5, 9]), st.booleans())
def test_layer_arguments_and_inputs_work_or_name_what_is_wrong(drawn, batch, length, training):
    kind, kwargs, broken = drawn
    layer_class = LAYERS[kind][0]
    try:
        layer = layer_class(**kwargs)
    except ValueError as error:
        assert broken is not None, error
        assert_names(error, broken)
        return
    assert broken is None, f"{broken}={kwargs[broken]!r} was accepted"
    json.dumps(layer.get_config())
    x = np.random.default_rng(length).normal(size=(batch, length, 6)).astype("float32")
    call_kwargs = {"training": training}
    if kind != "feed_forward":
        call_kwargs["padding_mask"] = np.ones((batch, length), "int32")
    if kind != "feed_forward" and (batch == 0 or length == 0):
        with pytest.raises(ValueError, match="inputs"):
            layer(x, **call_kwargs)
        return
    if batch == 0 or length == 0:
        return
    y = to_numpy(layer(x, **call_kwargs))
    assert y.shape == x.shape and np.isfinite(y).all()


SMALL = dict(
    vocabulary_size=16,
    num_layers=1,
    hidden_dim=8,
    num_heads=2,
    chunk_length=4,
    num_hashes=2,
    max_sequence_length=32,
)


@pytest.mark.parametrize(
    "name, value",
    [
        ("causal", "False"),
        ("causal", 1),
        ("key_dim", 0),
        ("intermediate_dim", 0),
        ("layer_norm_epsilon", -1),
        ("layer_norm_epsilon", 0.0),
        ("seed", -5),
        ("seed", 1.5),
        ("seed", 2**31 - 1),
        ("seed", 2**40),
        ("dropout", -0.1),
        ("num_heads", 16),
        ("tie_weights", "yes"),
        ("num_buckets", 3),
    ],
)
def test_model_arguments_are_named_with_the_value_received(name, value):
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        ReformerModel(**{**SMALL, name: value})
    assert f"{name}={value!r}" in str(error.value)


@pytest.mark.parametrize("layer_class", [LocalSelfAttention, LSHSelfAttention])
def test_attention_refuses_string_booleans_and_out_of_range_seeds(layer_class):
    with pytest.raises(ValueError, match="causal='False'"):
        layer_class(num_heads=1, key_dim=2, causal="False")
    with pytest.raises(ValueError, match=r"\[0, 2147483646\]"):
        layer_class(num_heads=1, key_dim=2, seed=2**31 - 1)
    with pytest.raises(ValueError, match="seed"):
        ChunkedFeedForward(4, seed=-1)
    with pytest.raises(ValueError, match="epsilon=-1"):
        PreLayerNorm(layer_class(num_heads=1, key_dim=2), epsilon=-1)
    with pytest.raises(ValueError, match="seed=1.5"):
        ReversibleSequence(
            [ReversibleBlock(keras.layers.Dense(2), keras.layers.Dense(2))], seed=1.5
        )


def test_numpy_scalars_are_accepted_as_python_values():
    model = ReformerModel(
        **{
            **SMALL,
            "hidden_dim": np.int64(8),
            "num_heads": np.int32(2),
            "seed": np.int64(MAX_SEED),
            "dropout": np.float32(0.1),
            "causal": np.bool_(True),
        }
    )
    config = model.get_config()
    json.dumps(config)
    assert type(config["hidden_dim"]) is int and config["seed"] == MAX_SEED
    out = to_numpy(model(np.ones((1, 5), "int32"), training=True))
    assert np.isfinite(out).all()


def test_task_models_refuse_float_ids_like_the_backbone():
    backbone = ReformerModel(**SMALL)
    floats = np.array([[3.7, 1.0, 2.0]])
    for model in (backbone, ReformerClassifier(backbone, num_classes=2)):
        with pytest.raises(ValueError, match="token_ids"):
            model(floats)


def test_empty_batches_and_sequences_are_refused_with_the_shape():
    lm = ReformerCausalLM(ReformerModel(**SMALL, causal=True))
    for shape in [(0, 4), (2, 0)]:
        with pytest.raises(ValueError, match=rf"token_ids.*{shape[0]}, {shape[1]}"):
            lm(np.zeros(shape, "int32"))


def test_generate_reads_a_1d_prompt_as_one_prompt():
    lm = ReformerCausalLM(ReformerModel(**SMALL, causal=True, seed=1))
    one = lm.generate(np.array([3, 4, 5]), max_length=8)
    assert one.shape == (8,)
    np.testing.assert_array_equal(one, lm.generate(np.array([[3, 4, 5]]), max_length=8)[0])
    np.testing.assert_array_equal(lm.generate([3, 4, 5], max_length=np.int64(8)), one)
    with pytest.raises(ValueError, match="prompt"):
        lm.generate(np.array([3.5, 4.0]), max_length=8)


@pytest.mark.parametrize("chunk_length", [2**31, 2**40])
def test_integer_arguments_beyond_int32_are_refused(chunk_length):
    # Positions and chunk arithmetic are int32: a chunk of 2^31 positions
    # would pad every sequence to 2^31 tokens (found by the sweep above).
    for build in (
        lambda: ReformerModel(
            vocabulary_size=2,
            num_layers=1,
            hidden_dim=4,
            num_heads=1,
            chunk_length=chunk_length,
            max_sequence_length=8,
        ),
        lambda: LSHSelfAttention(num_heads=1, key_dim=4, chunk_length=chunk_length),
        lambda: LocalSelfAttention(num_heads=1, key_dim=4, chunk_length=chunk_length),
    ):
        with pytest.raises(ValueError, match=f"chunk_length={chunk_length}"):
            build()
