"""torch pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp),
and the torch versions of `keras_reformer.ops`' overridable functions (fewer dispatched ops)."""

import contextlib
import functools
import math

import keras
import torch
from keras import ops

from keras_reformer.ops.chunked_attention import check_round_chunks
from keras_reformer.ops.masks import mask_values


def vjp(fn, weights, x, cotangent):
    with torch.enable_grad():
        # Weights that already require a gradient (the stack's variables) are
        # differentiated as they are: `autograd.grad` accumulates nothing into them.
        weights = [w if w.requires_grad else w.detach().requires_grad_(True) for w in weights]
        x = x.detach().requires_grad_(True)
        output = fn(weights, x)
        grads = torch.autograd.grad(output, weights + [x], cotangent, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(weights + [x], grads)]
    return output.detach(), grads[:-1], grads[-1]


def _devices():
    return [torch.cuda.current_device()] if torch.cuda.is_available() else []


def rng_state():
    # Keras' unseeded Dropout on torch draws from the global generator, so the
    # recompute must replay the state each sublayer call started from.
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


@contextlib.contextmanager
def replay_rng(state):
    with torch.random.fork_rng(devices=_devices()):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"])
        yield


def run_in_sequence(steps, carry):
    for step in steps:  # eager: runs in program order anyway
        carry = step(*carry)
    return carry


def walks_are_unrolled():
    return not torch.compiler.is_compiling()


def scan(fn, init, xs):
    carry, ys = init, []
    for i in range(xs[0].shape[0]):
        carry, y = fn(carry, tuple(x[i] for x in xs))
        ys.append(y)
    return carry, tuple(torch.stack(column) for column in zip(*ys))


def sum_start(like):
    del like
    return None


def stable_argsort(x):
    return torch.argsort(_tensor(x), dim=-1, stable=True).int()


# exp(-80) is under 1e-34: negligible beside the largest weight, exp(0) = 1.
_NEGLIGIBLE_EXPONENT = -80.0


def exp_nonpositive(x):
    return torch.where(
        x > _NEGLIGIBLE_EXPONENT, torch.exp(torch.clamp(x, min=_NEGLIGIBLE_EXPONENT)), 0.0
    )


def assert_at_most(value, limit, message):
    if int(value) > limit:
        raise ValueError(message)


def compile_inference(function, variables):
    del variables

    def run(*args):
        with torch.no_grad():
            return function(*args)

    return run


def is_concrete(x):
    return not torch.compiler.is_compiling()


# === Overrides of keras_reformer.ops (see backend.overridable): same values, fewer ops ===


def _tensor(x):
    return x if isinstance(x, torch.Tensor) else ops.convert_to_tensor(x)


def gather_along_sequence(x, indices):
    # Whole rows of the batch-flattened `x` (index_select along the first axis)
    # copy contiguous memory; `torch.gather` with an index expanded over the
    # features reads one int64 index per value, forward and backward (the
    # measurements are in the changelog).
    x, indices = _tensor(x), _tensor(indices)
    if x.ndim == 2:  # one value per position: gather's index is no larger than x's rows
        return torch.gather(x, 1, indices.long())
    batch, length = x.shape[:2]
    feature_shape = tuple(x.shape[2:])
    # Offsets of the indices' dtype: an int32 + int64 sum would convert first.
    offsets = _constant(_row_offsets, batch, length, x.device, indices.dtype)
    rows = torch.add(indices, offsets)
    gathered = x.reshape((batch * length,) + feature_shape).index_select(0, rows.view(-1))
    return gathered.view((batch, indices.shape[1]) + feature_shape)


def _row_offsets(batch, length, device, dtype=torch.int64):
    """`(batch, 1)` integers: the first row of each batch element in `(batch * length, ...)`."""
    return torch.mul(torch.arange(batch, device=device, dtype=dtype), length).unsqueeze(-1)


def _constant(builder, *args):
    """`builder(*args)`, a tensor or tuple of tensors that depends on its (hashable)
    arguments only, built once per arguments (except while torch.compile traces)
    and never an inference tensor, so that it serves training after inference."""
    if torch.compiler.is_compiling():
        return builder(*args)
    return _cached_constant(builder, *args)


@functools.lru_cache(maxsize=64)
def _cached_constant(builder, *args):
    with torch.inference_mode(False), torch.no_grad():
        return builder(*args)


