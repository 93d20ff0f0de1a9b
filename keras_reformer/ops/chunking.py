"""Splitting a sequence into chunks and looking at neighbouring chunks.

Chunked attention (Reformer, Kitaev et al. 2020, section 3) lets every chunk of
`chunk_length` positions attend to itself and a few neighbouring chunks, so the
cost is linear in the sequence length. These helpers only move data around.
"""

import keras
from keras import ops

from keras_reformer import backend
from keras_reformer.ops.shapes import axis_size
from keras_reformer.ops.shapes import reshape


def pad_to_multiple(x, multiple, axis=1, constant_value=0):
    """Pads `x` at the end of `axis` so that its length is a multiple of `multiple`.

    Args:
        x: a tensor.
        multiple: a positive integer (or an int scalar tensor).
        axis: the axis to pad. Defaults to `1` (the sequence axis).
        constant_value: the padding value. Defaults to `0`.

    Returns:
        `x` unchanged when its static length already is a multiple, else `x`
        padded with `constant_value` to the next multiple (a length unknown
        while tracing is padded by a run-time amount, possibly zero).
    """
    length = axis_size(x, axis)
    padding = (-length) % multiple
    if isinstance(padding, int) and padding == 0:
        return x
    pad_width = [(0, 0)] * len(x.shape)
    pad_width[axis] = (0, padding)
    return ops.pad(x, pad_width, constant_values=constant_value)


