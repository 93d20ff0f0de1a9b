"""Public ops of keras_reformer."""
