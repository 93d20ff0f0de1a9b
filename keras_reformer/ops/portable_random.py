"""Random normals that are the same on every backend for the same seed.

Each backend's own generator (`keras.random.normal`) draws different numbers
from the same seed, so LSH rotations, and with them a saved model's outputs,
would change when a `.keras` file is loaded under another backend. Here the
numbers come from a counter-based integer hash (Wellons' "lowbias32") written
with `keras.ops` on int32, followed by the Box-Muller transform: identical
integers everywhere, floats equal up to the last bit of `log` / `cos`.
"""

from keras import ops

from keras_reformer import backend
from keras_reformer.ops.shapes import reshape

_MULTIPLIER_1 = 0x7FEB352D
_MULTIPLIER_2 = 0x846CA68B - 2**32  # the same 32 bits as an int32
_SEED_MIXER = 0x9E3779B9 - 2**32


def _shift_right(x, bits):
    """Logical right shift of int32 bit patterns.

    The arithmetic shift (a floor division), masked to the low `32 - bits`
    bits (a floor modulo). Python operators, not `ops.right_shift(x, bits)`:
    Keras would copy `bits` from the host, which on torch stalls a GPU.
    """
    return (x // (1 << bits)) % (1 << (32 - bits))


def _mix(x):
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = x * _MULTIPLIER_1
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = x * _MULTIPLIER_2
    return ops.bitwise_xor(x, _shift_right(x, 16))


def _uniform_open(bits):
    """24 random bits to a float32 in (0, 1)."""
    return (ops.cast(_shift_right(bits, 8), "float32") + 0.5) * (1.0 / 2**24)


@backend.overridable
def portable_normal(shape, seed):
    """Standard normal float32 samples that every backend draws alike.

    Args:
        shape: tuple of Python ints.
        seed: integer tensor of two values (a `keras.random.SeedGenerator`
            state, or what its `next()` returns).

    Returns:
        A float32 tensor of `shape` with N(0, 1) entries, a pure function of
        `seed`.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    r = keras_reformer.ops.portable_normal((4, 3), np.array([7, 0], "int32"))
    ```
    """
    seed = ops.cast(seed, "int32")
    key = _mix(ops.bitwise_xor(_mix(seed[0] + _SEED_MIXER), seed[1]))
    size = 1
    for dim in shape:
        size *= dim
    # Sample i takes the hashes of counters 2i and 2i + 1: one pass over both.
    uniform = reshape(
        _uniform_open(_mix(ops.bitwise_xor(ops.arange(2 * size, dtype="int32"), key))),
        (size, 2),
    )
    u1, u2 = uniform[:, 0], uniform[:, 1]
    radius = ops.sqrt(-2.0 * ops.log(u1))
    normal = radius * ops.cos((2.0 * 3.141592653589793) * u2)
    return reshape(normal, shape)
