"""Public models of keras_reformer."""