def reshape(x, shape):
    x = _tensor(x)
    shape = shape if isinstance(shape, (tuple, list)) else (shape,)
    # `torch.reshape` of a contiguous tensor dispatches a view in a reshape (two ops).
    return x.view(shape) if x.is_contiguous() else torch.reshape(x, shape)


def layer_norm(x, gamma, beta, epsilon):
    x = _tensor(x)
    return torch.nn.functional.layer_norm(x, x.shape[-1:], _tensor(gamma), _tensor(beta), epsilon)


def angular_bucket(rotated):
    # The largest and the smallest of xR in two reductions over `half` values,
    # not one over a concatenated [xR ; -xR], which is a copy twice the size
    # of xR to make and reduce. Both return
    # the first index of their extreme, and a tie goes to the first half, as
    # argmax over the concatenation does.
    rotated = _tensor(rotated)
    top, top_index = torch.max(rotated, dim=-1)
    bottom, bottom_index = torch.min(rotated, dim=-1)
    first_half = torch.ge(top, torch.neg(bottom))
    return torch.where(first_half, top_index, bottom_index + rotated.shape[-1]).int()


def inverse_permutation(permutation):
    permutation = _tensor(permutation).long()
    positions = torch.arange(permutation.shape[1], dtype=torch.int32, device=permutation.device)
    inverse = torch.empty(permutation.shape, dtype=torch.int32, device=permutation.device)
    return inverse.scatter_(1, permutation, positions.expand(permutation.shape))


def zero_padding(x, padding_mask):
    x = _tensor(x)
    return torch.where(_as_bool(_tensor(padding_mask)).unsqueeze(-1), x, scalar_like(0, x))


def valid_ids(ids, limit):
    # Each bound a 0-d tensor of the ids' dtype (see `scalar_like`).
    ids = _tensor(ids)
    return torch.logical_and(
        torch.ge(ids, scalar_like(0, ids)), torch.lt(ids, scalar_like(limit, ids))
    )


def clip_ids(ids, limit):
    # Python bounds: `clamp` takes them as they are (Keras' clip converts each).
    ids = _tensor(ids)
    return torch.clamp(ids if ids.dtype == torch.int32 else ids.int(), 0, limit - 1)


def _as_bool(x):
    # `x.bool()` dispatches an op even where `x` is bool already.
    return x if x.dtype == torch.bool else x.bool()


def scalar_like(value, like):
    # Built once per value, dtype and device. A 0-d tensor is an operand torch
    # uses as it is, where a Python number in arithmetic on a narrower dtype
    # (a float with float32, an int with int32) is first wrapped in a 64-bit
    # tensor and converted (four more dispatched ops).
    like = _tensor(like)
    return _constant(_scalar, value, like.dtype, like.device)


def _scalar(value, dtype, device):
    return torch.full((), value, dtype=dtype, device=device)


# Wellons' lowbias32 and the Box-Muller transform of keras_reformer.ops.portable_normal,
# on int64 holding the int32 bit patterns: torch converts a Python int to the
# tensor's dtype with four more ops on int32, none on int64. Only the low 32
# bits matter, so the products may wrap. torch's functions, not the operators
# (`x ^ y` dispatches `__xor__`, then `bitwise_xor`).
_LOW_32_BITS = 0xFFFFFFFF


def _lowbias32(x):
    x = torch.bitwise_xor(x, torch.bitwise_right_shift(x, 16))
    x = torch.bitwise_and(torch.mul(x, 0x7FEB352D), _LOW_32_BITS)
    x = torch.bitwise_xor(x, torch.bitwise_right_shift(x, 15))
    x = torch.bitwise_and(torch.mul(x, 0x846CA68B), _LOW_32_BITS)
    return torch.bitwise_xor(x, torch.bitwise_right_shift(x, 16))


