"""TensorFlow pieces of the reversible stack's custom gradient."""

import contextlib

import tensorflow as tf


def vjp(fn, weights, x, cotangent):
    weights = list(weights)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        tape.watch(x)
        output = fn(weights, x)
    weight_grads, x_grad = tape.gradient(
        output, (weights, x), output_gradients=cotangent,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return tf.stop_gradient(output), list(weight_grads), x_grad


def rng_state():
    return None


def replay_rng(state):
    return contextlib.nullcontext()


def run_in_sequence(steps, carry):
    def body(i, c):
        return i + 1, tf.switch_case(i, [lambda step=step: step(*c) for step in steps])

    # One iteration at a time: with the default 10 parallel iterations the
    # runtime starts rebuilding the next block before this one is done.
    _, carry = tf.while_loop(lambda i, c: i < len(steps), body, (tf.constant(0), carry),
                             parallel_iterations=1)
    return carry
