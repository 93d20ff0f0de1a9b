"""The (bucket, position) order of a growing sequence: cached LSH decoding's bookkeeping.

A new token in cached LSH attention needs its rank among the tokens so far,
sorted by (bucket, position), and the tokens at the ranks around it. One
sorted array kept up to date would shift its whole tail for every token
(O(length) per token). Here the order has two parts:

- the *base*: the first `m` tokens, sorted (at the prefill, then at each
  merge);
- the *recent* tokens `m .. t` (at most `recent` of them), not sorted.

A token's rank is its base part (a base token's index in the base; for a
recent token, the number of base tokens in buckets up to its own: all of them
come before it in position) plus the number of recent tokens before it. Every
`recent` tokens, `merge_recent` folds the recent tokens into the base in one
pass, so the cost per token is O(recent) plus O(length / recent).

The state, per row (leading axes `...`, e.g. `(batch, heads, rounds)`):

- `buckets`: `(..., capacity)` each position's bucket, `num_buckets` where no
  token is yet;
- `order`: `(..., capacity)` the base: `order[i]` is the position of the base
  token of index `i` for `i < m`, and `i` itself from `m` on;
- `starts`: `(..., num_buckets + 1)`: `starts[b]` base tokens lie in buckets
  below `b`; `starts[num_buckets]` is `m`;
- `ranks` (kept for the duplicate correction): `(..., capacity)`, each base
  token's index in the base, and its own position from `m` on.
"""

from keras import ops


def order_from_sort(buckets, sort_indices, undo_indices, num_buckets):
    """The state of a sequence sorted as a whole: every token with a bucket is in the base.

    Args:
        buckets: `(..., capacity)`, `num_buckets` for positions with no token
            (they must come last: tokens are a prefix of each row).
        sort_indices: `(..., capacity)` positions sorted by (bucket, position).
        undo_indices: `(..., capacity)` each position's index in that sort.
        num_buckets: the number of real buckets.

    Returns:
        `(order, starts, ranks)` as described in the module docstring.
    """
    per_bucket = _histogram(_rows(buckets), num_buckets + 1)
    starts = _unrows(_exclusive_cumsum(per_bucket), buckets)
    return sort_indices, ops.cast(starts, "int32"), undo_indices


def recent_tokens(buckets, starts, index, recent):
    """The recent tokens' positions and buckets, and which slots hold one.

    Args:
        buckets: `(..., capacity)`, with the token at `index` written.
        starts: `(..., num_buckets + 1)`.
        index: int32 scalar, the newest token's position.
        recent: how many recent tokens the state holds at most.

    Returns:
        `(positions, buckets, valid)`, each `(..., recent)`: slot `k` is
        position `m + k`, valid while it is at most `index`.
    """
    capacity = buckets.shape[-1]
    positions = starts[..., -1:] + ops.arange(recent, dtype="int32")
    valid = positions <= index
    positions = ops.minimum(positions, capacity - 1)
    return positions, ops.take_along_axis(buckets, positions, axis=-1), valid


def count_before(query_positions, query_buckets, recent):
    """How many recent tokens sort before each query in (bucket, position) order.

    Args:
        query_positions, query_buckets: `(..., queries)`.
        recent: `(positions, buckets, valid)` from `recent_tokens`, each `(..., slots)`.

    Returns:
        `(..., queries)` int32 counts.
    """
    recent_positions, recent_buckets, recent_valid = (ops.expand_dims(x, -2) for x in recent)
    query_positions = ops.expand_dims(query_positions, -1)
    query_buckets = ops.expand_dims(query_buckets, -1)
    before = ops.logical_or(
        recent_buckets < query_buckets,
        ops.logical_and(recent_buckets == query_buckets, recent_positions < query_positions),
    )
    return ops.sum(ops.cast(ops.logical_and(before, recent_valid), "int32"), axis=-1)


