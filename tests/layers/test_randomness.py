"""The randomness module: seeds, seed-state saving and re-drawing."""

import keras
import numpy as np
import pytest

from keras_reformer.layers import ChunkedFeedForward
from keras_reformer.layers import LSHSelfAttention
from keras_reformer.layers.randomness import MAX_SEED
from keras_reformer.layers.randomness import SeededDropout
from keras_reformer.layers.randomness import concrete_seed
from keras_reformer.layers.randomness import derive_seed
from keras_reformer.layers.randomness import redraw_seed_states
from tests.test_case import to_numpy


def test_derived_seeds_are_deterministic_distinct_and_in_range():
    seeds = [derive_seed(seed, stream) for seed in (0, 1, 2, MAX_SEED) for stream in range(50)]
    assert seeds == [
        derive_seed(seed, stream) for seed in (0, 1, 2, MAX_SEED) for stream in range(50)
    ]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert derive_seed(None, 3) is None


def test_concrete_seed_keeps_a_given_seed_and_draws_one_for_none():
    assert concrete_seed(17) == 17
    keras.utils.set_random_seed(0)
    first = concrete_seed(None)
    keras.utils.set_random_seed(0)
    assert concrete_seed(None) == first and 0 <= first <= MAX_SEED


def test_unseeded_dropout_depends_on_its_state_not_on_global_random_state():
    layer = SeededDropout(0.5)
    x = np.ones((4, 64), "float32")
    state = to_numpy(layer.seed_generator.state)
    keras.utils.set_random_seed(1)
    first = to_numpy(layer(x, training=True))
    layer.seed_generator.state.assign(state)
    keras.utils.set_random_seed(2)  # torch's global generator among others
    np.testing.assert_array_equal(to_numpy(layer(x, training=True)), first)


def test_seeded_dropout_config_keeps_the_given_seed():
    assert SeededDropout(0.1).get_config()["seed"] is None
    restored = SeededDropout.from_config(SeededDropout(0.1, seed=4).get_config())
    assert restored.get_config()["seed"] == 4


def built_attention():
    layer = LSHSelfAttention(num_heads=1, key_dim=4, chunk_length=4, num_hashes=2, dropout=0.1)
    layer(np.ones((1, 8, 4), "float32"), training=True)
    return layer


def test_seed_states_are_written_after_the_weights_and_read_back():
    layer = built_attention()
    store = {}
    layer.save_own_variables(store)
    assert sorted(k for k in store if k.startswith("seed")) == [
        "seed_generator_state_0",
        "seed_generator_state_1",
    ]
    other = built_attention()
    other.load_own_variables(store)
    for expected, actual in zip(layer._own_seed_generators(), other._own_seed_generators()):
        np.testing.assert_array_equal(to_numpy(actual.state), to_numpy(expected.state))


def test_a_store_without_seed_states_keeps_the_states():
    # A file written before seed states were saved.
    other = built_attention()
    states = [to_numpy(g.state) for g in other._own_seed_generators()]
    other.load_own_variables({})
    for expected, generator in zip(states, other._own_seed_generators()):
        np.testing.assert_array_equal(to_numpy(generator.state), expected)


def test_a_store_with_another_number_of_seed_states_is_refused():
    layer = built_attention()
    store = {}
    layer.save_own_variables(store)
    del store["seed_generator_state_1"]
    with pytest.raises(ValueError, match="seed generators"):
        built_attention().load_own_variables(store)


def test_redraw_changes_only_seed_states():
    layer = ChunkedFeedForward(8, dropout=0.1)
    layer.build((1, 4, 4))
    before = [to_numpy(v) for v in layer.variables]
    redraw_seed_states(layer.variables, keras.random.SeedGenerator(0))
    after = [to_numpy(v) for v in layer.variables]
    changed = ["seed_generator_state" in v.path for v in layer.variables]
    assert changed.count(True) == 1
    for is_seed, b, a in zip(changed, before, after):
        assert (not np.array_equal(b, a)) == is_seed
