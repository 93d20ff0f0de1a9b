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
