import numpy as np
import pytest
from keras import ops

from keras_reformer.ops.chunking import look_around
from keras_reformer.ops.chunking import merge_chunks
from keras_reformer.ops.chunking import pad_to_multiple
from keras_reformer.ops.chunking import scan_sequence_chunks
from keras_reformer.ops.chunking import shift_chunks
from keras_reformer.ops.chunking import split_chunks
from tests.test_case import to_numpy


def test_pad_to_multiple():
    x = np.arange(10, dtype="float32").reshape(1, 5, 2)
    padded = to_numpy(pad_to_multiple(ops.convert_to_tensor(x), 4, constant_value=-1))
    assert padded.shape == (1, 8, 2)
    np.testing.assert_array_equal(padded[:, :5], x)
    assert np.all(padded[:, 5:] == -1)
    assert pad_to_multiple(ops.convert_to_tensor(x), 5).shape == (1, 5, 2)


def test_split_and_merge_round_trip():
    x = np.arange(2 * 12 * 3, dtype="float32").reshape(2, 12, 3)
    chunks = split_chunks(ops.convert_to_tensor(x), 4)
    assert tuple(chunks.shape) == (2, 3, 4, 3)
    np.testing.assert_array_equal(to_numpy(chunks)[1, 2], x[1, 8:12])
    np.testing.assert_array_equal(to_numpy(merge_chunks(chunks)), x)
    with pytest.raises(ValueError, match="chunk_length"):
        split_chunks(ops.convert_to_tensor(x), 5)


@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 3, 5])
def test_shift_chunks_moves_by_offset_and_fills_outside(offset):
    x = np.arange(1, 9, dtype="float32").reshape(1, 4, 2)
    out = to_numpy(shift_chunks(ops.convert_to_tensor(x), offset, fill_value=-1))
    assert out.shape == x.shape
    for i in range(4):
        want = x[0, i + offset] if 0 <= i + offset < 4 else [-1, -1]
        np.testing.assert_array_equal(out[0, i], want)


@pytest.mark.parametrize("lookback, lookahead", [(1, 0), (0, 1), (2, 1), (0, 0)])
def test_look_around_concatenates_neighbours_without_wrapping(lookback, lookahead):
    num_chunks, chunk = 4, 2
    x = np.arange(1, num_chunks * chunk + 1, dtype="float32").reshape(1, num_chunks, chunk)
    out = to_numpy(look_around(ops.convert_to_tensor(x), lookback, lookahead, fill_value=0))
    width = lookback + 1 + lookahead
    assert out.shape == (1, num_chunks, width * chunk)
    for i in range(num_chunks):
        expected = []
        for j in range(i - lookback, i + lookahead + 1):
            expected.extend(x[0, j] if 0 <= j < num_chunks else [0] * chunk)
        np.testing.assert_array_equal(out[0, i], expected)


def test_look_around_fills_booleans():
    mask = ops.convert_to_tensor(np.ones((1, 3, 2), bool))
    out = to_numpy(look_around(mask, 1, 1, fill_value=False))
    np.testing.assert_array_equal(out[0, 0], [False, False, True, True, True, True])
    np.testing.assert_array_equal(out[0, 2], [True, True, True, True, False, False])


@pytest.mark.parametrize("length", [8, 10, 3])
def test_scan_sequence_chunks_sees_every_chunk_once_in_order(length):
    x = np.random.default_rng(0).normal(size=(2, length, 3)).astype("float32")
    mask = np.arange(length)[None, :] % 3 == 0

    def fn(carry, start, chunk, mask_chunk):
        count, total = carry
        shifted = chunk + ops.cast(start, "float32")  # start: the chunk's first position
        masked = ops.where(mask_chunk[..., None], chunk, 0.0)
        return (count + 1, total + ops.sum(chunk)), (shifted, masked)

    (count, total), (shifted, masked) = scan_sequence_chunks(
        fn, (ops.zeros((), "int32"), ops.zeros(())), (x, mask), chunk_length=4
    )
    starts = (np.arange(length) // 4 * 4).astype("float32")
    np.testing.assert_allclose(to_numpy(shifted), x + starts[None, :, None], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(masked), np.where(mask[..., None], x, 0.0))
    assert int(to_numpy(count)) == -(-length // 4)
    np.testing.assert_allclose(to_numpy(total), x.sum(), rtol=1e-5)
