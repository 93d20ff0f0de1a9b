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
    # Unrolled, each step starting only once the previous one has finished.
    # A tf.while_loop over a switch_case (even with one iteration in flight)
    # kept ~10 activations per step alive in the reversible backward; without
    # the control dependencies the graph runtime rebuilds every block's input
    # as early as it can (memory grew ~100 MiB per block).
    for step in steps:
        carry = step(*carry)
        with tf.control_dependencies(tf.nest.flatten(carry)):
            carry = tf.nest.map_structure(tf.identity, carry)
    return carry


def scan(fn, init, xs):
    # Iteration 0 runs outside the loop: its outputs give the arrays' specs.
    length = xs[0].shape[0]
    carry, first = fn(init, tuple(x[0] for x in xs))
    ys = [tf.TensorArray(y.dtype, size=length, element_shape=y.shape).write(0, y)
          for y in first]

    def body(i, carry, ys):
        carry, y = fn(carry, tuple(x[i] for x in xs))
        return i + 1, carry, [array.write(i, value) for array, value in zip(ys, y)]

    _, carry, ys = tf.while_loop(lambda i, *_: i < length, body, (tf.constant(1), carry, ys),
                                 parallel_iterations=1, maximum_iterations=length - 1)
    return carry, tuple(array.stack() for array in ys)
