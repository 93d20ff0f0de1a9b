"""Data-parallel training with Keras' distribution API (JAX), on simulated CPU devices.

Keras implements `keras.distribution` for JAX; this test runs a JAX
subprocess whatever the backend of this test run, because the number of
simulated devices (`XLA_FLAGS=--xla_force_host_platform_device_count`) is read
once per process. One train step of a `ReformerCausalLM` on two devices, the
batch split between them, must give the loss and weights of the same step on
one device: the reversible stack's custom gradient and the LSH sort run under
XLA's sharding like any other op.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, random
random.seed(0)  # Keras draws unseeded initializer seeds from Python's random
import jax, keras, numpy as np
import keras_reformer

def train_step(initial_weights=None):
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=32, num_layers=2, hidden_dim=16, num_heads=2, chunk_length=8,
        num_hashes=2, causal=True, max_sequence_length=64, seed=3)
    model = keras_reformer.models.ReformerCausalLM(backbone)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    weights = [np.asarray(w) for w in model.get_weights()]
    tokens = np.random.default_rng(0).integers(0, 32, size=(4, 49))
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((4, 48), "int32")}
    loss = model.train_on_batch(x, tokens[:, 1:], return_dict=True)["loss"]
    devices = len(model.trainable_variables[0].value.sharding.device_set)
    return weights, float(loss), [np.asarray(w).tolist() for w in model.get_weights()], devices

initial, loss, trained, devices = train_step()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
_, parallel_loss, parallel_trained, parallel_devices = train_step(initial)
print(json.dumps({"jax_devices": len(jax.devices()), "loss": loss, "parallel_loss": parallel_loss,
                  "devices": devices, "parallel_devices": parallel_devices,
                  "trained": trained, "parallel_trained": parallel_trained,
                  "initial": [w.tolist() for w in initial]}))
"""


def test_data_parallel_step_on_two_devices_equals_one_device():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["jax_devices"] == 2
    assert (result["devices"], result["parallel_devices"]) == (1, 2)  # replicated on both
    np.testing.assert_allclose(result["parallel_loss"], result["loss"], rtol=1e-5)
    moved = 0.0
    for start, single, parallel in zip(result["initial"], result["trained"],
                                       result["parallel_trained"]):
        np.testing.assert_allclose(parallel, single, rtol=1e-4, atol=1e-6)
        moved = max(moved, np.abs(np.asarray(single) - np.asarray(start)).max())
    assert moved > 1e-4  # the step changed the weights
