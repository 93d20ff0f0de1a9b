"""Randomness of the Reformer's layers, in one place.

Every random draw of a keras_reformer layer (LSH rotations, attention and
feed-forward dropout, the embedding and head dropout of the models, the
reversible stack's re-drawing of its sublayers' seeds) is a pure function of
a `keras.random.SeedGenerator` state: a non-trainable variable of the layer.
Two promises follow, and this module keeps both:

1. **Replay.** The reversible stack passes every seed state into its custom
   gradient as an explicit input, so the backward recompute draws exactly the
   forward's masks and rotations. No layer here falls back to a framework's
   global generator (`concrete_seed`): Keras' dropout on torch uses torch's
   global RNG for a generator built with `seed=None`, which is neither saved
   nor an input of the custom gradient. (For a user's own unseeded layers
   inside the stack, `keras_reformer.backend.rng_state` / `replay_rng` capture
   and replay torch's global RNG.)
2. **Persistence.** Seed states are saved with the weights and restored on
   load (`SavesSeedStates`): in `.keras` files, `save_weights` and
   `keras.callbacks.BackupAndRestore` backups. A trained model therefore hashes
   with the same rotations after loading, under any backend, and a resumed
   training run draws the same masks and rotations as an uninterrupted one.
"""

import random

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import MAX_SEED

_SEED_STATE_KEY = "seed_generator_state_"


def concrete_seed(seed):
    """`seed`, or a fresh integer seed when it is `None`.

    A `SeedGenerator` built with `seed=None` starts from a random state, but
    Keras' torch dropout then ignores that state and draws from torch's global
    generator. A concrete integer keeps every draw a function of the saved,
    replayed state. Fresh seeds come from Python's `random`, which
    `keras.utils.set_random_seed` seeds.

    Args:
        seed: an int in `[0, MAX_SEED]`, or `None`.

    Returns:
        An int in `[0, MAX_SEED]`.
    """
    return random.randint(0, MAX_SEED) if seed is None else seed


def derive_seed(seed, stream):
    """An independent seed for one of several random streams of a seed.

    Nearby seeds must not be handed to different layers: torch seeds its
    generator with the sum of the two state entries, so the states
    `[s, counter]` and `[s + 1, counter - 1]` would repeat each other's draws.
    The stream index is therefore mixed into the seed by an integer hash.

    Args:
        seed: an int in `[0, MAX_SEED]`, or `None`.
        stream: a non-negative int naming the stream.

    Returns:
        An int in `[0, MAX_SEED]`, or `None` when `seed` is `None`.
    """
    if seed is None:
        return None
    x = (seed * 0x9E3779B1 + stream * 0x85EBCA77 + 1) % 2**32
    for multiplier in (0x7FEB352D, 0x846CA68B):
        x = ((x ^ (x >> 16)) * multiplier) % 2**32
    return (x ^ (x >> 16)) % (MAX_SEED + 1)


class FixedSeed(keras.random.SeedGenerator):
    """A seed tensor that `keras.random.*` accepts as a seed on every backend.

    Keras' random functions take `SeedGenerator`s (only JAX takes raw
    tensors); this one has no state of its own and `next()` returns `value`.
    It skips `SeedGenerator.__init__` (no variable is created) and sets
    `_initial_seed`, the attribute that sends Keras' torch dropout to its
    seeded path instead of torch's global generator.

    Args:
        value: an integer tensor of two values, e.g. a `SeedGenerator.next()`.
    """

    def __init__(self, value):  # pylint: disable=super-init-not-called
        self._initial_seed = 0
        self._value = value

    def next(self, ordered=True):
        return self._value


def call_seed(generator, training):
    """The seed a call draws from: fresh in training, the current state otherwise.

    Training calls advance `generator`, so that each step draws anew; other
    calls read its state without advancing it, so that inference is
    deterministic (and equal after save / load).

    Args:
        generator: a `keras.random.SeedGenerator`.
        training: whether this is a training call.

    Returns:
        An integer tensor of two values.
    """
    return generator.next() if training else generator.state.value


