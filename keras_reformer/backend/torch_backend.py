"""torch pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp),
and the torch versions of `keras_reformer.ops`' overridable functions (fewer dispatched ops)."""

import contextlib
import math

import keras
import torch
from keras import ops

from keras_reformer.ops.chunked_attention import check_round_chunks
from keras_reformer.ops.masks import mask_values


def vjp(fn, weights, x, cotangent):
    with torch.enable_grad():
        weights = [w.detach().requires_grad_(True) for w in weights]
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


def scan(fn, init, xs):
    carry, ys = init, []
    for i in range(xs[0].shape[0]):
        carry, y = fn(carry, tuple(x[i] for x in xs))
        ys.append(y)
    return carry, tuple(torch.stack(column) for column in zip(*ys))


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
    x, indices = _tensor(x), _tensor(indices).long()
    feature_shape = tuple(x.shape[2:])
    index = indices.reshape(tuple(indices.shape) + (1,) * len(feature_shape))
    return torch.gather(x, 1, index.expand(tuple(indices.shape) + feature_shape))


def inverse_permutation(permutation):
    permutation = _tensor(permutation).long()
    positions = torch.arange(permutation.shape[1], dtype=torch.int32, device=permutation.device)
    inverse = torch.empty(permutation.shape, dtype=torch.int32, device=permutation.device)
    return inverse.scatter_(1, permutation, positions.expand(permutation.shape))


def scalar_like(value, like):
    like = _tensor(like)
    return torch.full((), value, dtype=like.dtype, device=like.device)


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
    odd = torch.bitwise_or(torch.bitwise_right_shift(_lowbias32(counter), 7), 1)
    u1, u2 = torch.mul(odd, 2.0**-25).view(size, 2).unbind(1)
    radius = torch.sqrt(torch.mul(torch.log(u1), -2.0))
    return torch.mul(radius, torch.cos(torch.mul(u2, 2.0 * 3.141592653589793))).reshape(shape)


