"""ReformerClassifier: one label per sequence from a ReformerModel."""

import keras
from keras import ops

from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_int
from keras_reformer.argument_checks import check_model_kwargs
from keras_reformer.argument_checks import check_rate
from keras_reformer.layers.randomness import SeededDropout
from keras_reformer.layers.randomness import derive_seed
from keras_reformer.models.backbone_task import BackboneTask
from keras_reformer.models.input_checks import real_token_mask

# `derive_seed` stream of the head dropout; the backbone's layers use 0, 1, 2, ...
HEAD_DROPOUT_STREAM = 2**20


def masked_mean(hidden, real):
    """The mean of `hidden` over the real positions, in float32.

    Padded positions are left out with `where` (a product would turn NaN
    there into NaN), and a row without real positions gets zeros (a 0 / 0
    mean would be NaN, and its gradient too).

    Args:
        hidden: `(batch, length, width)` hidden states.
        real: `(batch, length)` booleans, true at real positions.

    Returns:
        `(batch, width)` float32 means.
    """
    real = ops.expand_dims(real, -1)
    total = ops.sum(ops.where(real, ops.cast(hidden, "float32"), 0.0), axis=1)
    count = ops.sum(ops.cast(real, "float32"), axis=1)
    return total / ops.maximum(count, 1.0)


@reformer_export
class ReformerClassifier(BackboneTask):
    """Sequence classification: a `ReformerModel`, the mean of its real positions, a dense head.

    The backbone's hidden states are averaged over the positions whose
    `padding_mask` is 1 (padding changes nothing; a row without any real
    position pools to zeros), then dropout and a dense layer give one score
    per class. `compile` defaults to Adam, sparse
    cross-entropy and accuracy; labels are class ids.

    Args:
        backbone: the backbone, a `ReformerModel`, usually built with
            `causal=False` so that every position sees the whole sequence.
        num_classes: number of classes, at least 2.
        dropout: dropout rate on the pooled vector while training. Defaults
            to `0.0`.
        activation: activation of the head: `None` for logits (the default;
            `compile` then uses a loss on logits) or `"softmax"`.

    Call arguments:
        inputs: a dict with `"token_ids"` (batch, length) and optionally
            `"padding_mask"` (batch, length), 1 for real tokens.

    Returns:
        Scores of shape (batch, num_classes).

    Example:

    ```python
    import numpy as np
    import keras_reformer

    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=256, num_layers=2, hidden_dim=64, num_heads=2,
        chunk_length=32, max_sequence_length=4096,
    )
    classifier = keras_reformer.models.ReformerClassifier(backbone, num_classes=3)
    classifier.compile()
    token_ids = np.random.randint(0, 256, size=(8, 1000))
    classifier.fit(token_ids, np.random.randint(0, 3, size=(8,)), batch_size=4, epochs=1)
    ```
    """

    def __init__(self, backbone, num_classes, dropout=0.0, activation=None, **kwargs):
        check_model_kwargs("ReformerClassifier", kwargs, allowed=("name", "trainable"))
        self.check_backbone(backbone)
        num_classes = check_int("num_classes", num_classes, 2)
        dropout = check_rate("dropout", dropout)
        if activation not in (None, "softmax"):
            raise ValueError(
                f"`activation` must be None (logits) or 'softmax'. Received: activation={activation!r}"
            )
        inputs = dict(backbone.input)
        hidden = backbone(inputs)
        real = real_token_mask(
            inputs["token_ids"], inputs["padding_mask"], backbone.vocabulary_size
        )
        pooled = masked_mean(hidden, real)
        pooled = SeededDropout(
            dropout,
            seed=derive_seed(backbone.seed, HEAD_DROPOUT_STREAM),
            dtype=backbone.dtype_policy,
            name="head_dropout",
        )(pooled)
        scores = keras.layers.Dense(
            num_classes, activation=activation, dtype=backbone.dtype_policy, name="logits"
        )(pooled)
        super().__init__(inputs=inputs, outputs=scores, **kwargs)
        self.backbone = backbone
        self.inherit_dtype_policy()
        self.num_classes = num_classes
        self.dropout = float(dropout)
        self.activation = activation

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Configures training with classification defaults.

        Args:
            optimizer: an optimizer or its name. Defaults to `"adam"`.
            loss: `"auto"` for sparse categorical cross-entropy (on logits
                when `activation` is `None`).
            metrics: `"auto"` for sparse categorical accuracy.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=self.activation is None)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "dropout": self.dropout,
                "activation": self.activation,
            }
        )
        return config
