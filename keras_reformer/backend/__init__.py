"""The only backend-specific code of keras_reformer.

Everything else is written with `keras.ops`. Modules here import their
framework lazily, so that the package imports under any one backend with the
other frameworks absent.

The reversible stack (`keras_reformer.layers.ReversibleSequence`) needs a few
small pieces that `keras.ops` does not offer; each dispatches to the active
backend's module (`jax_backend`, `tensorflow_backend`, `torch_backend`):

- `vjp(fn, weights, x, cotangent)`: output and vector-Jacobian product of
  `fn(weights, x)`.
- `run_in_sequence(steps, carry)`: `carry = step(*carry)` for each step in
  order, one step at a time (so memory is that of one step).
- `scan(fn, init, xs)`: `jax.lax.scan` semantics on every backend
  (`keras.ops.scan` on TensorFlow requires the outputs to match the carry).
- `stable_argsort(x)`: a sort that keeps equal values in order (LSH sorts
  tokens by bucket and keeps each bucket's tokens in position order).
- `rng_state()` / `replay_rng(state)`: capture and replay the framework's
  global random state (only torch's unseeded dropout uses one).
- `walks_are_unrolled()`: whether those loops run as plain Python calls, so
  that the backward walk may reuse values of the forward walk.
- `sum_start(like)`, `add_to_sum(total, term)`, `finish_sum(total, like)`:
  a sum carried through those loops (the weight gradients), started from
  zeros where the loop's carry has a fixed structure and from nothing on
  torch.

The models need three more: `assert_at_most(value, limit, message)`, a check
of a sequence length that a TensorFlow graph only knows at run time,
`variables_kept_on_error(model)`, which keeps a JAX model usable after an
exception inside one of Keras' steps, and `is_concrete(x)`, whether a
tensor's values can be read now. A backend module may leave out the pieces
that do nothing on it (`rng_state`, `replay_rng`, `variables_kept_on_error`,
`sum_start`, `walks_are_unrolled`):
the defaults here stand in. Each module is imported once.

Generation needs `compile_inference(function, variables)`, a function
compiled for inference once per input shape.

One piece is there for speed: `exp_nonpositive(x)`, the softmax weights of
attention logits minus their maximum. And a few functions of
`keras_reformer.ops`, marked `@backend.overridable`, may be replaced by a
backend module's function of the same name where the shared `keras.ops` code
costs too many dispatched ops on an eager backend: on torch every op is
dispatched from Python on every step, and each `keras.ops` call adds
conversions of its arguments (benchmarks/dispatch.py counts them). Each
replacement computes the same values as the shared code, which
tests/backend/test_torch_overrides.py checks, outputs and gradients.

The custom gradient itself is `keras.ops.custom_gradient`.
"""

import contextlib
import functools
import importlib

import keras

_MODULES = {
    "jax": "keras_reformer.backend.jax_backend",
    "tensorflow": "keras_reformer.backend.tensorflow_backend",
    "torch": "keras_reformer.backend.torch_backend",
}


_active = None


def _module():
    """The active backend's module, imported at the first call (a plain global
    read afterwards, which torch.compile traces without a cache wrapper)."""
    global _active
    if _active is None:
        backend = keras.backend.backend()
        if backend not in _MODULES:
            raise NotImplementedError(
                "keras_reformer supports the jax, tensorflow and torch backends. "
                f"Received: {backend}"
            )
        _active = importlib.import_module(_MODULES[backend])
    return _active


