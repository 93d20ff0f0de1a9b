"""The (bucket, position) order of a growing sequence: cached LSH decoding's bookkeeping.

A new token in cached LSH attention needs its rank among the tokens so far,
sorted by (bucket, position), and the tokens at the ranks around it. One
sorted array kept up to date would shift its whole tail for every token
(O(length) per token). Here the order has two parts:

- the *base*: the first `m` tokens, sorted (at the prefill, then at each
  merge);
- the *recent* tokens `m .. t` (at most `slots` of them), not sorted.

Two tables count tokens per bucket: `base_starts[b]`, the base tokens in
buckets below `b`, and `starts[b]`, all tokens so far in buckets below `b`.
A new token's rank is `starts[its bucket + 1]` (every earlier token in its
bucket or below); a base token's rank is its base index plus the recent
tokens in lower buckets (`starts - base_starts` at its bucket). Every `slots`
tokens, `merge_recent` folds the recent tokens into the base in one pass, so
a token costs O(slots + num_buckets) plus O(length / slots).

The state, per row (leading axes `...`, e.g. `(batch, heads, rounds)`):

- `buckets`: `(..., capacity)` each position's bucket, `num_buckets` where no
  token is yet;
- `order`: `(..., capacity)` the base: `order[i]` is the position of the base
  token of index `i` for `i < m`, and `i` itself from `m` on;
- `base_starts`, `starts`: `(..., num_buckets + 1)`; `base_starts[num_buckets]`
  is `m`;
- `ranks` (kept for the duplicate correction): `(..., capacity)`, each base
  token's index in the base, and its own position from `m` on.
"""

from keras import ops

from keras_reformer.ops.shapes import reshape


def order_from_sort(buckets, sort_indices, undo_indices, num_buckets):
    """The state of a sequence sorted as a whole: every token with a bucket is in the base.

    Args:
        buckets: `(..., capacity)`, `num_buckets` for positions with no token
            (they must come last: tokens are a prefix of each row).
        sort_indices: `(..., capacity)` positions sorted by (bucket, position).
        undo_indices: `(..., capacity)` each position's index in that sort.
        num_buckets: the number of real buckets.

    Returns:
        `(order, base_starts, ranks)` as described in the module docstring
        (`starts` begins equal to `base_starts`).
    """
    per_bucket = _histogram(_rows(buckets), num_buckets + 1)
    starts = ops.cast(_unrows(_exclusive_cumsum(per_bucket), buckets), "int32")
    return sort_indices, starts, undo_indices


def add_token(starts, bucket):
    """A new token's rank, and the table `starts` with it counted.

    Args:
        starts: `(..., num_buckets + 1)`, all tokens so far in buckets below each.
        bucket: `(..., 1)`, the new token's bucket (it comes after every
            token so far in position).

    Returns:
        `(rank, starts)`: `(..., 1)` and the updated table.
    """
    rank = ops.take_along_axis(starts, bucket + 1, axis=-1)
    above = ops.arange(starts.shape[-1], dtype="int32") > bucket
    return rank, starts + ops.cast(above, starts.dtype)


def recent_tokens(buckets, base_starts, index, slots):
    """The recent tokens' positions and buckets, and which slots hold one.

    Args:
        buckets: `(..., capacity)`, with the token at `index` written.
        base_starts: `(..., num_buckets + 1)`.
        index: int32 scalar, the newest token's position.
        slots: how many recent tokens the state holds at most.

    Returns:
        `(positions, buckets, valid)`, each `(..., slots)`: slot `k` is
        position `m + k`, valid while it is at most `index`.
    """
    capacity = buckets.shape[-1]
    positions = base_starts[..., -1:] + ops.arange(slots, dtype="int32")
    valid = positions <= index
    positions = ops.minimum(positions, capacity - 1)
    return positions, ops.take_along_axis(buckets, positions, axis=-1), valid


def base_token_ranks(base_indices, buckets, base_starts, starts):
    """Ranks of base tokens among all tokens so far: base index plus the recent
    tokens in lower buckets. All arguments `(..., n)` but the tables."""
    return base_indices + _lookup(starts, buckets) - _lookup(base_starts, buckets)


def token_ranks(positions, buckets, base_starts, starts, ranks, recent):
    """Ranks of tokens (base or recent) among all tokens so far.

    Args:
        positions, buckets: `(..., n)` the tokens' positions and buckets.
        base_starts, starts: the state's tables.
        ranks: the state's `ranks` (each base token's index in the base).
        recent: `(positions, buckets, valid)` from `recent_tokens`.

    Returns:
        `(..., n)` int32 ranks.
    """
    base = base_token_ranks(
        ops.take_along_axis(ranks, positions, axis=-1), buckets, base_starts, starts
    )
    recent_token = recent_token_ranks(positions, buckets, base_starts, starts, recent)
    return ops.where(positions < base_starts[..., -1:], base, recent_token)