def portable_normal(shape, seed):
    seed = torch.bitwise_and(_tensor(seed).long(), _LOW_32_BITS)
    first, second = seed.unbind()
    key = _lowbias32(
        torch.bitwise_xor(
            _lowbias32(torch.bitwise_and(torch.add(first, 0x9E3779B9), _LOW_32_BITS)), second
        )
    )
    size = math.prod(shape)
    counter = torch.bitwise_xor(torch.arange(2 * size, dtype=torch.int64, device=seed.device), key)
    # The high 24 bits of each hash to a float32 in (0, 1): (bits + 0.5) / 2**24,
    # computed as the odd integer 2 * bits + 1 (rounded to float32 alike) over 2**25.
    odd = torch.bitwise_or(torch.bitwise_right_shift(_lowbias32(counter), 7), 1).float()
    # float32 0-d factors, not Python floats (see `scalar_like`): the same
    # float32 products, without a conversion on each side of each.
    u1, u2 = torch.mul(odd, scalar_like(2.0**-25, odd)).view(size, 2).unbind(1)
    radius = torch.sqrt(torch.mul(torch.log(u1), scalar_like(-2.0, odd)))
    angle = torch.mul(u2, scalar_like(2.0 * 3.141592653589793, odd))
    return torch.mul(radius, torch.cos(angle)).view(shape)


class _WindowAttention(torch.autograd.Function):
    """Chunked queries attending to their windows of keys and values:
    `(weights @ values, logsumexp(masked logits))`, the weights being
    `softmax(masked logits)` over the window (times `keep`, dropout's scaled
    keep-mask, where given) and the logits `queries @ keys^T - logit_bias`.

    The masks replace logits (as `where` does: no gradient reaches a replaced
    logit): a query's own key with `self_value` (`self_offset`: the window
    slot of the diagonal, or the bool `self_mask`), then `masked` and the
    `edges`' slots (keys beyond the sequence) with `masked_value`; where both
    apply the latter wins. Slots beyond the sequence, which the shared code
    pads with zeros, get weight exactly 0 afterwards, as the zero values there
    would: they only count where every key is masked (then the weights are
    uniform over the whole window). The logits are this function's own
    tensor, so the masks are written in place, the diagonal and the edges
    only where they are. One pass of exp: log-sum-exp = max - log(largest
    weight), the largest weight being exp(0) / sum.

    The backward is written out: autograd through that formula would subtract
    two terms near 1 for the log-sum-exp's gradient (which is the softmax),
    losing its precision where the weights are small. The softmax's row term
    `sum(weights_grad * weights)` is `sum(outputs_grad * outputs)` (per query,
    over the value features rather than the whole window), and the score-sized
    gradient is formed in place.
    """

    @staticmethod
    def forward(
        ctx,
        queries,
        keys,
        values,
        logit_bias,
        self_offset,
        self_mask,
        masked,
        edges,
        keep,
        self_value,
        masked_value,
    ):
        logits = torch.matmul(queries, keys.transpose(-1, -2))
        if logit_bias is not None:
            logits.sub_(logit_bias)
        _fill_self(logits, self_offset, self_mask, self_value)
        if masked is not None:
            logits.masked_fill_(masked, masked_value)
        for chunks, outside in edges:
            logits[:, chunks].masked_fill_(outside, masked_value)
        top = logits.amax(-1)
        # In place: a score-sized tensor less to allocate (on a CPU, fresh pages
        # for every one above glibc's mmap threshold, which can cost more than
        # the softmax itself).
        weights = torch.softmax(logits, dim=-1, out=logits)
        logsumexp = torch.sub(top, torch.log(weights.amax(-1)))
        for chunks, outside in edges:
            weights[:, chunks].masked_fill_(outside, 0.0)
        outputs = torch.matmul(weights if keep is None else weights * keep, values)
        ctx.save_for_backward(queries, keys, values, weights, keep, outputs, self_mask, masked)
        ctx.self_offset = self_offset
        return outputs, logsumexp

    @staticmethod
    def backward(ctx, outputs_grad, logsumexp_grad):
        queries, keys, values, weights, keep, outputs, self_mask, masked = ctx.saved_tensors
        kept = weights if keep is None else weights * keep
        values_grad = torch.matmul(kept.transpose(-1, -2), outputs_grad)
        del kept
        grad = torch.matmul(outputs_grad, values.transpose(-1, -2))  # of the weights
        if keep is not None:
            grad.mul_(keep)
        row_term = torch.sub(
            torch.sum(torch.mul(outputs_grad, outputs), dim=-1, keepdim=True),
            logsumexp_grad.unsqueeze(-1),
        )
        grad.sub_(row_term).mul_(weights)  # of the logits
        # Slots beyond the sequence have weight 0 and so gradient 0 already.
        if masked is not None:
            grad.masked_fill_(masked, 0.0)
        _fill_self(grad, ctx.self_offset, self_mask, 0.0)
        queries_grad = torch.matmul(grad, keys) if ctx.needs_input_grad[0] else None
        keys_grad = None
        if ctx.needs_input_grad[1]:
            keys_grad = torch.matmul(grad.transpose(-1, -2), queries)
        return (queries_grad, keys_grad, values_grad) + (None,) * 8