class _MaskedSoftmax(torch.autograd.Function):
    """`(softmax(masked logits), logsumexp(masked logits))` over the last axis.

    The masks replace logits (as `where` does: no gradient reaches a
    replaced logit), `replaced_by_self` with `self_value`, then `masked` with
    `masked_value`; both broadcast against `logits`. One pass of exp:
    log-sum-exp = max - log(largest weight), the largest weight being
    exp(0) / sum. The backward is written out: autograd through that formula
    would subtract two terms near 1 for the log-sum-exp's gradient (which is
    the softmax), losing its precision where the weights are small, and
    the masks zero the gradient in place.
    """

    @staticmethod
    def forward(ctx, logits, self_mask, masked, self_value, masked_value):
        # The self value first: where another mask applies too, it wins.
        if self_mask is not None:
            logits = logits.masked_fill(self_mask, self_value)
            logits.masked_fill_(masked, masked_value)
        else:
            logits = logits.masked_fill(masked, masked_value)
        weights = torch.softmax(logits, dim=-1)
        logsumexp = torch.sub(logits.amax(-1), torch.log(weights.amax(-1)))
        ctx.save_for_backward(weights, self_mask, masked)
        return weights, logsumexp

    @staticmethod
    def backward(ctx, weights_grad, logsumexp_grad):
        weights, self_mask, masked = ctx.saved_tensors
        inner = torch.sum(torch.mul(weights_grad, weights), dim=-1, keepdim=True)
        grad = torch.mul(
            weights, torch.add(torch.sub(weights_grad, inner), logsumexp_grad.unsqueeze(-1))
        )
        grad.masked_fill_(masked, 0.0)
        if self_mask is not None:
            grad.masked_fill_(self_mask, 0.0)
        return grad, None, None, None, None


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
    # (one product, one masking, one softmax: about half the shared code's
    # ops), and `torch.softmax`, whose CPU kernel does not slow down on
    # masked logits as `exp` does.
    check_round_chunks(query_round_chunks, key_round_chunks)
    # Positions are distinct within a row: where queries and keys share them,
    # a query's own key is on the diagonal of its own chunk.
    self_on_diagonal = mask_self and query_positions is key_positions
    queries, values = _tensor(queries), _tensor(values)
    length = queries.shape[1]
    if length % chunk_length:
        raise ValueError(
            f"The length ({length}) must be a multiple of `chunk_length`. "
            f"Received: chunk_length={chunk_length}"
        )
    num_chunks = length // chunk_length
    window = (lookback + 1 + lookahead) * chunk_length

    def windows(x, fill_value=0):
        # (batch, length, ...) -> (batch, num_chunks, window, ...): each chunk
        # after its `lookback` previous chunks, before its `lookahead` next ones
        # (contiguous: a product with it needs no copy, and its backward is
        # slices and one sum; an overlapping `unfold` view cost both).
        chunks = chunked(x)
        pad = [
            chunks.new_full((chunks.shape[0], size) + tuple(chunks.shape[2:]), fill_value)
            for size in (lookback, lookahead)
        ]
        padded = torch.cat([t for t in (pad[0], chunks, pad[1]) if t.shape[1]], dim=1)
        return torch.cat(
            [padded[:, i : i + num_chunks] for i in range(lookback + 1 + lookahead)], dim=2
        )

    def chunked(x):  # (batch, length, ...) -> (batch, num_chunks, chunk_length, ...)
        return x.reshape((x.shape[0], num_chunks, chunk_length) + tuple(x.shape[2:]))

    logits = torch.matmul(chunked(queries), windows(_tensor(keys)).transpose(-1, -2))
    masked_value, self_value = mask_values(logits.dtype)
    if query_round_chunks is not None:
        query_rounds = chunked(_tensor(query_round_chunks)).unsqueeze(-2)
        key_rounds = windows(_tensor(key_round_chunks)).unsqueeze(2)
        distance = key_rounds - query_rounds  # (batch, chunks, chunk_length, window, rounds)
        counts = ((distance >= -lookback) & (distance <= lookahead)).sum(-1)
        logits = logits - torch.log(counts.clamp(min=1).to(logits.dtype))
    if causal or (mask_self and not self_on_diagonal):
        query_positions = chunked(_tensor(query_positions)).unsqueeze(-1)
        key_window = windows(_tensor(key_positions), -1).unsqueeze(-2)
    is_self = None
    if self_on_diagonal:
        own = torch.arange(chunk_length, device=logits.device) + lookback * chunk_length
        is_self = torch.arange(window, device=logits.device) == own.unsqueeze(-1)
    elif mask_self:
        is_self = query_positions == key_window
    if key_mask is None:
        key_mask = torch.ones((1, length), dtype=torch.bool, device=logits.device)
    masked = ~windows(_tensor(key_mask).bool(), False).unsqueeze(-2)
    if causal:
        masked = masked | (key_window > query_positions)
    weights, logsumexp = _MaskedSoftmax.apply(logits, is_self, masked, self_value, masked_value)
    if dropout_rate > 0.0:
        weights = weights * keras.random.dropout(torch.ones_like(weights), dropout_rate, seed=seed)
    outputs = torch.matmul(weights, windows(values))
    return (
        outputs.reshape((outputs.shape[0], length, outputs.shape[-1])),
        logsumexp.reshape((logsumexp.shape[0], length)),
    )


def shared_qk_keys(queries, epsilon=1e-6):
    queries = _tensor(queries)
    wide = queries.double() if queries.dtype == torch.float64 else queries.float()
    squared_norm = torch.sum(torch.square(wide), dim=-1, keepdim=True)
    scale = torch.mul(
        torch.rsqrt(torch.clamp(squared_norm, min=epsilon)), queries.shape[-1] ** -0.5
    )
    return torch.mul(wide, scale).to(queries.dtype)


def sort_by_bucket(buckets, num_buckets):
    buckets = _tensor(buckets).detach()
    num_hashes = buckets.shape[1]
    # The shared code's round-major keys, bucket + round * num_buckets, with
    # no conversions of Python ints (int64), in a stable sort.
    rounds = torch.arange(num_hashes, dtype=torch.int64, device=buckets.device)
    keys = torch.add(buckets.long(), torch.mul(rounds, num_buckets).unsqueeze(-1))
    sort_indices = torch.argsort(keys.reshape(keys.shape[0], -1), dim=-1, stable=True).int()
    return sort_indices, inverse_permutation(sort_indices)
