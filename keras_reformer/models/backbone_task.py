"""The plumbing that every task model on a ReformerModel shares."""

import keras

from keras_reformer.models.input_checks import TokenIdChecks
from keras_reformer.models.reformer_model import ReformerModel


class BackboneTask(TokenIdChecks, keras.Model):
    """A functional model built on a `ReformerModel` backbone (not used directly).

    Subclasses check the backbone with `check_backbone`, build their head on
    `backbone(dict(backbone.input))` and call `super().__init__(inputs=...,
    outputs=...)`. This base completes and checks the inputs before every call
    (bare token ids get an all-ones padding mask) and (de)serialises the
    backbone in the config; subclasses add their own arguments to
    `get_config`.
    """

    @staticmethod
    def check_backbone(backbone):
        """Raises a ValueError unless `backbone` is a `ReformerModel`."""
        if not isinstance(backbone, ReformerModel):
            raise ValueError(
                f"`backbone` must be a ReformerModel. Received: backbone={type(backbone).__name__}"
            )

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras' input-spec check, which would refuse a missing padding mask.
        return super().__call__(self._complete_inputs(inputs), *args, **kwargs)

    def inherit_dtype_policy(self):
        """Takes the backbone's dtype policy (call after `super().__init__`).

        Keras' functional `Model.__init__` ignores `dtype`; the policy matters
        beyond the layers: `compile` wraps the optimizer in a
        `LossScaleOptimizer` only for a `"mixed_float16"` model.
        """
        self.dtype_policy = self.backbone.dtype_policy

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
