"""The only backend-specific code of keras_reformer.

Everything else is written with `keras.ops`. Modules here import their
framework lazily, so that the package imports under any one backend with the
other frameworks absent.
"""
