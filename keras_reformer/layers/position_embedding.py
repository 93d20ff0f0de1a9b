"""PositionEmbedding: a learned table of absolute position embeddings."""

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_int


def position_range(inputs, start_index, max_sequence_length, layer_name):
    """The positions `start_index ... start_index + length - 1` of `inputs`.

    `inputs` has the sequence on axis -2. Lengths and offsets that are known
    when the layer is called are checked against `max_sequence_length`;
    offsets given as tensors are not (they only exist at run time).

    Returns:
        A Python `range` when the offset and the length are known when the
        layer is called (a slice of a table serves then: no index tensor to
        build and gather with), else an int32 tensor of shape `(length,)`.
    """
    if len(inputs.shape) < 2:
        raise ValueError(
            f"{layer_name} expects inputs of shape (batch, length, hidden). "
            f"Received: inputs.shape={tuple(inputs.shape)}"
        )
    length = inputs.shape[-2]
    static_start = start_index if isinstance(start_index, int) else None
    if static_start is not None and static_start < 0:
        raise ValueError(
            f"`start_index` must be a non-negative integer. Received: start_index={start_index}"
        )
    if length is not None and static_start is not None:
        if static_start + length > max_sequence_length:
            raise ValueError(
                f"{layer_name} covers at most {max_sequence_length} positions "
                f"(`max_sequence_length`), but the input asks for positions "
                f"{static_start}..{static_start + length - 1}. Received: "
                f"sequence length={length}, start_index={static_start}, "
                f"max_sequence_length={max_sequence_length}"
            )
    if length is not None and static_start is not None:
        return range(static_start, static_start + length)
    if length is None:
        length = ops.shape(inputs)[-2]
    return ops.arange(length, dtype="int32") + ops.cast(start_index, "int32")


@reformer_export
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings: one trainable vector per position.

    The layer holds a table of shape `(max_sequence_length, hidden)` and returns
    its rows for the positions of the input sequence, ready to be added to the
    token embeddings. Any sequence length up to `max_sequence_length` works.
    For long sequences prefer `keras_reformer.layers.AxialPositionEmbedding`,
    which needs far fewer parameters.

    Args:
        max_sequence_length: int. The number of positions the table covers.
        initializer: initializer of the table. Defaults to `"glorot_uniform"`.
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
    layer = keras_reformer.layers.PositionEmbedding(max_sequence_length=512)
    outputs = token_embeddings + layer(token_embeddings)  # (2, 100, 64)
    ```

    References:
        - Gehring et al., "Convolutional Sequence to Sequence Learning", 2017
          (arXiv:1705.03122).
    """

    def __init__(self, max_sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        max_sequence_length = check_int("max_sequence_length", max_sequence_length)
        self.max_sequence_length = max_sequence_length
        self.initializer = keras.initializers.get(initializer)

    def build(self, inputs_shape):
        hidden = inputs_shape[-1]
        if hidden is None:
            raise ValueError(
                "PositionEmbedding needs a known last (hidden) dimension. "
                f"Received: inputs_shape={tuple(inputs_shape)}"
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_sequence_length, hidden),
            initializer=self.initializer,
        )
        self.built = True

    def call(self, inputs, start_index=0):
        positions = position_range(
            inputs, start_index, self.max_sequence_length, "PositionEmbedding"
        )
        table = ops.cast(self.embeddings, self.compute_dtype)
        if isinstance(positions, range):
            embeddings = table[positions.start : positions.stop]
        else:
            embeddings = ops.take(table, positions, axis=0)
        return ops.broadcast_to(embeddings, ops.shape(inputs))

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_sequence_length": self.max_sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
