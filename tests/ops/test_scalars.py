import traceback

import keras
import numpy as np
import pytest
from keras import ops

from keras_reformer.layers import LSHSelfAttention
from keras_reformer.ops.scalars import scalar_like
from tests.test_case import BACKEND
from tests.test_case import to_numpy


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_scalar_like_has_the_value_and_the_dtype(dtype):
    result = scalar_like(-7, ops.ones((2, 3), dtype=dtype))
    assert tuple(result.shape) == ()
    assert keras.backend.standardize_dtype(result.dtype) == dtype
    assert float(to_numpy(result)) == -7.0


@pytest.mark.skipif(BACKEND != "torch", reason="a torch + CUDA performance property")
def test_lsh_attention_copies_no_python_number_to_the_device():
    # On a GPU each such copy makes the host wait for the device (see scalars.py).
    import torch
    from torch.overrides import TorchFunctionMode

    copied_from = []

    class RecordScalarCopies(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.as_tensor and isinstance(args[0], (bool, int, float)):
                ours = [f for f in traceback.extract_stack() if "keras_reformer" in f.filename]
                if ours:
                    copied_from.append(f"{ours[-1].filename}:{ours[-1].lineno}")
            return func(*args, **(kwargs or {}))

    layer = LSHSelfAttention(2, 8, chunk_length=4, num_hashes=2, causal=True, seed=0)
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(1, 13, 16)), "float32")
    mask = keras.ops.convert_to_tensor(np.arange(13)[None] < 11)
    layer(x, padding_mask=mask)  # build outside the recording
    x.requires_grad_(True)
    with RecordScalarCopies():
        output = layer(x, padding_mask=mask, training=True)
        output.sum().backward()
    assert copied_from == []
