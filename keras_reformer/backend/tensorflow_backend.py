"""TensorFlow pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp)."""

import tensorflow as tf


def vjp(fn, weights, x, cotangent):
    weights = list(weights)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        tape.watch(x)
        output = fn(weights, x)
    weight_grads, x_grad = tape.gradient(
        output,
        (weights, x),
        output_gradients=cotangent,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return tf.stop_gradient(output), list(weight_grads), x_grad


def run_in_sequence(steps, carry):
    if _compiling_with_xla():
        # XLA, given the steps unrolled, interleaves them (like JAX): one loop.
        def body(i, carry):
            return i + 1, tf.switch_case(i, [lambda step=step: step(*carry) for step in steps])

        _, carry = tf.while_loop(
            lambda i, _: i < len(steps), body, (tf.constant(0), carry), parallel_iterations=1
        )
        return carry
    # The graph runtime: unrolled, each step starting once the previous one has
    # finished. (A while_loop over a switch_case kept ~10 activations per step
    # alive in the reversible backward; without the control dependencies the
    # runtime rebuilds every block's input as early as it can.)
    for step in steps:
        carry = step(*carry)
        with tf.control_dependencies(tf.nest.flatten(carry)):
            carry = tf.nest.map_structure(tf.identity, carry)
    return carry


def walks_are_unrolled():
    # `run_in_sequence` unrolls its steps as Python calls except under XLA.
    return not _compiling_with_xla()


def _compiling_with_xla():
    # TensorFlow has no public way to ask; tf.function(jit_compile=True) traces
    # inside an XLA control-flow context. Should the private module move, the
    # graph-runtime path is still correct, only less flat under XLA.
    try:
        from tensorflow.python.ops import control_flow_util  # pylint: disable=import-outside-toplevel
    except ImportError:
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def scan(fn, init, xs):
    # Iteration 0 runs outside the loop: its outputs give the arrays' specs.
    length = xs[0].shape[0]
    if length is None:  # known at run time only (a graph traced for several lengths)
        length = tf.shape(xs[0])[0]
    carry, first = fn(init, tuple(x[0] for x in xs))
    ys = [tf.TensorArray(y.dtype, size=length, element_shape=y.shape).write(0, y) for y in first]

    def body(i, carry, ys):
        carry, y = fn(carry, tuple(x[i] for x in xs))
        return i + 1, carry, [array.write(i, value) for array, value in zip(ys, y)]

    _, carry, ys = tf.while_loop(
        lambda i, *_: i < length,
        body,
        (tf.constant(1), carry, ys),
        parallel_iterations=1,
        maximum_iterations=length - 1,
    )
    return carry, tuple(array.stack() for array in ys)


def stable_argsort(x):
    return tf.cast(tf.argsort(x, axis=-1, stable=True), "int32")


def exp_nonpositive(x):
    return tf.exp(x)


def assert_at_most(value, limit, message):
    tf.debugging.assert_less_equal(value, tf.cast(limit, value.dtype), message=message)


def compile_inference(function, variables):
    del variables  # a tf.function reads and assigns variables itself
    return tf.function(function, jit_compile=True, autograph=False)


def is_concrete(x):
    return not tf.is_tensor(x) or tf.executing_eagerly()
