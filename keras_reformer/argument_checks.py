"""Validation of constructor arguments, shared by the layers and models.

Every check raises a ValueError that names the argument and quotes the value
received, and returns the value in its canonical Python type (numpy scalars
such as `np.int64(8)` are accepted and converted), so callers store the
returned value.
"""

import math
import numbers

import numpy as np

# Seeds are int32 on every backend's random generator (torch's overflows above it).
MAX_SEED = 2**31 - 2
_INT32_MAX = 2**31 - 1


def check_int(name, value, minimum=1, maximum=None):
    """Raises a ValueError naming `name` unless `value` is an integer in range.

    Python and numpy integers are accepted; booleans and floats (even `8.0`)
    are not. Every integer argument ends up in int32 arithmetic (positions,
    shapes, sort keys), so none may exceed `2**31 - 1`.

    Args:
        name: the argument's name, quoted in the message.
        value: the value received.
        minimum: the smallest allowed value. Defaults to `1`.
        maximum: the largest allowed value, or `None` for `2**31 - 1`.

    Returns:
        `value` as a Python int.

    Example:

    ```python
    import numpy as np
    from keras_reformer.argument_checks import check_int
    check_int("num_heads", np.int64(8))  # 8, a Python int
    ```
    """
    valid = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if valid:
        value = int(value)
        valid = minimum <= value <= (_INT32_MAX if maximum is None else maximum)
    if not valid:
        if maximum is not None:
            kind = f"an integer in [{minimum}, {maximum}]"
        elif minimum == 1:
            kind = f"a positive integer up to {_INT32_MAX}"
        else:
            kind = f"an integer in [{minimum}, {_INT32_MAX}]"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    return value


def check_rate(name, value):
    """Raises a ValueError naming `name` unless `value` is a number in `[0, 1)`.

    Args:
        name: the argument's name, quoted in the message.
        value: the value received (a dropout rate).

    Returns:
        `value` as a Python float.
    """
    if not _is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_positive_float(name, value):
    """Raises a ValueError naming `name` unless `value` is a finite number > 0.

    Args:
        name: the argument's name, quoted in the message (e.g. an epsilon).
        value: the value received.

    Returns:
        `value` as a Python float.
    """
    if not _is_real(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite float > 0. Received: {name}={value!r}")
    return float(value)


def check_bool(name, value):
    """Raises a ValueError naming `name` unless `value` is `True` or `False`.

    Strings such as `"False"` and numbers are refused (`bool("False")` is true).
    numpy booleans are accepted.

    Args:
        name: the argument's name, quoted in the message.
        value: the value received.

    Returns:
        `value` as a Python bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_seed(name, value):
    """Raises a ValueError naming `name` unless `value` is `None` or an integer seed.

    Seeds are limited to `[0, MAX_SEED]` (`2**31 - 2`), the range that every
    backend's random generator holds.

    Args:
        name: the argument's name, quoted in the message.
        value: the value received.

    Returns:
        `None`, or `value` as a Python int.
    """
    return None if value is None else check_int(name, value, 0, MAX_SEED)


def check_num_buckets(num_buckets):
    """Raises a ValueError naming `num_buckets` unless it is an even integer >= 2
    or a non-empty list of them (factorised LSH buckets).

    Args:
        num_buckets: the value received.

    Returns:
        A Python int, or a list of Python ints.
    """
    single = not isinstance(num_buckets, (list, tuple))
    factors = [num_buckets] if single else num_buckets
    try:
        factors = [check_int("num_buckets", f, 2) for f in factors]
    except ValueError:
        factors = []
    if not factors or any(f % 2 for f in factors):
        raise ValueError(
            "`num_buckets` must be None, an even integer >= 2, or a non-empty list of them "
            f"(factorised buckets). Received: num_buckets={num_buckets!r}"
        )
    return factors[0] if single else factors


def check_model_kwargs(owner, kwargs, allowed=("name", "trainable", "dtype")):
    """Raises a ValueError naming any keyword argument of a model that is not its own.

    Keras' functional `Model.__init__` silently accepts any keyword, so a
    misspelt argument (or one of a newer version) would build a model without
    it.

    Args:
        owner: the class name, quoted in the message.
        kwargs: the keyword arguments left for `keras.Model.__init__`.
        allowed: the keywords `keras.Model` may receive.
    """
    unknown = {key: value for key, value in kwargs.items() if key not in allowed}
    if unknown:
        raise ValueError(f"Unrecognized keyword arguments passed to {owner}: {unknown}")


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
