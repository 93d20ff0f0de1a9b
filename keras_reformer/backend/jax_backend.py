"""JAX pieces of the reversible stack's custom gradient."""

import contextlib

import jax


def vjp(fn, weights, x, cotangent):
    output, pullback = jax.vjp(fn, list(weights), x)
    weight_grads, x_grad = pullback(cotangent.astype(output.dtype))
    return output, list(weight_grads), x_grad


def order_after(values, dependencies):
    values, _ = jax.lax.optimization_barrier((values, dependencies))
    return values


def rng_state():
    return None


def replay_rng(state):
    return contextlib.nullcontext()
