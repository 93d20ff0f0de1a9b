"""Sizes that are Python ints where known, tensors where only the run time knows them."""

from keras import ops

from keras_reformer import backend


def axis_size(x, axis):
    """The size of `x` along `axis`: its static size, else a scalar tensor.

    A TensorFlow graph traced for several sequence lengths (Keras traces its
    train step with `reduce_retracing=True`; a `tf.data` pipeline may have a
    `None` length) leaves the length unknown; JAX and torch always know it.
    Known sizes stay Python ints, so the programs traced for them do not change.

    Args:
        x: a tensor.
        axis: the axis.

    Returns:
        A Python int, or an int32 scalar tensor when the size is unknown
        while tracing.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops.shapes import axis_size

    axis_size(np.zeros((2, 7, 3)), 1)  # 7
    ```
    """
    size = x.shape[axis]
    return ops.shape(x)[axis] if size is None else size


@backend.overridable
def reshape(x, shape):
    """`keras.ops.reshape(x, shape)`, the package's one spelling of a reshape.

    On torch it is `torch.reshape`: `keras.ops.reshape` checks every call's
    arguments for symbolic tensors (a tree flattening of the shape), about
    ten times the reshape's own host time, and the Reformer's layers reshape
    some forty times per layer and step (see `benchmarks/dispatch.py`).

    Args:
        x: a tensor.
        shape: the new shape, a tuple of ints (one may be -1), or an int.

    Returns:
        `x` reshaped.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops.shapes import reshape

    reshape(np.zeros((2, 6)), (3, 4))  # shape (3, 4)
    ```
    """
    return ops.reshape(x, shape)
