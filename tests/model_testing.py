"""The contract every backbone and task model of ours keeps, one call per model.

In the spirit of keras-hub's backbone and task test harnesses:
`run_backbone_test` holds a backbone (`ReformerModel`) to it, `run_task_test`
a task model on a backbone (`ReformerCausalLM`, `ReformerClassifier`). Every
check compares with something computed another way: an eager call, the same
sequence padded to another length, a float32 model with the same weights, the
loss of the batch computed outside the training step, the model before saving.

Inputs are dicts of `"token_ids"` and `"padding_mask"`, batch first; a model
output with a sequence axis (rank 3) has it second.
"""

import os
import warnings

import keras
import numpy as np

from tests.test_case import BACKEND
from tests.test_case import assert_allclose
from tests.test_case import jit_compile_modes
from tests.test_case import to_numpy

# How the checks here train (to have a trained model to save and load): the
# fastest way on each backend. JAX compiles faster than it runs op by op; a
# TensorFlow trace of the reversible stack's training step costs about 10 s a
# model, an eager step 1 s; torch runs eagerly anyway. (Compiled training is
# checked in tests/test_case.py's `run_layer_test` and the model tests'
# jit_compile fits.)
FIT_COMPILE_KWARGS = dict(jit_compile=BACKEND == "jax", run_eagerly=BACKEND == "tensorflow")


# === Data helpers ===


def _length(data):
    return data["token_ids"].shape[1]


def cut(data, length):
    """`data` cut to its first `length` positions."""
    return {key: np.asarray(value)[:, :length] for key, value in data.items()}


def padded(data, length):
    """`data` padded with padding (`padding_mask` 0, token id 0) to `length` positions."""
    extra = length - _length(data)
    return {
        key: np.pad(np.asarray(value), ((0, 0), (0, extra))).astype(np.asarray(value).dtype)
        for key, value in data.items()
    }


def _shape_at(shape, length):
    """An output shape for inputs of `length` positions (axis 1 if the output is a sequence)."""
    shape = tuple(shape)
    return shape[:1] + (length,) + shape[2:] if len(shape) >= 3 else shape


def _real_part(output, data, length):
    """The output at the real positions of the first `length` (all of it without a sequence axis)."""
    output = to_numpy(output)
    if output.ndim < 3:
        return output
    real = np.asarray(data["padding_mask"])[:, :length, None].astype(bool)
    return np.where(real, output[:, :length], 0.0)


def _variables(model):
    """Every variable's value (weights and seed states), in `model.variables` order.

    (By position, not path: a seed generator's path counts the generators made
    in the process, so a copy of a model names them differently.)"""
    return [to_numpy(v.value) for v in model.variables]


def _assign(model, values):
    """Sets every variable of `model` (weights and seed states) to `values`."""
    assert len(model.variables) == len(values), "the models have different variables"
    for variable, value in zip(model.variables, values):
        variable.assign(value)


def _check_trained(before, model):
    """Every trainable variable moved from `before` (a `_variables` list)."""
    trainable = {id(v) for v in model.trainable_variables}
    unchanged = [
        v.path
        for v, value in zip(model.variables, before)
        if id(v) in trainable and np.array_equal(value, to_numpy(v.value))
    ]
    assert not unchanged, f"one training step left these weights unchanged: {unchanged}"


def _check_same_variables(restored, model):
    """`restored` holds `model`'s variables (weights and seed states), bit for bit."""
    assert len(restored.variables) == len(model.variables), "the loaded model has other variables"
    for actual, expected in zip(restored.variables, model.variables):
        assert actual.shape == expected.shape, f"{actual.path} vs {expected.path}"
        np.testing.assert_array_equal(
            to_numpy(actual.value),
            to_numpy(expected.value),
            err_msg=f"{expected.path} after loading",
        )


def _check_config_round_trip(model, data, output):
    """`from_config(get_config())` gives the same config, and with `model`'s
    variables the same `output` for `data`: the config holds the architecture.

    Returns:
        The model built from the config.
    """
    config = model.get_config()
    restored = model.__class__.from_config(config)
    assert restored.get_config() == config, "get_config / from_config do not round-trip"
    name = keras.saving.get_registered_name(model.__class__)
    assert keras.saving.get_registered_object(name) is model.__class__, f"{name} is not registered"
    _assign(restored, _variables(model))  # a functional model has its variables when built
    assert_allclose(restored(data), output, rtol=0, atol=0, err_msg="from_config")
    return restored


