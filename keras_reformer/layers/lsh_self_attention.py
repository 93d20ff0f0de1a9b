"""LSH self-attention, the Reformer's O(L log L) attention."""

import math

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_int
from keras_reformer.argument_checks import check_num_buckets
from keras_reformer.layers import forward_memo
from keras_reformer.layers.local_self_attention import LocalSelfAttention
from keras_reformer.layers.randomness import FixedSeed
from keras_reformer.layers.randomness import call_seed
from keras_reformer.layers.randomness import concrete_seed
from keras_reformer.ops.attention_slices import stream_slices
from keras_reformer.ops.bucket_order import add_token
from keras_reformer.ops.bucket_order import base_token_ranks
from keras_reformer.ops.bucket_order import merge_recent
from keras_reformer.ops.bucket_order import order_from_sort
from keras_reformer.ops.bucket_order import recent_token_ranks
from keras_reformer.ops.bucket_order import recent_tokens
from keras_reformer.ops.bucket_order import token_ranks
from keras_reformer.ops.cached_attention import window_attention
from keras_reformer.ops.cached_attention import write_position
from keras_reformer.ops.chunked_attention import chunked_attention
from keras_reformer.ops.chunked_attention import combine_hash_rounds
from keras_reformer.ops.chunked_attention import duplicate_counts
from keras_reformer.ops.chunked_attention import shared_qk_keys
from keras_reformer.ops.hashing import default_bucket_factors_for_length
from keras_reformer.ops.hashing import hash_buckets
from keras_reformer.ops.portable_random import portable_normal
from keras_reformer.ops.scalars import scalar_like
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape
from keras_reformer.ops.sorting import gather_along_sequence
from keras_reformer.ops.sorting import sort_by_bucket


