"""Sizes that are Python ints where known, tensors where only the run time knows them."""

from keras import ops


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
