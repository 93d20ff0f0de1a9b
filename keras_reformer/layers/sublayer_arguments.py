"""Sublayers: which optional call arguments a wrapped layer accepts, and the
base of the blocks that hold two."""

import inspect

import keras


def accepts(layer, argument):
    """Whether `layer.call` takes `argument` (or `**kwargs`)."""
    parameters = inspect.signature(layer.call).parameters
    return argument in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def sublayer_kwargs(layer, padding_mask=None, training=None, position_offset=None):
    """The call arguments among `padding_mask`, `training` and
    `position_offset` that `layer` accepts, each only when given.

    `position_offset` is part of the position-wise protocol (see
    `keras_reformer.layers.ChunkedFeedForward`): it is passed only to layers
    that declare `position_wise = True`, which must accept it.
    """
    kwargs = {}
    if padding_mask is not None and accepts(layer, "padding_mask"):
        kwargs["padding_mask"] = padding_mask
    if training is not None and accepts(layer, "training"):
        kwargs["training"] = training
    if position_offset is not None:
        kwargs["position_offset"] = position_offset
    return kwargs


class SublayerPair(keras.layers.Layer):
    """Base of the blocks made of two sublayers `f` and `g` (residual or
    reversible): holds them and (de)serialises them in the config.

    Args:
        f: the first sublayer (attention, in the Reformer).
        g: the second sublayer (feed-forward, in the Reformer).
        **kwargs: base layer arguments (`name`, `dtype`, ...).
    """

    def __init__(self, f, g, **kwargs):
        super().__init__(**kwargs)
        self.f = f
        self.g = g

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "f": keras.saving.serialize_keras_object(self.f),
            "g": keras.saving.serialize_keras_object(self.g),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["f"] = keras.saving.deserialize_keras_object(config["f"])
        config["g"] = keras.saving.deserialize_keras_object(config["g"])
        return cls(**config)
