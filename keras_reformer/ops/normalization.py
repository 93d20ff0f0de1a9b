"""Layer normalisation over the last axis, as the pre-norm sublayers apply it."""

from keras import ops

from keras_reformer import backend


@backend.overridable
def layer_norm(x, gamma, beta, epsilon):
    """`keras.ops.layer_normalization(x, gamma, beta, -1, epsilon)`.

    On torch it is `torch.nn.functional.layer_norm`, the kernel Keras calls,
    without Keras' conversion of each argument to its own dtype (a dispatched
    op each, on every sublayer call of every step).

    Args:
        x: a float tensor `(..., features)`.
        gamma: `(features,)` scale.
        beta: `(features,)` offset.
        epsilon: a small positive float added to the variance.

    Returns:
        A tensor like `x`.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops.normalization import layer_norm

    y = layer_norm(np.ones((2, 3), "float32"), np.ones(3, "float32"),
                   np.zeros(3, "float32"), 1e-6)  # zeros
    ```
    """
    return ops.layer_normalization(x, gamma, beta, -1, epsilon)
