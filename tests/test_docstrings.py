"""Every docstring example in the package runs and prints what it says."""

import doctest
import importlib
import pkgutil

import keras
import pytest

import keras_transfer

PACKAGES = ("keras_transfer", "keras_transfer.data", "keras_transfer.recipes")
MODULES = [f"{package}.{info.name}" for package in PACKAGES
           for info in pkgutil.iter_modules(importlib.import_module(package).__path__[:1]) if not info.ispkg]
# The data layer's examples print TensorFlow tensors.
SKIP = {} if keras.backend.backend() == "tensorflow" else {m for m in MODULES if m.startswith("keras_transfer.data.")}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name in SKIP:
        pytest.skip("the data layer's examples print TensorFlow tensors")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
