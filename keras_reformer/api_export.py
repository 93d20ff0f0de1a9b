"""The one decorator that makes a public class of keras_reformer serialisable."""

import keras

PACKAGE = "keras_reformer"


def reformer_export(cls):
    """Registers `cls` with Keras under the `keras_reformer` package.

    Registration lets `.keras` files that contain the class load again after
    `import keras_reformer`, without `custom_objects`.

    Args:
        cls: a `keras.layers.Layer` or `keras.Model` subclass.

    Returns:
        `cls` itself, registered as `"keras_reformer>ClassName"`.
    """
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
