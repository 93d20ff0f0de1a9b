"""JAX pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp)."""

import contextlib

import jax
import keras


def vjp(fn, weights, x, cotangent):
    output, pullback = jax.vjp(fn, list(weights), x)
    weight_grads, x_grad = pullback(cotangent.astype(output.dtype))
    return output, list(weight_grads), x_grad


def run_in_sequence(steps, carry):
    return jax.lax.fori_loop(0, len(steps), lambda i, c: jax.lax.switch(i, steps, *c), carry)


def scan(fn, init, xs):
    return jax.lax.scan(fn, init, xs)


def stable_argsort(x):
    return jax.numpy.argsort(x, axis=-1, stable=True).astype("int32")


def exp_nonpositive(x):
    return jax.numpy.exp(x)


@contextlib.contextmanager
def variables_kept_on_error(model):
    optimizer = getattr(model, "optimizer", None)
    variables = [
        *model.variables,
        *(optimizer.variables if optimizer is not None else ()),
        *model.metrics_variables,
    ]
    # References only: the arrays are immutable, and the step's donated ones are deleted.
    values = [
        (variable, variable._value)
        for variable in variables
        if getattr(variable, "_value", None) is not None
    ]
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


def compile_inference(function, variables):
    # The variables' values are arguments of the jitted function (read fresh at
    # every call); only the variables the function assigns (a sampler's seed
    # state) come back out, found while tracing.
    updated = {}

    @jax.jit
    def compiled(values, args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            outputs = function(*args)
        new_values = {i: scope.get_current_value(v) for i, v in enumerate(variables)}
        updated[0] = sorted(i for i, value in new_values.items() if value is not None)
        return outputs, [new_values[i] for i in updated[0]]

    def run(*args):
        outputs, new_values = compiled([v.value for v in variables], args)
        for i, value in zip(updated[0], new_values):
            variables[i].assign(value)
        return outputs

    return run


def is_concrete(x):
    return not isinstance(x, jax.core.Tracer)
