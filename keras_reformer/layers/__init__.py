"""Public layers of keras_reformer."""
