"""ResidualBlock: the Transformer's two residual connections, the baseline of ReversibleBlock."""

from keras_reformer.api_export import reformer_export
from keras_reformer.layers.sublayer_arguments import SublayerPair
from keras_reformer.layers.sublayer_arguments import call_sublayer_with_cache
from keras_reformer.layers.sublayer_arguments import prefill_sublayer
from keras_reformer.layers.sublayer_arguments import sublayer_kwargs


@reformer_export
class ResidualBlock(SublayerPair):
    """Two ordinary residual connections on one stream: Y = X + F(X), Z = Y + G(Y).

    The standard (pre-norm) Transformer block when F and G are
    `PreLayerNorm`-wrapped attention and feed-forward layers, and the baseline
    of `ReversibleBlock`, which computes `Y1 = X1 + F(X2)`, `Y2 = X2 + G(Y1)`
    on two streams. Trained by plain autodiff: a stack of these keeps every
    block's activations for the backward pass, so its training memory grows
    with depth (the paper's Figure 5 compares the two).

    Args:
        f: a layer mapping (batch, length, d) to (batch, length, d), e.g.
            `PreLayerNorm(FullSelfAttention(...))`.
        g: a layer of the same shape contract, e.g.
            `PreLayerNorm(ChunkedFeedForward(...))`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (batch, length, d) tensor.
        padding_mask: optional (batch, length), 1 for real tokens; forwarded to
            `f` / `g` only if their `call` accepts `padding_mask`.
        training: forwarded likewise.

    Returns:
        (batch, length, d) tensor.

    Example:

    ```python
    import keras, numpy as np
    import keras_reformer
    block = keras_reformer.layers.ResidualBlock(
        keras.layers.Dense(8), keras.layers.Dense(8))
    y = block(np.ones((2, 5, 8), "float32"))  # (2, 5, 8)
    ```

    References:
        He et al., "Deep Residual Learning for Image Recognition", 2016;
        Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR
        2020, section 3 and Figure 5.
    """

    def build(self, inputs_shape):
        for layer in (self.f, self.g):
            if not layer.built:
                layer.build(tuple(inputs_shape))
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        y = inputs + self.f(inputs, **sublayer_kwargs(self.f, padding_mask, training))
        return y + self.g(y, **sublayer_kwargs(self.g, padding_mask, training))

    def build_cache(self, inputs, padding_mask=None):
        """The block on a generation buffer, and the caches of `f` and `g`
        (see `ReversibleBlock.build_cache`).

        Returns:
            `(outputs, (f_cache, g_cache))`.
        """
        f_out, f_cache = prefill_sublayer(self.f, inputs, padding_mask)
        y = inputs + f_out
        g_out, g_cache = prefill_sublayer(self.g, y, padding_mask)
        return y + g_out, (f_cache, g_cache)

    def call_with_cache(self, inputs, cache, cache_update_index):
        """The block on one new token `(batch, 1, d)`, from and into `cache`.

        Returns:
            `(outputs, cache)`.
        """
        f_out, f_cache = call_sublayer_with_cache(self.f, inputs, cache[0], cache_update_index)
        y = inputs + f_out
        g_out, g_cache = call_sublayer_with_cache(self.g, y, cache[1], cache_update_index)
        return y + g_out, (f_cache, g_cache)
