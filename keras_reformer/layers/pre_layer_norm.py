"""PreLayerNorm: LayerNormalization, then a wrapped layer."""

import keras

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_positive_float
from keras_reformer.layers.position_wise import chunk_size_of
from keras_reformer.layers.position_wise import is_position_wise
from keras_reformer.layers.sublayer_arguments import call_sublayer_with_cache
from keras_reformer.layers.sublayer_arguments import prefill_sublayer
from keras_reformer.layers.sublayer_arguments import sublayer_kwargs
from keras_reformer.ops.masks import zero_padding
from keras_reformer.ops.normalization import layer_norm


@reformer_export
class PreLayerNorm(keras.layers.Layer):
    """Layer normalisation followed by a wrapped layer: `layer(LayerNorm(x))`.

    The Reformer's F and G: `F = PreLayerNorm(LSHSelfAttention(...))`,
    `G = PreLayerNorm(ChunkedFeedForward(...))`. `padding_mask` and `training`
    reach the wrapped layer when its `call` accepts them. Layer normalisation
    is position-wise, so the wrapper is position-wise exactly when the wrapped
    layer is (`position_wise`, `chunk_size`, `position_offset`: the
    position-wise protocol of `keras_reformer.layers.position_wise`). Padded
    positions (a false / 0 `padding_mask`) are replaced by zeros first, so
    that whatever they hold, NaN and Inf included, reaches neither the
    outputs at real positions nor any gradient.

    Args:
        layer: the wrapped `keras.layers.Layer`.
        epsilon: the layer normalisation's epsilon. Defaults to `1e-6`.
        rematerialize: if `True`, the backward pass recomputes the
            normalisation from its input (`keras.remat`) instead of keeping
            its intermediates: about two fewer `(batch, length, width)`
            tensors alive in training, for one more normalisation. Same
            outputs and gradients. `ReformerModel` sets it on the attention
            blocks in the attention memory mode. Defaults to `False`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (batch, length, width) tensor.
        padding_mask: optional (batch, length), 1 for real tokens.
        training: whether dropout is active.
        position_offset: optional int, forwarded to a position-wise layer.

    Returns:
        The wrapped layer's output.

    Example:

    ```python
    import numpy as np
    import keras_reformer
    g = keras_reformer.layers.PreLayerNorm(
        keras_reformer.layers.ChunkedFeedForward(64, chunk_length=16))
    y = g(np.ones((2, 100, 32), "float32"))  # (2, 100, 32)
    ```

    References:
        Xiong et al., "On Layer Normalization in the Transformer Architecture",
        2020 (arXiv 2002.04745); Kitaev, Kaiser, Levskaya, "Reformer: The
        Efficient Transformer", ICLR 2020.
    """

    def __init__(self, layer, epsilon=1e-6, rematerialize=False, **kwargs):
        # As `keras.layers.LayerNormalization`: the norm reads its weights in
        # their own dtype (float32 under mixed precision); the wrapped layer
        # autocasts in its own call.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.layer = layer
        self.epsilon = check_positive_float("epsilon", epsilon)
        self.rematerialize = check_bool("rematerialize", rematerialize)

    @property
    def position_wise(self):
        """Whether the wrapped layer is position-wise (see
        `keras_reformer.layers.position_wise`)."""
        return is_position_wise(self.layer)

    def chunk_size(self, length):
        """The wrapped position-wise layer's chunk size (see
        `keras_reformer.layers.position_wise`)."""
        return chunk_size_of(self.layer, length)

    def build(self, inputs_shape):
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build(inputs_shape)
        if not self.layer.built:
            self.layer.build(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None, position_offset=None):
        kwargs = sublayer_kwargs(self.layer, padding_mask, training, position_offset)
        if padding_mask is not None:
            inputs = zero_padding(inputs, padding_mask)
        # The weights are arguments, not closed over: TensorFlow's
        # rematerialisation differentiates its arguments only. (Without it,
        # `_normalize` is the layer norm's call without Keras' call machinery,
        # which on eager torch costs more host time than the norm itself.)
        normalize = keras.remat(self._normalize) if self.rematerialize else self._normalize
        norm = self.layer_norm
        return self.layer(normalize(inputs, norm.gamma.value, norm.beta.value), **kwargs)

    def _normalize(self, inputs, gamma, beta):
        # `keras.layers.LayerNormalization.call` with the weights given.
        norm = self.layer_norm
        outputs = layer_norm(inputs, gamma, beta, norm.epsilon)
        return keras.ops.cast(outputs, norm.compute_dtype)

    def build_cache(self, inputs, padding_mask=None):
        """`(outputs, cache)` on a generation buffer: see `LSHSelfAttention.build_cache`."""
        if padding_mask is not None:
            inputs = zero_padding(inputs, padding_mask)
        return prefill_sublayer(self.layer, self.layer_norm(inputs), padding_mask)

    def call_with_cache(self, inputs, cache, cache_update_index):
        """`(outputs, cache)` for one new token: see `LSHSelfAttention.call_with_cache`."""
        return call_sublayer_with_cache(
            self.layer, self.layer_norm(inputs), cache, cache_update_index
        )

    def compute_output_shape(self, inputs_shape):
        return self.layer.compute_output_shape(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": keras.saving.serialize_keras_object(self.layer),
                "epsilon": self.epsilon,
                "rematerialize": self.rematerialize,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)