def split_chunks(x, chunk_length):
    """Reshapes `(batch, length, ...)` into `(batch, length // chunk_length, chunk_length, ...)`.

    Args:
        x: a tensor whose length (axis 1) is a multiple of `chunk_length`
            (checked where both are known while tracing).
        chunk_length: positions per chunk (an int, or an int scalar tensor).

    Returns:
        The chunked tensor (no copy of data).
    """
    length = axis_size(x, 1)
    if isinstance(length, int) and isinstance(chunk_length, int) and length % chunk_length:
        raise ValueError(
            f"The length ({length}) must be a multiple of `chunk_length`. "
            f"Received: chunk_length={chunk_length}"
        )
    return reshape(x, (-1, length // chunk_length, chunk_length) + tuple(x.shape[2:]))


def merge_chunks(x):
    """Inverse of `split_chunks`: joins the chunk axis back into the sequence axis.

    Args:
        x: `(batch, num_chunks, chunk_length, ...)`.

    Returns:
        `(batch, num_chunks * chunk_length, ...)`.
    """
    return reshape(x, (-1, axis_size(x, 1) * axis_size(x, 2)) + tuple(x.shape[3:]))


def shift_chunks(chunks, offset, fill_value=0):
    """The chunk `offset` places away from each chunk: `result[:, i] = chunks[:, i + offset]`.

    Chunks beyond either end of the sequence are filled with `fill_value`
    (there is no wrap-around), so callers mask them out.

    Args:
        chunks: `(batch, num_chunks, ...)`.
        offset: an int; negative looks back, positive looks ahead.
        fill_value: value of the chunks outside the sequence. Defaults to `0`.

    Returns:
        A tensor of the shape of `chunks`.

    Example:

    ```python
    import numpy as np
    from keras_reformer.ops import shift_chunks
    chunks = np.arange(3, dtype="float32").reshape(1, 3, 1, 1)
    previous = shift_chunks(chunks, -1)  # chunk values [0, 0, 1]
    ```
    """
    if offset == 0:
        return chunks
    num_chunks = axis_size(chunks, 1)
    pad_width = [(0, 0)] * len(chunks.shape)
    pad_width[1] = (max(-offset, 0), max(offset, 0))
    padded = ops.pad(chunks, pad_width, constant_values=fill_value)
    start = max(offset, 0)
    return padded[:, start : start + num_chunks]


def look_around(chunks, lookback=1, lookahead=0, fill_value=0):
    """Concatenates every chunk with its `lookback` previous and `lookahead` next chunks.

    Chunks beyond either end of the sequence are filled with `fill_value`
    (there is no wrap-around), so callers mask them out.

    Args:
        chunks: `(batch, num_chunks, chunk_length, ...)`.
        lookback: how many previous chunks to attach. Defaults to `1`.
        lookahead: how many next chunks to attach. Defaults to `0`.
        fill_value: value of the chunks outside the sequence. Defaults to `0`.

    Returns:
        `(batch, num_chunks, (lookback + 1 + lookahead) * chunk_length, ...)`,
        ordered from the furthest previous chunk to the furthest next one.
    """
    if lookback == 0 and lookahead == 0:
        return chunks
    windows = [
        shift_chunks(chunks, offset, fill_value) for offset in range(-lookback, lookahead + 1)
    ]
    return ops.concatenate(windows, axis=2)


def scan_sequence_chunks(fn, init, tensors, chunk_length):
    """Runs `fn` over consecutive chunks of the sequence axis, one chunk at a time.

    The full chunks run as ONE sequential loop (`keras_reformer.backend.scan`), so a
    compiled program holds the code and the temporaries of one chunk, however
    long the sequence; a shorter last chunk, if any, is one more call. Where
    the length is unknown until run time (a TensorFlow graph traced for
    several lengths), the loop runs over chunks of `min(chunk_length, length)`
    positions of the sequence padded with zeros (`False` for booleans) to
    whole chunks: `fn` sees that padding in the last chunk, and its outputs
    there are cut off.

    Args:
        fn: called as `fn(carry, start, *chunks)`, where `start` is the chunk's
            first position (an int32 scalar tensor, or a Python int for the
            shorter last chunk of a known length) and `chunks` are the slices `[:, start:stop]`
            of `tensors`. Returns `(carry, outputs)`, `outputs` a tuple of
            tensors whose axis 1 runs over the chunk's positions.
        init: the initial carry: a nested structure of tensors, possibly empty.
        tensors: a tuple of `(batch, length, ...)` tensors of one length.
        chunk_length: positions per chunk, a positive int.

    Returns:
        `(carry, outputs)`: the final carry and each output of `fn` joined
        back along axis 1 over the whole sequence.

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_reformer.ops import scan_sequence_chunks
    x = np.arange(10, dtype="float32").reshape(1, 10, 1)
    total, (doubled,) = scan_sequence_chunks(
        lambda carry, start, chunk: (carry + ops.sum(chunk), (2 * chunk,)),
        ops.zeros(()), (x,), chunk_length=4)  # total 45, doubled (1, 10, 1)
    ```
    """
    tensors = [ops.convert_to_tensor(t) for t in tensors]
    length = axis_size(tensors[0], 1)
    if not isinstance(length, int):
        return _scan_padded_chunks(fn, init, tensors, chunk_length, length)
    num_full = length // chunk_length
    full = num_full * chunk_length
    carry, outputs = init, ()
    if num_full:

        def chunk_major(x):  # (num_full, batch, chunk_length, ...)
            return ops.moveaxis(split_chunks(x[:, :full], chunk_length), 1, 0)

        starts = ops.arange(num_full, dtype="int32") * chunk_length
        carry, stacked = backend.scan(
            lambda c, xs: fn(c, *xs), init, (starts, *[chunk_major(t) for t in tensors])
        )
        outputs = tuple(merge_chunks(ops.moveaxis(y, 0, 1)) for y in stacked)
    if full < length:
        carry, tail = fn(carry, full, *[t[:, full:] for t in tensors])
        outputs = (
            tuple(tail)
            if not outputs
            else tuple(ops.concatenate([a, b], axis=1) for a, b in zip(outputs, tail))
        )
    return carry, outputs


def _scan_padded_chunks(fn, init, tensors, chunk_length, length):
    """`scan_sequence_chunks` for a `length` (a scalar tensor) unknown while tracing."""
    size = ops.minimum(chunk_length, length)  # one chunk, unpadded, when the sequence is short

    def chunk_major(x):  # (num_chunks, batch, size, ...)
        pad_value = False if keras.backend.standardize_dtype(x.dtype) == "bool" else 0
        return ops.moveaxis(
            split_chunks(pad_to_multiple(x, size, constant_value=pad_value), size), 1, 0
        )

    chunked = [chunk_major(t) for t in tensors]
    starts = ops.arange(axis_size(chunked[0], 0), dtype="int32") * size
    carry, stacked = backend.scan(lambda c, xs: fn(c, *xs), init, (starts, *chunked))
    return carry, tuple(merge_chunks(ops.moveaxis(y, 0, 1))[:, :length] for y in stacked)
