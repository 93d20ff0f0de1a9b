"""torch pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp),
and the torch versions of `keras_reformer.ops`' overridable functions (fewer dispatched ops)."""

import contextlib

import keras
import torch


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
    return x if isinstance(x, torch.Tensor) else keras.ops.convert_to_tensor(x)


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
# bits matter, so the products may wrap.
_LOW_32_BITS = 0xFFFFFFFF


def _lowbias32(x):
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _LOW_32_BITS
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _LOW_32_BITS
    return x ^ (x >> 16)


def portable_normal(shape, seed):
    seed = _tensor(seed).long() & _LOW_32_BITS
    key = _lowbias32(_lowbias32((seed[0] + 0x9E3779B9) & _LOW_32_BITS) ^ seed[1])
    size = 1
    for dim in shape:
        size *= dim
    counter = torch.arange(2 * size, dtype=torch.int64, device=seed.device) ^ key
    # 24 random bits to a float32 in (0, 1): the high bits of each hash.
    u1, u2 = (((_lowbias32(counter) >> 8).float() + 0.5) * (1.0 / 2**24)).view(size, 2).unbind(1)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    return (radius * torch.cos((2.0 * 3.141592653589793) * u2)).reshape(shape)
