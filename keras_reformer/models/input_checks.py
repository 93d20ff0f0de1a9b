"""Checks of the token inputs of the Reformer models, with errors that say what was wrong."""

import keras
import numpy as np

from keras_reformer.backend.introspection import is_concrete


def check_token_inputs(inputs, vocabulary_size, max_sequence_length, check_values=True):
    """Validates and completes the `{"token_ids", "padding_mask"}` inputs.

    Shapes are checked whenever they are known; token id values only when the
    ids are concrete (numpy or eager tensors), since a traced / compiled step
    cannot raise on values.

    Args:
        inputs: a dict with `"token_ids"` and optionally `"padding_mask"`, or a
            bare token-id array.
        vocabulary_size: ids must lie in `[0, vocabulary_size)`.
        max_sequence_length: the longest sequence accepted.
        check_values: also check the dtype and range of concrete ids (a copy
            to the host). `False` where a later call checks them anyway.

    Returns:
        A dict with both keys; a missing padding mask becomes all ones.

    Raises:
        ValueError: on a missing `"token_ids"`, a sequence longer than
            `max_sequence_length`, a padding mask whose shape differs from the
            ids', or ids out of range.
    """
    if not isinstance(inputs, dict):
        inputs = {"token_ids": inputs}
    unknown = set(inputs) - {"token_ids", "padding_mask"}
    if "token_ids" not in inputs or unknown:
        raise ValueError(
            "Inputs must be token ids or a dict with keys 'token_ids' and optionally "
            f"'padding_mask'. Received keys: {sorted(inputs)}"
        )
    token_ids = inputs["token_ids"]
    ids_shape = tuple(token_ids.shape)
    if len(ids_shape) != 2:
        raise ValueError(
            f"`token_ids` must have shape (batch, length). Received shape: {ids_shape}"
        )
    length = ids_shape[1]
    if length is not None and length > max_sequence_length:
        raise ValueError(
            f"The sequence length {length} exceeds `max_sequence_length`={max_sequence_length}."
        )
    padding_mask = inputs.get("padding_mask")
    if padding_mask is None:
        # numpy stays numpy: Keras refuses a dict that mixes arrays and tensors.
        padding_mask = (np.ones(ids_shape, dtype="int32") if isinstance(token_ids, np.ndarray)
                        else keras.ops.ones_like(token_ids, dtype="int32"))
    elif not _shapes_compatible(tuple(padding_mask.shape), ids_shape):
        raise ValueError(
            "`padding_mask` must have the shape of `token_ids` "
            f"{ids_shape}. Received: padding_mask.shape={tuple(padding_mask.shape)}"
        )
    if check_values and is_concrete(token_ids):
        values = keras.ops.convert_to_numpy(token_ids)
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"`token_ids` must be integers. Received dtype: {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= vocabulary_size):
            bad = values[(values < 0) | (values >= vocabulary_size)]
            raise ValueError(
                f"`token_ids` must lie in [0, {vocabulary_size}) (`vocabulary_size`). "
                f"Received out-of-range ids such as {int(bad.flat[0])}."
            )
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def _shapes_compatible(shape, reference):
    return len(shape) == len(reference) and all(
        a is None or b is None or a == b for a, b in zip(shape, reference)
    )
