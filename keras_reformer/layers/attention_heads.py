"""What the attention layers share: heads merged into the batch, the padding mask per head."""

import keras
from keras import ops

from keras_reformer.ops.shapes import axis_size


class AttentionHeads:
    """Layer mixin of the self-attention layers: attention runs on
    `(batch * num_heads, length, d)` tensors, and outputs have the input's shape.

    The layer sets `num_heads`. Put the mixin before `keras.layers.Layer`.
    """

    def _key_mask(self, inputs, padding_mask):
        """Checks `padding_mask` and repeats it per head: `(batch * num_heads, length)`."""
        if padding_mask is None:
            return None
        self._check_padding_mask(inputs, padding_mask)
        return ops.repeat(ops.cast(padding_mask, "bool"), self.num_heads, axis=0)

    def _check_padding_mask(self, inputs, padding_mask):
        if padding_mask is None:
            return
        shape = tuple(padding_mask.shape)
        batch, length = inputs.shape[0], inputs.shape[1]
        if len(shape) != 2 or shape[1] != length or (
            batch is not None and shape[0] is not None and shape[0] != batch
        ):
            raise ValueError(
                f"`padding_mask` must have shape (batch, length) = ({batch}, {length}). "
                f"Received: padding_mask.shape={shape}"
            )

    def _merge_heads(self, x):
        """`(batch, length, heads, d)` -> `(batch * heads, length, d)`."""
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, axis_size(x, 2), x.shape[3]))

    def _split_heads(self, x):
        """`(batch * heads, length, d)` -> `(batch, length, heads, d)`."""
        x = ops.reshape(x, (-1, self.num_heads, axis_size(x, 1), x.shape[2]))
        return ops.transpose(x, (0, 2, 1, 3))

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def compute_output_spec(self, inputs, padding_mask=None, training=None):
        self._check_padding_mask(inputs, padding_mask)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
