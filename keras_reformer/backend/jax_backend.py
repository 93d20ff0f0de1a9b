"""JAX pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp)."""

import contextlib

import jax


def vjp(fn, weights, x, cotangent):
    output, pullback = jax.vjp(fn, list(weights), x)
    weight_grads, x_grad = pullback(cotangent.astype(output.dtype))
    return output, list(weight_grads), x_grad


def rng_state():
    return None


def replay_rng(state):
    return contextlib.nullcontext()


def run_in_sequence(steps, carry):
    return jax.lax.fori_loop(0, len(steps), lambda i, c: jax.lax.switch(i, steps, *c), carry)


def scan(fn, init, xs):
    return jax.lax.scan(fn, init, xs)


def exp_nonpositive(x):
    return jax.numpy.exp(x)


@contextlib.contextmanager
def variables_kept_on_error(model):
    optimizer = getattr(model, "optimizer", None)
    variables = [*model.variables, *(optimizer.variables if optimizer is not None else ()),
                 *model.metrics_variables]
    # References only: the arrays are immutable, and the step's donated ones are deleted.
    values = [(variable, variable._value) for variable in variables
              if getattr(variable, "_value", None) is not None]
    try:
        yield
    except BaseException:
        for variable, value in values:
            if variable._value is None and not value.is_deleted():
                variable.assign(value)
        raise


def assert_at_most(value, limit, message):
    if int(value) > limit:
        raise ValueError(message)
