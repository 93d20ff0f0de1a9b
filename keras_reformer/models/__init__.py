"""Reformer models: the backbone and task models built on it."""

from keras_reformer.models.attention_swap import with_attention
from keras_reformer.models.reformer_causal_lm import ReformerCausalLM
from keras_reformer.models.reformer_causal_lm import language_model_data
from keras_reformer.models.reformer_classifier import ReformerClassifier
from keras_reformer.models.reformer_model import ReformerModel

__all__ = [
    "ReformerModel",
    "ReformerCausalLM",
    "ReformerClassifier",
    "language_model_data",
    "with_attention",
]
