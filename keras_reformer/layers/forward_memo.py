"""What a sublayer's forward call hands to its recompute in the reversible backward.

The reversible stack (`keras_reformer.layers.ReversibleSequence`) runs each
sublayer twice per training step: in the forward walk, and again in the
backward walk to rebuild its input. Some of what the forward computes does not
depend on the weights' gradients and is cheap to keep: LSH attention's sort of
the tokens by bucket (integers, one per token, head and hash round). Kept, the
recompute skips drawing the rotations, hashing and sorting, as HF's Reformer
does with its buckets.

The stack records a sublayer's forward call (`recording`) and replays the
record around its recompute (`replaying`); inside, a layer wraps such a
computation in `remember`. Outside both (an ordinary call, inference, a
non-reversible stack) `remember` just computes. Records are kept only where
the backend runs the stack's walks as plain Python calls (torch eagerly,
TensorFlow eagerly or in its graph runtime: see
`keras_reformer.backend.walks_are_unrolled`); in compiled loops (JAX, XLA,
torch.compile) a value cannot leave its step, and the recompute computes
again, from the same seed states, the same values. A position-wise layer
(recomputed chunk by chunk, see `keras_reformer.layers.position_wise`) must
not use `remember`.
"""

import contextlib

_record = None  # the list being filled by `remember`, or None
_replay = None  # an iterator over a record being replayed, or None


@contextlib.contextmanager
def recording(enabled=True):
    """Within the context, `remember` keeps what it computes.

    Args:
        enabled: when False, nothing is recorded and the context yields `None`.

    Yields:
        The record: a list that `remember` fills in call order, or `None`.
    """
    global _record, _replay
    if not enabled:
        yield None
        return
    # A forward call inside a replay (a reversible stack nested in a sublayer
    # that is being recomputed) records its own values and replays nothing.
    outer = _record, _replay
    _record, _replay = [], None
    try:
        yield _record
    finally:
        _record, _replay = outer


@contextlib.contextmanager
def replaying(record):
    """Within the context, `remember` returns `record`'s values in order.

    Args:
        record: what `recording` yielded for the forward call being
            recomputed; `None` replays nothing (`remember` computes).
    """
    global _record, _replay
    if record is None:
        yield
        return
    outer = _record, _replay
    _record, _replay = None, iter(record)
    try:
        yield
    finally:
        _record, _replay = outer


def remember(compute):
    """`compute()`, or what it returned in the forward call being replayed.

    Args:
        compute: a function of no arguments returning values that the
            gradient does not flow through (e.g. integer indices).

    Returns:
        `compute()`'s value; while replaying, the recorded value instead
        (`compute` is not called).

    Example:

    ```python
    from keras import ops
    from keras_reformer.layers import forward_memo

    with forward_memo.recording() as record:
        order = forward_memo.remember(lambda: ops.argsort(ops.arange(3)))
    with forward_memo.replaying(record):
        again = forward_memo.remember(lambda: None)  # `order`, not recomputed
    ```
    """
    if _replay is not None:
        try:
            return next(_replay)
        except StopIteration:
            raise RuntimeError(
                "The recompute of a reversible sublayer asked for more remembered values than "
                "its forward call recorded: the sublayer must make the same `remember` calls "
                "in both."
            ) from None
    value = compute()
    if _record is not None:
        _record.append(value)
    return value
