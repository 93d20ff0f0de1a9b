"""ReformerModel: the Reformer backbone as a functional Keras model."""

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_int
from keras_reformer.argument_checks import check_model_kwargs
from keras_reformer.argument_checks import check_num_buckets
from keras_reformer.argument_checks import check_positive_float
from keras_reformer.argument_checks import check_rate
from keras_reformer.argument_checks import check_seed
from keras_reformer.layers.axial_position_embedding import AxialPositionEmbedding
from keras_reformer.layers.chunked_feed_forward import ChunkedFeedForward
from keras_reformer.layers.full_self_attention import FullSelfAttention
from keras_reformer.layers.local_self_attention import LocalSelfAttention
from keras_reformer.layers.lsh_self_attention import LSHSelfAttention
from keras_reformer.layers.position_embedding import PositionEmbedding
from keras_reformer.layers.pre_layer_norm import PreLayerNorm
from keras_reformer.layers.randomness import SeededDropout
from keras_reformer.layers.randomness import derive_seed
from keras_reformer.layers.residual_block import ResidualBlock
from keras_reformer.layers.reversible import ReversibleBlock
from keras_reformer.layers.reversible import ReversibleSequence
from keras_reformer.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_reformer.layers.token_embedding import TokenEmbedding
from keras_reformer.models.input_checks import TokenIdChecks
from keras_reformer.models.input_checks import real_token_mask
from keras_reformer.ops.hashing import default_bucket_factors_for_length

ATTENTION_KINDS = ("lsh", "local", "full")
POSITION_EMBEDDING_KINDS = ("axial", "learned", "sinusoidal")


def _embed(
    token_embedding, position_layer, vocabulary_size, token_ids, padding_mask, start_index=0
):
    """Token plus position embeddings, zero where a token is padding or an
    invalid id (see `input_checks`), and the int32 mask of real tokens."""
    real = real_token_mask(token_ids, padding_mask, vocabulary_size)
    x = token_embedding(token_ids)
    x = x + position_layer(x, start_index=start_index)
    x = ops.where(ops.expand_dims(real, -1), x, 0)
    return x, ops.cast(real, "int32")


