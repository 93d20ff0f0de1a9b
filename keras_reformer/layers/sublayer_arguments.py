"""Sublayers: which optional call arguments a wrapped layer accepts, and the
base of the blocks that hold two."""

import functools
import inspect

import keras

from keras_reformer.layers.position_wise import is_position_wise
from keras_reformer.layers.position_wise import position_offset_kwargs


def accepts(layer, argument):
    """Whether `layer.call` takes `argument` (or `**kwargs`)."""
    call = layer.call
    # A method's signature is read once per function (this runs on every call).
    function = getattr(call, "__func__", None)
    if function is None:
        return argument in _accepted(call)
    return argument in _accepted_by_function(function)


def _accepted(call):
    """The argument names `call` takes, or everything where it takes `**kwargs`."""
    parameters = inspect.signature(call).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return _ANYTHING
    return frozenset(parameters)


_accepted_by_function = functools.lru_cache(maxsize=None)(_accepted)


class _Anything:
    def __contains__(self, name):
        return True


_ANYTHING = _Anything()


def sublayer_kwargs(layer, padding_mask=None, training=None, position_offset=None):
    """The call arguments among `padding_mask`, `training` and
    `position_offset` that `layer` accepts, each only when given.

    `position_offset` is part of the position-wise protocol
    (`keras_reformer.layers.position_wise`): it is passed only to
    position-wise layers, which must accept it.
    """
    kwargs = {}
    if padding_mask is not None and accepts(layer, "padding_mask"):
        kwargs["padding_mask"] = padding_mask
    if training is not None and accepts(layer, "training"):
        kwargs["training"] = training
    kwargs.update(position_offset_kwargs(layer, position_offset))
    return kwargs


def prefill_sublayer(layer, inputs, padding_mask):
    """`(outputs, cache)` of a sublayer on the known part of a generation buffer.

    A layer with a `build_cache` method (the attention layers, `PreLayerNorm`)
    returns its cache; a position-wise layer (see
    `keras_reformer.layers.position_wise`) needs none (its cache is `()`).
    Others cannot generate token by token.
    """
    if hasattr(layer, "build_cache"):
        return layer.build_cache(inputs, padding_mask=padding_mask)
    _check_position_wise(layer)
    return layer(inputs, **sublayer_kwargs(layer, padding_mask, False)), ()


def call_sublayer_with_cache(layer, inputs, cache, cache_update_index):
    """`(outputs, cache)` of a sublayer on one new token (see `prefill_sublayer`)."""
    if hasattr(layer, "call_with_cache"):
        return layer.call_with_cache(inputs, cache, cache_update_index)
    _check_position_wise(layer)
    return layer(inputs, **sublayer_kwargs(layer, None, False)), cache


def _check_position_wise(layer):
    if not is_position_wise(layer):
        raise ValueError(
            f"Cached generation runs each sublayer one token at a time: {layer.name!r} "
            f"({type(layer).__name__}) needs `build_cache` / `call_with_cache` methods "
            "(as the attention layers have) or `position_wise = True`. Received: "
            f"{type(layer).__name__} without either"
        )


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
        config.update(
            {
                "f": keras.saving.serialize_keras_object(self.f),
                "g": keras.saving.serialize_keras_object(self.g),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["f"] = keras.saving.deserialize_keras_object(config["f"])
        config["g"] = keras.saving.deserialize_keras_object(config["g"])
        return cls(**config)
