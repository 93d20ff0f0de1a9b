"""Exact full self-attention, one chunk of queries at a time (the Transformer baseline)."""

import keras
from keras import ops

from keras_reformer import backend
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
from keras_reformer.ops.chunking import scan_sequence_chunks
from keras_reformer.ops.masks import apply_attention_masks
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape

DROPOUT_STREAM = 1  # `derive_seed` stream of the attention dropout, as in LocalSelfAttention


@reformer_export
class FullSelfAttention(SavesSeedStates, AttentionHeads, keras.layers.Layer):
    """Exact softmax self-attention over the whole sequence (the Transformer baseline).

    Every query attends to every key of the sequence (earlier ones only when
    `causal`). With `shared_qk=True` (the default) queries and keys share one
    projection, as in the Reformer: keys are the unit-normalised queries
    scaled by `1/sqrt(key_dim)` and a token may not attend to itself unless
    nothing else is visible (the same finite self-mask, per dtype, as
    `LSHSelfAttention` and `LocalSelfAttention`): the paper's "full attention"
    of Table 2, and what `LocalSelfAttention` computes when one chunk covers
    the sequence. With `shared_qk=False` queries and keys have their own
    projections and the logits are the usual `q.k / sqrt(key_dim)`, with no
    self-mask: the standard Transformer attention of the paper's Figure 3.

    Memory: the queries are processed `chunk_length` at a time in one loop
    (`keras_reformer.ops.scan_sequence_chunks`), each chunk attending to all
    keys, so the largest attention tensor holds `chunk_length x length`
    logits per head instead of `length x length`. Each chunk's attention is
    rematerialised (`keras.remat`) in the backward pass, so the gradient does
    not keep the `length x length` probabilities either: on JAX and torch a
    training step's memory grows linearly with the length. On TensorFlow the
    loop's gradient also stacks inputs of every rematerialised chunk, a term
    that grows with `length**2 / chunk_length` but stays several times below
    the probabilities that plain attention keeps. Compute stays quadratic
    (the backward computes each chunk's logits twice); the cost against
    length is measured in `benchmarks/ablations.py --experiments cost`.
    `keras.ops.dot_product_attention` is not used: it has no finite
    self-mask, and outside fused GPU kernels it builds the whole
    `length x length` logits. Sequences of any length are accepted (the
    last chunk of queries may be shorter).

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's query/key vectors.
        value_dim: size of each head's values. Defaults to `key_dim`.
        chunk_length: queries per step of the loop. Defaults to `128`.
        shared_qk: whether queries and keys share one projection (with the
            self-mask). Defaults to `True`.
        causal: if `True`, no position attends to a later one. Defaults to `False`.
        dropout: dropout rate on the attention probabilities (training only).
            Defaults to `0.0`.
        use_bias: whether the projections have biases. Defaults to `False`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        seed: integer seed of the attention dropout. Defaults to `None`.
        attention_slices: the attention memory mode: how many heads are
            computed at a time (see `LocalSelfAttention`). Defaults to `None`:
            all heads at once.
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

    layer = keras_reformer.layers.FullSelfAttention(
        num_heads=2, key_dim=16, causal=True
    )
    x = np.random.rand(2, 100, 64).astype("float32")
    y = layer(x)  # (2, 100, 64)
    ```

    References:
        - [Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer",
          ICLR 2020](https://arxiv.org/abs/2001.04451), section 2 and Table 2.
        - [Vaswani et al., "Attention Is All You Need", NeurIPS
          2017](https://arxiv.org/abs/1706.03762).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        chunk_length=128,
        shared_qk=True,
        causal=False,
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
        inputs, key_mask = self._prepare_inputs(inputs, padding_mask)
        queries, keys, values = self._queries_keys_values(inputs)
        dropout = self.dropout if training else 0.0
        if self.attention_slices is not None:
            outputs = self._attend_in_slices(queries, keys, values, key_mask, dropout)
        else:
            # (TensorFlow cannot build the gradient of a bool argument of a
            # rematerialised function: the key mask travels as float32.)
            float_mask = None if key_mask is None else ops.cast(key_mask, "float32")
            # One draw per call; each query chunk's mask is keyed by its first
            # position, so the rematerialised backward replays it exactly.
            seed = self.dropout_seed_generator.next() if dropout > 0.0 else None
            outputs = self._attend(queries, keys, values, float_mask, seed)
        return self._project_output(outputs)

    def _attend(self, queries, keys, values, float_mask, seed):
        """All queries, `chunk_length` at a time, attending to all keys.

        Args:
            queries: `(rows, length, key_dim)`, rows = batch * heads.
            keys: `(rows, length, key_dim)`, scaled.
            values: `(rows, length, value_dim)`.
            float_mask: `(rows, length)`, 1.0 for real keys, or `None`.
            seed: the dropout seed tensor, or `None` for no dropout.

        Returns:
            `(rows, length, value_dim)`.
        """
        # Every argument of the rematerialised function is an explicit tensor
        # (TensorFlow's `recompute_grad` passes no gradient to captured ones).
        extra = [t for t in (float_mask, seed) if t is not None]
        attend = keras.remat(self._attention_function(float_mask is not None, seed is not None))

        def step(carry, start, query_chunk):
            start = ops.convert_to_tensor(start, dtype="int32")
            return carry, (attend(query_chunk, start, keys, values, *extra),)

        _, (outputs,) = scan_sequence_chunks(step, (), (queries,), self.chunk_length)
        return outputs

    def _attend_in_slices(self, queries, keys, values, key_mask, dropout):
        """`_attend` with `attention_slices` heads at a time (`stream_slices`)."""
        has_mask = key_mask is not None
        extras = self._slice_extras(key_mask, dropout, queries)

        def attend(queries, keys, values, *extras):
            *extras, first_slice, heads = extras
            float_mask, seed = self._read_slice_extras(extras, heads, first_slice, has_mask, 0.0)
            if dropout > 0.0:  # (the chunks offset the seed's first entry, groups its second)
                seed = extras[-1] + ops.stack(
                    [ops.zeros((), extras[-1].dtype), ops.cast(first_slice, extras[-1].dtype)]
                )
            if float_mask is not None:
                float_mask = ops.cast(float_mask, "float32")
            rows = (self._group_rows(x, heads) for x in (queries, keys, values))
            outputs = self._per_group(self._attend(*rows, float_mask, seed), heads)
            # One slice per head: its weight in the head's combination is 1 whatever its log-sum-exp.
            return outputs, ops.zeros_like(outputs[..., 0])

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

    def _attention_function(self, has_key_mask, has_seed):
        """`f(queries, start, keys, values[, key_mask][, seed])`: one chunk of
        queries, starting at position `start`, attending to all keys.

        Shapes: queries `(batch * num_heads, chunk, key_dim)`, keys
        `(batch * num_heads, length, key_dim)`, values
        `(batch * num_heads, length, value_dim)`, key_mask
        `(batch * num_heads, length)`, 1.0 for real keys. Returns
        `(batch * num_heads, chunk, value_dim)`.
        """

        def attend(queries, start, keys, values, *extra):
            key_mask = ops.cast(extra[0], "bool") if has_key_mask else None
            seed = extra[-1] if has_seed else None
            logits = ops.einsum("bqd,bkd->bqk", queries, keys)
            query_positions = start + ops.arange(axis_size(queries, 1), dtype="int32")
            key_positions = ops.arange(axis_size(keys, 1), dtype="int32")
            logits = apply_attention_masks(
                logits,
                reshape(query_positions, (1, -1, 1)),
                reshape(key_positions, (1, 1, -1)),
                None if key_mask is None else ops.expand_dims(key_mask, 1),
                causal=self.causal,
                mask_self=self.shared_qk,
            )
            # As in `chunked_attention`: the shift by the maximum only keeps exp
            # in range, hence no gradient.
            shift = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
            weights = backend.exp_nonpositive(logits - shift)
            total = ops.sum(weights, axis=-1, keepdims=True)
            if seed is not None:
                offset = ops.stack([ops.cast(start, seed.dtype), ops.zeros((), seed.dtype)])
                weights = keras.random.dropout(weights, self.dropout, seed=FixedSeed(seed + offset))
            return ops.einsum("bqk,bkd->bqd", weights, values) / total

        return attend

    def _attend_cached(self, query, keys, values, extra, index):
        capacity = keys.shape[2]
        keys, values = (reshape(x, (-1, 1, capacity, x.shape[-1])) for x in (keys, values))
        positions = reshape(ops.arange(capacity, dtype="int32"), (1, 1, capacity))
        outputs, _ = window_attention(
            query, keys, values, positions, positions <= index, index, mask_self=self.shared_qk
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
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "seed": self.seed,
                "attention_slices": self.attention_slices,
            }
        )
        return config
