"""Which optional call arguments a wrapped sublayer accepts."""

import inspect


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
