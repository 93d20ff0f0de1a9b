"""Shared pytest setup: one backend per process, chosen by KERAS_BACKEND."""

import os

# XLA's CPU backend spends most of a small test's time in LLVM optimisation of
# the compiled step; level 0 compiles about 3x faster, and test tensors are tiny.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# On GPUs, JAX multiplies float32 matrices in TF32 (10-bit mantissa) by default,
# about 1e-3 relative error; the tests compare against float32 references.
# (No effect on CPU; inherited by the subprocesses some tests start.)
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# TensorFlow counts CPU memory (`get_memory_info("CPU:0")`, used by the memory
# tests) only in oneDNN's allocator, which it turns on by default only on CPUs
# with AVX-512 or AMX; on others (e.g. an AVX2-only AMD EPYC) the count fails.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np
import pytest

if keras.backend.backend() == "torch":
    import torch

    # The suite runs the three backends side by side on the machine's cores;
    # torch's intra-op threads then wait on busy cores at every op (a tiny
    # train step took 0.97 s with 2 threads, 0.10 s with one, beside a busy process).
    torch.set_num_threads(1)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts with float32 and a fixed seed.

    (No `keras.backend.clear_session()`: its garbage collection cost ~1 s per
    test on torch.)
    """
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


# Checks that do not depend on the backend of the run (they start their own
# subprocesses, or read files) run once, in the torch run: the suite runs the
# three backends side by side, and torch's run ends first.
BACKEND_INDEPENDENT_RUN = "torch"


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("KERAS_BACKEND"):
        raise pytest.UsageError(
            "Set KERAS_BACKEND=jax|tensorflow|torch: every backend runs in its own process."
        )
    if keras.backend.backend() != BACKEND_INDEPENDENT_RUN:
        skip = pytest.mark.skip(
            reason=f"backend-independent: runs in the KERAS_BACKEND={BACKEND_INDEPENDENT_RUN} run"
        )
        for item in items:
            if "backend_independent" in item.keywords:
                item.add_marker(skip)
