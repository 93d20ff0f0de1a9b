"""A slim layer / model test harness in the spirit of keras-hub's `TestCase`.

`run_layer_test` checks what every Keras layer of ours must do: config round
trip, eager and symbolic calls with the same output shape, a compiled `fit`,
mixed precision and a `.keras` save / load that reproduces outputs.
`run_model_saving_test` does the last check for a whole model.
"""

import os

import keras
import numpy as np

BACKEND = keras.backend.backend()


def to_numpy(x):
    """Any backend tensor (or nest of them) as numpy float64 / int arrays."""
    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(v) for v in x)
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    x = keras.ops.convert_to_numpy(x)
    return x.astype("float64") if np.issubdtype(x.dtype, np.floating) else x


def assert_allclose(actual, desired, rtol=1e-5, atol=1e-6, err_msg=""):
    np.testing.assert_allclose(
        to_numpy(actual), to_numpy(desired), rtol=rtol, atol=atol, err_msg=err_msg
    )


def jit_compile_modes():
    """The `jit_compile` settings worth testing on this backend.

    TensorFlow's two modes are different programs (a graph, and XLA). JAX
    runs the same stateless step either way, and un-jitted it compiles every
    op alone (the slowest part of the suite), so JAX tests the mode `fit`
    uses by default. torch's `jit_compile=True` means `torch.compile`, which is
    slow to trace on CPU; Keras treats "auto" as eager there, so one mode
    covers torch.
    """
    return [False, True] if BACKEND == "tensorflow" else [True] if BACKEND == "jax" else [False]


def _split_call_kwargs(call_kwargs):
    """Separates array-valued call arguments (model inputs) from plain ones."""
    tensors, plain = {}, {}
    for key, value in (call_kwargs or {}).items():
        if hasattr(value, "shape") and not isinstance(value, (int, float, bool)):
            tensors[key] = value
        else:
            plain[key] = value
    return tensors, plain


def _functional_model(layer, input_data, call_kwargs):
    """Wraps `layer` in a functional model whose inputs are `input_data` and the
    array-valued `call_kwargs`."""
    tensor_kwargs, plain_kwargs = _split_call_kwargs(call_kwargs)
    batch = input_data.shape[0]
    inputs = {
        "inputs": keras.Input(
            batch_shape=(batch,) + tuple(input_data.shape[1:]),
            dtype=keras.backend.standardize_dtype(input_data.dtype),
            name="inputs",
        )
    }
    for key, value in tensor_kwargs.items():
        inputs[key] = keras.Input(
            batch_shape=tuple(value.shape),
            dtype=keras.backend.standardize_dtype(value.dtype),
            name=key,
        )
    kwargs = {k: inputs[k] for k in tensor_kwargs}
    outputs = layer(inputs["inputs"], **kwargs, **plain_kwargs)
    data = {"inputs": input_data, **tensor_kwargs}
    return keras.Model(inputs, outputs), data


def _check_config_round_trip(layer):
    config = layer.get_config()
    restored = layer.__class__.from_config(config)
    assert restored.get_config() == config, "get_config / from_config do not round-trip"
    serialized = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(serialized)
    assert again.__class__ is layer.__class__, (
        f"{layer.__class__.__name__} is not registered as serialisable"
    )


def _check_symbolic_call(layer_cls, init_kwargs, input_data, call_kwargs, expected_shape):
    layer = layer_cls(**init_kwargs)
    tensor_kwargs, plain_kwargs = _split_call_kwargs(call_kwargs)
    symbolic_input = keras.Input(
        batch_shape=tuple(input_data.shape), dtype=keras.backend.standardize_dtype(input_data.dtype)
    )
    symbolic_kwargs = {
        k: keras.Input(batch_shape=tuple(v.shape), dtype=keras.backend.standardize_dtype(v.dtype))
        for k, v in tensor_kwargs.items()
    }
    output = layer(symbolic_input, **symbolic_kwargs, **plain_kwargs)
    assert tuple(output.shape) == tuple(expected_shape), (
        f"symbolic output shape {output.shape} != {expected_shape}"
    )


def _check_fit(layer_cls, init_kwargs, input_data, call_kwargs, jit_compile):
    layer = layer_cls(**init_kwargs)
    model, data = _functional_model(layer, input_data, call_kwargs)
    output = model(data)
    target = np.random.default_rng(0).normal(size=tuple(output.shape)).astype("float32")
    before = [to_numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
    history = model.fit(data, target, batch_size=input_data.shape[0], epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), f"non-finite loss in fit: {losses}"
    if before:
        after = [to_numpy(w) for w in model.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(before, after)), (
            "fit did not change any trainable weight"
        )


def _check_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs, policy):
    layer = layer_cls(**{**init_kwargs, "dtype": policy})
    output = layer(input_data, **(call_kwargs or {}))
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    assert keras.backend.standardize_dtype(output.dtype) == compute_dtype, (
        f"{policy}: output dtype {output.dtype} != {compute_dtype}"
    )
    assert np.all(np.isfinite(to_numpy(output))), f"{policy}: non-finite output"
    for weight in layer.trainable_weights:
        assert weight.dtype == "float32", f"{policy}: weight {weight.path} is {weight.dtype}"


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    call_kwargs=None,
    run_training=True,
    run_mixed_precision=True,
    run_saving=True,
    tmp_path=None,
):
    """Runs the checks every public layer of keras_reformer must pass.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        input_data: the first positional input, a numpy array.
        expected_output_shape: the output shape for `input_data`.
        call_kwargs: extra call arguments; arrays become model inputs.
        run_training: also fit a functional model, with and without
            `jit_compile` where the backend supports it.
        run_mixed_precision: also call under mixed_float16 and mixed_bfloat16.
        run_saving: also save a functional model as `.keras` and reload it
            (needs `tmp_path`).
        tmp_path: a folder for the `.keras` file (pytest's `tmp_path`).
    """
    layer = layer_cls(**init_kwargs)
    output = layer(input_data, **(call_kwargs or {}))
    assert tuple(output.shape) == tuple(expected_output_shape), (
        f"eager output shape {tuple(output.shape)} != {expected_output_shape}"
    )
    assert tuple(layer.compute_output_shape(input_data.shape)) == tuple(expected_output_shape)
    _check_config_round_trip(layer)
    _check_symbolic_call(layer_cls, init_kwargs, input_data, call_kwargs, expected_output_shape)
    if run_training:
        for jit_compile in jit_compile_modes():
            _check_fit(layer_cls, init_kwargs, input_data, call_kwargs, jit_compile)
    if run_mixed_precision:
        for policy in ("mixed_float16", "mixed_bfloat16"):
            _check_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs, policy)
    if run_saving:
        model, data = _functional_model(layer_cls(**init_kwargs), input_data, call_kwargs)
        run_model_saving_test(model, data, tmp_path)


def run_model_saving_test(model, input_data, tmp_path):
    """Saves `model` as `.keras`, loads it back and compares outputs.

    Both models are called from the same saved state (random seed-generator
    states are saved with the weights), so outputs must match exactly up to
    float noise.

    Args:
        model: a built `keras.Model`.
        input_data: what the model is called with.
        tmp_path: a folder for the `.keras` file.
    """
    assert tmp_path is not None, "run_model_saving_test needs tmp_path"
    path = os.path.join(str(tmp_path), "model.keras")
    model(input_data)
    model.save(path)
    restored = keras.saving.load_model(path)
    assert_allclose(
        restored(input_data),
        model(input_data),
        rtol=1e-6,
        atol=1e-6,
        err_msg="outputs differ after .keras save / load",
    )
    return restored
