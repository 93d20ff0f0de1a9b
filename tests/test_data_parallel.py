"""Data-parallel training on two simulated CPU devices, with each backend's own tool.

JAX: Keras' distribution API (`keras.distribution.DataParallel`), on devices
made by `XLA_FLAGS=--xla_force_host_platform_device_count=2`. TensorFlow:
`tf.distribute.MirroredStrategy` over two logical CPUs. PyTorch:
`DistributedDataParallel` over two processes (gloo), a plain torch training
loop around the Keras model. Each runs in a subprocess, because the device
settings must be made before the framework starts. One train step of a `ReformerCausalLM` with the batch split between
the two devices must give the loss and weights of the same step on one
device: the reversible stack's custom gradient and the LSH sort run under the
framework's distribution like any other op. The model has one reversible LSH
block: it has both, and compiles fastest. Each backend's test process checks
its own backend.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.test_case import BACKEND

ROOT = Path(__file__).resolve().parent.parent

COMMON = """
import json, random
random.seed(0)  # Keras draws unseeded initializer seeds from Python's random
import keras, numpy as np
import keras_reformer

def train_step(initial_weights=None):
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=32, num_layers=1, hidden_dim=16, num_heads=2, chunk_length=8,
        num_hashes=2, causal=True, max_sequence_length=64, seed=3)
    model = keras_reformer.models.ReformerCausalLM(backbone)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    if initial_weights is not None:
        model.set_weights(initial_weights)
    weights = [np.asarray(w) for w in model.get_weights()]
    tokens = np.random.default_rng(0).integers(0, 32, size=(4, 49))
    x = {"token_ids": tokens[:, :-1].astype("int32"), "padding_mask": np.ones((4, 48), "int32")}
    history = model.fit(x, tokens[:, 1:], batch_size=4, epochs=1, shuffle=False, verbose=0)
    return model, weights, history.history["loss"][-1]

def report(devices, single, parallel):
    (model, initial, loss), (parallel_model, _, parallel_loss) = single, parallel
    print(json.dumps({
        "devices": devices, "loss": loss, "parallel_loss": parallel_loss,
        "initial": [w.tolist() for w in initial],
        "trained": [np.asarray(w).tolist() for w in model.get_weights()],
        "parallel_trained": [np.asarray(w).tolist() for w in parallel_model.get_weights()]}))
"""

SCRIPTS = {
    "jax": """
import jax
single = train_step()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
parallel = train_step(single[1])
variable = parallel[0].trainable_variables[0]
report(len(variable.value.sharding.device_set), single, parallel)  # replicated on each device
""",
    "tensorflow": """
import tensorflow as tf
single = train_step()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    parallel = train_step(single[1])
report(strategy.num_replicas_in_sync, single, parallel)
""",
}
TORCH_SCRIPT = """
import json, os, random, sys
import numpy as np, torch, torch.distributed as dist, torch.multiprocessing as mp
import keras, keras_reformer

def build():
    random.seed(0)  # the same initial weights in every process
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=32, num_layers=1, hidden_dim=16, num_heads=2, chunk_length=8,
        num_hashes=2, causal=True, max_sequence_length=64, seed=3)
    model = keras_reformer.models.ReformerCausalLM(backbone)
    model(batch(slice(0, 1))[0])  # creates the weights
    return model

def batch(rows):
    tokens = np.random.default_rng(0).integers(0, 32, size=(4, 49))[rows]
    x = {"token_ids": torch.tensor(tokens[:, :-1], dtype=torch.int32),
         "padding_mask": torch.ones((len(tokens), 48), dtype=torch.int32)}
    return x, torch.tensor(tokens[:, 1:])

def sgd_step(model, module, rows):
    x, y = batch(rows)
    logits = module(x, training=True)
    loss = torch.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()

def worker(rank, port, path):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    model = build()
    module = torch.nn.parallel.DistributedDataParallel(model)
    loss = sgd_step(model, module, slice(2 * rank, 2 * rank + 2))  # half of the batch each
    losses = [None, None]
    dist.all_gather_object(losses, loss)
    if rank == 0:
        with open(path, "w") as f:
            json.dump({"loss": float(np.mean(losses)),
                       "weights": [np.asarray(w).tolist() for w in model.get_weights()]}, f)
    # DDP's reducer goes before its process group: destroyed after it (when the
    # function returns), a worker sometimes never exited.
    del module
    dist.destroy_process_group()

if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    mp.spawn(worker, args=(port, path), nprocs=2)
    parallel = json.load(open(path))
    model = build()
    initial = [np.asarray(w) for w in model.get_weights()]
    loss = sgd_step(model, model, slice(0, 4))
    print(json.dumps({
        "devices": 2, "loss": loss, "parallel_loss": parallel["loss"],
        "initial": [w.tolist() for w in initial],
        "trained": [np.asarray(w).tolist() for w in model.get_weights()],
        "parallel_trained": parallel["weights"]}))
"""
SETUP = {
    # Added to the XLA_FLAGS the suite runs with (tests/conftest.py: optimisation
    # level 0, which compiles about 3x faster), not in place of them.
    "jax": ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}, ""),
    "tensorflow": (
        {},
        """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""",
    ),
}


def run_data_parallel(backend, folder):
    env_vars, setup = SETUP.get(backend, ({}, ""))
    env = {**os.environ, **env_vars, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    if "XLA_FLAGS" in env_vars:
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {env_vars['XLA_FLAGS']}".strip()
    script = Path(folder) / "data_parallel.py"  # a file: torch's spawned workers import it
    script.write_text(TORCH_SCRIPT if backend == "torch" else setup + COMMON + SCRIPTS[backend])
    arguments = [str(_free_port()), str(Path(folder) / "parallel.json")]
    completed = subprocess.run(
        [sys.executable, str(script), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_data_parallel_step_on_two_devices_equals_one_device(tmp_path):
    result = run_data_parallel(BACKEND, tmp_path)
    assert result["devices"] == 2
    np.testing.assert_allclose(result["parallel_loss"], result["loss"], rtol=1e-5)
    moved = 0.0
    for start, single, parallel in zip(
        result["initial"], result["trained"], result["parallel_trained"]
    ):
        np.testing.assert_allclose(parallel, single, rtol=1e-4, atol=1e-6)
        moved = max(moved, np.abs(np.asarray(single) - np.asarray(start)).max())
    assert moved > 1e-4  # the step changed the weights
