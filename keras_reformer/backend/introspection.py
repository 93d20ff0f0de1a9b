"""Whether a tensor holds values now (eager) or is traced by a compiler."""

import keras


def is_concrete(x):
    """True when `x`'s values can be read now without leaving a traced graph.

    numpy arrays and eager tensors are concrete; Keras symbolic tensors, JAX
    tracers, TensorFlow graph tensors and tensors under `torch.compile` are not.

    Args:
        x: an array or tensor.

    Returns:
        A Python bool.
    """
    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.is_tensor(x) or tf.executing_eagerly()
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True
