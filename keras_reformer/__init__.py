"""keras_reformer: the Reformer (Kitaev, Kaiser, Levskaya, ICLR 2020) as Keras 3 layers.

Public names live in `keras_reformer.layers`, `keras_reformer.models` and
`keras_reformer.ops`; this module re-exports the subpackages.
"""

from keras_reformer import layers
from keras_reformer import models
from keras_reformer import ops

__version__ = "0.1.0"

__all__ = ["layers", "models", "ops", "__version__"]
