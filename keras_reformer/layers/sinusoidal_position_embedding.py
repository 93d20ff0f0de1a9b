"""SinusoidalPositionEmbedding: the fixed sin / cos position encoding."""

import keras
from keras import ops

from keras_reformer.api_export import reformer_export


@reformer_export
class SinusoidalPositionEmbedding(keras.layers.Layer):
    """Fixed sinusoidal position embeddings (Vaswani et al., 2017).

    For position `p` and feature pair `(2i, 2i + 1)` of a hidden size `d`:

        PE(p, 2i)     = sin(p / max_wavelength^(2i / d))
        PE(p, 2i + 1) = cos(p / max_wavelength^(2i / d))

    The layer has no weights and no length limit. Angles are computed in
    float32 and the result is cast to the compute dtype, so large positions
    stay accurate under float16.

    Args:
        max_wavelength: float. The longest wavelength of the sinusoids.
            Defaults to `10000`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: the token embeddings, shape `(batch, length, hidden)`. Only
            their shape is used.
        start_index: int or scalar int tensor. The position of the first
            token, for decoding one token at a time. Defaults to `0`.

    Returns:
        The position embeddings of positions `start_index` to
        `start_index + length - 1`, broadcast to the shape of `inputs`, in the
        layer's compute dtype.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    token_embeddings = np.random.normal(size=(2, 100, 64)).astype("float32")
    layer = keras_reformer.layers.SinusoidalPositionEmbedding()
    outputs = token_embeddings + layer(token_embeddings)  # (2, 100, 64)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017
          (arXiv:1706.03762).
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(max_wavelength, bool)
            or not isinstance(max_wavelength, (int, float))
            or not max_wavelength > 1
        ):
            raise ValueError(
                "`max_wavelength` must be a number greater than 1. "
                f"Received: max_wavelength={max_wavelength!r}"
            )
        self.max_wavelength = max_wavelength

    def call(self, inputs, start_index=0):
        if len(inputs.shape) < 2:
            raise ValueError(
                "SinusoidalPositionEmbedding expects inputs of shape (batch, length, "
                f"hidden). Received: inputs.shape={tuple(inputs.shape)}"
            )
        if isinstance(start_index, int) and start_index < 0:
            raise ValueError(
                f"`start_index` must be a non-negative integer. Received: start_index={start_index}"
            )
        shape = ops.shape(inputs)
        length, hidden = shape[-2], shape[-1]
        positions = ops.cast(ops.arange(length), "float32") + ops.cast(start_index, "float32")
        features = ops.arange(hidden)
        # 1 / max_wavelength^(2i / d) for feature 2i and 2i + 1.
        exponent = ops.cast(2 * (features // 2), "float32") / ops.cast(hidden, "float32")
        inverse_timescales = ops.power(1.0 / float(self.max_wavelength), exponent)
        angles = positions[:, None] * inverse_timescales[None, :]
        is_cos = ops.cast(features % 2, "float32")
        embeddings = ops.sin(angles) * (1.0 - is_cos) + ops.cos(angles) * is_cos
        return ops.broadcast_to(ops.cast(embeddings, self.compute_dtype), shape)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