def _check_other_lengths(model, data, expected_output_shape, lengths):
    """Shorter sequences (cuts of `data`) give outputs of their length; the
    longest of them equals the same tokens followed by padding up to the
    length of `data`.

    Returns:
        `(inputs, eager output)` at the longest of `lengths`.
    """
    for length in sorted(lengths):
        short = cut(data, length)
        output = to_numpy(model(short))
        assert tuple(output.shape) == _shape_at(expected_output_shape, length), (
            f"length {length}: output shape {tuple(output.shape)}"
        )
        assert np.all(np.isfinite(output)), f"length {length}: non-finite output"
    full = _length(data)
    assert_allclose(
        _real_part(output, short, length),
        _real_part(model(padded(short, full)), short, length),
        atol=1e-5,
        err_msg=f"length {length} alone and padded to {full}",
    )
    return short, output


def _check_compiled_predict(model, expected, other=None):
    """`predict` under each of `jit_compile_modes()` equals the eager outputs.

    Args:
        model: the model.
        expected: `(inputs, eager output)`.
        other: another `(inputs, eager output)`, of another length, predicted
            in the first mode after `expected` (on TensorFlow, the trace of a
            second length leaves the length unknown).
    """
    for index, jit_compile in enumerate(jit_compile_modes()):
        model.compile(jit_compile=jit_compile)
        for x, output in [expected] + ([other] if other is not None and index == 0 else []):
            assert_allclose(
                model.predict(x, batch_size=x["token_ids"].shape[0], verbose=0),
                output,
                atol=1e-5,
                err_msg=f"predict (jit_compile={jit_compile}, length {_length(x)}) != eager call",
            )


def _save_and_load(model, path):
    """Saves `model` as `.keras` and loads it back; any warning fails
    (e.g. Keras' "compile() was not called as part of model loading")."""
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return keras.saving.load_model(path)


# === Backbones ===


def _check_mixed_precision(reference, input_data, expected, train_policies):
    """Mixed precision through the `dtype` argument, for mixed_float16 and
    mixed_bfloat16: finite outputs in the compute dtype, near those of the
    float32 `reference` with the same variables; float32 variables. For each
    of `train_policies`, one finite training step that moves them."""
    expected = to_numpy(expected)
    scale = max(1.0, float(np.abs(expected).max()))
    for policy in ("mixed_float16", "mixed_bfloat16"):
        model = reference.__class__.from_config({**reference.get_config(), "dtype": policy})
        _assign(model, _variables(reference))
        output = model(input_data)
        compute_dtype = keras.DTypePolicy(policy).compute_dtype
        assert keras.backend.standardize_dtype(output.dtype) == compute_dtype, (
            f"{policy}: output dtype {output.dtype}"
        )
        output = to_numpy(output)
        assert np.all(np.isfinite(output)), f"{policy}: non-finite output"
        # Most positions within a few steps of the compute dtype (bfloat16 keeps
        # 8 significant bits, float16 11). Not all: LSH hashes float32 copies of
        # low-precision queries, and a near tie between two buckets can go the
        # other way, moving a position (and the chunks after it) to other keys.
        tolerance = (0.05 if compute_dtype == "bfloat16" else 0.01) * scale
        errors = np.abs(output - expected).max(axis=-1)
        assert np.median(errors) <= tolerance, (
            f"{policy}: median error per position {np.median(errors):.4f} > {tolerance:.4f}"
        )
        floats = [v for v in model.variables if "float" in v.dtype]
        assert floats and all(v.dtype == "float32" for v in floats), f"{policy}: variable dtypes"
        if policy not in train_policies:
            continue
        before = _variables(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", **FIT_COMPILE_KWARGS)
        history = model.fit(input_data, np.zeros(output.shape, "float32"), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]), f"{policy}: loss {history.history}"
        _check_trained(before, model)
        assert all(v.dtype == "float32" for v in floats), f"{policy}: variable dtypes after fit"