def _fill_self(scores, self_offset, self_mask, value):
    """Writes `value` where a query meets its own key, in place: the window
    slot `self_offset` of each query's row (a diagonal), or `self_mask`."""
    if self_offset is not None:
        scores.diagonal(self_offset, -2, -1).fill_(value)
    elif self_mask is not None:
        scores.masked_fill_(self_mask, value)


def _window_layout(batch, num_chunks, chunk_length, lookback, lookahead, device):
    """Constants of `chunked_attention`'s windows (build through `_constant`).

    Returns:
        `(rows, edges)`: `rows`, `(batch * num_chunks * window,)` int64, the
        row of a `(batch * length, ...)` tensor that every window slot of every
        chunk reads (each chunk's `lookback` previous chunks, itself, its
        `lookahead` next ones; slots beyond the sequence wrap around); `edges`,
        a tuple of `(chunks, outside)` pairs: a slice of the chunks (the first
        `lookback`, the last `lookahead`) and their slots beyond the sequence,
        `(len(chunks), 1, window)` bool. Only those chunks have such slots.
    """
    chunks = torch.arange(num_chunks, device=device).unsqueeze(-1) + torch.arange(
        -lookback, lookahead + 1, device=device
    )
    within = torch.arange(chunk_length, device=device)
    tokens = (chunks % num_chunks).unsqueeze(-1) * chunk_length + within
    # Rows of the batch-flattened tensor: index_select along its first axis
    # copies whole rows, where along the sequence axis of `(batch, length,
    # ...)` it copies value by value.
    rows = _row_offsets(batch, num_chunks * chunk_length, device) + tokens.reshape(-1)
    outside = (chunks < 0) | (chunks >= num_chunks)
    outside = outside.repeat_interleave(chunk_length, dim=1).unsqueeze(1)
    edges = []
    for first, last in ((0, lookback), (num_chunks - lookahead, num_chunks)):
        first = max(first, 0)
        if first < last:
            edges.append((slice(first, last), outside[first:last]))
    return rows.reshape(-1), tuple(edges)


