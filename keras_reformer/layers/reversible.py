"""Reversible residual layers (Gomez et al. 2017) as used by the Reformer.

`ReversibleBlock` is one pair Y1 = X1 + F(X2), Y2 = X2 + G(Y1);
`ReversibleSequence` runs a list of blocks under ONE custom gradient that keeps
only the stack's output and rebuilds every block's input on the way back, so
training memory does not grow with depth.
"""

import contextlib

import keras
from keras import ops

from keras_reformer import backend
from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_seed
from keras_reformer.layers import forward_memo
from keras_reformer.layers.position_wise import chunk_size_of
from keras_reformer.layers.randomness import SavesSeedStates
from keras_reformer.layers.randomness import concrete_seed
from keras_reformer.layers.randomness import redraw_seed_states
from keras_reformer.layers.sublayer_arguments import SublayerPair
from keras_reformer.layers.sublayer_arguments import call_sublayer_with_cache
from keras_reformer.layers.sublayer_arguments import prefill_sublayer
from keras_reformer.layers.sublayer_arguments import sublayer_kwargs
from keras_reformer.ops.chunking import scan_sequence_chunks


def _check_even_width(inputs_shape, layer_name):
    width = inputs_shape[-1]
    if width is not None and width % 2:
        raise ValueError(
            f"`inputs` of {layer_name} must have an even last dimension (the concatenation "
            f"[x1, x2] of two halves). Received: inputs.shape={tuple(inputs_shape)}"
        )


def _build_sublayer(layer, half_shape):
    if not layer.built:
        layer.build(half_shape)


