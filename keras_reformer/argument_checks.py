"""Validation of constructor arguments, shared by the layers and models."""


def check_int(name, value, minimum=1):
    """Raises a ValueError naming `name` unless `value` is a Python int >= `minimum`.

    Args:
        name: the argument's name, quoted in the message.
        value: the value received.
        minimum: the smallest allowed value. Defaults to `1`.

    Returns:
        `value`, unchanged.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    return value


def check_rate(name, value):
    """Raises a ValueError naming `name` unless `value` is a number in `[0, 1)`.

    Args:
        name: the argument's name, quoted in the message.
        value: the value received (a dropout rate).

    Returns:
        `value`, unchanged.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")
    return value
