"""What the attention layers share: their projections, heads merged into the
batch, the padding mask per head."""

import keras
from keras import ops

from keras_reformer.layers.initializers import clone_initializer
from keras_reformer.ops.cached_attention import write_position
from keras_reformer.ops.chunked_attention import shared_qk_keys
from keras_reformer.ops.masks import zero_padding
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape


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
        values = self._project_heads(self._value_dense, inputs)
        if self.shared_qk:
            queries = self._project_heads(self._query_key_dense, inputs)
            return queries, shared_qk_keys(queries), values
        queries = self._project_heads(self._query_dense, inputs)
        queries = queries * ops.cast(self.key_dim**-0.5, queries.dtype)
        return queries, self._project_heads(self._key_dense, inputs), values

    def _project_heads(self, dense, inputs):
        """A heads projection (`abc,cde->abde`), heads merged: `(batch * num_heads, length, d)`.

        One matmul with the kernel's heads flattened, not the layer's einsum:
        torch dispatches less than half the ops for it, forward and backward.
        A quantized projection runs as the layer.
        """
        if dense.quantization_mode is not None:
            return self._merge_heads(dense(inputs))
        inputs = self._compute_value(inputs)
        kernel = self._compute_value(dense.kernel)  # (d_model, heads, d), LoRA included
        outputs = ops.matmul(inputs, reshape(kernel, (kernel.shape[0], -1)))
        if dense.bias is not None:
            outputs = outputs + reshape(self._compute_value(dense.bias), (-1,))
        outputs = reshape(outputs, (-1, axis_size(inputs, 1)) + tuple(kernel.shape[1:]))
        return self._merge_heads(outputs)

    def _project_output(self, x):
        """The output projection (`abcd,cde->abe`) of `(batch * num_heads, length, value_dim)`:
        `(batch, length, d_model)`, one matmul (see `_project_heads`)."""
        dense = self._output_dense
        if dense.quantization_mode is not None:
            return dense(self._split_heads(x))
        x = self._split_heads(self._compute_value(x))
        x = reshape(x, (-1, axis_size(x, 1), self.num_heads * self.value_dim))
        kernel = self._compute_value(dense.kernel)  # (heads, value_dim, d_model)
        outputs = ops.matmul(x, reshape(kernel, (-1, kernel.shape[-1])))
        return outputs if dense.bias is None else outputs + self._compute_value(dense.bias)

    def _compute_value(self, x):
        # A projection's input or weight in the compute dtype, as the
        # projection layer's own call would cast it (also under
        # `stateless_call`, which skips the cast of the outer layer's inputs;
        # a no-op without mixed precision).
        return ops.cast(x, self.compute_dtype)

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
            inputs = zero_padding(inputs, padding_mask)
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
        if (
            len(shape) != 2
            or shape[1] != length
            or (batch is not None and shape[0] is not None and shape[0] != batch)
        ):
            raise ValueError(
                f"`padding_mask` must have shape (batch, length) = ({batch}, {length}). "
                f"Received: padding_mask.shape={shape}"
            )

    # === The memory mode's plumbing (`stream_slices`) ===

    def _per_head(self, x):
        # (batch * heads, length, ...) -> (batch, heads, length, ...)
        return reshape(x, (-1, self.num_heads, axis_size(x, 1)) + tuple(x.shape[2:]))

    def _merge_heads_rows(self, x, dtype):
        # (batch, heads, length, ...) -> (batch * heads, length, ...)
        return ops.cast(reshape(x, (-1, axis_size(x, 2)) + tuple(x.shape[3:])), dtype)

    @staticmethod
    def _group_rows(x, heads):
        # The rows of a group's slices: (batch, heads, ...) -> (batch * group, ...).
        x = ops.take(x, heads, axis=1)
        return reshape(x, (-1,) + tuple(ops.shape(x)[2:]))

    @staticmethod
    def _per_group(x, heads):
        # (batch * group, ...) -> (batch, group, ...)
        return reshape(x, (-1, heads.shape[0]) + tuple(ops.shape(x)[1:]))

    def _slice_extras(self, key_mask, dropout, like):
        """What every group reads besides the queries, keys and values: the key
        mask as float32 `(batch, heads, length)` (TensorFlow's rematerialisation
        cannot differentiate a bool argument) and the call's dropout seed."""
        extras = ()
        if key_mask is not None:
            key_mask = ops.logical_and(key_mask, ops.ones_like(like[..., 0], dtype="bool"))
            extras += (self._per_head(ops.cast(key_mask, "float32")),)
        if dropout > 0.0:
            extras += (self.dropout_seed_generator.next(),)
        return extras

    def _read_slice_extras(self, extras, heads, first_slice, has_mask, dropout):
        """The group's key mask (or `None`) and dropout seed tensor (or
        `None`), from `_slice_extras`."""
        key_mask = seed = None
        if has_mask:
            key_mask = ops.cast(self._group_rows(extras[0], heads), "bool")
        if dropout > 0.0:
            # Each group's masks are keyed by its first slice, so the
            # rematerialised backward replays them.
            value = extras[-1]
            offset = ops.stack([ops.cast(first_slice, value.dtype), ops.zeros((), value.dtype)])
            seed = value + offset
        return key_mask, seed

    # === Cached generation ===

    def build_cache(self, inputs, padding_mask=None):
        """Runs the layer on a sequence and returns its cache for generation.

        The cache's capacity is the length of `inputs`: positions that are
        not yet generated are padding (`padding_mask` 0) and are written by
        `call_with_cache` later.

        Args:
            inputs: `(batch, capacity, d_model)`, the layer's inputs.
            padding_mask: optional `(batch, capacity)`, 1 for tokens already
                known: a prefix of each row (later calls write the positions
                after it, one at a time and in order).

        Returns:
            `(outputs, cache)`: the layer's outputs on `inputs`, and a tuple
            of tensors whose leading axis is the batch (`(keys, values)`
            of shape `(batch, num_heads, capacity, d)`, and for LSH attention
            the per-round buckets and sorted order).
        """
        self._check_causal_for_cache()
        outputs = self(inputs, padding_mask=padding_mask)
        prepared, key_mask = self._prepare_inputs(inputs, padding_mask)
        queries, keys, values = self._queries_keys_values(prepared)
        cache = (self._split_batch(keys), self._split_batch(values))
        return outputs, cache + self._extra_cache(queries, key_mask)

    def call_with_cache(self, inputs, cache, cache_update_index):
        """Attention of one new token to the tokens before it, from their cache.

        Args:
            inputs: `(batch, 1, d_model)`, the layer's input at the new position.
            cache: the tuple from `build_cache` or a previous call.
            cache_update_index: int32 scalar, the new token's position.

        Returns:
            `(outputs, cache)`: `(batch, 1, d_model)` and the cache with the
            new token in it.
        """
        self._check_causal_for_cache()
        index = ops.cast(cache_update_index, "int32")
        queries, keys, values = self._queries_keys_values(inputs)
        key_cache = write_position(cache[0], self._split_batch(keys), index, axis=2)
        value_cache = write_position(cache[1], self._split_batch(values), index, axis=2)
        outputs, extra = self._attend_cached(
            queries[:, 0], key_cache, value_cache, tuple(cache[2:]), index
        )
        outputs = self._project_output(ops.expand_dims(outputs, 1))
        return outputs, (key_cache, value_cache) + tuple(extra)

    def cache_bytes_per_token(self):
        """Bytes of cache each token takes in this layer during cached generation.

        Returns:
            `num_heads * (key_dim + value_dim)` keys and values in the
            compute dtype, plus the integer entries of LSH attention. (LSH
            attention also keeps, once per sequence, two tables of
            `num_buckets + 1` int32 counts per hash round and head.)
        """
        itemsize = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[self.compute_dtype]
        return (
            self.num_heads * (self.key_dim + self.value_dim) * itemsize + self._extra_cache_bytes()
        )

    def _extra_cache(self, queries, key_mask):
        """Cache entries beyond keys and values (none: see LSHSelfAttention)."""
        return ()

    def _extra_cache_bytes(self):
        return 0

    def _attend_cached(self, query, keys, values, extra, index):
        """`(outputs (batch * num_heads, value_dim), extra cache)` of one query
        attending to the cached `keys` / `values` `(batch, num_heads, capacity, d)`."""
        raise NotImplementedError

    def _check_causal_for_cache(self):
        if not self.causal:
            raise ValueError(
                f"Cached generation needs causal attention: {self.__class__.__name__} "
                f"'{self.name}' would let earlier tokens see later ones. Received: causal=False"
            )

    def _split_batch(self, x):
        """`(batch * heads, length, d)` -> `(batch, heads, length, d)`: the batch leads,
        as samplers expect of a cache (beam search repeats it along the batch)."""
        return reshape(x, (-1, self.num_heads) + tuple(x.shape[1:]))

    def _merge_heads(self, x):
        """`(batch, length, heads, d)` -> `(batch * heads, length, d)`."""
        x = ops.transpose(x, (0, 2, 1, 3))
        return reshape(x, (-1, axis_size(x, 2), x.shape[3]))

    def _split_heads(self, x):
        """`(batch * heads, length, d)` -> `(batch, length, heads, d)`."""
        x = reshape(x, (-1, self.num_heads, axis_size(x, 1), x.shape[2]))
        return ops.transpose(x, (0, 2, 1, 3))

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def compute_output_spec(self, inputs, padding_mask=None, training=None):
        self._check_padding_mask(inputs, padding_mask)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
