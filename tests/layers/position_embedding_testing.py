"""Helpers shared by the position-embedding tests."""

import numpy as np


def random_inputs(batch, length, hidden, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, hidden)).astype("float32")
