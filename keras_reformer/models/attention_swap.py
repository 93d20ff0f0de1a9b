"""Evaluating a trained model with other attention: more hash rounds, or full attention."""

import keras
from keras import ops

from keras_reformer.layers.randomness import SavesSeedStates
from keras_reformer.models.reformer_model import ReformerModel

# The ReformerModel arguments that change how attention is computed but not
# which weights exist.
ATTENTION_ARGUMENTS = (
    "attention_layers",
    "num_hashes",
    "num_buckets",
    "chunk_length",
    "lookback",
    "lookahead",
    "correct_duplicates",
    "attention_slices",
)


def with_attention(model, **attention_arguments):
    """A copy of a trained model that computes attention differently, with its weights.

    The paper's Table 2 trains with one kind of attention and evaluates with
    others: a model trained with 1 or 4 LSH hash rounds, evaluated with 8 or
    with exact full attention. The LSH, local and full (shared-QK) attention
    layers have the same weights, so any of them can run a trained model.

    The copy has the model's config with `attention_arguments` replaced, the
    model's trained weights and seed states (those of the attention layers
    that keep their kind included, so `with_attention(model)` predicts
    exactly as `model`),
    and, if `model` was compiled, the same `compile` arguments with a fresh
    optimizer: ready for `evaluate` and `predict`. Later training of either
    model does not change the other.

    Args:
        model: a `ReformerModel`, or a task model on one
            (`ReformerCausalLM`, `ReformerClassifier`).
        **attention_arguments: new values of `ReformerModel` arguments among
            `attention_layers`, `num_hashes`, `num_buckets`, `chunk_length`,
            `lookback`, `lookahead`, `correct_duplicates` and
            `attention_slices`.

    Returns:
        A new model of the same class as `model`.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=256, num_layers=2, hidden_dim=64, num_heads=2,
        chunk_length=32, num_hashes=2, causal=True, max_sequence_length=512,
    )
    lm = keras_reformer.models.ReformerCausalLM(backbone)
    # ... lm.compile(...); lm.fit(...) ...
    eight_rounds = keras_reformer.models.with_attention(lm, num_hashes=8)
    full = keras_reformer.models.with_attention(lm, attention_layers="full")
    token_ids = np.random.randint(0, 256, size=(1, 512))
    logits = full.predict(token_ids, verbose=0)
    ```
    """
    backbone = model if isinstance(model, ReformerModel) else getattr(model, "backbone", None)
    if not isinstance(backbone, ReformerModel):
        raise ValueError(
            "`model` must be a ReformerModel or a task model on one (ReformerCausalLM, "
            f"ReformerClassifier). Received: model={type(model).__name__}"
        )
    unknown = sorted(set(attention_arguments) - set(ATTENTION_ARGUMENTS))
    if unknown:
        raise ValueError(
            f"`with_attention` changes only {ATTENTION_ARGUMENTS}: other arguments would change "
            f"the weights. Received: {', '.join(f'{k}={attention_arguments[k]!r}' for k in unknown)}"
        )
    new_backbone = ReformerModel.from_config({**backbone.get_config(), **attention_arguments})
    if model is backbone:
        copy = new_backbone
    else:
        config = model.get_config()
        config["backbone"] = keras.saving.serialize_keras_object(new_backbone)
        copy = type(model).from_config(config)
    _copy_weights(model, copy)
    if model.compiled:
        copy.compile_from_config(model.get_compile_config())
    return copy


def _copy_weights(source, target):
    """Weights in order (they correspond one to one); seed states of the
    layers whose class is the same in both models (an attention layer that
    changes kind starts from its config's seed)."""
    source_weights, target_weights = source.weights, target.weights
    if len(source_weights) != len(target_weights) or any(
        tuple(s.shape) != tuple(t.shape) or s.name != t.name
        for s, t in zip(source_weights, target_weights)
    ):
        raise ValueError(  # unreachable with ATTENTION_ARGUMENTS; a guard for future arguments
            "`with_attention` could not match the weights of the two models. "
            f"Received: {len(source_weights)} and {len(target_weights)} weights"
        )
    for s, t in zip(source_weights, target_weights):
        t.assign(ops.copy(s.value))  # a buffer of its own (JAX donates buffers)
    source_layers = list(source._flatten_layers(include_self=False))
    target_layers = list(target._flatten_layers(include_self=False))
    for s, t in zip(source_layers, target_layers):
        if type(s) is type(t) and isinstance(s, SavesSeedStates):
            for s_generator, t_generator in zip(s._own_seed_generators(), t._own_seed_generators()):
                t_generator.state.assign(ops.copy(s_generator.state.value))
