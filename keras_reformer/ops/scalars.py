"""Scalars made where the tensors are, without a copy from the host."""

from keras import ops

from keras_reformer import backend


@backend.overridable
def scalar_like(value, like):
    """`value` as a 0-d tensor of `like`'s dtype, computed on the device.

    Keras converts a Python number in an op (`ops.where(mask, x, -1e9)`,
    `ops.cast(0.5, dtype)`) into a tensor copied from host memory. On a CUDA
    device under torch, that copy waits until the GPU has finished all queued
    work, so a train step with hundreds of such constants keeps the CPU and the
    GPU from overlapping. `zeros + value` is a fill kernel and an add: no copy.
    JAX and TensorFlow fold it into a constant when they compile.

    Args:
        value: a Python number.
        like: a tensor whose dtype (and device) the result takes.

    Returns:
        A 0-d tensor equal to `value` in `like.dtype`.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops.scalars import scalar_like

    scalar_like(-1e9, np.zeros(3, "float32"))  # a float32 scalar, -1e9
    ```
    """
    return ops.zeros((), dtype=like.dtype) + value
