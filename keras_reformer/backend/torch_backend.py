"""torch pieces of keras_reformer.backend (the reversible stack's custom gradient, loops, exp)."""

import contextlib

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