def recent_token_ranks(positions, buckets, base_starts, starts, recent):
    """Ranks of recent tokens among all tokens so far: every token in lower
    buckets, the base tokens in their own, and the recent ones before them
    there. Arguments as `token_ranks`."""
    return (
        _lookup(starts, buckets)
        + _lookup(base_starts, buckets + 1)
        - _lookup(base_starts, buckets)
        + _same_bucket_before(positions, buckets, recent)
    )


def merge_recent(buckets, order, base_starts, starts, ranks, recent, recent_ranks):
    """Folds the recent tokens into the base.

    Args:
        buckets, order, base_starts, starts: the state (module docstring).
        ranks: the state's `ranks`, or `None` where it is not kept.
        recent: `(positions, buckets, valid)` from `recent_tokens`.
        recent_ranks: `(..., slots)` the recent tokens' ranks among all tokens
            (`recent_token_ranks`).

    Returns:
        `(order, base_starts, ranks)` with every valid recent token in the
        base (`ranks` stays `None` where it was); `starts` is unchanged.
    """
    positions, recent_buckets, valid = recent
    capacity, num_buckets = order.shape[-1], starts.shape[-1] - 1
    slots = recent_buckets.shape[-1]
    base, merged = base_starts[..., -1:], starts[..., -1:]

    # Output index i holds a recent token when one ranks at i; otherwise the base
    # token of index i - (recent tokens ranked before i).
    taken = _histogram(_rows(ops.where(valid, recent_ranks, capacity)), capacity + 1)[:, :capacity]
    recent_before = _unrows(_exclusive_cumsum(taken), order)
    taken = _unrows(taken, order) > 0
    index = ops.arange(capacity, dtype="int32")
    from_base = ops.take_along_axis(order, ops.maximum(index - recent_before, 0), axis=-1)
    # The recent positions in rank order: a recent token's index among them is
    # its rank less the base tokens before it.
    among = ops.where(valid, recent_ranks - _lookup(base_starts, recent_buckets + 1), slots)
    one_hot = ops.expand_dims(among, -1) == ops.arange(slots, dtype="int32")
    in_rank_order = ops.sum(ops.where(one_hot, ops.expand_dims(positions, -1), 0), axis=-2)
    from_recent = ops.take_along_axis(in_rank_order, ops.minimum(recent_before, slots - 1), axis=-1)
    new_order = ops.where(index >= merged, index, ops.where(taken, from_recent, from_base))

    new_ranks = None
    if ranks is not None:
        # Base tokens move up by the recent tokens in lower buckets.
        recent_below = _lookup(starts - base_starts, ops.minimum(buckets, num_buckets))
        own = ops.take_along_axis(recent_ranks, ops.clip(index - base, 0, slots - 1), axis=-1)
        new_ranks = ops.where(
            index < base, ranks + recent_below, ops.where(index < merged, own, index)
        )
    return new_order, starts, new_ranks


def _same_bucket_before(positions, buckets, recent):
    # How many valid recent tokens share each token's bucket and precede it.
    recent_positions, recent_buckets, recent_valid = (ops.expand_dims(x, -2) for x in recent)
    before = ops.logical_and(
        recent_buckets == ops.expand_dims(buckets, -1),
        recent_positions < ops.expand_dims(positions, -1),
    )
    return ops.sum(ops.cast(ops.logical_and(before, recent_valid), "int32"), axis=-1)


def _lookup(table, buckets):
    # table[..., b] per token; buckets past the table (no token there) read its last entry.
    return ops.take_along_axis(table, ops.minimum(buckets, table.shape[-1] - 1), axis=-1)


def _histogram(values, bins):
    # Per row, how often each of 0 .. bins - 1 occurs: `(rows, n)` -> `(rows, bins)`.
    rows = values.shape[0]
    segments = reshape(
        values + bins * ops.expand_dims(ops.arange(rows, dtype=values.dtype), 1), (-1,)
    )
    counts = ops.segment_sum(ops.ones_like(segments), segments, num_segments=rows * bins)
    return reshape(counts, (rows, bins))


def _rows(x):
    return reshape(x, (-1, x.shape[-1]))


def _unrows(x, like):
    # `_rows` undone: the leading axes of `like` (only the first may be unknown).
    return reshape(x, (-1,) + tuple(like.shape[1:-1]) + (x.shape[-1],))


def _exclusive_cumsum(x):
    return ops.cumsum(x, axis=-1) - x