@reformer_export
class LSHSelfAttention(LocalSelfAttention):
    """Locality-sensitive-hashing self-attention (Reformer).

    Queries and keys share one projection (keys are the unit-normalised
    queries scaled by `1/sqrt(key_dim)`). In each of `num_hashes` rounds, every
    token is hashed into one of `num_buckets` buckets by a random rotation
    (angular LSH: `argmax([xR ; -xR])`); all rounds are sorted together by
    (round, bucket, position), each round's sorted sequence is split into chunks of
    `chunk_length`, and each chunk attends to itself and to `lookback`
    previous / `lookahead` next chunks. Rounds are combined with their
    log-sum-exp weights. A token attends to itself only when nothing else is
    visible; with `causal=True` no token attends to a later one (positions are
    compared in the original order). With `correct_duplicates=True`, a key that
    a query sees in several rounds counts once (the paper's `log N_ij` term). Padding tokens get a bucket of their own,
    so they never move real tokens. Memory and time are linear in the length
    (times `log` for the sort); sequences of any length are accepted, and
    sequences no longer than `chunk_length` use exact full attention.

    Rotations are drawn afresh at every training call from a seed generator
    whose state is a non-trainable variable: `seed` makes them reproducible,
    `layer.stateless_call` with the same non-trainable values replays them,
    and calls with `training` falsy use the current state without advancing
    it, so inference is deterministic (also after `.keras` save / load).

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's shared query/key vectors.
        value_dim: size of each head's values. Defaults to `key_dim`.
        chunk_length: positions per chunk of the sorted sequence. Defaults to `64`.
        num_hashes: number of hash rounds; more rounds approximate full
            attention better at a proportional cost. Defaults to `4`.
        num_buckets: buckets per round: an even integer >= 2, or a list of
            them whose product is the bucket count (factorised hashing, as in
            trax: `[16, 32]` makes 512 buckets from 24 rotated values per
            token instead of 256). Defaults to `None`: the paper's
            `2 * length / chunk_length` rounded up to a power of two, split in
            two factors above `4 * chunk_length` (see
            `keras_reformer.ops.default_bucket_factors`).
        causal: if `True`, no position attends to a later one. Defaults to `False`.
        lookback: previous chunks each chunk attends to. Defaults to `1`.
        lookahead: next chunks each chunk attends to. Defaults to `0`.
        dropout: dropout rate on the attention probabilities (training only).
            Defaults to `0.0`.
        use_bias: whether the projections have biases. Defaults to `False`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        seed: integer seed of the hash rotations and of the dropout. Defaults
            to `None`.
        correct_duplicates: if `True`, subtract from each logit the log of the
            number of rounds in which the query sees the key (paper, appendix
            A), so that the combined rounds are one softmax over the union of
            the keys seen, each counted once. It costs `num_hashes` integer
            comparisons per logit. Defaults to `False`: a key seen in `n`
            rounds weighs `n` times as much.
        shared_qk: must be `True` (the default): a query's bucket must be
            its keys' bucket, so LSH attention shares queries and keys.
            Accepted so that the attention layers take the same arguments;
            `False` is a `ValueError`.
        attention_slices: the attention memory mode: how many (head, hash
            round) slices are computed at a time (see `LocalSelfAttention`).
            The buckets and the sort are computed once for all slices (int32,
            `3 * num_heads * num_hashes` entries per token); each group's
            sorted queries, keys, values and logits exist only in its own
            step, in the forward and the backward pass. Defaults to `None`:
            all `num_heads * num_hashes` slices at once.
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, length, d_model)` tensor.
        padding_mask: optional `(batch, length)` tensor, true / 1 for real tokens
            and false / 0 for padding. Padding keys are never attended to,
            and what padded positions hold (even NaN or Inf) reaches neither
            the outputs at real positions nor any gradient.
        training: whether this is a training call (fresh rotations, dropout).

    Returns:
        A `(batch, length, d_model)` tensor (projected back to the input's last
        dimension).

    Example:

    ```python
    import numpy as np
    import keras_reformer

    layer = keras_reformer.layers.LSHSelfAttention(
        num_heads=4, key_dim=32, chunk_length=64, num_hashes=4, causal=True
    )
    x = np.random.rand(1, 1000, 128).astype("float32")
    y = layer(x, training=True)  # (1, 1000, 128)
    ```

    References:
        - [Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer",
          ICLR 2020](https://arxiv.org/abs/2001.04451), section 2 and appendix A.
        - [Andoni et al., "Practical and Optimal LSH for Angular Distance",
          NeurIPS 2015](https://arxiv.org/abs/1509.02897).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        chunk_length=64,
        num_hashes=4,
        num_buckets=None,
        causal=False,
        lookback=1,
        lookahead=0,
        dropout=0.0,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        correct_duplicates=False,
        shared_qk=True,
        attention_slices=None,
        **kwargs,
    ):
        if check_bool("shared_qk", shared_qk) is not True:
            raise ValueError(
                "LSHSelfAttention needs shared queries and keys: a query's bucket must be its "
                "keys' bucket (the paper, section 2). Use FullSelfAttention or "
                "LocalSelfAttention for separate query and key projections. "
                f"Received: shared_qk={shared_qk!r}"
            )
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            chunk_length=chunk_length,
            causal=causal,
            lookback=lookback,
            lookahead=lookahead,
            dropout=dropout,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            seed=seed,
            attention_slices=attention_slices,
            **kwargs,
        )
        self.num_hashes = check_int("num_hashes", num_hashes, 1)
        self.num_buckets = None if num_buckets is None else check_num_buckets(num_buckets)
        self.correct_duplicates = check_bool("correct_duplicates", correct_duplicates)
        self.rotation_seed_generator = keras.random.SeedGenerator(
            concrete_seed(self.seed), name="rotation_seed_generator"
        )

    def _attend(self, queries, keys, values, key_mask, dropout, training):
        # `keys` is not needed: with shared QK they are the normalised queries,
        # computed after sorting (one gather fewer).
        del keys
        query_key = queries
        length = axis_size(query_key, 1)
        # The reversible stack's recompute reuses the forward's sort (see forward_memo).
        sort_indices, undo_indices = forward_memo.remember(
            lambda: self._hash_and_sort(
                query_key, key_mask, self._bucket_factors(length), training
            )[1:]
        )
        if self.attention_slices is not None:
            return self._attend_in_slices(
                query_key, values, key_mask, dropout, sort_indices, undo_indices
            )
        rows = query_key.shape[0]
        if key_mask is not None and (rows is None or key_mask.shape[0] != rows):
            # (batch * heads, length) even where the mask was shared.
            key_mask = ops.logical_and(key_mask, ops.ones_like(query_key[..., 0], dtype="bool"))
        positions = sort_indices % length  # original position of each sorted token

        def per_round(x):
            # The sorted sequence is round-major; giving each round its own row
            # keeps look-back / look-ahead inside the round, so the keys a token
            # sees never depend on how much padding ends the previous round.
            return reshape(x, (-1, length) + tuple(x.shape[2:]))

        sorted_query_key = per_round(gather_along_sequence(query_key, positions))
        sorted_values = per_round(gather_along_sequence(values, positions))
        sorted_key_mask = None
        if key_mask is not None:
            sorted_key_mask = per_round(gather_along_sequence(key_mask, positions))
        round_positions = per_round(positions)
        round_chunks = None
        if self.correct_duplicates:
            # Every token's chunk in every round, `(batch * heads, length, rounds)`:
            # its index within its round's sorted row, over chunk_length.
            ranks = reshape(undo_indices, (-1, self.num_hashes, length)) % length
            round_chunks = ops.transpose(ranks // self.chunk_length, (0, 2, 1))
            round_chunks = per_round(gather_along_sequence(round_chunks, positions))
        outputs, logsumexp = chunked_attention(
            sorted_query_key,
            shared_qk_keys(sorted_query_key),
            sorted_values,
            round_positions,
            round_positions,
            sorted_key_mask,
            chunk_length=self.chunk_length,
            lookback=self.lookback,
            lookahead=self.lookahead,
            causal=self.causal,
            dropout_rate=dropout,
            seed=self.dropout_seed_generator,
            query_round_chunks=round_chunks,
            key_round_chunks=round_chunks,
        )
        outputs = reshape(outputs, (-1, self.num_hashes * length, outputs.shape[-1]))
        logsumexp = reshape(logsumexp, (-1, self.num_hashes * length))
        outputs = gather_along_sequence(outputs, undo_indices)
        logsumexp = gather_along_sequence(logsumexp, undo_indices)
        outputs = reshape(outputs, (-1, self.num_hashes, length, outputs.shape[-1]))
        logsumexp = reshape(logsumexp, (-1, self.num_hashes, length))
        return combine_hash_rounds(outputs, logsumexp)

    def _attend_in_slices(self, query_key, values, key_mask, dropout, sort_indices, undo_indices):
        """`_attend` with `attention_slices` (head, round) slices at a time.

        The sort of all rounds is computed once (integers); each group gathers
        its slices' sorted queries and values, attends and unsorts
        (`stream_slices`). Slices are ordered head-major, `head * num_hashes +
        round`, so that a group holds rounds of few heads.
        """
        length = axis_size(query_key, 1)
        num_slices = self.num_heads * self.num_hashes

        def slice_major(indices):
            # (batch * heads, rounds * length) -> (slices, batch, length), within-round indices.
            indices = reshape(indices % length, (-1, num_slices, length))
            return ops.transpose(indices, (1, 0, 2))

        has_mask = key_mask is not None
        extras = self._slice_extras(key_mask, dropout, query_key)
        if self.correct_duplicates:
            # Every token's chunk in every round: `(batch, heads, length, rounds)`.
            ranks = reshape(undo_indices, (-1, self.num_hashes, length)) % length
            extras += (self._per_head(ops.transpose(ranks // self.chunk_length, (0, 2, 1))),)

        def attend(query_key, values, *extras):
            *extras, first_slice, heads, positions, ranks = extras
            round_chunks = extras.pop() if self.correct_duplicates else None
            key_mask, seed = self._read_slice_extras(extras, heads, first_slice, has_mask, dropout)
            seed = None if seed is None else FixedSeed(seed)
            positions, ranks = (
                reshape(ops.transpose(x, (1, 0, 2)), (-1, length)) for x in (positions, ranks)
            )

            def sort(x):
                return gather_along_sequence(self._group_rows(x, heads), positions)

            sorted_query_key = sort(query_key)
            outputs, logsumexp = chunked_attention(
                sorted_query_key,
                shared_qk_keys(sorted_query_key),
                sort(values),
                positions,
                positions,
                None if key_mask is None else gather_along_sequence(key_mask, positions),
                chunk_length=self.chunk_length,
                lookback=self.lookback,
                lookahead=self.lookahead,
                causal=self.causal,
                dropout_rate=dropout,
                seed=seed,
                query_round_chunks=None if round_chunks is None else sort(round_chunks),
                key_round_chunks=None if round_chunks is None else sort(round_chunks),
            )
            outputs = gather_along_sequence(outputs, ranks)
            logsumexp = gather_along_sequence(logsumexp, ranks)
            return self._per_group(outputs, heads), self._per_group(logsumexp, heads)

        slice_heads = [head for head in range(self.num_heads) for _ in range(self.num_hashes)]
        outputs = stream_slices(
            attend,
            (self._per_head(query_key), self._per_head(values)) + extras,
            (
                ops.convert_to_tensor(slice_heads, dtype="int32"),
                slice_major(sort_indices),
                slice_major(undo_indices),
            ),
            slice_heads,
            self.num_heads,
            self.attention_slices,
            self._per_head(values),
        )
        return self._merge_heads_rows(outputs, values.dtype)

    def _hash_and_sort(self, query_key, key_mask, factors, training):
        """Every token's bucket in every round, and the sort by (round, bucket, position).

        Args:
            query_key: `(batch * num_heads, length, key_dim)`.
            key_mask: `(batch * num_heads, length)` booleans or `None`.
            factors: the bucket count's factors (see `_bucket_factors`).
            training: whether to draw fresh rotations.

        Returns:
            `(buckets, sort_indices, undo_indices)`: `(batch * num_heads,
            num_hashes, length)` bucket ids (padding in a bucket of its own,
            after all real ones) and the indices of `sort_by_bucket`.
        """
        length = axis_size(query_key, 1)
        num_buckets = math.prod(factors)
        rotations = self._draw_rotations(
            (self.num_heads, self.key_dim, self.num_hashes, sum(factors) // 2), training
        )
        per_head = reshape(
            ops.cast(query_key, "float32"), (-1, self.num_heads, length, self.key_dim)
        )
        buckets = reshape(hash_buckets(per_head, rotations, factors), (-1, self.num_hashes, length))
        if key_mask is not None:
            # Padding gets a bucket of its own (after all real ones), so it
            # never changes where real tokens land in the sorted sequence.
            padding_bucket = scalar_like(num_buckets, buckets)
            buckets = ops.where(ops.expand_dims(key_mask, 1), buckets, padding_bucket)
            num_buckets += 1
        return (buckets,) + sort_by_bucket(buckets, num_buckets)

    # === Cached generation ===
    # Per hash round the cache keeps every token's bucket and the (bucket,
    # position) order of the tokens (`keras_reformer.ops.bucket_order`: a
    # sorted base plus up to `chunk_length` recent tokens, merged into the base
    # every `chunk_length` tokens). A new token at position t has rank
    # #{j < t : bucket_j <= bucket_t} among tokens 0..t and sees the keys whose
    # ranks lie in its chunk and the `lookback` chunks before it (`lookahead`
    # after): the keys the whole-sequence call would give it if the sequence
    # ended at t.

    def _cache_factors(self, capacity):
        # The factors a whole-sequence call on `capacity` positions uses.
        return self._bucket_factors(capacity + (-capacity) % self.chunk_length)

    def _extra_cache(self, queries, key_mask):
        capacity = axis_size(queries, 1)
        factors = self._cache_factors(capacity)
        buckets, sort_indices, undo_indices = self._hash_and_sort(
            queries, key_mask, factors, training=False
        )
        shape = (-1, self.num_heads, self.num_hashes, capacity)
        buckets = reshape(buckets, shape)
        order, starts, ranks = order_from_sort(
            buckets,
            reshape(sort_indices % capacity, shape),
            reshape(undo_indices % capacity, shape),
            math.prod(factors),
        )
        extra = (buckets, order, starts, starts)  # the base's table, and all tokens'
        return extra + ((ranks,) if self.correct_duplicates else ())

    def _extra_cache_bytes(self):
        # int32 bucket and order entries (and ranks), per round and head; the
        # two per-sequence tables (num_buckets + 1 entries each) are not per token.
        return 4 * self.num_heads * self.num_hashes * (3 if self.correct_duplicates else 2)

    def _attend_cached(self, query, keys, values, extra, index):
        bucket_cache, order, base_starts, starts = extra[:4]
        ranks = extra[4] if self.correct_duplicates else None
        capacity = keys.shape[2]
        factors = self._cache_factors(capacity)
        rotations = self._draw_rotations(
            (self.num_heads, self.key_dim, self.num_hashes, sum(factors) // 2), training=False
        )
        per_head = reshape(ops.cast(query, "float32"), (-1, self.num_heads, 1, self.key_dim))
        buckets = hash_buckets(per_head, rotations, factors)  # (batch, heads, rounds, 1)
        bucket_cache = write_position(bucket_cache, buckets, index, axis=3)
        rank, starts = add_token(starts, buckets)
        slots = min(self.chunk_length, capacity)
        recent = recent_tokens(bucket_cache, base_starts, index, slots)
        recent_ranks = recent_token_ranks(*recent[:2], base_starts, starts, recent)

        # The base tokens whose ranks can fall in the window: those of base
        # index first - slots .. end (the recent tokens move them up by at most slots).
        size = (self.lookback + 1 + self.lookahead) * self.chunk_length
        chunk = rank // self.chunk_length  # (batch, heads, rounds, 1)
        first = (chunk - self.lookback) * self.chunk_length
        base_size = min(size + slots, capacity)
        base_index = ops.clip(first - slots, 0, capacity - base_size) + ops.arange(
            base_size, dtype="int32"
        )
        base_positions = ops.take_along_axis(order, base_index, axis=-1)
        base_ranks = base_token_ranks(
            base_index,
            ops.take_along_axis(bucket_cache, base_positions, axis=-1),
            base_starts,
            starts,
        )
        positions = ops.concatenate([base_positions, recent[0]], axis=-1)
        key_ranks = ops.concatenate([base_ranks, recent_ranks], axis=-1)
        valid = ops.concatenate([base_index < base_starts[..., -1:], recent[2]], axis=-1)
        visible = ops.logical_and(
            valid, ops.logical_and(key_ranks >= first, key_ranks < first + size)
        )

        window = base_size + slots
        rows = (-1, self.num_hashes, window)
        flat_positions = reshape(positions, (-1, self.num_hashes * window))
        window_keys, window_values = (
            reshape(
                gather_along_sequence(reshape(x, (-1, capacity, x.shape[-1])), flat_positions),
                rows + (x.shape[-1],),
            )
            for x in (keys, values)
        )
        offsets = None
        if self.correct_duplicates:
            # Every visible key's chunk in every round, against the new
            # token's: the counts of `duplicate_counts`, as in the whole-sequence call.
            every_positions = reshape(
                positions, (-1, self.num_heads, 1, self.num_hashes * window)
            ) + ops.zeros_like(bucket_cache[..., :1])
            every_round = token_ranks(
                every_positions,
                ops.take_along_axis(bucket_cache, every_positions, axis=-1),
                base_starts,
                starts,
                ranks,
                recent,
            )  # (batch, heads, rounds, rounds * window)
            key_chunks = ops.transpose(
                reshape(every_round // self.chunk_length, (-1, self.num_hashes) + rows[1:]),
                (0, 2, 3, 1),
            )
            query_chunks = reshape(chunk, (-1, 1, 1, self.num_hashes))
            counts = duplicate_counts(query_chunks, key_chunks, self.lookback, self.lookahead)
            offsets = ops.log(ops.cast(ops.maximum(counts, 1), "float32"))
        outputs, logsumexp = window_attention(
            query,
            window_keys,
            window_values,
            reshape(positions, rows),
            reshape(visible, rows),
            index,
            mask_self=True,
            logit_offsets=offsets,
        )
        outputs = combine_hash_rounds(ops.expand_dims(outputs, 2), ops.expand_dims(logsumexp, 2))

        kept = (order, base_starts) + ((ranks,) if ranks is not None else ())
        full = index + 1 - base_starts[..., -1:] >= slots  # rows whose recent slots are full

        def merged():
            # Those rows fold their recent tokens into the base.
            new = merge_recent(
                bucket_cache, order, base_starts, starts, ranks, recent, recent_ranks
            )
            return tuple(ops.where(full, after, before) for after, before in zip(new, kept))

        order, base_starts, *ranks = ops.cond(ops.any(full), merged, lambda: kept)
        return outputs[:, 0], (bucket_cache, order, base_starts, starts) + tuple(ranks)

    def _draw_rotations(self, shape, training):
        """Random rotations R ~ N(0, 1), a function of the rotation seed state.

        Training calls advance the generator (fresh rotations every step);
        other calls read its state without advancing it, so inference is
        deterministic. `portable_normal` draws the same numbers on every
        backend, so a model saved under one backend hashes alike under another.
        """
        return portable_normal(shape, call_seed(self.rotation_seed_generator, training))

    def _bucket_factors(self, length):
        if self.num_buckets is None:
            if not isinstance(length, int):
                raise ValueError(
                    "LSHSelfAttention with `num_buckets=None` picks the bucket count from the "
                    "sequence length, which is unknown while tracing this call (a TensorFlow "
                    "graph traced for several lengths, or a `None` length in the input "
                    "signature). Pass `num_buckets`, e.g. the factors "
                    "keras_reformer.ops.default_bucket_factors(keras_reformer.ops."
                    f"default_num_buckets(max_length, {self.chunk_length}), "
                    f"{self.chunk_length}) (ReformerModel's choice for max_length). "
                    f"Received: num_buckets=None, inputs of unknown length"
                )
            return default_bucket_factors_for_length(length, self.chunk_length)
        if isinstance(self.num_buckets, int):
            return (self.num_buckets,)
        return tuple(self.num_buckets)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_hashes": self.num_hashes,
                "num_buckets": self.num_buckets,
                "correct_duplicates": self.correct_duplicates,
            }
        )
        return config