def base_tokens_up_to(starts, query_buckets):
    """How many base tokens lie in each query's bucket or below: the base part
    of a recent token's rank (every base token precedes it in position)."""
    # Buckets past the last real one (no token there) read the last entry: m.
    return ops.take_along_axis(starts, ops.minimum(query_buckets + 1, starts.shape[-1] - 1),
                               axis=-1)


def merge_recent(buckets, order, starts, ranks, recent, recent_ranks):
    """Folds the recent tokens into the base.

    Args:
        buckets, order, starts: the state (module docstring).
        ranks: the state's `ranks`, or `None` where it is not kept.
        recent: `(positions, buckets, valid)` from `recent_tokens`.
        recent_ranks: `(..., recent)` the recent tokens' ranks among all tokens
            (base part plus `count_before`).

    Returns:
        `(order, starts, ranks)` with every valid recent token in the base
        (`ranks` stays `None` where it was).
    """
    positions, recent_buckets, valid = recent
    capacity, num_buckets = order.shape[-1], starts.shape[-1] - 1
    slots = recent_buckets.shape[-1]
    # Recent tokens below each bucket b: base tokens of bucket b and above move up by that many.
    per_bucket = _histogram(_rows(ops.where(valid, recent_buckets, num_buckets + 1)), num_buckets + 2)
    below = _unrows(_exclusive_cumsum(per_bucket)[:, : num_buckets + 1], starts)
    new_starts = starts + ops.cast(below, starts.dtype)
    merged = new_starts[..., -1:]

    # Output index i holds a recent token when one ranks at i; otherwise the base
    # token of index i - (recent tokens ranked before i).
    taken = _histogram(_rows(ops.where(valid, recent_ranks, capacity)), capacity + 1)[:, :capacity]
    recent_before = _unrows(_exclusive_cumsum(taken), order)
    taken = _unrows(taken, order) > 0
    index = ops.arange(capacity, dtype="int32")
    from_base = ops.take_along_axis(order, ops.maximum(index - recent_before, 0), axis=-1)
    in_rank_order = _sorted_by_rank(positions, recent_buckets, valid)
    from_recent = ops.take_along_axis(in_rank_order, ops.minimum(recent_before, slots - 1), axis=-1)
    new_order = ops.where(index >= merged, index, ops.where(taken, from_recent, from_base))

    new_ranks = None
    if ranks is not None:
        base = starts[..., -1:]
        shifted = ranks + ops.take_along_axis(
            ops.cast(below, ranks.dtype), ops.minimum(buckets, num_buckets), axis=-1
        )
        own = ops.take_along_axis(recent_ranks, ops.clip(index - base, 0, slots - 1), axis=-1)
        new_ranks = ops.where(index < base, shifted, ops.where(index < merged, own, index))
    return new_order, new_starts, new_ranks


def _sorted_by_rank(positions, recent_buckets, valid):
    # The recent positions in (bucket, position) order (invalid slots last, any value).
    among = count_before(positions, recent_buckets, (positions, recent_buckets, valid))
    slots = positions.shape[-1]
    among = ops.where(valid, among, slots)
    one_hot = ops.expand_dims(among, -1) == ops.arange(slots, dtype="int32")
    return ops.sum(ops.where(one_hot, ops.expand_dims(positions, -1), 0), axis=-2)


def _histogram(values, bins):
    # Per row, how often each of 0 .. bins - 1 occurs: `(rows, n)` -> `(rows, bins)`.
    rows = values.shape[0]
    segments = ops.reshape(values + bins * ops.expand_dims(ops.arange(rows, dtype=values.dtype), 1),
                           (-1,))
    counts = ops.segment_sum(ops.ones_like(segments), segments, num_segments=rows * bins)
    return ops.reshape(counts, (rows, bins))


def _rows(x):
    return ops.reshape(x, (-1, x.shape[-1]))


def _unrows(x, like):
    # `_rows` undone: the leading axes of `like` (only the first may be unknown).
    return ops.reshape(x, (-1,) + tuple(like.shape[1:-1]) + (x.shape[-1],))


def _exclusive_cumsum(x):
    return ops.cumsum(x, axis=-1) - x
