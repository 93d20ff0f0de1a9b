"""Activation memory of one training step, measured the reliable way per backend.

- JAX: the compiled step's `memory_analysis().temp_size_in_bytes` (exact,
  deterministic; weights, inputs and gradients are arguments / outputs, not
  temporaries).
- TensorFlow: `reset_memory_stats("CPU:0")`, one step in a `tf.function`, then
  `get_memory_info("CPU:0")["peak"]` minus the memory in use before the step.
- torch: the bytes of tensors saved for backward
  (`torch.autograd.graph.saved_tensors_hooks`), each storage counted once and
  the layer's own weights excluded.

RSS after a warm-up step is noise on every backend; these are not.
"""

import keras

BACKEND = keras.backend.backend()


def _loss(output):
    # A loss whose cotangent depends on the output, as any real loss's does.
    # (With a constant cotangent, e.g. `sum(output)`, XLA on CPU was seen to
    # schedule the reversible backward with one extra activation per block.)
    return keras.ops.sum(output * output) / 2


def training_step_bytes(layer, x, **call_kwargs):
    """Memory (bytes) that one gradient step of `sum(layer(x) ** 2) / 2` needs
    beyond the weights, measured as described in the module docstring."""
    variables = layer.trainable_variables
    if BACKEND == "jax":
        import jax

        def loss(values, inputs):
            output, _ = layer.stateless_call(
                values, [v.value for v in layer.non_trainable_variables], inputs, **call_kwargs
            )
            return _loss(output.astype("float32"))

        step = jax.jit(jax.grad(loss, argnums=(0, 1)))
        compiled = step.lower([v.value for v in variables], x).compile()
        return compiled.memory_analysis().temp_size_in_bytes
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = _loss(tf.cast(layer(inputs, **call_kwargs), "float32"))
            return tape.gradient(loss, [inputs] + variables)

        inputs = tf.constant(x)
        step.get_concrete_function(inputs)  # trace outside the measurement
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        grads = step(inputs)
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        del grads
        return peak - before
    import torch

    weights = {v.value.untyped_storage().data_ptr() for v in variables}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = keras.ops.convert_to_tensor(x).requires_grad_(True)  # on the GPU if any
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = _loss(layer(inputs, **call_kwargs).float())
    loss.backward()
    return sum(saved.values())
