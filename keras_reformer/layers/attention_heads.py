"""What the attention layers share: their projections, heads merged into the
batch, the padding mask per head."""

import keras
from keras import ops

from keras_reformer.layers.initializers import clone_initializer
from keras_reformer.ops.chunked_attention import shared_qk_keys
from keras_reformer.ops.shapes import axis_size


class AttentionHeads:
    """Layer mixin of the self-attention layers: attention runs on
    `(batch * num_heads, length, d)` tensors, and outputs have the input's shape.

    The layer sets `num_heads`, `key_dim`, `value_dim`, `shared_qk`,
    `use_bias`, `kernel_initializer` and `bias_initializer`. Put the mixin
    before `keras.layers.Layer`.
    """

    def _build_projections(self, inputs_shape):
        """Builds the query-key (or query and key), value and output projections."""
        common = dict(
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
        )

        def heads_dense(name, dim):
            dense = keras.layers.EinsumDense(
                "abc,cde->abde",
                output_shape=(None, self.num_heads, dim),
                bias_axes="de" if self.use_bias else None,
                name=name,
                **common,
            )
            dense.build(inputs_shape)
            return dense

        if self.shared_qk:
            self._query_key_dense = heads_dense("query_key", self.key_dim)
        else:
            self._query_dense = heads_dense("query", self.key_dim)
            self._key_dense = heads_dense("key", self.key_dim)
        self._value_dense = heads_dense("value", self.value_dim)
        self._output_dense = keras.layers.EinsumDense(
            "abcd,cde->abe",
            output_shape=(None, inputs_shape[-1]),
            bias_axes="e" if self.use_bias else None,
            name="attention_output",
            **common,
        )
        self._output_dense.build((None, None, self.num_heads, self.value_dim))

    def _queries_keys_values(self, inputs):
        """`(queries, keys, values)`, each `(batch * num_heads, length, d)`.

        Shared-QK (the Reformer): keys are the unit-normalised queries scaled
        by `1/sqrt(key_dim)` (`shared_qk_keys`). Separate projections: queries
        scaled by `1/sqrt(key_dim)`, keys as projected (standard attention).
        """
        values = self._merge_heads(self._value_dense(inputs))
        if self.shared_qk:
            queries = self._merge_heads(self._query_key_dense(inputs))
            return queries, shared_qk_keys(queries), values
        queries = self._merge_heads(self._query_dense(inputs))
        queries = queries * ops.cast(self.key_dim**-0.5, queries.dtype)
        return queries, self._merge_heads(self._key_dense(inputs)), values

    def _prepare_inputs(self, inputs, padding_mask):
        """Checks the call's inputs; returns `(inputs, key_mask)`.

        Padded positions of `inputs` become zeros (`where`: 0 * NaN is NaN),
        so that NaN or Inf there reaches no real output and no gradient;
        `key_mask` is `padding_mask` per head (see `_key_mask`), or `None`.
        """
        if 0 in tuple(inputs.shape[:2]):
            raise ValueError(
                f"`inputs` of {self.__class__.__name__} must hold at least one sequence of at "
                f"least one position. Received: inputs.shape={tuple(inputs.shape)}"
            )
        key_mask = self._key_mask(inputs, padding_mask)
        if key_mask is not None:
            real = ops.expand_dims(ops.cast(padding_mask, "bool"), -1)
            inputs = ops.where(real, inputs, ops.zeros_like(inputs))
        return inputs, key_mask

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
