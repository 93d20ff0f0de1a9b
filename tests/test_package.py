"""Package-level promises: light imports, registration of public names."""

import os
import subprocess
import sys

import pytest

import keras_reformer


@pytest.mark.backend_independent
def test_core_import_loads_no_other_framework_under_jax():
    code = (
        "import sys, keras_reformer; "
        "heavy = [m for m in ('tensorflow', 'torch', 'keras_nlp', 'keras_hub') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing keras_reformer loaded {result.stdout.strip()}"


def test_version_is_exposed():
    assert keras_reformer.__version__.count(".") == 2