@reformer_export
class ReversibleBlock(SublayerPair):
    """One reversible residual pair: Y1 = X1 + F(X2), Y2 = X2 + G(Y1).

    Input and output are ONE tensor of width 2d, the concatenation
    `[x1, x2]` along the last axis (the Reformer duplicates its embeddings,
    `concatenate([x, x], axis=-1)`, before the first block). Called on its own
    the block is an ordinary layer trained by plain autodiff; inside a
    `keras_reformer.layers.ReversibleSequence` its inputs are recomputed from
    its outputs instead of being stored: X2 = Y2 - G(Y1), X1 = Y1 - F(X2).

    Args:
        f: a layer mapping (batch, length, d) to (batch, length, d), in the
            Reformer `PreLayerNorm(LSHSelfAttention(...))`.
        g: a layer of the same shape contract, in the Reformer
            `PreLayerNorm(ChunkedFeedForward(...))`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (batch, length, 2d) tensor `[x1, x2]`.
        padding_mask: optional (batch, length), 1 for real tokens; forwarded to
            `f` / `g` only if their `call` accepts `padding_mask`.
        training: forwarded likewise.

    Returns:
        (batch, length, 2d) tensor `[y1, y2]`.

    Example:

    ```python
    import keras, numpy as np
    import keras_reformer
    block = keras_reformer.layers.ReversibleBlock(
        keras.layers.Dense(8), keras.layers.Dense(8))
    y = block(np.ones((2, 5, 16), "float32"))  # (2, 5, 16)
    ```

    References:
        Gomez et al., "The Reversible Residual Network", 2017 (arXiv 1707.04585);
        Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
    """

    def build(self, inputs_shape):
        _check_even_width(inputs_shape, "ReversibleBlock")
        half_shape = tuple(inputs_shape[:-1]) + (inputs_shape[-1] // 2,)
        _build_sublayer(self.f, half_shape)
        _build_sublayer(self.g, half_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        x1, x2 = ops.split(inputs, 2, axis=-1)
        y1 = x1 + self.f(x2, **sublayer_kwargs(self.f, padding_mask, training))
        y2 = x2 + self.g(y1, **sublayer_kwargs(self.g, padding_mask, training))
        return ops.concatenate([y1, y2], axis=-1)

    def build_cache(self, inputs, padding_mask=None):
        """The block on a generation buffer, and the caches of `f` and `g`.

        Inference needs no backward pass, so the halves are simply carried
        forward. See `LSHSelfAttention.build_cache`.

        Returns:
            `(outputs, (f_cache, g_cache))`.
        """
        x1, x2 = ops.split(inputs, 2, axis=-1)
        f_out, f_cache = prefill_sublayer(self.f, x2, padding_mask)
        y1 = x1 + f_out
        g_out, g_cache = prefill_sublayer(self.g, y1, padding_mask)
        return ops.concatenate([y1, x2 + g_out], axis=-1), (f_cache, g_cache)

    def call_with_cache(self, inputs, cache, cache_update_index):
        """The block on one new token `(batch, 1, 2d)`, from and into `cache`.

        Returns:
            `(outputs, cache)`.
        """
        x1, x2 = ops.split(inputs, 2, axis=-1)
        f_out, f_cache = call_sublayer_with_cache(self.f, x2, cache[0], cache_update_index)
        y1 = x1 + f_out
        g_out, g_cache = call_sublayer_with_cache(self.g, y1, cache[1], cache_update_index)
        return ops.concatenate([y1, x2 + g_out], axis=-1), (f_cache, g_cache)


def _unique(variables):
    seen, result = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            result.append(v)
    return result


class _Sublayer:
    """A sublayer (F or G) applied statelessly from the stack's value lists."""

    def __init__(self, layer, trainable_index, state_index):
        self.layer = layer
        self.trainable_variables = layer.trainable_variables
        self.state_variables = layer.non_trainable_variables
        self.trainable_index = [trainable_index[id(v)] for v in self.trainable_variables]
        self.state_index = [state_index[id(v)] for v in self.state_variables]
        # `Layer.stateless_call` converts every value to its variable's dtype on
        # every call (a dispatched op each on torch); the stack's values are
        # ready as they are. Quantized or rematerialised layers keep Keras' path.
        self.keras_path = (
            layer.dtype_policy.quantization_mode is not None
            or getattr(layer, "_remat_mode", None) is not None
        )

    def weights(self, all_weights):
        return [all_weights[i] for i in self.trainable_index]

    def apply(self, weights, states, x, padding_mask, training, position_offset=None):
        kwargs = sublayer_kwargs(self.layer, padding_mask, training, position_offset)
        states = [states[i] for i in self.state_index]
        if self.keras_path:
            return self.layer.stateless_call(weights, states, x, **kwargs)[0]
        # The scope reads variables as the given values and drops their updates.
        with keras.StatelessScope() as scope:
            for variable, value in zip(self.trainable_variables, weights):
                scope.add_update((variable, value))
            for variable, value in zip(self.state_variables, states):
                scope.add_update((variable, value))
            return self.layer.call(x, **kwargs)

    def vjp(self, weights, states, x, cotangent, padding_mask, training):
        """(output, weight_grads, x_grad); chunk by chunk along the sequence
        (one loop) when the layer is position-wise (see
        `keras_reformer.layers.position_wise`)."""

        def run(offset, mask):
            return lambda w, inputs: self.apply(w, states, inputs, mask, training, offset)

        length = x.shape[1]  # None while tracing for several lengths: chunked as in `call`
        size = chunk_size_of(self.layer, length)
        if size is None or (length is not None and size >= length):
            return backend.vjp(run(None, padding_mask), weights, x, cotangent)

        def chunk_vjp(weight_grads, start, x, cotangent, *mask):
            output, grads, x_grad = backend.vjp(
                run(start, mask[0] if mask else None), weights, x, cotangent
            )
            return [backend.add_to_sum(a, b) for a, b in zip(weight_grads, grads)], (output, x_grad)

        masks = () if padding_mask is None else (padding_mask,)
        weight_grads, (output, x_grad) = scan_sequence_chunks(
            chunk_vjp, [backend.sum_start(w) for w in weights], (x, cotangent, *masks), size
        )
        return output, [backend.finish_sum(g, w) for w, g in zip(weights, weight_grads)], x_grad


@reformer_export
class ReversibleSequence(SavesSeedStates, keras.layers.Layer):
    """A stack of `ReversibleBlock`s whose training memory does not grow with depth.

    All blocks run under ONE custom gradient (`keras.ops.custom_gradient`)
    whose explicit inputs are the stack input, every trainable weight value and
    a snapshot of the blocks' non-trainable state (seed-generator states
    included); each sublayer runs statelessly on those values (as
    `layer.stateless_call(...)` would, in a `keras.StatelessScope`). Only the
    stack's output is kept. The backward pass walks the blocks in reverse,
    rebuilding each block's input from its output (X2 = Y2 - G(Y1),
    X1 = Y1 - F(X2)) while pulling the gradient back through G, then F, with a
    vector-Jacobian product. A position-wise G (one that follows the protocol
    of `keras_reformer.layers.position_wise`: a true `position_wise`
    attribute, a `chunk_size(length)` method and a `position_offset` call
    argument, e.g. `PreLayerNorm(ChunkedFeedForward(...))`) is pulled back
    chunk by chunk, so its wide intermediate never exists for the whole
    sequence.

    Randomness: the forward pass and its recompute draw from the same seed
    states (dropout masks, LSH rotations replay exactly; torch's global RNG,
    used by unseeded Keras dropout, is captured and replayed too). A call uses
    the sublayers' current seed states, exactly as calling the blocks one after
    the other would; afterwards every sublayer seed state is re-drawn from the
    stack's own `SeedGenerator` after every training call, so each step sees fresh masks and
    rotations; inference calls leave the states as they are, so inference is
    deterministic. Other non-trainable state updates of the sublayers (e.g.
    BatchNormalization statistics) are not kept.

    Where the backend runs the walks as plain Python calls (torch eagerly,
    TensorFlow without XLA) the recompute reuses what a sublayer's forward
    call remembered (`keras_reformer.layers.forward_memo`):
    `LSHSelfAttention` keeps its sort by bucket, 8 bytes per token, head and
    hash round (HF's Reformer keeps its int64 buckets, the same size), and
    does not hash again. In compiled loops (JAX, XLA, torch.compile) it
    hashes again from the same seed states.

    Args:
        blocks: a non-empty list of `keras_reformer.layers.ReversibleBlock`.
        seed: optional int seeding the re-drawing of sublayer seed states
            between calls. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (batch, length, 2d) tensor `[x1, x2]`.
        padding_mask: optional (batch, length), 1 for real tokens; forwarded to
            the sublayers that accept it (not differentiated).
        training: forwarded to the sublayers that accept it.

    Returns:
        (batch, length, 2d) tensor, the output of the last block.

    Example:

    ```python
    import keras, numpy as np
    import keras_reformer
    blocks = [keras_reformer.layers.ReversibleBlock(
        keras.layers.Dense(8), keras.layers.Dense(8)) for _ in range(4)]
    stack = keras_reformer.layers.ReversibleSequence(blocks)
    y = stack(np.ones((2, 5, 16), "float32"))  # (2, 5, 16)
    ```

    References:
        Gomez et al., "The Reversible Residual Network", 2017 (arXiv 1707.04585);
        Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020,
        section 3.
    """

    def __init__(self, blocks, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise ValueError(
                f"`blocks` must be a non-empty list of ReversibleBlock. Received: blocks={blocks!r}"
            )
        for block in blocks:
            if not isinstance(block, ReversibleBlock):
                raise ValueError(
                    "`blocks` must contain only ReversibleBlock layers. "
                    f"Received: blocks=[..., {block!r}, ...]"
                )
        self.blocks = list(blocks)
        self.seed = check_seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(
            concrete_seed(self.seed), name="reseed_generator"
        )

    def build(self, inputs_shape):
        _check_even_width(inputs_shape, "ReversibleSequence")
        for block in self.blocks:
            if not block.built:
                block.build(inputs_shape)
        self.built = True

    def _block_variables(self):
        trainable = _unique(v for b in self.blocks for v in b.trainable_variables)
        states = _unique(v for b in self.blocks for v in b.non_trainable_variables)
        return trainable, states

    def call(self, inputs, padding_mask=None, training=None):
        _check_even_width(inputs.shape, "ReversibleSequence")
        trainable, states = self._block_variables()
        trainable_index = {id(v): i for i, v in enumerate(trainable)}
        state_index = {id(v): i for i, v in enumerate(states)}
        sublayers = [
            (
                _Sublayer(b.f, trainable_index, state_index),
                _Sublayer(b.g, trainable_index, state_index),
            )
            for b in self.blocks
        ]
        # Mixed precision: weights enter the custom gradient already cast to
        # the compute dtype (Keras' autocast does not reach the backward
        # recompute); the cast stays outside, so gradients reach the float32
        # variables through it. State snapshots are copies: torch assigns in
        # place.
        # convert_to_tensor first: on torch it moves a CPU tensor to Keras' device
        # (differentiably); the custom gradient must see its input where it computes.
        inputs = ops.cast(ops.convert_to_tensor(inputs), self.compute_dtype)
        if padding_mask is not None:
            # Once here: each sublayer's cast to bool is then a no-op.
            padding_mask = ops.cast(padding_mask, "bool")
        weight_values = [self._compute_value(v) for v in trainable]
        state_values = [ops.copy(v.value) for v in states]
        outputs = _reversible_stack(
            sublayers, inputs, weight_values, state_values, padding_mask, training
        )
        if training:
            # Inference leaves seed states alone, so that it is deterministic
            # (LSH draws its rotations from the current state).
            redraw_seed_states(states, self.seed_generator)
        return outputs

    def _compute_value(self, variable):
        value = variable.value
        if "float" in keras.backend.standardize_dtype(value.dtype):
            value = ops.cast(value, self.compute_dtype)
        return value

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "blocks": [keras.saving.serialize_keras_object(b) for b in self.blocks],
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["blocks"] = [keras.saving.deserialize_keras_object(b) for b in config["blocks"]]
        return cls(**config)


def _reversible_stack(sublayers, inputs, weight_values, state_values, padding_mask, training):
    """Runs the blocks under one custom gradient that stores only the output.

    Both walks over the blocks run through `backend.run_in_sequence`, one
    block at a time, so that neither a compiler nor a graph runtime
    interleaves blocks: the memory of either walk is that of one block,
    whatever the depth.
    """
    num_weights = len(weight_values)
    depth = len(sublayers)

    @ops.custom_gradient
    def stack(x, *values):
        weights, states = list(values[:num_weights]), list(values[num_weights:])
        replays = [None] * depth  # (F's, G's) of each block: see `_call_for_replay`
        keep = backend.walks_are_unrolled()

        def forward_block(i):
            f, g = sublayers[i]

            def run(x1, x2):
                f_out, f_replay = _call_for_replay(
                    keep, lambda: f.apply(f.weights(weights), states, x2, padding_mask, training)
                )
                x1 = x1 + f_out
                g_out, g_replay = _call_for_replay(
                    keep, lambda: g.apply(g.weights(weights), states, x1, padding_mask, training)
                )
                x2 = x2 + g_out
                replays[i] = (f_replay, g_replay)
                return x1, x2

            return run

        halves = backend.run_in_sequence(
            [forward_block(i) for i in range(depth)], tuple(ops.split(x, 2, axis=-1))
        )
        y = ops.concatenate(halves, axis=-1)

        def grad_fn(*upstream_args, upstream=None):
            if upstream is None:
                (upstream,) = upstream_args
            grads = _backward(
                sublayers, replays, y, upstream, weights, states, padding_mask, training
            )
            return (grads[0], *grads[1:], *[None] * len(states))

        return y, grad_fn

    return stack(inputs, *weight_values, *state_values)


def _call_for_replay(keep, call):
    """`(call(), replay)`: `replay` is what the recompute of the call needs to
    compute it again alike: torch's global RNG state before it (unseeded
    dropout draws from it) and, where `keep`, its `forward_memo` record."""
    rng = backend.rng_state()
    with forward_memo.recording(keep) as record:
        return call(), (rng, record)


@contextlib.contextmanager
def _replaying(replay):
    """Runs its body as `_call_for_replay` ran the call that gave `replay`."""
    rng, record = replay
    with backend.replay_rng(rng), forward_memo.replaying(record):
        yield


def _backward(sublayers, replays, y, upstream, weights, states, padding_mask, training):
    """Walks the blocks in reverse: rebuild inputs, pull gradients back."""

    def backward_block(i):
        f, g = sublayers[i]
        f_replay, g_replay = replays[i]

        def run(y1, y2, dy1, dy2, weight_grads):
            with _replaying(g_replay):  # G(Y1), then X2 = Y2 - G(Y1)
                g_out, g_grads, dy1_from_g = g.vjp(
                    g.weights(weights), states, y1, dy2, padding_mask, training
                )
            x2 = y2 - g_out
            dy1 = dy1 + dy1_from_g  # total gradient of Y1
            with _replaying(f_replay):  # F(X2), then X1 = Y1 - F(X2)
                f_out, f_grads, dx2_from_f = f.vjp(
                    f.weights(weights), states, x2, dy1, padding_mask, training
                )
            x1 = y1 - f_out
            return (
                x1,
                x2,
                dy1,
                dy2 + dx2_from_f,
                _accumulate(weight_grads, ((g, g_grads), (f, f_grads))),
            )

        return run

    carry = (
        *ops.split(y, 2, axis=-1),
        *ops.split(upstream, 2, axis=-1),
        [backend.sum_start(w) for w in weights],
    )
    branches = [backward_block(i) for i in reversed(range(len(sublayers)))]
    _, _, dx1, dx2, weight_grads = backend.run_in_sequence(branches, carry)
    weight_grads = [backend.finish_sum(g, w) for w, g in zip(weights, weight_grads)]
    return [ops.concatenate([dx1, dx2], axis=-1)] + weight_grads


def _accumulate(weight_grads, sublayer_grads):
    """`weight_grads` (a list of sums over the stack's weights, see
    `backend.sum_start`) plus each `(sublayer, grads)` pair's gradients, at the
    sublayer's weights' indices."""
    weight_grads = list(weight_grads)
    for sublayer, grads in sublayer_grads:
        for index, grad in zip(sublayer.trainable_index, grads):
            weight_grads[index] = backend.add_to_sum(weight_grads[index], grad)
    return weight_grads
