"""The position-wise protocol: how a sublayer says that it treats every
position on its own, and the one place where the package reads it.

A layer is *position-wise* when output position t depends only on input
position t (a feed-forward network, a layer normalisation, ...). It declares
so by providing all three of:

- `position_wise`: a true attribute (a class attribute, or a property, as on a
  wrapper that is position-wise exactly when the layer it wraps is);
- `chunk_size(length)`: the positions per chunk in which it computes a
  sequence of `length` (a Python int, or `None` while tracing for an unknown
  length), or `None` for one chunk; the last chunk may be shorter;
- a `position_offset=None` argument of `call`: when given (an int or an int
  scalar tensor), `inputs` is ONE chunk of a longer sequence that starts at
  this position, and the layer must compute exactly what it computes for
  those positions in the whole sequence (the same dropout mask included),
  without chunking further.

What the package does with it:

- `ReversibleSequence` pulls the gradient back through a position-wise
  sublayer chunk by chunk (one loop over chunks of `chunk_size(length)`, each
  recomputed with its `position_offset`), so the layer's wide intermediate
  never exists for the whole sequence in the backward pass either;
- `PreLayerNorm` is position-wise exactly when the layer it wraps is, and
  passes all three through;
- cached generation runs a position-wise sublayer on each new token alone,
  with no cache of its own (a sublayer that is neither position-wise nor has
  `build_cache` / `call_with_cache` cannot generate token by token).

A layer without a true `position_wise` attribute is not position-wise: it
always sees the whole sequence and never gets a `position_offset`.
`ChunkedFeedForward` implements the protocol. The functions below are the only
readers of these attributes.
"""


def is_position_wise(layer):
    """Whether `layer` declares the position-wise protocol (`position_wise` true)."""
    return bool(getattr(layer, "position_wise", False))


def chunk_size_of(layer, length):
    """Positions per chunk of a position-wise `layer` on a sequence of
    `length` (its `chunk_size(length)`); `None` (one chunk) for other layers."""
    return layer.chunk_size(length) if is_position_wise(layer) else None


def position_offset_kwargs(layer, position_offset):
    """`{"position_offset": position_offset}` when `layer` is position-wise
    and an offset is given, else `{}`: the offset reaches only layers that
    accept it."""
    if position_offset is None or not is_position_wise(layer):
        return {}
    return {"position_offset": position_offset}