@reformer_export
class ReformerModel(TokenIdChecks, keras.Model):
    """The Reformer backbone: token ids to hidden states.

    Token embedding plus position information, duplicated into the two halves of
    a reversible stack of `num_layers` blocks, each block
    `Y1 = X1 + Attention(LayerNorm(X2))`, `Y2 = X2 + FeedForward(LayerNorm(Y1))`,
    then the halves concatenated and normalised. Activation memory does not
    grow with depth (see `ReversibleSequence`), and LSH attention costs
    O(L * chunk_length) instead of O(L^2).

    The same model is its own Transformer baseline (the paper's ablations):
    `attention_layers="full"` gives exact attention over the whole sequence,
    `shared_qk=False` separate query and key projections, and
    `reversible=False` ordinary residual blocks on one stream. Evaluate a
    trained model with other attention (more hash rounds, or full attention)
    with `keras_reformer.models.with_attention`.

    Args:
        vocabulary_size: number of token ids.
        num_layers: number of reversible blocks.
        hidden_dim: width of each reversible half; the output is `2 * hidden_dim` wide.
        num_heads: attention heads per layer.
        key_dim: per-head size of queries / keys / values. Defaults to
            `hidden_dim // num_heads`.
        intermediate_dim: width of the feed-forward intermediate. Defaults to
            `4 * hidden_dim`.
        chunk_length: attention chunk length. Defaults to `64`.
        num_hashes: LSH hash rounds. Defaults to `4`.
        num_buckets: LSH buckets per round: an even integer, or a list of
            factors (see `LSHSelfAttention`). Defaults to the paper's choice
            for `max_sequence_length`, about
            `2 * max_sequence_length / chunk_length`
            (`keras_reformer.ops.default_num_buckets`), split in two factors
            above `4 * chunk_length` buckets
            (`keras_reformer.ops.default_bucket_factors`). The count is fixed
            from `max_sequence_length` rather than picked by each call from
            its length, so that a sequence hashes the same whatever padding
            follows it (generation relies on that).
        causal: whether a position attends only to earlier ones (language
            models). Defaults to `False`.
        dropout: dropout rate of attention probabilities, feed-forward and
            embeddings. Defaults to `0.0`.
        max_sequence_length: the longest sequence accepted. Defaults to `2048`.
        attention_layers: `"lsh"`, `"local"`, `"full"` (exact attention over
            the whole sequence, `FullSelfAttention`, `chunk_length` queries at
            a time), or a list of those with one entry per layer (the paper
            and HF mix them). Defaults to `"lsh"`.
        shared_qk: whether queries and keys share one projection (the
            Reformer's shared-QK attention, with the self-mask). `False` gives
            separate query and key projections (standard attention, the
            paper's Figure 3); LSH layers need `True`. Defaults to `True`.
        reversible: whether the blocks are reversible (`ReversibleBlock`s in a
            `ReversibleSequence`: two streams of `hidden_dim`, memory flat in
            depth). `False` builds the same sublayers as ordinary pre-norm
            residual blocks (`ResidualBlock`) on one stream of `hidden_dim`:
            a standard Transformer, whose training memory grows with depth
            (the paper's Figure 5). Defaults to `True`.
        position_embedding: `"axial"` (factorised, few parameters), `"learned"`
            or `"sinusoidal"`. Defaults to `"axial"`.
        lookback: chunks before its own that a chunk attends to. Defaults to `1`.
        lookahead: chunks after its own that a chunk attends to (ignored when
            causal). Defaults to `0`.
        feed_forward_chunk_length: positions per feed-forward chunk: the
            `intermediate_dim`-wide activation exists for this many positions at
            a time, in the forward and the backward pass. Defaults to `2048`.
        layer_norm_epsilon: LayerNorm epsilon. Defaults to `1e-6`.
        tie_weights: whether a language-model head on this backbone reuses the
            token embedding (see `TokenEmbedding`). Defaults to `True`.
        seed: optional integer making hashing and dropout reproducible.
        dtype: dtype policy of every layer, e.g. `"mixed_bfloat16"`.
        correct_duplicates: whether LSH attention counts a key that a query
            sees in several hash rounds once (the paper's appendix A; see
            `LSHSelfAttention`). Defaults to `False`.
        attention_slices: the attention memory mode: how many (head, hash
            round) slices of each attention layer are computed at a time
            (one per head in local and full attention), in a sequential loop
            that rematerialises each group in the backward pass. Same results
            and gradients; training memory of the attention drops to one
            group's (see `LocalSelfAttention`). `1` for the longest sequences.
            Defaults to `None`: all slices at once.

    Call arguments:
        inputs: a dict with `"token_ids"` (batch, length) integers and
            optionally `"padding_mask"` (batch, length), 1 for real tokens.

    Returns:
        Hidden states of shape (batch, length, output_dim): `2 * hidden_dim`
        when reversible, `hidden_dim` otherwise.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    model = keras_reformer.models.ReformerModel(
        vocabulary_size=256, num_layers=2, hidden_dim=64, num_heads=2,
        chunk_length=32, max_sequence_length=1024,
    )
    token_ids = np.random.randint(0, 256, size=(2, 1000))
    hidden = model({"token_ids": token_ids, "padding_mask": np.ones((2, 1000))})
    ```

    References:
        Kitaev, Kaiser, Levskaya. "Reformer: The Efficient Transformer". ICLR 2020.
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        hidden_dim,
        num_heads,
        key_dim=None,
        intermediate_dim=None,
        chunk_length=64,
        num_hashes=4,
        num_buckets=None,
        causal=False,
        dropout=0.0,
        max_sequence_length=2048,
        attention_layers="lsh",
        position_embedding="axial",
        lookback=1,
        lookahead=0,
        feed_forward_chunk_length=2048,
        layer_norm_epsilon=1e-6,
        tie_weights=True,
        seed=None,
        dtype=None,
        correct_duplicates=False,
        shared_qk=True,
        reversible=True,
        attention_slices=None,
        **kwargs,
    ):
        check_model_kwargs("ReformerModel", kwargs, allowed=("name", "trainable"))
        # Every argument is checked here, before any is used (a derived seed or
        # a sublayer's own check would report another name or value).
        vocabulary_size = check_int("vocabulary_size", vocabulary_size)
        num_layers = check_int("num_layers", num_layers)
        hidden_dim = check_int("hidden_dim", hidden_dim)
        num_heads = check_int("num_heads", num_heads)
        if num_heads > hidden_dim:
            raise ValueError(
                f"`num_heads` must be at most `hidden_dim`={hidden_dim}. "
                f"Received: num_heads={num_heads}"
            )
        key_dim = hidden_dim // num_heads if key_dim is None else check_int("key_dim", key_dim)
        intermediate_dim = (
            4 * hidden_dim
            if intermediate_dim is None
            else check_int("intermediate_dim", intermediate_dim)
        )
        chunk_length = check_int("chunk_length", chunk_length)
        num_hashes = check_int("num_hashes", num_hashes)
        causal = check_bool("causal", causal)
        dropout = check_rate("dropout", dropout)
        max_sequence_length = check_int("max_sequence_length", max_sequence_length)
        lookback = check_int("lookback", lookback, 0)
        lookahead = check_int("lookahead", lookahead, 0)
        feed_forward_chunk_length = check_int(
            "feed_forward_chunk_length", feed_forward_chunk_length
        )
        layer_norm_epsilon = check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
        tie_weights = check_bool("tie_weights", tie_weights)
        seed = check_seed("seed", seed)
        correct_duplicates = check_bool("correct_duplicates", correct_duplicates)
        shared_qk = check_bool("shared_qk", shared_qk)
        reversible = check_bool("reversible", reversible)
        if attention_slices is not None:
            attention_slices = check_int("attention_slices", attention_slices)
        if num_buckets is not None:
            num_buckets = check_num_buckets(num_buckets)
        attention_kinds = self._attention_kinds(attention_layers, num_layers)
        if not shared_qk and "lsh" in attention_kinds:
            raise ValueError(
                "`shared_qk=False` needs attention without LSH: a query's hash bucket must be "
                "its keys' bucket. Use attention_layers='full' or 'local' (or keep "
                f"shared_qk=True). Received: shared_qk=False, attention_layers={attention_layers!r}"
            )
        if position_embedding not in POSITION_EMBEDDING_KINDS:
            raise ValueError(
                f"`position_embedding` must be one of {POSITION_EMBEDDING_KINDS}. "
                f"Received: position_embedding={position_embedding!r}"
            )
        if num_buckets is None:
            factors = default_bucket_factors_for_length(max_sequence_length, chunk_length)
            num_buckets = factors[0] if len(factors) == 1 else list(factors)

        # === Layers ===
        token_embedding = TokenEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=tie_weights,
            dtype=dtype,
            name="token_embedding",
        )
        position_layer = self._position_layer(position_embedding, max_sequence_length, dtype)
        embedding_dropout = SeededDropout(
            dropout, seed=derive_seed(seed, 0), dtype=dtype, name="embedding_dropout"
        )
        blocks = []
        for index, kind in enumerate(attention_kinds):
            attention = self._attention_layer(
                kind,
                index,
                num_heads=num_heads,
                key_dim=key_dim,
                chunk_length=chunk_length,
                causal=causal,
                dropout=dropout,
                seed=derive_seed(seed, 1 + 2 * index),
                dtype=dtype,
                lookback=lookback,
                lookahead=lookahead,
                num_hashes=num_hashes,
                num_buckets=num_buckets,
                correct_duplicates=correct_duplicates,
                shared_qk=shared_qk,
                attention_slices=attention_slices,
            )
            feed_forward = ChunkedFeedForward(
                intermediate_dim,
                chunk_length=feed_forward_chunk_length,
                dropout=dropout,
                seed=derive_seed(seed, 2 + 2 * index),
                dtype=dtype,
                name=f"feed_forward_{index}",
            )
            block_class = ReversibleBlock if reversible else ResidualBlock
            blocks.append(
                block_class(
                    PreLayerNorm(
                        attention,
                        epsilon=layer_norm_epsilon,
                        rematerialize=attention_slices is not None,
                        dtype=dtype,
                        name=f"attention_block_{index}",
                    ),
                    PreLayerNorm(
                        feed_forward,
                        epsilon=layer_norm_epsilon,
                        dtype=dtype,
                        name=f"feed_forward_block_{index}",
                    ),
                    dtype=dtype,
                    name=f"{'reversible' if reversible else 'residual'}_block_{index}",
                )
            )
        reversible_stack = None
        if reversible:
            reversible_stack = ReversibleSequence(
                blocks, seed=seed, dtype=dtype, name="reversible_stack"
            )
        output_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="output_norm"
        )

        # === Functional graph ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        # Invalid ids count as padding (see `input_checks`); padded positions
        # enter the stack as zeros, so nothing there can reach a real position.
        x, real = _embed(token_embedding, position_layer, vocabulary_size, token_ids, padding_mask)
        x = embedding_dropout(x)
        if reversible:
            x = ops.concatenate([x, x], axis=-1)
            x = reversible_stack(x, padding_mask=real)
        else:
            for block in blocks:
                x = block(x, padding_mask=real)
        outputs = output_norm(x)
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=outputs,
            dtype=dtype,
            **kwargs,
        )
        if dtype is not None:
            # Keras' functional Model.__init__ ignores `dtype`.
            self.dtype_policy = keras.dtype_policies.get(dtype)
        # Assigned after Model.__init__: torch modules cannot hold layers before it.
        self.token_embedding = token_embedding
        self.position_embedding = position_layer
        self.embedding_dropout = embedding_dropout
        self.reversible_stack = reversible_stack
        self.blocks = blocks
        self.output_norm = output_norm

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.intermediate_dim = intermediate_dim
        self.chunk_length = chunk_length
        self.num_hashes = num_hashes
        self.num_buckets = num_buckets
        self.correct_duplicates = correct_duplicates
        self.attention_slices = attention_slices
        self.shared_qk = shared_qk
        self.reversible = reversible
        self.causal = causal
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.attention_layers = attention_layers
        self.position_embedding_kind = position_embedding
        self.lookback = lookback
        self.lookahead = lookahead
        self.feed_forward_chunk_length = feed_forward_chunk_length
        self.layer_norm_epsilon = layer_norm_epsilon
        self.tie_weights = tie_weights
        self.seed = seed

    @staticmethod
    def _attention_kinds(attention_layers, num_layers):
        if isinstance(attention_layers, str):
            kinds = [attention_layers] * num_layers
        else:
            kinds = list(attention_layers) if isinstance(attention_layers, (list, tuple)) else []
        if len(kinds) != num_layers or any(kind not in ATTENTION_KINDS for kind in kinds):
            raise ValueError(
                f"`attention_layers` must be one of {ATTENTION_KINDS} or a list of them with "
                f"one entry per layer ({num_layers}). Received: attention_layers={attention_layers!r}"
            )
        return kinds

    @staticmethod
    def _attention_layer(
        kind, index, lookback, lookahead, num_hashes, num_buckets, correct_duplicates, **common
    ):
        name = f"{kind}_attention_{index}"
        if kind == "full":
            return FullSelfAttention(name=name, **common)
        common.update(lookback=lookback, lookahead=lookahead)
        if kind == "lsh":
            return LSHSelfAttention(
                num_hashes=num_hashes,
                num_buckets=num_buckets,
                correct_duplicates=correct_duplicates,
                name=name,
                **common,
            )
        return LocalSelfAttention(name=name, **common)

    @property
    def output_dim(self):
        """Width of the hidden states: `2 * hidden_dim` when reversible, else `hidden_dim`."""
        return 2 * self.hidden_dim if self.reversible else self.hidden_dim

    @staticmethod
    def _position_layer(kind, max_sequence_length, dtype):
        if kind == "axial":
            return AxialPositionEmbedding(
                max_sequence_length, dtype=dtype, name="position_embedding"
            )
        if kind == "learned":
            return PositionEmbedding(max_sequence_length, dtype=dtype, name="position_embedding")
        return SinusoidalPositionEmbedding(dtype=dtype, name="position_embedding")

    # === Cached generation ===

    def build_cache(self, token_ids, padding_mask=None):
        """Runs the model on a generation buffer and returns every layer's cache.

        The buffer's length is the cache's capacity; the positions a later
        `call_with_cache` will fill are padding (`padding_mask` 0) here.
        Needs `causal=True`; runs as inference (no dropout).

        Args:
            token_ids: `(batch, capacity)` integers.
            padding_mask: optional `(batch, capacity)`, 1 for known tokens.

        Returns:
            `(hidden_states, cache)`: `(batch, capacity, output_dim)`, and a
            tuple with one entry per block (nested tuples of tensors, batch
            first). `cache_bytes_per_token` gives its size.

        Example:

        ```python
        import numpy as np
        import keras_reformer

        model = keras_reformer.models.ReformerModel(
            vocabulary_size=256, num_layers=2, hidden_dim=64, num_heads=2,
            chunk_length=32, causal=True, max_sequence_length=128,
        )
        buffer = np.zeros((1, 128), "int32")
        buffer[0, :10] = np.arange(10)
        known = (np.arange(128) < 10)[None].astype("int32")
        hidden, cache = model.build_cache(buffer, known)
        next_hidden, cache = model.call_with_cache(buffer[:, 10:11], cache, 10)
        ```
        """
        self._check_causal_for_cache()
        token_ids = ops.convert_to_tensor(token_ids, "int32")
        if padding_mask is None:
            padding_mask = ops.ones_like(token_ids)
        x, real = _embed(
            self.token_embedding,
            self.position_embedding,
            self.vocabulary_size,
            token_ids,
            padding_mask,
        )
        if self.reversible:
            x = ops.concatenate([x, x], axis=-1)
        caches = []
        for block in self.blocks:
            x, cache = block.build_cache(x, padding_mask=real)
            caches.append(cache)
        return self.output_norm(x), tuple(caches)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """The hidden states of one new token per row, from and into the cache.

        Each layer's attention sees the cached states of the tokens before
        `cache_update_index`, as they were computed when those tokens were
        processed (see `build_cache`), and adds the new token's.

        Args:
            token_ids: `(batch, 1)` integers, the tokens at `cache_update_index`.
            cache: the cache from `build_cache` or a previous call.
            cache_update_index: int32 scalar, the new tokens' position.

        Returns:
            `(hidden_states, cache)`: `(batch, 1, output_dim)` and the updated cache.
        """
        self._check_causal_for_cache()
        token_ids = ops.convert_to_tensor(token_ids, "int32")
        x, _ = _embed(
            self.token_embedding,
            self.position_embedding,
            self.vocabulary_size,
            token_ids,
            ops.ones_like(token_ids),
            start_index=cache_update_index,
        )
        if self.reversible:
            x = ops.concatenate([x, x], axis=-1)
        caches = []
        for block, block_cache in zip(self.blocks, cache):
            x, block_cache = block.call_with_cache(x, block_cache, cache_update_index)
            caches.append(block_cache)
        return self.output_norm(x), tuple(caches)

    def cache_bytes_per_token(self):
        """Bytes of generation cache per token, per layer.

        Returns:
            A list with one int per layer: its attention's
            `cache_bytes_per_token()` (keys and values, plus bucket and sort
            entries for LSH layers). A cache for `n` positions takes `n` times
            their sum.
        """
        return [block.f.layer.cache_bytes_per_token() for block in self.blocks]

    def _check_causal_for_cache(self):
        if not self.causal:
            raise ValueError(
                "Cached generation needs a causal model (each token computed once, from the "
                "tokens before it). Received: causal=False"
            )

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras' input-spec check, which would refuse a missing padding mask.
        inputs = self._complete_inputs(inputs, check_values=True)
        return super().__call__(inputs, *args, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "intermediate_dim": self.intermediate_dim,
            "chunk_length": self.chunk_length,
            "num_hashes": self.num_hashes,
            "num_buckets": self.num_buckets,
            "correct_duplicates": self.correct_duplicates,
            "attention_slices": self.attention_slices,
            "shared_qk": self.shared_qk,
            "reversible": self.reversible,
            "causal": self.causal,
            "dropout": self.dropout,
            "max_sequence_length": self.max_sequence_length,
            "attention_layers": self.attention_layers,
            "position_embedding": self.position_embedding_kind,
            "lookback": self.lookback,
            "lookahead": self.lookahead,
            "feed_forward_chunk_length": self.feed_forward_chunk_length,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_weights": self.tie_weights,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)
