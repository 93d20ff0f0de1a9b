"""Each attention layer's cache: one token at a time equals the whole-sequence
call on the tokens up to it (on one layer, the cached semantics and re-running
each prefix coincide). The reference call masks the positions after the token
as padding, which equals cutting them off (padding has its own LSH bucket) and
keeps one shape for every position."""

import numpy as np
import pytest
from keras import ops

from keras_reformer.backend import compile_inference
from keras_reformer.layers import FullSelfAttention
from keras_reformer.layers import LocalSelfAttention
from keras_reformer.layers import LSHSelfAttention
from tests.test_case import assert_allclose
from tests.test_case import to_numpy

LENGTH, KNOWN = 36, 11

LAYERS = {
    "local": lambda: LocalSelfAttention(num_heads=2, key_dim=8, chunk_length=8, causal=True),
    "local_separate_qk_lookback_2": lambda: LocalSelfAttention(
        num_heads=2,
        key_dim=8,
        value_dim=6,
        chunk_length=8,
        causal=True,
        shared_qk=False,
        lookback=2,
    ),
    "full": lambda: FullSelfAttention(num_heads=2, key_dim=8, chunk_length=8, causal=True),
    "full_separate_qk": lambda: FullSelfAttention(
        num_heads=2, key_dim=8, chunk_length=8, causal=True, shared_qk=False
    ),
    "lsh": lambda: LSHSelfAttention(
        num_heads=2, key_dim=8, chunk_length=4, num_hashes=3, num_buckets=8, causal=True, seed=1
    ),
    "lsh_duplicates_lookahead": lambda: LSHSelfAttention(
        num_heads=2,
        key_dim=8,
        chunk_length=4,
        num_hashes=3,
        num_buckets=8,
        causal=True,
        seed=2,
        correct_duplicates=True,
        lookahead=1,
    ),
    "lsh_factored_lookback_2": lambda: LSHSelfAttention(
        num_heads=1,
        key_dim=8,
        chunk_length=4,
        num_hashes=2,
        num_buckets=[4, 4],
        causal=True,
        seed=3,
        lookback=2,
    ),
}


def _inputs():
    return np.random.default_rng(0).normal(size=(2, LENGTH, 16)).astype("float32")


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_one_token_at_a_time_equals_the_call_on_its_prefix_and_bytes_add_up(name):
    layer = LAYERS[name]()
    x = _inputs()
    known = np.broadcast_to(np.arange(LENGTH) < KNOWN, (2, LENGTH)).astype("int32")
    layer.build(x.shape)
    # Compiled as generation compiles them (op by op, JAX takes seconds per call).
    build_cache = compile_inference(layer.build_cache, layer.variables)
    step = compile_inference(layer.call_with_cache, layer.variables)
    reference = compile_inference(lambda x, mask: layer(x, padding_mask=mask), layer.variables)
    outputs, cache = build_cache(x, known)
    arrays = [to_numpy(t) for t in cache]  # float32 keys and values, int32 LSH entries
    assert [a.dtype.kind for a in arrays] == ["f", "f"] + ["i"] * (len(arrays) - 2)
    if isinstance(layer, LSHSelfAttention):
        # Besides the per-token entries, two tables per sequence: tokens per bucket.
        num_buckets = int(np.prod(layer.num_buckets))
        for table in (arrays.pop(4), arrays.pop(4)):
            assert table.shape == (2, layer.num_heads, layer.num_hashes, num_buckets + 1)
    assert layer.cache_bytes_per_token() * 2 * LENGTH == 4 * sum(a.size for a in arrays)
    assert_allclose(
        to_numpy(outputs)[:, :KNOWN], to_numpy(reference(x, known))[:, :KNOWN], rtol=1e-5, atol=1e-5
    )
    for t in range(KNOWN, LENGTH):  # crosses several chunk boundaries
        index = ops.convert_to_tensor(t, "int32")
        output, cache = step(x[:, t : t + 1], cache, index)
        prefix = np.broadcast_to(np.arange(LENGTH) <= t, (2, LENGTH)).astype("int32")
        assert_allclose(
            output[:, 0],
            to_numpy(reference(x, prefix))[:, t],
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"position {t}",
        )


@pytest.mark.parametrize("layer_class", [LocalSelfAttention, FullSelfAttention, LSHSelfAttention])
def test_a_non_causal_layer_has_no_cache(layer_class):
    layer = layer_class(num_heads=1, key_dim=4, chunk_length=4)
    with pytest.raises(ValueError, match="causal=False"):
        layer.build_cache(_inputs())
