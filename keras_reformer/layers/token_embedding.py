"""TokenEmbedding: token ids to vectors, and vectors back to vocabulary logits."""

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_int


@reformer_export
class TokenEmbedding(keras.layers.Layer):
    """A token embedding that also maps hidden states back to vocabulary logits.

    Called on integer ids it looks up rows of the embedding matrix E of shape
    (vocabulary_size, output_dim). Called with `reverse=True` on hidden states
    it returns logits `x @ E^T` (tied weights, Press & Wolf 2017) or, with
    `tie_weights=False`, `x @ W` with a separate output matrix. A reversible
    model's hidden states have two halves; pass `reverse_input_halves=2` to sum
    them first, which is the same as tying with the stacked matrix [E; E].

    Args:
        vocabulary_size: number of token ids.
        output_dim: embedding width.
        tie_weights: whether the reverse projection reuses the embedding
            matrix. Defaults to `True`.
        embeddings_initializer: initializer of the embedding (and output)
            matrix. Defaults to `RandomNormal(stddev=output_dim ** -0.5)`.
        reverse_input_halves: the reverse input is this many concatenated
            `output_dim`-wide parts, summed before projecting. Defaults to `1`.

    Call arguments:
        inputs: integer ids (batch, length), or hidden states
            (batch, length, reverse_input_halves * output_dim) when `reverse`.
            Ids outside `[0, vocabulary_size)` are clipped to the nearest
            valid id (`ReformerModel` refuses them, or treats their
            positions as padding in compiled steps).
        reverse: whether to compute logits instead of embeddings.

    Returns:
        Embeddings (batch, length, output_dim), or logits
        (batch, length, vocabulary_size) when `reverse`.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    embedding = keras_reformer.layers.TokenEmbedding(256, 64)
    vectors = embedding(np.array([[1, 2, 3]]))      # (1, 3, 64)
    logits = embedding(vectors, reverse=True)       # (1, 3, 256)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        output_dim,
        tie_weights=True,
        embeddings_initializer=None,
        reverse_input_halves=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        vocabulary_size = check_int("vocabulary_size", vocabulary_size)
        output_dim = check_int("output_dim", output_dim)
        reverse_input_halves = check_int("reverse_input_halves", reverse_input_halves)
        tie_weights = check_bool("tie_weights", tie_weights)
        self.vocabulary_size = vocabulary_size
        self.output_dim = output_dim
        self.tie_weights = tie_weights
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=output_dim**-0.5)
        )
        self.reverse_input_halves = reverse_input_halves

    def build(self, inputs_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.vocabulary_size, self.output_dim),
            initializer=self.embeddings_initializer,
            name="embeddings",
        )
        if not self.tie_weights:
            self.reverse_kernel = self.add_weight(
                shape=(self.output_dim, self.vocabulary_size),
                initializer=self.embeddings_initializer,
                name="reverse_kernel",
            )
        self.built = True

    def call(self, inputs, reverse=False):
        if not reverse:
            # Out-of-range ids would be NaN on JAX, wrap around or fail elsewhere.
            ids = ops.clip(ops.cast(inputs, "int32"), 0, self.vocabulary_size - 1)
            return ops.take(self.embeddings, ids, axis=0)
        parts = ops.split(inputs, self.reverse_input_halves, axis=-1)
        summed = parts[0]
        for part in parts[1:]:
            summed = summed + part
        kernel = ops.transpose(self.embeddings) if self.tie_weights else self.reverse_kernel
        return ops.matmul(summed, ops.cast(kernel, summed.dtype))

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape) + (self.output_dim,)

    def compute_output_spec(self, inputs, reverse=False):
        if reverse:
            shape = tuple(inputs.shape[:-1]) + (self.vocabulary_size,)
        else:
            shape = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "output_dim": self.output_dim,
                "tie_weights": self.tie_weights,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "reverse_input_halves": self.reverse_input_halves,
            }
        )
        return config