def overridable(function):
    """Lets the active backend's module replace `function` by its own of the same name.

    The replacement runs when the backend module defines one and no argument
    is a symbolic `keras.KerasTensor` (those go through the shared code, which
    Keras traces). The shared function stays reachable in `OVERRIDABLE`, by
    name, and as the result's `__wrapped__`.

    Args:
        function: a function written with `keras.ops`.

    Returns:
        A function with `function`'s name, signature and docstring.
    """
    name = function.__name__

    @functools.wraps(function)
    def dispatch(*args, **kwargs):
        replacement = getattr(_module(), name, None)
        symbolic = any(isinstance(a, keras.KerasTensor) for a in (*args, *kwargs.values()))
        if replacement is None or symbolic:
            return function(*args, **kwargs)
        return replacement(*args, **kwargs)

    OVERRIDABLE[name] = function
    return dispatch


# name -> shared function of every `overridable` (the tests compare each replacement with it).
OVERRIDABLE = {}


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


def run_in_sequence(steps, carry):
    """Applies `carry = step(*carry)` for each of `steps`, in order, one step
    at a time: a step starts once the previous one has finished, so memory is
    that of one step whatever their number.

    JAX: one `lax.fori_loop` whose body runs step i (`lax.switch`); given the
    same steps unrolled, XLA on CPU kept 0.5 to 3 extra activations alive per
    reversible block. TensorFlow: the same loop (`tf.while_loop` over
    `tf.switch_case`) when compiling with XLA; otherwise the steps unrolled
    and chained by control dependencies (the graph runtime kept about ten
    activations per step alive in such a loop).
    torch: a Python loop (eager code runs in program order).

    Args:
        steps: a non-empty list of functions, each mapping the carry's
            elements to a carry of the same structure, shapes and dtypes.
        carry: a tuple of tensors (or of lists of tensors).

    Returns:
        The carry after the last step.
    """
    return _module().run_in_sequence(list(steps), tuple(carry))


def scan(fn, init, xs):
    """Loops `carry, y = fn(carry, x)` over the leading axis of `xs`, sequentially.

    The semantics of `jax.lax.scan` (outputs of any structure, stacked along
    a new leading axis). One iteration at a time on every backend, so the
    temporaries of one iteration are alive at once.

    Args:
        fn: maps `(carry, x)` to `(carry, y)`; `x` and `y` are tuples of tensors.
        init: the initial carry, a nested structure of tensors.
        xs: a tuple of tensors sharing their leading (static) size.

    Returns:
        `(carry, ys)`: the final carry and the tuple of stacked outputs.
    """
    return _module().scan(fn, init, tuple(xs))


def sum_start(like):
    """The start of a sum carried through `run_in_sequence` or `scan`.

    Zeros like `like` where the loop needs a carry of fixed structure (JAX,
    TensorFlow); `None` on torch, whose Python loop takes the first term as
    it is (no zeros to fill and add: fewer dispatched ops). The sum's user
    adds with `add_to_sum` and reads it with `finish_sum`.

    Args:
        like: the tensor whose shape and dtype the sum has.

    Returns:
        A tensor of zeros, or `None`.
    """
    module = _module()
    return module.sum_start(like) if hasattr(module, "sum_start") else keras.ops.zeros_like(like)


def add_to_sum(total, term):
    """`total + term`, where `total` may be `sum_start`'s `None` (then `term`)."""
    return term if total is None else total + term


def finish_sum(total, like):
    """`total`, or zeros like `like` where nothing was added to `sum_start`'s `None`."""
    return keras.ops.zeros_like(like) if total is None else total


def stable_argsort(x):
    """Indices that sort `x` along its last axis, equal values in their order.

    (`keras.ops.argsort` promises no order among equal values; TensorFlow's
    is unstable unless asked.)

    Args:
        x: an integer or float tensor.

    Returns:
        An int32 tensor of `x`'s shape.
    """
    return _module().stable_argsort(x)


