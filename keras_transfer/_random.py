"""Seeding for comparisons, without taking the caller's random state away."""

import contextlib
import random

import keras
import numpy as np


@contextlib.contextmanager
def seeded(seed):
    """Runs the block from Keras' global seed `seed`, then hands the caller's random streams back.

    Comparisons (the two runs of `negative_transfer`, the demo's strategies)
    must start from the same head weights, which Keras draws from its global
    generator. Python's and NumPy's states are restored exactly afterwards,
    and Keras' generator is reseeded from the caller's NumPy state, so a
    program seeded by its author stays reproducible and is not reset to
    `seed`.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    after = int(np.random.randint(2**31 - 1))
    keras.utils.set_random_seed(seed)
    try:
        yield
    finally:
        keras.utils.set_random_seed(after)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