def _check_trained_backbone_saving(backbone, input_data, tmp_path):
    """A model of `backbone` and a dense head on its hidden states, trained one
    step, saved and loaded: the same variables and outputs, bit for bit."""
    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name)
        for name in ("token_ids", "padding_mask")
    }
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(backbone(inputs)))
    target = np.random.default_rng(0).normal(size=input_data["token_ids"].shape + (3,))
    before = _variables(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", **FIT_COMPILE_KWARGS)
    history = model.fit(input_data, target.astype("float32"), batch_size=len(target), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    _check_trained(before, model)
    restored = _save_and_load(model, os.path.join(str(tmp_path), "backbone.keras"))
    assert isinstance(restored.layers[-2], backbone.__class__), "the backbone's class was lost"
    _check_same_variables(restored, model)
    np.testing.assert_array_equal(
        to_numpy(restored(input_data)), to_numpy(model(input_data)), err_msg="after loading"
    )


def run_backbone_test(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    other_lengths=None,
    run_mixed_precision=True,
    train_policies=("mixed_bfloat16",),
    tmp_path=None,
):
    """Runs the checks every backbone must pass.

    Args:
        cls: the backbone class.
        init_kwargs: constructor arguments.
        input_data: a dict of `"token_ids"` and `"padding_mask"`, numpy arrays.
        expected_output_shape: the output shape for `input_data`.
        other_lengths: shorter sequence lengths to run (cuts of `input_data`).
            Defaults to one, about half the length.
        run_mixed_precision: also check mixed_float16 and mixed_bfloat16.
        train_policies: the mixed precision policies to train a step with.
            Defaults to mixed_bfloat16 alone: a step in mixed_float16 (loss
            scaling) is test_trained_saving.py's
            test_dtype_argument_is_the_models_policy, for a ReformerModel.
        tmp_path: a folder for the `.keras` file (pytest's `tmp_path`).

    Checks: the output shape, finite; the config round trip; other lengths
    (their shapes, and the same as padded to the first length); compiled
    `predict` equal to the eager call (each `jit_compile_modes()`; compiled
    predict at another length is `run_task_test`'s: a task is a backbone and
    a head); mixed precision; a `.keras` round trip of a model (the backbone
    and a dense head) trained one step: the same variables and outputs, bit
    for bit.
    """
    assert tmp_path is not None, "run_backbone_test needs tmp_path"
    if other_lengths is None:
        other_lengths = (_length(input_data) // 2 + 1,)
    backbone = cls(**init_kwargs)
    output = to_numpy(backbone(input_data))
    assert output.shape == tuple(expected_output_shape), (
        f"output shape {output.shape} != {tuple(expected_output_shape)}"
    )
    assert np.all(np.isfinite(output)), "non-finite output"
    copy = _check_config_round_trip(backbone, input_data, output)
    _check_other_lengths(backbone, input_data, expected_output_shape, other_lengths)
    # On the copy (the same variables): `backbone` stays uncompiled for the
    # model saved below. (A compiled ReformerModel does not load compiled:
    # test_trained_saving.py's test_loaded_backbone_is_compiled_and_continues_training.)
    _check_compiled_predict(copy, (input_data, output))
    if run_mixed_precision:
        _check_mixed_precision(backbone, input_data, output, train_policies)
    _check_trained_backbone_saving(backbone, input_data, tmp_path)  # last: it trains


# === Tasks ===


def run_task_test(
    cls,
    backbone_factory,
    init_kwargs,
    train_data,
    expected_output_shape,
    other_length=None,
    tmp_path=None,
):
    """Runs the checks every task model must pass.

    Args:
        cls: the task class.
        backbone_factory: returns a new backbone for the task.
        init_kwargs: the task's other constructor arguments.
        train_data: `(x, y)` or `(x, y, sample_weight)` for `fit`, one batch.
        expected_output_shape: the output shape for `x`.
        other_length: a shorter sequence length to run. Defaults to about half.
        tmp_path: a folder for the `.keras` file (pytest's `tmp_path`).

    Checks: the output shape, finite; the config round trip; `other_length`
    alone and padded; compiled `predict` equal to the eager call (each
    `jit_compile_modes()`, and at `other_length`); one `fit` step with the
    task's default loss: a finite loss equal to the loss computed outside the
    trainer (a copy of the task with the state before the step, called in
    training mode: the same seed states draw the same dropout and hashes),
    every weight moved; a `.keras` round trip of the trained task: its class,
    the same variables and outputs, bit for bit.
    """
    assert tmp_path is not None, "run_task_test needs tmp_path"
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(train_data)
    if other_length is None:
        other_length = _length(x) // 2 + 1
    task = cls(backbone_factory(), **init_kwargs)
    output = to_numpy(task(x))
    assert output.shape == tuple(expected_output_shape), (
        f"output shape {output.shape} != {tuple(expected_output_shape)}"
    )
    assert np.all(np.isfinite(output)), "non-finite output"
    copy = _check_config_round_trip(task, x, output)
    other = _check_other_lengths(task, x, expected_output_shape, (other_length,))
    _check_compiled_predict(task, (x, output), other)

    # One training step (compiled afresh, as a user would after predicting).
    task.compile(optimizer=keras.optimizers.Adam(1e-2), **FIT_COMPILE_KWARGS)
    before = _variables(task)
    history = task.fit(
        x, y, sample_weight=sample_weight, batch_size=len(y), epochs=1, shuffle=False, verbose=0
    )
    loss = history.history["loss"][0]
    assert np.isfinite(loss), f"loss {loss}"
    _assign(copy, before)
    expected = task.loss(y, copy(x, training=True), sample_weight=sample_weight)
    assert_allclose(loss, expected, rtol=1e-5, atol=1e-6, err_msg="fit's loss")
    _check_trained(before, task)

    restored = _save_and_load(task, os.path.join(str(tmp_path), "task.keras"))
    assert isinstance(restored, cls), f"loaded a {type(restored).__name__}"
    _check_same_variables(restored, task)
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(task(x)), err_msg="after loading")
