"""AxialPositionEmbedding: factorised position embeddings of the Reformer."""

import math

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_int
from keras_reformer.layers.initializers import clone_initializer
from keras_reformer.layers.position_embedding import position_range
from keras_reformer.ops.shapes import reshape


def default_axial_shape(max_sequence_length):
    """Two powers of two near the square root whose product covers the length.

    The product is the smallest power of two `>= max_sequence_length`; the
    first factor takes the larger half of its exponent: 1000 -> (32, 32),
    4096 -> (64, 64), 100 -> (16, 8).
    """
    exponent = max(0, math.ceil(math.log2(max_sequence_length)))
    first = (exponent + 1) // 2
    return (2**first, 2 ** (exponent - first))


def _check_int_tuple(name, value):
    try:
        if not isinstance(value, (list, tuple)) or len(value) < 1:
            raise ValueError
        return tuple(check_int(name, v) for v in value)
    except ValueError:
        raise ValueError(
            f"`{name}` must be a tuple of positive integers. Received: {name}={value!r}"
        ) from None


@reformer_export
class AxialPositionEmbedding(keras.layers.Layer):
    """Factorised ("axial") learned position embeddings, as in the Reformer.

    A learned table of shape `(max_sequence_length, hidden)` dominates the
    parameter count of a long-sequence model (a 64K x 1024 table is 64M
    weights). Axial embeddings lay the positions out on a grid `n_1 x n_2`
    (`n_1 * n_2 >= max_sequence_length`) and learn one table per grid axis,
    `E^(1)` of shape `(n_1, 1, d_1)` and `E^(2)` of shape `(1, n_2, d_2)` with
    `d_1 + d_2 = hidden`. Position `p = j_1 * n_2 + j_2` gets the concatenation

        e_p = [E^(1)[j_1] ; E^(2)[j_2]],

    i.e. the two tables are broadcast to `(n_1, n_2, .)`, concatenated on the
    last axis and flattened row-major to `(n_1 * n_2, hidden)`. That is
    `n_1 * d_1 + n_2 * d_2` parameters instead of
    `max_sequence_length * hidden`. More than two axes work the same way.

    Only the grid rows that hold the requested positions are built, so any length up to
    `max_sequence_length` works, in training as in inference (Hugging Face's
    `AxialPositionEmbeddings` demands the full length in training); the
    embedding of a length-`l` input equals the first `l` rows of the
    full-length one.

    Args:
        max_sequence_length: int. The number of positions covered.
        axial_shape: tuple of ints `(n_1, n_2, ...)` with a product of at least
            `max_sequence_length`. Defaults to two powers of two near
            `sqrt(max_sequence_length)`, e.g. `(64, 64)` for 4096.
        axial_dims: tuple of ints `(d_1, d_2, ...)`, one per axis, summing to
            the hidden size of the inputs. Defaults to an even split of the
            hidden size (the first axes take the remainder).
        initializer: initializer of the axis tables. Defaults to
            `"random_normal"`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: the token embeddings, shape `(batch, length, hidden)`. Only
            their shape is used.
        start_index: int or scalar int tensor. The position of the first
            token, for decoding one token at a time. Defaults to `0`.

    Returns:
        The position embeddings of positions `start_index` to
        `start_index + length - 1`, broadcast to the shape of `inputs`, in the
        layer's compute dtype.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    token_embeddings = np.random.normal(size=(2, 1000, 64)).astype("float32")
    layer = keras_reformer.layers.AxialPositionEmbedding(
        max_sequence_length=4096, axial_shape=(64, 64), axial_dims=(32, 32)
    )
    outputs = token_embeddings + layer(token_embeddings)  # (2, 1000, 64)
    layer.count_params()  # 64 * 32 + 64 * 32 = 4096, not 4096 * 64
    ```

    References:
        - Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer",
          ICLR 2020 (arXiv:2001.04451).
        - Ho et al., "Axial Attention in Multidimensional Transformers", 2019
          (arXiv:1912.12180).
    """

    def __init__(
        self,
        max_sequence_length,
        axial_shape=None,
        axial_dims=None,
        initializer="random_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        max_sequence_length = check_int("max_sequence_length", max_sequence_length)
        if axial_shape is None:
            axial_shape = default_axial_shape(max_sequence_length)
        axial_shape = _check_int_tuple("axial_shape", axial_shape)
        if math.prod(axial_shape) < max_sequence_length:
            raise ValueError(
                "The product of `axial_shape` must be at least `max_sequence_length`"
                f"={max_sequence_length}. Received: axial_shape={axial_shape} "
                f"(product {math.prod(axial_shape)})"
            )
        if axial_dims is not None:
            axial_dims = _check_int_tuple("axial_dims", axial_dims)
            if len(axial_dims) != len(axial_shape):
                raise ValueError(
                    "`axial_dims` must have one entry per axis of `axial_shape`"
                    f"={axial_shape}. Received: axial_dims={axial_dims}"
                )
        self.max_sequence_length = max_sequence_length
        self.axial_shape = axial_shape
        self.axial_dims = axial_dims
        self.initializer = keras.initializers.get(initializer)

    def _resolved_dims(self, hidden):
        if self.axial_dims is not None:
            if sum(self.axial_dims) != hidden:
                raise ValueError(
                    f"`axial_dims` must sum to the hidden size of the inputs ({hidden}). "
                    f"Received: axial_dims={self.axial_dims} (sum {sum(self.axial_dims)})"
                )
            return self.axial_dims
        n_axes = len(self.axial_shape)
        if hidden < n_axes:
            raise ValueError(
                f"The hidden size of the inputs must be at least the number of axes "
                f"in `axial_shape`={self.axial_shape}. Received: hidden={hidden}"
            )
        base, extra = divmod(hidden, n_axes)
        return tuple(base + (1 if i < extra else 0) for i in range(n_axes))

    def build(self, inputs_shape):
        hidden = inputs_shape[-1]
        if hidden is None:
            raise ValueError(
                "AxialPositionEmbedding needs a known last (hidden) dimension. "
                f"Received: inputs_shape={tuple(inputs_shape)}"
            )
        dims = self._resolved_dims(hidden)
        n_axes = len(self.axial_shape)
        self.axis_embeddings = []
        for axis, (size, dim) in enumerate(zip(self.axial_shape, dims)):
            # Hugging Face layout: size on its own axis, ones elsewhere, dim last.
            shape = [1] * n_axes + [dim]
            shape[axis] = size
            self.axis_embeddings.append(
                self.add_weight(
                    name=f"axis_{axis}_embeddings",
                    shape=tuple(shape),
                    initializer=clone_initializer(self.initializer),
                )
            )
        self.built = True

    def call(self, inputs, start_index=0):
        positions = position_range(
            inputs, start_index, self.max_sequence_length, "AxialPositionEmbedding"
        )
        if isinstance(positions, range):
            embeddings = self._grid_span(positions.start, positions.stop)
        else:
            embeddings = self._gathered(positions)
        return ops.broadcast_to(embeddings, ops.shape(inputs))

    def _tables(self):
        return [ops.cast(weight, self.compute_dtype) for weight in self.axis_embeddings]

    def _grid_span(self, start, stop):
        """Positions `start ... stop - 1` (Python ints) as a slice of
        the flattened grid: the tables broadcast over the first axis' rows that
        hold the span, concatenated and flattened (fewer, cheaper ops than a
        gather per axis: no index arithmetic, and views for the broadcasts)."""
        stride = math.prod(self.axial_shape[1:])
        first_row, end_row = start // stride, -(-stop // stride)
        rows = (end_row - first_row,) + tuple(self.axial_shape[1:])
        tables = self._tables()
        tables[0] = tables[0][first_row:end_row]
        grid = ops.concatenate(
            [ops.broadcast_to(table, rows + (table.shape[-1],)) for table in tables], axis=-1
        )
        offset = start - first_row * stride
        return reshape(grid, (-1, grid.shape[-1]))[offset : offset + stop - start]

    def _gathered(self, positions):
        """The rows of `positions` (an int32 tensor: the offset or the length is
        only known at run time), gathered from each table."""
        # Row-major grid coordinates of each position: j_k = (p // stride_k) % n_k.
        parts = []
        stride = math.prod(self.axial_shape)
        for size, table in zip(self.axial_shape, self._tables()):
            stride //= size
            index = (positions // stride) % size
            parts.append(ops.take(reshape(table, (size, -1)), index, axis=0))
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_sequence_length": self.max_sequence_length,
                "axial_shape": self.axial_shape,
                "axial_dims": self.axial_dims,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
