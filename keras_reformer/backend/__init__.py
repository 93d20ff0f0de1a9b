"""The only backend-specific code of keras_reformer.

Everything else is written with `keras.ops`. Modules here import their
framework lazily, so that the package imports under any one backend with the
other frameworks absent.

The reversible stack (`keras_reformer.layers.ReversibleSequence`) needs four
small pieces that `keras.ops` does not offer; each dispatches to the active
backend's module (`jax_backend`, `tensorflow_backend`, `torch_backend`):

- `vjp(fn, weights, x, cotangent)`: output and vector-Jacobian product of
  `fn(weights, x)`.
- `order_after(values, dependencies)`: `values`, computed no earlier than
  `dependencies` (keeps the backward walk sequential so that memory stays
  flat).
- `rng_state()` / `replay_rng(state)`: capture and replay the framework's
  global random state (only torch's unseeded dropout uses one).

The custom gradient itself is `keras.ops.custom_gradient`.
"""

import importlib

import keras

_MODULES = {
    "jax": "keras_reformer.backend.jax_backend",
    "tensorflow": "keras_reformer.backend.tensorflow_backend",
    "torch": "keras_reformer.backend.torch_backend",
}


def _module():
    backend = keras.backend.backend()
    if backend not in _MODULES:
        raise NotImplementedError(
            f"keras_reformer supports the jax, tensorflow and torch backends. Received: {backend}"
        )
    return importlib.import_module(_MODULES[backend])


def vjp(fn, weights, x, cotangent):
    """Evaluates `fn(weights, x)` and pulls `cotangent` back through it.

    Args:
        fn: a function of a list of weight tensors and one input tensor,
            returning one tensor.
        weights: list of tensors (may be empty).
        x: the input tensor.
        cotangent: a tensor shaped like `fn`'s output.

    Returns:
        `(output, weight_grads, x_grad)`: `output` without a gradient record,
        `weight_grads` a list aligned with `weights` (zeros where unused).
    """
    return _module().vjp(fn, weights, x, cotangent)


def order_after(values, dependencies):
    """Returns `values` (a tuple of tensors), each available no earlier than
    all of `values` and `dependencies` are computed.

    Keeps the reversible backward walk one block at a time: TensorFlow's graph
    runtime would otherwise rebuild every block's input as early as it can
    (memory grew ~100 MiB per block) and XLA may run the gradient chain ahead
    of the reconstruction; JAX gets an optimization barrier; torch runs
    eagerly in program order.
    """
    return _module().order_after(tuple(values), tuple(dependencies))


def rng_state():
    """The framework's global random state now (None where none is used)."""
    return _module().rng_state()


def replay_rng(state):
    """A context manager that runs its body from the global random `state`
    captured by `rng_state()` and restores the current state afterwards."""
    return _module().replay_rng(state)
