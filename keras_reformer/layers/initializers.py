"""Initializer helpers shared by the layers."""


def clone_initializer(initializer):
    """A fresh copy of a Keras initializer, so that sublayers draw independent values.

    Rebuilding from `get_config` (rather than `keras.initializers.serialize`)
    keeps TensorFlow from being imported under the JAX and torch backends.

    Args:
        initializer: a `keras.initializers.Initializer`.

    Returns:
        A new initializer of the same class and configuration.
    """
    return initializer.__class__.from_config(initializer.get_config())