def chunked_attention(
    queries,
    keys,
    values,
    query_positions,
    key_positions,
    key_mask=None,
    chunk_length=64,
    lookback=1,
    lookahead=0,
    causal=False,
    mask_self=True,
    dropout_rate=0.0,
    seed=None,
    query_round_chunks=None,
    key_round_chunks=None,
):
    # The shared code's attention with each chunk's neighbours as one window
    # (one product, one masking, one softmax), gathered with one constant
    # index per call, masks compared once per window (a masked key's position
    # becomes the dtype's largest value), and `torch.softmax`, whose CPU
    # kernel does not slow down on masked logits as `exp` does.
    check_round_chunks(query_round_chunks, key_round_chunks)
    # Positions are distinct within a row: where queries and keys share them,
    # a query's own key is on the diagonal of its own chunk.
    self_on_diagonal = mask_self and query_positions is key_positions
    queries, values = _tensor(queries), _tensor(values)
    batch, length = queries.shape[:2]
    if length % chunk_length:
        raise ValueError(
            f"The length ({length}) must be a multiple of `chunk_length`. "
            f"Received: chunk_length={chunk_length}"
        )
    num_chunks = length // chunk_length
    layout = (num_chunks, chunk_length, lookback, lookahead, queries.device)
    rows, edges = _constant(_window_layout, batch, *layout)

    def windows(x):  # (batch or 1, length, ...) -> (batch or 1, num_chunks, window, ...)
        rows_of_x = (
            rows if x.shape[0] == batch else _constant(_window_layout, x.shape[0], *layout)[0]
        )
        rest = tuple(x.shape[2:])
        flat = x.reshape((x.shape[0] * length,) + rest).index_select(0, rows_of_x)
        return flat.view((x.shape[0], num_chunks, -1) + rest)

    def chunked(x):  # (batch, length, ...) -> (batch, num_chunks, chunk_length, ...)
        return x.reshape((x.shape[0], num_chunks, chunk_length) + tuple(x.shape[2:]))

    masked_value, self_value = mask_values(queries.dtype)
    logit_bias = None
    if query_round_chunks is not None:
        query_rounds = chunked(_tensor(query_round_chunks)).unsqueeze(-2)
        key_rounds = windows(_tensor(key_round_chunks)).unsqueeze(2)
        distance = key_rounds - query_rounds  # (batch, chunks, chunk_length, window, rounds)
        counts = ((distance >= -lookback) & (distance <= lookahead)).sum(-1)
        logit_bias = torch.log(counts.clamp(min=1).to(queries.dtype))
    hidden = None
    if causal or (mask_self and not self_on_diagonal):
        key_positions = _tensor(key_positions)
        never = torch.iinfo(key_positions.dtype).max  # no query's position
        if key_mask is not None:
            key_positions = torch.where(_as_bool(_tensor(key_mask)), key_positions, never)
        key_window = windows(key_positions).unsqueeze(-2)
        query_positions = chunked(_tensor(query_positions)).unsqueeze(-1)
        if causal:
            hidden = key_window > query_positions
        elif key_mask is not None:
            hidden = key_window == never
    elif key_mask is not None:
        hidden = windows(_as_bool(_tensor(key_mask)).logical_not()).unsqueeze(-2)
    self_offset = is_self = None
    if self_on_diagonal:
        self_offset = lookback * chunk_length
    elif mask_self:
        is_self = query_positions == key_window
    queries, keys, values = chunked(queries), windows(_tensor(keys)), windows(values)
    keep = None
    if dropout_rate > 0.0:
        window_shape = queries.shape[:-1] + keys.shape[-2:-1]
        ones = torch.ones(window_shape, dtype=queries.dtype, device=queries.device)
        keep = keras.random.dropout(ones, dropout_rate, seed=seed)
    outputs, logsumexp = _WindowAttention.apply(
        queries,
        keys,
        values,
        logit_bias,
        self_offset,
        is_self,
        hidden,
        edges,
        keep,
        self_value,
        masked_value,
    )
    return outputs.view(batch, length, -1), logsumexp.view(batch, length)


def combine_hash_rounds(outputs, logsumexp):
    outputs, logsumexp = _tensor(outputs), _tensor(logsumexp)
    if logsumexp.shape[1] == 1:
        return outputs[:, 0]
    # In float32 where the CPU has no float16 softmax, as Keras' softmax does.
    half_on_cpu = logsumexp.dtype == torch.float16 and logsumexp.device.type == "cpu"
    weights = torch.softmax(logsumexp.float() if half_on_cpu else logsumexp, dim=1)
    if weights.dtype != logsumexp.dtype:
        weights = weights.to(logsumexp.dtype)
    return torch.sum(torch.mul(outputs, weights.unsqueeze(-1)), dim=1)


def shared_qk_keys(queries, epsilon=1e-6):
    queries = _tensor(queries)
    # Each step one op: no conversion of float32 to itself, and no Python
    # float in float32 arithmetic (see `scalar_like`).
    wide = queries if queries.dtype in (torch.float32, torch.float64) else queries.float()
    squared_norm = torch.sum(torch.mul(wide, wide), dim=-1, keepdim=True)
    scale = torch.mul(
        torch.rsqrt(torch.clamp_min(squared_norm, epsilon)),
        scalar_like(queries.shape[-1] ** -0.5, wide),
    )
    keys = torch.mul(wide, scale)
    return keys if keys.dtype == queries.dtype else keys.to(queries.dtype)


def sort_by_bucket(buckets, num_buckets):
    buckets = _tensor(buckets).detach()
    num_hashes = buckets.shape[1]
    # The shared code's round-major keys, bucket + round * num_buckets, with
    # no conversions of Python ints (int64), in a stable sort.
    rounds = torch.arange(num_hashes, dtype=torch.int64, device=buckets.device)
    keys = torch.add(buckets.long(), torch.mul(rounds, num_buckets).unsqueeze(-1))
    sort_indices = torch.argsort(keys.reshape(keys.shape[0], -1), dim=-1, stable=True).int()
    return sort_indices, inverse_permutation(sort_indices)
