"""TokenEmbedding: token ids to vectors, and vectors back to vocabulary logits."""

import warnings

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_int
from keras_reformer.ops.masks import clip_ids


@reformer_export
class TokenEmbedding(keras.layers.ReversibleEmbedding):
    """A token embedding that also maps hidden states back to vocabulary logits.

    Keras' `ReversibleEmbedding` with the vocabulary size named
    `vocabulary_size`, out-of-range ids clipped, a default initializer scaled
    to the width, and logits in the layer's compute dtype. Called on integer
    ids it looks up rows of the embedding matrix E of shape
    (vocabulary_size, output_dim). Called with `reverse=True` on hidden states
    it returns logits `x @ E^T` (tied weights, Press & Wolf 2017) or, with
    `tie_weights=False`, `x @ W` with a separate matrix `reverse_embeddings`
    of shape (output_dim, vocabulary_size). LoRA (`lora_rank`,
    `enable_lora`) and quantization (`quantize("int8")`) come with Keras'
    layer.

    A reversible model's two halves are summed by its language-model head
    (`ReformerCausalLM`), not here.

    Args:
        vocabulary_size: number of token ids (Keras' `input_dim`).
        output_dim: embedding width.
        tie_weights: whether the reverse projection reuses the embedding
            matrix. Defaults to `True`.
        embeddings_initializer: initializer of the embedding (and reverse)
            matrix. Defaults to `RandomNormal(stddev=output_dim ** -0.5)`.
        reverse_input_halves: deprecated, kept so that configs saved before
            it moved to the language-model head still load: the reverse input
            is this many concatenated `output_dim`-wide parts, summed before
            projecting. Defaults to `1`; other values warn.
        **kwargs: passed to `keras.layers.ReversibleEmbedding`, e.g.
            `reverse_dtype` (defaults to the compute dtype, so that logits
            keep the hidden states' dtype under a mixed policy),
            `logit_soft_cap`, `embeddings_regularizer`, `lora_rank`, `name`,
            `dtype`.

    Call arguments:
        inputs: integer ids (batch, length), or hidden states
            (batch, length, output_dim) when `reverse`. Ids outside
            `[0, vocabulary_size)` are clipped to the nearest valid id
            (`ReformerModel` refuses them, or treats their positions as
            padding in compiled steps).
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
        vocabulary_size = check_int("vocabulary_size", vocabulary_size)
        output_dim = check_int("output_dim", output_dim)
        reverse_input_halves = check_int("reverse_input_halves", reverse_input_halves)
        tie_weights = check_bool("tie_weights", tie_weights)
        if reverse_input_halves != 1:
            warnings.warn(
                "`reverse_input_halves` is deprecated: sum the halves before the reverse "
                "projection (ReformerCausalLM does). "
                f"Received: reverse_input_halves={reverse_input_halves}",
                DeprecationWarning,
                stacklevel=2,
            )
        if embeddings_initializer is None:
            embeddings_initializer = keras.initializers.RandomNormal(stddev=output_dim**-0.5)
        super().__init__(
            vocabulary_size,
            output_dim,
            tie_weights=tie_weights,
            embeddings_initializer=embeddings_initializer,
            **kwargs,
        )
        self.reverse_input_halves = reverse_input_halves

    @property
    def vocabulary_size(self):
        """The number of token ids (Keras' `input_dim`)."""
        return self.input_dim

    def _valid_ids(self, ids):
        # Out-of-range ids would be NaN on JAX, wrap around or fail elsewhere.
        return clip_ids(ids, self.input_dim)

    def _summed_halves(self, inputs):
        if self.reverse_input_halves == 1:
            return inputs
        parts = ops.split(inputs, self.reverse_input_halves, axis=-1)
        summed = parts[0]
        for part in parts[1:]:
            summed = summed + part
        return summed

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(self._valid_ids(inputs))
        inputs = self._summed_halves(inputs)
        if self.reverse_dtype is not None:
            return super().call(inputs, reverse=True)
        # Keras' layer would multiply by the float32 variable, giving float32
        # logits under a mixed policy; ours stay in the inputs' (compute) dtype.
        kernel = ops.transpose(self.embeddings) if self.tie_weights else self.reverse_embeddings
        logits = ops.matmul(inputs, ops.cast(kernel, inputs.dtype))
        if self.logit_soft_cap is not None:
            logits = ops.tanh(logits / self.logit_soft_cap) * self.logit_soft_cap
        return logits

    def quantized_call(self, inputs, reverse=False):
        if reverse:
            inputs = self._summed_halves(inputs)
        else:
            inputs = self._valid_ids(inputs)
        return super().quantized_call(inputs, reverse=reverse)

    def quantize(self, mode=None, type_check=True, config=None):
        if type_check and type(self) is not TokenEmbedding:
            raise self._not_implemented_error(self.quantize)
        super().quantize(mode, type_check=False, config=config)

    def get_config(self):
        config = super().get_config()
        config = {"vocabulary_size": config.pop("input_dim"), **config}
        if self.reverse_input_halves != 1:
            config["reverse_input_halves"] = self.reverse_input_halves
        return config