def exp_nonpositive(x):
    """`exp(x)` for `x <= 0`, e.g. attention logits minus their maximum.

    torch's CPU `exp` is 25-60x slower for arguments below about -87 (results
    under float32's normal range), which every masked logit is; the torch
    version clamps there and writes exact zeros (so that a masked key has no
    gradient at all: causality tests ask for exactly zero). JAX and TensorFlow use plain
    `exp`: the clamp's mask would stay alive for the backward (80 MiB per LSH
    layer at 4096 tokens on JAX) and buys them nothing.

    Args:
        x: a float tensor, at most 0 (larger values are exponentiated as is).

    Returns:
        A tensor like `x`: `exp(x)`, or 0 where that is below `exp(-80)`
        (on torch).
    """
    return _module().exp_nonpositive(x)


def walks_are_unrolled():
    """Whether `run_in_sequence` runs its steps as plain Python calls now.

    Then a value a step computes may be kept for a later walk (see
    `keras_reformer.layers.forward_memo`); in a compiled loop (JAX,
    TensorFlow with XLA, torch.compile) it cannot leave its step. torch
    eagerly and TensorFlow without XLA (eagerly, or in its graph runtime,
    where the walks are unrolled) answer True.

    Returns:
        A Python bool.
    """
    module = _module()
    return module.walks_are_unrolled() if hasattr(module, "walks_are_unrolled") else False


def rng_state():
    """The framework's global random state now (None where none is used:
    only torch's unseeded dropout draws from one)."""
    module = _module()
    return module.rng_state() if hasattr(module, "rng_state") else None


def replay_rng(state):
    """A context manager that runs its body from the global random `state`
    captured by `rng_state()` and restores the current state afterwards
    (nothing to do where there is no global random state)."""
    module = _module()
    return module.replay_rng(state) if hasattr(module, "replay_rng") else contextlib.nullcontext()


def assert_at_most(value, limit, message):
    """Fails at run time where the scalar `value` exceeds `limit`.

    For sizes unknown while tracing, which only TensorFlow graphs have (JAX
    and torch know every shape when they trace). TensorFlow raises an
    `InvalidArgumentError` with `message` when the graph runs, except inside
    XLA-compiled functions (`jit_compile=True`), which drop assertions. On the
    other backends `value` is concrete, and a ValueError is raised at once.

    Args:
        value: an integer scalar (tensor).
        limit: a Python int.
        message: the error message.
    """
    _module().assert_at_most(value, limit, message)


def variables_kept_on_error(model):
    """A context manager that keeps `model`'s variables if its body raises.

    Keras' JAX trainer detaches every variable's value while `fit`,
    `evaluate` or `predict` run (it passes the state through its compiled
    steps instead) and attaches the last state when they end. An exception in
    an epoch's first step (e.g. a too-long sequence from a `tf.data` pipeline)
    leaves the values detached: the model's weights are gone and its next use
    fails with a TypeError. On JAX this restores the values the variables held
    before the body ran wherever they are detached; elsewhere it does nothing.

    Args:
        model: a `keras.Model`.
    """
    module = _module()
    if not hasattr(module, "variables_kept_on_error"):
        return contextlib.nullcontext()
    return module.variables_kept_on_error(model)


def is_concrete(x):
    """True when `x`'s values can be read now without leaving a traced graph.

    numpy arrays and eager tensors are concrete; Keras symbolic tensors, JAX
    tracers, TensorFlow graph tensors and tensors under `torch.compile` are not.

    Args:
        x: an array or tensor.

    Returns:
        A Python bool.
    """
    return not isinstance(x, keras.KerasTensor) and _module().is_concrete(x)


def compile_inference(function, variables):
    """`function` compiled for inference, retraced only for new input shapes.

    JAX: `jax.jit`, with the values of `variables` passed in at every call
    (so the compiled function sees the current weights) and the values the
    function assigns written back. TensorFlow: `tf.function` compiled with
    XLA. torch: eager, under `torch.no_grad()`.

    Args:
        function: maps tensors to a nested structure of tensors; it may read
            and assign `variables`.
        variables: every `keras.Variable` the function uses.

    Returns:
        A callable taking the same arguments as `function`.
    """
    return _module().compile_inference(function, list(variables))