def is_seed_state(variable):
    """Whether `variable` is the state of a `keras.random.SeedGenerator`."""
    return variable.name == "seed_generator_state" or variable.path.endswith("seed_generator_state")


def redraw_seed_states(variables, generator):
    """Assigns fresh seeds, drawn from `generator`, to the seed states among `variables`.

    The reversible stack calls this after each training call, so that every
    step draws new masks and rotations while the step itself (forward and
    recompute) used one fixed set of states.

    Args:
        variables: variables; those that are not seed states are left alone.
        generator: the `keras.random.SeedGenerator` the new seeds come from.
    """
    seed_states = [v for v in variables if is_seed_state(v)]
    if not seed_states:
        return
    fresh = keras.random.randint(
        (len(seed_states), 2), 0, MAX_SEED + 1, dtype="int32", seed=generator
    )
    for i, v in enumerate(seed_states):
        v.assign(ops.cast(fresh[i], v.dtype))


class SavesSeedStates:
    """Layer mixin: the layer's own seed-generator states are saved with its weights.

    Keras saves a layer's variables but not the states of its
    `SeedGenerator`s, and loading leaves them at their initial values. Put
    this mixin before the Keras base class; every `SeedGenerator` held as an
    attribute of the layer is then written to the weights store after the
    layer's variables and read back on load (in `.keras` files,
    `save_weights` / `load_weights` and `BackupAndRestore`). A store without
    seed states (a file written before they were saved) loads the weights and
    keeps the current states.
    """

    def _own_seed_generators(self):
        return [
            value
            for value in vars(self).values()
            if isinstance(value, keras.random.SeedGenerator) and not isinstance(value, FixedSeed)
        ]

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, generator in enumerate(self._own_seed_generators()):
            store[f"{_SEED_STATE_KEY}{i}"] = generator.state

    def load_own_variables(self, store):
        seed_keys = [key for key in store.keys() if key.startswith(_SEED_STATE_KEY)]
        weights = {key: store[key] for key in store.keys() if key not in seed_keys}
        super().load_own_variables(weights)
        generators = self._own_seed_generators()
        if seed_keys and len(seed_keys) != len(generators):
            raise ValueError(
                f"Layer '{self.name}' has {len(generators)} seed generators, but the saved "
                f"state holds {len(seed_keys)}. Received keys: {sorted(seed_keys)}"
            )
        for i, generator in enumerate(generators):
            key = f"{_SEED_STATE_KEY}{i}"
            if key in seed_keys:
                generator.state.assign(
                    ops.cast(ops.convert_to_tensor(store[key]), generator.state.dtype)
                )


@reformer_export
class SeededDropout(SavesSeedStates, keras.layers.Dropout):
    """Keras' `Dropout`, seeded and with its seed state saved with the weights.

    The same layer as `keras.layers.Dropout`, with the two promises of the
    package's randomness: with `seed=None` it still draws from a concrete seed
    (not torch's global generator), and its seed state round-trips through
    `.keras` files and checkpoints, so a resumed training run draws the same
    masks as an uninterrupted one.

    Args:
        rate: fraction of the inputs to drop, in `[0, 1)`.
        seed: optional int seed. Defaults to `None`: a random seed.
        **kwargs: other `keras.layers.Dropout` arguments.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    from keras_reformer.layers.randomness import SeededDropout

    layer = SeededDropout(0.1, seed=0)
    y = layer(np.ones((2, 8), "float32"), training=True)
    ```
    """

    def __init__(self, rate, seed=None, **kwargs):
        self._given_seed = seed
        super().__init__(rate, seed=concrete_seed(seed), **kwargs)

    def get_config(self):
        config = super().get_config()
        config["seed"] = self._given_seed
        return config
