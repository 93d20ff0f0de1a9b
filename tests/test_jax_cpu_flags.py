"""The XLA flag that the docs recommend for JAX on CPUs is accepted and changes no result.

It runs JAX in subprocesses whatever the backend of this test run, because
`XLA_FLAGS` is read once per process. An unknown flag makes XLA abort, so this
test fails when a jaxlib upgrade drops the flag that the docs tell users to set.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# JAX in subprocesses, whatever the run's backend: once is enough.
pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax_cpu_flags  # noqa: E402

SCRIPT = """
import json, random
random.seed(0)  # Keras draws unseeded initializer seeds from Python's random
import keras, numpy as np
from keras_reformer.layers import LSHSelfAttention
import jax

layer = LSHSelfAttention(num_heads=2, key_dim=8, chunk_length=8, num_hashes=2,
                         num_buckets=4, causal=True, seed=3)
x = np.random.default_rng(0).normal(size=(2, 32, 16)).astype("float32")
layer.build(x.shape)
weights = [v.value for v in layer.trainable_variables]
state = [v.value for v in layer.non_trainable_variables]

def loss(weights, x):
    values, _ = layer.stateless_call(weights, state, x)
    return keras.ops.sum(values ** 2), values

(total, values), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(weights, x)
print(json.dumps({"values": np.asarray(values).tolist(),
                  "grads": [np.asarray(g).tolist() for g in grads]}))
"""


def _run_jax(xla_flags):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": xla_flags,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_documented_flag_is_accepted_and_gives_the_same_gradients():
    default = _run_jax("")
    flagged = _run_jax(jax_cpu_flags.NO_YNN_REDUCE)
    np.testing.assert_allclose(flagged["values"], default["values"], rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(flagged["grads"], default["grads"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(default["grads"][0])).sum() > 0


def test_an_unknown_flag_fails_the_run():
    # The check above can fail: XLA rejects flags it does not know.
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_cpu_no_such_flag_for_keras_reformer=1",
    }
    completed = subprocess.run(
        [sys.executable, "-c", "import jax; jax.numpy.ones(2) + 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode != 0


def test_docs_recommend_the_flag_that_the_benchmark_measures():
    guide = (ROOT / "docs" / "how-to" / "long-sequences.md").read_text()
    assert f"XLA_FLAGS={jax_cpu_flags.NO_YNN_REDUCE}" in guide
