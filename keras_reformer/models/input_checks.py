"""Checks of the token inputs of the Reformer models, with errors that say what was wrong.

Token ids outside `[0, vocabulary_size)` are handled at two levels:

- Wherever the ids are on the host (numpy arrays or eager tensors given to a
  model's `__call__`, `fit`, `evaluate`, `predict` or `*_on_batch`), a
  ValueError names `token_ids` and a bad value, before Keras builds a step.
- Inside a compiled / traced step (e.g. ids from a `tf.data.Dataset`), which
  cannot raise, an invalid id is looked up as the nearest valid id and its
  position is treated as padding (`real_token_mask`); a language model's
  invalid targets get weight 0. `fit` and `evaluate` count these ids in the
  `invalid_token_ids` entry of their logs and warn when it is not zero.
"""

import inspect
import warnings

import keras
import numpy as np
from keras import ops

from keras_reformer import backend
from keras_reformer.backend import is_concrete
from keras_reformer.ops.masks import clip_ids
from keras_reformer.ops.masks import valid_ids


def check_token_inputs(inputs, vocabulary_size, max_sequence_length, check_values=True):
    """Validates and completes the `{"token_ids", "padding_mask"}` inputs.

    Shapes and the dtype are checked whenever they are known; token id values
    only when the ids are concrete (numpy or eager tensors), since a traced /
    compiled step cannot raise on values. A sequence length unknown while
    tracing (a TensorFlow graph traced for several lengths, or a `tf.data`
    pipeline with a `None` length) is checked against `max_sequence_length`
    when the graph runs, with a `tf.errors.InvalidArgumentError`; XLA
    (`jit_compile=True`) drops that check.

    Args:
        inputs: a dict with `"token_ids"` and optionally `"padding_mask"`, or a
            bare token-id array.
        vocabulary_size: ids must lie in `[0, vocabulary_size)`.
        max_sequence_length: the longest sequence accepted.
        check_values: also check the range of concrete ids (a copy to the
            host). `False` where a later call checks them anyway.

    Returns:
        A dict with both keys; a missing padding mask becomes all ones.

    Raises:
        ValueError: on a missing `"token_ids"`, an empty batch or sequence, a
            sequence longer than `max_sequence_length`, ids that are not
            integers, a padding mask whose shape differs from the ids', or ids
            out of range.
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
    if not hasattr(token_ids, "shape"):
        token_ids = np.asarray(token_ids)
    ids_shape = tuple(token_ids.shape)
    if len(ids_shape) != 2:
        raise ValueError(
            f"`token_ids` must have shape (batch, length). Received shape: {ids_shape}"
        )
    if 0 in ids_shape:
        raise ValueError(
            "`token_ids` must hold at least one sequence of at least one token. "
            f"Received shape: {ids_shape}"
        )
    length = ids_shape[1]
    if length is not None and length > max_sequence_length:
        raise ValueError(
            f"The sequence length {length} exceeds `max_sequence_length`={max_sequence_length}."
        )
    if length is None and not isinstance(token_ids, keras.KerasTensor):
        # A TensorFlow graph traced for several lengths: checked when it runs.
        backend.assert_at_most(
            ops.shape(token_ids)[1],
            max_sequence_length,
            f"The sequence length exceeds `max_sequence_length`={max_sequence_length}.",
        )
    if is_concrete(token_ids):
        # Host data only: under tf.distribute, Keras traces steps with float placeholders.
        _check_integer_dtype("token_ids", token_ids)
    padding_mask = inputs.get("padding_mask")
    if padding_mask is None:
        # numpy stays numpy: Keras refuses a dict that mixes arrays and tensors.
        padding_mask = (
            np.ones(ids_shape, dtype="int32")
            if isinstance(token_ids, np.ndarray)
            else ops.ones_like(token_ids, dtype="int32")
        )
    elif not _shapes_compatible(tuple(padding_mask.shape), ids_shape):
        raise ValueError(
            "`padding_mask` must have the shape of `token_ids` "
            f"{ids_shape}. Received: padding_mask.shape={tuple(padding_mask.shape)}"
        )
    if check_values and is_concrete(token_ids):
        check_id_values("token_ids", token_ids, vocabulary_size, "vocabulary_size")
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def check_id_values(name, ids, limit, limit_name):
    """Raises a ValueError naming `name` unless the concrete `ids` lie in `[0, limit)`.

    Args:
        name: the argument's name, quoted in the message (`"token_ids"`, `"y"`).
        ids: a numpy array or eager tensor of integers.
        limit: the number of valid ids.
        limit_name: the name of `limit`, quoted in the message.
    """
    values = ops.convert_to_numpy(ids)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"`{name}` must be integers. Received dtype: {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= limit):
        bad = values[(values < 0) | (values >= limit)]
        raise ValueError(
            f"`{name}` must lie in [0, {limit}) (`{limit_name}`). "
            f"Received {bad.size} out-of-range id(s), such as {name}={int(bad.flat[0])}."
        )


def real_token_mask(token_ids, padding_mask, vocabulary_size):
    """The positions a model treats as real: `padding_mask` and a valid id.

    Args:
        token_ids: `(batch, length)` integers.
        padding_mask: `(batch, length)`, 1 / true for real tokens.
        vocabulary_size: ids outside `[0, vocabulary_size)` count as padding.

    Returns:
        `(batch, length)` booleans.
    """
    return ops.logical_and(ops.cast(padding_mask, "bool"), valid_ids(token_ids, vocabulary_size))


def _count_false(valid):
    return ops.sum(ops.cast(ops.logical_not(valid), "float32"))


class TokenIdChecks:
    """Model mixin: token ids are checked before every step Keras builds.

    Put it before `keras.Model`. `fit`, `evaluate`, `predict` and the
    `*_on_batch` methods check ids (and a language model's targets, when
    `targets_are_token_ids`) that are on the host, with a ValueError naming
    them; the compiled steps count ids that no host check saw (e.g. from a
    `tf.data.Dataset`) in the `invalid_token_ids` log entry (see the module
    docstring), and `fit` / `evaluate` warn when it is not zero.
    """

    # Whether `fit`'s targets are token ids of the same vocabulary (a language model).
    targets_are_token_ids = False
    # `compile` arguments that `compile_from_config` passes on as saved, for
    # `compile` to resolve (e.g. a sampler, whose package is slow to import).
    UNRESOLVED_COMPILE_ARGUMENTS = ()

    def _token_id_limits(self):
        backbone = getattr(self, "backbone", self)
        return backbone.vocabulary_size, backbone.max_sequence_length

    def _check_host_data(self, x, y=None):
        vocabulary_size, max_sequence_length = self._token_id_limits()
        token_ids = x.get("token_ids") if isinstance(x, dict) else x
        if hasattr(token_ids, "shape") and hasattr(token_ids, "dtype") and is_concrete(token_ids):
            check_token_inputs(x, vocabulary_size, max_sequence_length)
        if (
            self.targets_are_token_ids
            and hasattr(y, "shape")
            and hasattr(y, "dtype")
            and is_concrete(y)
        ):
            check_id_values("y", y, vocabulary_size, "vocabulary_size")

    def _complete_inputs(self, inputs, check_values=False):
        """`inputs` checked (structure, shapes, and the id values where
        `check_values`) as a dict, bare token ids with an all-ones padding mask."""
        vocabulary_size, max_sequence_length = self._token_id_limits()
        return check_token_inputs(inputs, vocabulary_size, max_sequence_length, check_values)

    def call(self, inputs, training=None, mask=None):
        # `fit` on JAX reaches `call` through `stateless_call`, without
        # `__call__`: bare token ids get their padding mask here too.
        return super().call(self._complete_inputs(inputs), training=training, mask=mask)

    def compile(self, *args, **kwargs):
        if not hasattr(self, "_invalid_token_ids"):
            self._invalid_token_ids = keras.metrics.Sum(name="invalid_token_ids")
        super().compile(*args, **kwargs)

    def get_compile_config(self):
        """The arguments of the last `compile`, serialised (`{}` if not compiled).

        Also builds a compiled model's optimizer if no training step has yet:
        `load_model` builds the optimizer of the model it compiles, so the file
        must hold the built optimizer's variables to load them.
        """
        if self.compiled and self.built and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().get_compile_config()

    def compile_from_config(self, config):
        """Compiles as `compile` did before saving, and builds the optimizer so
        that `load_model` restores its state (Keras skips both for a model with
        its own `compile`).

        Args:
            config: a dict from `get_compile_config`.
        """
        config = dict(config)
        kept = {key: config.pop(key) for key in self.UNRESOLVED_COMPILE_ARGUMENTS if key in config}
        self.compile(**keras.saving.deserialize_keras_object(config), **kept)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        metrics = super().metrics
        counter = getattr(self, "_invalid_token_ids", None)
        if counter is not None and self.compiled and counter not in metrics:
            metrics = metrics + [counter]
        return metrics

    def _checked_pipeline(self, data):
        """`data`, with each batch checked as it comes where it is a pipeline.

        A batch from a generator is checked on the host like an array. A
        `tf.data.Dataset` gets a `map` that asserts the sequence length: its
        graph is never compiled by XLA, which drops the assertions of a step
        traced with an unknown length (ids out of range are handled in the
        step, see the module docstring).
        """
        if inspect.isgenerator(data):
            return self._checked_batches(data)
        if _is_tf_dataset(data):
            return _with_length_assertion(data, self._token_id_limits()[1])
        return data

    def _checked_batches(self, batches):
        for batch in batches:
            if isinstance(batch, tuple):
                self._check_host_data(*batch[:2])
            else:
                self._check_host_data(batch)
            yield batch

    def fit(self, *args, **kwargs):
        bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs).arguments
        self._check_host_data(bound.get("x"), bound.get("y"))
        validation = bound.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            self._check_host_data(*validation[:2])
        else:
            bound["validation_data"] = self._checked_pipeline(validation)
        bound["x"] = self._checked_pipeline(bound.get("x"))
        del bound["self"]
        with backend.variables_kept_on_error(self):
            history = super().fit(**bound)
        counts = [
            count
            for key in ("invalid_token_ids", "val_invalid_token_ids")
            for count in history.history.get(key, [])
        ]
        self._warn_invalid_ids("fit", max(counts, default=0))
        return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        with backend.variables_kept_on_error(self):
            result = super().evaluate(self._checked_pipeline(x), y, *args, **kwargs)
        self._warn_invalid_ids(
            "evaluate", float(ops.convert_to_numpy(self._invalid_token_ids.result()))
        )
        return result

    def predict(self, x, *args, **kwargs):
        self._check_host_data(x)
        with backend.variables_kept_on_error(self):
            return super().predict(self._checked_pipeline(x), *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        with backend.variables_kept_on_error(self):
            return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        with backend.variables_kept_on_error(self):
            return super().test_on_batch(x, y, *args, **kwargs)

    def predict_on_batch(self, x):
        self._check_host_data(x)
        with backend.variables_kept_on_error(self):
            return super().predict_on_batch(x)

    def _valid_targets(self, y, sample_weight):
        """Invalid token-id targets clipped, with weight 0 (compiled steps), and
        which targets were valid (`None` where targets are not token ids)."""
        if not self.targets_are_token_ids or y is None:
            return y, sample_weight, None
        vocabulary_size, _ = self._token_id_limits()
        valid = valid_ids(y, vocabulary_size)
        weight = ops.cast(valid, "float32")
        if sample_weight is not None:
            weight = ops.where(valid, ops.cast(sample_weight, "float32"), 0.0)
        return clip_ids(y, vocabulary_size), weight, valid

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, sample_weight, _ = self._valid_targets(y, sample_weight)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        vocabulary_size, _ = self._token_id_limits()
        token_ids = x.get("token_ids") if isinstance(x, dict) else x
        y, sample_weight, valid_targets = self._valid_targets(y, sample_weight)
        count = _count_false(valid_ids(token_ids, vocabulary_size))
        if valid_targets is not None:
            count = count + _count_false(valid_targets)
        self._invalid_token_ids.update_state(count)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def _warn_invalid_ids(self, method, count):
        if count > 0:
            vocabulary_size, _ = self._token_id_limits()
            warnings.warn(
                f"`{method}` met token ids outside [0, {vocabulary_size}) (`vocabulary_size`), "
                f"up to {int(count)} in an epoch (the `invalid_token_ids` log entry): their "
                "positions were treated as padding, and such targets given weight 0.",
                stacklevel=3,
            )


def _is_tf_dataset(data):
    return any(
        cls.__module__.startswith("tensorflow.") and cls.__name__ == "DatasetV2"
        for cls in type(data).__mro__
    )


def _with_length_assertion(dataset, max_sequence_length):
    import tensorflow as tf

    def check(*element):
        inputs = element[0]
        token_ids = inputs.get("token_ids") if isinstance(inputs, dict) else inputs
        if not isinstance(token_ids, tf.Tensor) or token_ids.shape.rank != 2:
            return element if len(element) > 1 else element[0]
        assertion = tf.debugging.assert_less_equal(
            tf.shape(token_ids)[1],
            max_sequence_length,
            message=f"The sequence length exceeds `max_sequence_length`={max_sequence_length}.",
        )
        with tf.control_dependencies([assertion]):
            element = tf.nest.map_structure(tf.identity, element)
        return element if len(element) > 1 else element[0]

    return dataset.map(check)


def _check_integer_dtype(name, ids):
    dtype = getattr(ids, "dtype", None)
    if dtype is None:
        return
    dtype = keras.backend.standardize_dtype(dtype)
    if "int" not in dtype:
        raise ValueError(f"`{name}` must be integers. Received dtype: {dtype}")


def _shapes_compatible(shape, reference):
    return len(shape) == len(reference) and all(
        a is None or b is None or a == b for a, b in zip(shape, reference)
    )
