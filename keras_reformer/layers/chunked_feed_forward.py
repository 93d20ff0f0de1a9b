"""ChunkedFeedForward: the position-wise feed-forward, one sequence chunk at a time."""

import math

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_int
from keras_reformer.argument_checks import check_rate
from keras_reformer.argument_checks import check_seed
from keras_reformer.layers.initializers import clone_initializer
from keras_reformer.layers.randomness import FixedSeed
from keras_reformer.layers.randomness import SavesSeedStates
from keras_reformer.layers.randomness import concrete_seed
from keras_reformer.ops.chunking import scan_sequence_chunks


@reformer_export
class ChunkedFeedForward(SavesSeedStates, keras.layers.Layer):
    """Position-wise feed-forward applied to sequence chunks one at a time.

    Computes `Dense(input width)(dropout(Dense(intermediate_dim, activation)(x)))`
    on chunks of `chunk_length` positions (the last chunk may be shorter), so
    the (length x intermediate_dim) intermediate never exists for the whole
    sequence; the output equals the unchunked feed-forward.

    The layer is *position-wise* (`position_wise = True`): output position t
    depends only on input position t. It implements the position-wise
    protocol (`keras_reformer.layers.position_wise`: `position_wise`,
    `chunk_size(length)`, `position_offset`), which
    `keras_reformer.layers.ReversibleSequence` uses to pull gradients back
    through it chunk by chunk as well. The chunks run as one loop
    (`keras_reformer.ops.scan_sequence_chunks`), so the compiled program does
    not grow with the number of chunks. Dropout masks are keyed by the
    chunk's first position and one seed drawn per call, so a chunk recomputed
    on its own (`position_offset`) replays its mask exactly.

    Args:
        intermediate_dim: width of the hidden layer (d_ff), a positive int.
        chunk_length: positions per chunk. Defaults to `None`.
        num_chunks: alternatively, the number of chunks (chunk length
            `ceil(length / num_chunks)`). At most one of the two may be given;
            with neither the whole sequence is one chunk. Defaults to `None`.
        activation: activation of the hidden layer. Defaults to `"gelu"`.
        dropout: dropout rate on the hidden activations, in [0, 1).
            Defaults to `0.0`.
        use_bias: whether the two dense layers use biases. Defaults to `True`.
        kernel_initializer: initializer of both kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        seed: optional int seed of the dropout. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (batch, length, width) tensor.
        training: whether dropout is active.
        position_offset: optional int (or int scalar tensor); when given,
            `inputs` is ONE chunk of a longer sequence starting at this
            position (applied without further chunking, with that chunk's
            dropout mask). Used by the reversible backward pass.

    Returns:
        (batch, length, width) tensor.

    Example:

    ```python
    import numpy as np
    import keras_reformer
    ff = keras_reformer.layers.ChunkedFeedForward(64, chunk_length=16)
    y = ff(np.ones((2, 100, 32), "float32"))  # (2, 100, 32)
    ```

    References:
        Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer",
        ICLR 2020, section 4 (chunking).
    """

    position_wise = True

    def __init__(
        self,
        intermediate_dim,
        chunk_length=None,
        num_chunks=None,
        activation="gelu",
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        intermediate_dim = check_int("intermediate_dim", intermediate_dim)
        if chunk_length is not None and num_chunks is not None:
            raise ValueError(
                "Give at most one of `chunk_length` and `num_chunks`. Received: "
                f"chunk_length={chunk_length}, num_chunks={num_chunks}"
            )
        if chunk_length is not None:
            chunk_length = check_int("chunk_length", chunk_length)
        if num_chunks is not None:
            num_chunks = check_int("num_chunks", num_chunks)
        dropout = check_rate("dropout", dropout)
        seed = check_seed("seed", seed)
        self.intermediate_dim = intermediate_dim
        self.chunk_length = chunk_length
        self.num_chunks = num_chunks
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(concrete_seed(seed))

    def _dense(self, units, activation, name):
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        self.intermediate_dense = self._dense(
            self.intermediate_dim, self.activation, "intermediate_dense"
        )
        self.intermediate_dense.build(inputs_shape)
        self.output_dense = self._dense(inputs_shape[-1], None, "output_dense")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def chunk_size(self, length):
        """Positions per chunk for a sequence of `length` (a Python int, or
        `None` when unknown while tracing). The last chunk may be shorter.
        An unknown length keeps `chunk_length` and gives `None` (one chunk)
        otherwise, since `num_chunks` needs the length."""
        if self.chunk_length is not None:
            return self.chunk_length
        if length is None:
            return None
        if self.num_chunks is not None:
            return max(1, math.ceil(length / self.num_chunks))
        return max(length, 1)

    def call(self, inputs, training=None, position_offset=None):
        seed = None
        if training and self.dropout > 0:
            seed = self.seed_generator.next()  # one draw per call, keyed per chunk below
        if position_offset is not None:
            return self._feed_forward(inputs, position_offset, seed)
        length = inputs.shape[1]
        size = self.chunk_size(length)
        if size is None or (length is not None and size >= length):
            return self._feed_forward(inputs, 0, seed)
        _, (outputs,) = scan_sequence_chunks(
            lambda carry, start, chunk: (carry, (self._feed_forward(chunk, start, seed),)),
            (),
            (inputs,),
            size,
        )
        return outputs

    def _feed_forward(self, inputs, start, seed):
        hidden = self.intermediate_dense(inputs)
        if seed is not None:
            # The chunk's mask is keyed by its first position: (seed0 + start, seed1).
            start = ops.cast(ops.convert_to_tensor(start), seed.dtype)
            offset = ops.stack([start, ops.zeros_like(start)])
            hidden = keras.random.dropout(hidden, self.dropout, seed=FixedSeed(seed + offset))
        return self.output_dense(hidden)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "chunk_length": self.chunk_length,
                "num_chunks": self.num_chunks,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "seed": self.seed,
            }
        )
        return config
