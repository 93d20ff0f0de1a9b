"""Chunked local self-attention."""

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_int
from keras_reformer.argument_checks import check_rate
from keras_reformer.argument_checks import check_seed
from keras_reformer.layers.attention_heads import AttentionHeads
from keras_reformer.layers.randomness import FixedSeed
from keras_reformer.layers.randomness import SavesSeedStates
from keras_reformer.layers.randomness import concrete_seed
from keras_reformer.layers.randomness import derive_seed
from keras_reformer.ops.attention_slices import stream_slices
from keras_reformer.ops.cached_attention import window_attention
from keras_reformer.ops.chunked_attention import chunked_attention
from keras_reformer.ops.chunking import pad_to_multiple
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape

DROPOUT_STREAM = 1  # `derive_seed` stream of the attention dropout (the rotations use `seed`)


@reformer_export
class LocalSelfAttention(SavesSeedStates, AttentionHeads, keras.layers.Layer):
    """Local self-attention over chunks of the sequence.

    The sequence is split into chunks of `chunk_length` positions; every chunk
    attends to itself, to `lookback` previous and to `lookahead` next chunks.
    By default queries and keys share one projection (the Reformer's shared-QK
    attention): keys are the unit-normalised queries scaled by
    `1/sqrt(key_dim)`, and a token may not attend to itself unless nothing else
    is visible. `shared_qk=False` gives queries and keys their own projections
    and the usual `q.k / sqrt(key_dim)` logits, with no self-mask (the paper's
    Figure 3 baseline). Cost and memory are linear in the sequence length. Sequences of
    any length are accepted (padded internally to a multiple of `chunk_length`
    and masked); sequences no longer than one chunk use full attention.

    `LSHSelfAttention` is this layer applied to the sequence sorted by
    locality-sensitive hash buckets.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's query/key vectors.
        value_dim: size of each head's values. Defaults to `key_dim`.
        chunk_length: positions per chunk. Defaults to `64`.
        shared_qk: whether queries and keys share one projection (with the
            self-mask). Defaults to `True`.
        causal: if `True`, no position attends to a later one. Defaults to `False`.
        lookback: previous chunks each chunk attends to. Defaults to `1`.
        lookahead: next chunks each chunk attends to. Defaults to `0`.
        dropout: dropout rate on the attention probabilities (training only).
            Defaults to `0.0`.
        use_bias: whether the projections have biases. Defaults to `False`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        seed: integer seed of the attention dropout. Defaults to `None`.
        attention_slices: the attention memory mode: how many slices (one
            per head; per head and hash round in `LSHSelfAttention`) are
            computed at a time, in one sequential loop that rematerialises
            each group in the backward pass and combines the rounds of a head
            as they come. The result and its gradient are those of the
            default; training memory drops from all slices' attention
            tensors to one group's, at about 1.3-2x the attention time. The
            group size is the largest divisor of the number of slices that is
            at most this. Defaults to `None`: all slices at once. Dropout
            masks (training with `dropout > 0`) are drawn per group, so they
            differ from the default's draws.
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, length, d_model)` tensor.
        padding_mask: optional `(batch, length)` tensor, true / 1 for real tokens
            and false / 0 for padding. Padding keys are never attended to,
            and what padded positions hold (even NaN or Inf) reaches neither
            the outputs at real positions nor any gradient.
        training: whether to apply dropout.

    Returns:
        A `(batch, length, d_model)` tensor (projected back to the input's last
        dimension).

    Example:

    ```python
    import numpy as np
    import keras_reformer

    layer = keras_reformer.layers.LocalSelfAttention(
        num_heads=2, key_dim=16, chunk_length=32, causal=True
    )
    x = np.random.rand(2, 100, 64).astype("float32")
    y = layer(x)  # (2, 100, 64)
    ```

    References:
        - [Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer",
          ICLR 2020](https://arxiv.org/abs/2001.04451), sections 2-3.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        chunk_length=64,
        shared_qk=True,
        causal=False,
        lookback=1,
        lookahead=0,
        dropout=0.0,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        attention_slices=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_int("num_heads", num_heads, 1)
        self.key_dim = check_int("key_dim", key_dim, 1)
        self.value_dim = self.key_dim if value_dim is None else check_int("value_dim", value_dim, 1)
        self.chunk_length = check_int("chunk_length", chunk_length, 1)
        self.shared_qk = check_bool("shared_qk", shared_qk)
        self.causal = check_bool("causal", causal)
        self.lookback = check_int("lookback", lookback, 0)
        self.lookahead = check_int("lookahead", lookahead, 0)
        self.dropout = check_rate("dropout", dropout)
        self.use_bias = check_bool("use_bias", use_bias)
        seed = check_seed("seed", seed)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        self.attention_slices = (
            None if attention_slices is None else check_int("attention_slices", attention_slices, 1)
        )
        self.dropout_seed_generator = keras.random.SeedGenerator(
            derive_seed(concrete_seed(seed), DROPOUT_STREAM), name="dropout_seed_generator"
        )

    def build(self, inputs_shape):
        self._build_projections(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        length = axis_size(inputs, 1)
        inputs, key_mask = self._prepare_inputs(inputs, padding_mask)
        queries, keys, values = self._queries_keys_values(inputs)
        dropout = self.dropout if training else 0.0
        # A length unknown while tracing (a TensorFlow graph traced for several
        # lengths) always takes the chunked path: a short sequence padded to
        # one chunk sees the same keys as under full attention.
        if isinstance(length, int) and length <= self.chunk_length:
            # One chunk covers the sequence: plain full attention.
            positions = ops.expand_dims(ops.arange(length, dtype="int32"), 0)
            outputs, _ = chunked_attention(
                queries,
                keys,
                values,
                positions,
                positions,
                key_mask,
                chunk_length=length,
                lookback=0,
                lookahead=0,
                causal=self.causal,
                mask_self=self.shared_qk,
                dropout_rate=dropout,
                seed=self.dropout_seed_generator,
            )
        else:
            padded_length = length + (-length) % self.chunk_length
            if not isinstance(length, int) or padded_length != length:
                queries, keys, values = (
                    pad_to_multiple(x, self.chunk_length) for x in (queries, keys, values)
                )
                real = ops.expand_dims(ops.arange(padded_length) < length, 0)
                if key_mask is None:
                    key_mask = real
                else:
                    key_mask = ops.logical_and(
                        pad_to_multiple(key_mask, self.chunk_length, constant_value=False), real
                    )
            outputs = self._attend(queries, keys, values, key_mask, dropout, training)
            outputs = outputs[:, :length]
        return self._project_output(outputs)

    def _attend(self, queries, keys, values, key_mask, dropout, training):
        """Attention over a sequence padded to a multiple of `chunk_length`.

        Args:
            queries: `(batch * num_heads, padded_length, key_dim)`.
            keys: `(batch * num_heads, padded_length, key_dim)`, scaled.
            values: `(batch * num_heads, padded_length, value_dim)`.
            key_mask: `(batch * num_heads or 1, padded_length)` booleans or `None`.
            dropout: the dropout rate to apply.
            training: the call's `training` flag.

        Returns:
            `(batch * num_heads, padded_length, value_dim)`.
        """
        if self.attention_slices is not None:
            return self._attend_in_slices(queries, keys, values, key_mask, dropout)
        positions = ops.expand_dims(ops.arange(axis_size(queries, 1), dtype="int32"), 0)
        outputs, _ = chunked_attention(
            queries,
            keys,
            values,
            positions,
            positions,
            key_mask,
            chunk_length=self.chunk_length,
            lookback=self.lookback,
            lookahead=self.lookahead,
            causal=self.causal,
            mask_self=self.shared_qk,
            dropout_rate=dropout,
            seed=self.dropout_seed_generator,
        )
        return outputs

    def _attend_in_slices(self, queries, keys, values, key_mask, dropout):
        """`_attend` with `attention_slices` heads at a time (`stream_slices`)."""
        positions = ops.expand_dims(ops.arange(axis_size(queries, 1), dtype="int32"), 0)
        has_mask = key_mask is not None
        extras = self._slice_extras(key_mask, dropout, queries)

        def attend(queries, keys, values, *extras):
            *extras, first_slice, heads = extras
            key_mask, seed = self._read_slice_extras(extras, heads, first_slice, has_mask, dropout)
            seed = None if seed is None else FixedSeed(seed)
            outputs, logsumexp = chunked_attention(
                *(self._group_rows(x, heads) for x in (queries, keys, values)),
                positions,
                positions,
                key_mask,
                chunk_length=self.chunk_length,
                lookback=self.lookback,
                lookahead=self.lookahead,
                causal=self.causal,
                mask_self=self.shared_qk,
                dropout_rate=dropout,
                seed=seed,
            )
            return self._per_group(outputs, heads), self._per_group(logsumexp, heads)

        outputs = stream_slices(
            attend,
            tuple(self._per_head(x) for x in (queries, keys, values)) + extras,
            (ops.arange(self.num_heads, dtype="int32"),),
            range(self.num_heads),
            self.num_heads,
            self.attention_slices,
            self._per_head(values),
        )
        return self._merge_heads_rows(outputs, values.dtype)

    def _attend_cached(self, query, keys, values, extra, index):
        # The chunks a query at `index` sees: its own and `lookback` before it
        # (later positions are masked: the cache needs `causal=True`).
        capacity = keys.shape[2]
        size = min((self.lookback + 1 + self.lookahead) * self.chunk_length, capacity)
        first = (index // self.chunk_length - self.lookback) * self.chunk_length
        positions = ops.clip(first, 0, capacity - size) + ops.arange(size, dtype="int32")
        window_keys, window_values = (
            ops.take(reshape(x, (-1, capacity, x.shape[-1])), positions, axis=1)
            for x in (keys, values)
        )
        positions = reshape(positions, (1, 1, size))
        outputs, _ = window_attention(
            query,
            ops.expand_dims(window_keys, 1),
            ops.expand_dims(window_values, 1),
            positions,
            ops.logical_and(positions >= first, positions <= index),
            index,
            mask_self=self.shared_qk,
        )
        return outputs[:, 0], extra

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "chunk_length": self.chunk_length,
                "shared_qk": self.shared_qk,
                "causal": self.causal,
                "lookback": self.lookback,
                "lookahead": self.lookahead,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "seed": self.seed,
                "attention_slices": self.attention_slices,
            }
        )
        return config
