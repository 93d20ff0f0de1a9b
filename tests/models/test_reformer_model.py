import keras
import numpy as np
import pytest

from keras_reformer.models import ReformerModel
from keras_reformer.models.input_checks import check_token_inputs
from tests.model_testing import run_backbone_test
from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import run_model_saving_test
from tests.test_case import to_numpy

SMALL = dict(
    vocabulary_size=32,
    num_layers=2,
    hidden_dim=16,
    num_heads=2,
    chunk_length=8,
    feed_forward_chunk_length=16,
    num_hashes=2,
    max_sequence_length=64,
    seed=3,
)


def small_model(**overrides):
    return ReformerModel(**{**SMALL, **overrides})


def token_data(batch=2, length=40, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(0, 32, size=(batch, length)).astype("int32"),
        "padding_mask": np.ones((batch, length), dtype="int32"),
    }


# The contract's models: LSH and local attention in the reversible stack; full
# and local attention with separate QK in residual blocks (the Transformer
# baseline, one stream), with dropout. (The learned position embedding is the
# causal LM contract's, tests/models/test_reformer_causal_lm.py.)
CONTRACT_MODELS = {
    "lsh_local_axial": dict(attention_layers=["lsh", "local"]),
    "full_local_residual_sinusoidal_dropout": dict(
        attention_layers=["full", "local"],
        shared_qk=False,
        reversible=False,
        causal=True,
        position_embedding="sinusoidal",
        dropout=0.1,
    ),
}


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_backbone_contract(name, tmp_path):
    kwargs = {**SMALL, **CONTRACT_MODELS[name]}
    reversible = kwargs.get("reversible", True)
    # The task contracts' lengths, hidden size and chunks: JAX's eager calls
    # reuse the ops compiled for these shapes.
    data = token_data(length=32)
    data["padding_mask"][1, 27:] = 0
    run_backbone_test(
        ReformerModel,
        kwargs,
        data,
        expected_output_shape=(2, 32, SMALL["hidden_dim"] * (2 if reversible else 1)),
        # One token, and not a whole number of chunks (the residual model, the
        # latter: each new length costs JAX seconds of compiling its ops).
        other_lengths=(1, 17) if reversible else (17,),
        # Mixed precision casts in the reversible stack; residual blocks are
        # plain Keras layers (trained in bfloat16 in test_transformer_baselines.py).
        run_mixed_precision=reversible,
        tmp_path=tmp_path,
    )


def test_padding_mask_is_optional():
    model = small_model()
    data = token_data()
    assert_allclose(model(data["token_ids"]), model(data))


def test_padded_positions_do_not_change_real_outputs():
    model = small_model(causal=False)
    data = token_data(length=40)
    data["padding_mask"][:, 30:] = 0
    other = {k: v.copy() for k, v in data.items()}
    other["token_ids"][:, 30:] = (other["token_ids"][:, 30:] + 7) % 32
    assert_allclose(model(data)[:, :30], model(other)[:, :30], rtol=1e-5, atol=1e-5)


def test_correct_duplicates_reaches_every_lsh_layer_and_survives_saving(tmp_path):
    model = small_model(
        correct_duplicates=True, attention_layers=["lsh", "local", "lsh"], num_layers=3
    )
    lsh_layers = [
        layer for layer in model._flatten_layers() if layer.__class__.__name__ == "LSHSelfAttention"
    ]
    assert len(lsh_layers) == 2 and all(layer.correct_duplicates for layer in lsh_layers)
    assert ReformerModel.from_config(model.get_config()).get_config()["correct_duplicates"]
    plain = small_model(attention_layers=["lsh", "local", "lsh"], num_layers=3)
    plain.set_weights(model.get_weights())
    data = token_data(length=64)
    assert np.abs(to_numpy(model(data)) - to_numpy(plain(data))).max() > 1e-4
    run_model_saving_test(model, data, tmp_path)


def test_summary_shows_the_structure():
    lines = []
    small_model().summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    for name in ("token_embedding", "position_embedding", "reversible_stack", "output_norm"):
        assert name in text


def test_fit_with_jit_compile_trains():
    # One block: the walk back over several blocks under jit_compile is the
    # overfitting test's (tests/models/test_reformer_causal_lm.py).
    model = small_model(dropout=0.1, num_layers=1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="mse",
        jit_compile=BACKEND in ("jax", "tensorflow"),
    )
    data = token_data()
    target = np.random.default_rng(1).normal(size=(2, 40, 32)).astype("float32")
    history = model.fit(data, target, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]


def test_fit_on_bare_token_ids_equals_fit_with_an_all_ones_mask():
    # On JAX, `fit` reaches `call` without `__call__`: the mask is completed there too.
    ids = np.random.default_rng(0).integers(0, 16, size=(2, 8)).astype("int32")
    target = np.random.default_rng(1).normal(size=(2, 8, 16)).astype("float32")  # 2 x hidden
    losses = []
    for x in (ids, {"token_ids": ids, "padding_mask": np.ones_like(ids)}):
        keras.utils.set_random_seed(0)
        model = ReformerModel(
            vocabulary_size=16,
            num_layers=1,
            hidden_dim=8,
            num_heads=1,
            key_dim=4,
            chunk_length=4,
            max_sequence_length=16,
            seed=0,
        )
        model.compile(optimizer="sgd", loss="mse")
        losses.append(model.fit(x, target, verbose=0).history["loss"][0])
    assert np.isfinite(losses[0]) and losses[0] == losses[1]


def test_bad_inputs_say_what_was_wrong():
    model = small_model()
    data = token_data()
    with pytest.raises(ValueError, match="token_ids"):
        model({**data, "token_ids": data["token_ids"] + 100})
    with pytest.raises(ValueError, match="max_sequence_length"):
        model(token_data(length=65))
    with pytest.raises(ValueError, match="padding_mask"):
        model({**data, "padding_mask": np.ones((2, 39), "int32")})


def test_token_value_checks_can_be_left_to_a_later_call():
    ids = np.full((1, 4), 32, "int32")  # out of range for a vocabulary of 32
    with pytest.raises(ValueError, match="vocabulary_size"):
        check_token_inputs(ids, 32, 8)
    completed = check_token_inputs(ids, 32, 8, check_values=False)
    np.testing.assert_array_equal(completed["padding_mask"], np.ones((1, 4)))
    with pytest.raises(ValueError, match="max_sequence_length"):  # shapes still checked
        check_token_inputs(np.zeros((1, 9), "int32"), 32, 8, check_values=False)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("vocabulary_size", 0),
        ("num_layers", -1),
        ("hidden_dim", 0),
        ("num_heads", 0),
        ("chunk_length", 0),
        ("max_sequence_length", 0),
        ("attention_layers", "dense"),
        ("attention_layers", ["lsh"]),
        ("position_embedding", "rope"),
    ],
)
def test_bad_arguments_name_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        small_model(**{argument: value})


@pytest.mark.parametrize("max_length, expected", [(4096, 128), (16384, [16, 32])])
def test_long_models_factorise_their_buckets(max_length, expected):
    # 2 * 16384 / 64 = 512 buckets would rotate each token into 256 values, more
    # than the 128 keys it attends to: two factors, 16 + 32 values, instead.
    model = small_model(
        chunk_length=64,
        max_sequence_length=max_length,
        num_layers=2,
        attention_layers=["lsh", "lsh"],
    )
    assert model.get_config()["num_buckets"] == expected
    attention = model.get_layer("reversible_stack").blocks[0].f.layer
    assert attention.num_buckets == expected
