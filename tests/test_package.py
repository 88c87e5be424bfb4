"""The package's face: `__all__` lists every public name and each resolves; no TensorFlow on other backends."""

import importlib
import importlib.util
import pathlib
import re

import pytest

import keras_transfer as kt
from keras_transfer import data

HAVE_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def _resolve(name, namespace=kt):
    """`getattr(namespace, name)`; without TensorFlow a data-layer name must say to install it."""
    try:
        return getattr(namespace, name)
    except ImportError as error:
        assert not HAVE_TENSORFLOW and "pip install tensorflow" in str(error), error
        return None


@pytest.mark.core
def test_every_name_in_all_resolves():
    assert len(set(kt.__all__)) == len(kt.__all__)
    for name in kt.__all__:
        _resolve(name)
    for name in data.__all__:
        _resolve(name, data)
    assert set(data.__all__) <= set(dir(data))


@pytest.mark.core
def test_names_that_messages_and_docs_tell_users_to_use_are_exported():
    package = pathlib.Path(kt.__file__).parent
    used = {match for path in package.rglob("*.py")
            for match in re.findall(r"\bkt\.(\w+(?:\.\w+)?)", path.read_text())}
    assert used, "the package mentions no kt.<name>: the pattern is wrong"
    for dotted in sorted(used):
        first, _, rest = dotted.partition(".")
        is_module = importlib.util.find_spec(f"keras_transfer.{first}") is not None
        assert first in kt.__all__ or is_module, f"kt.{dotted} is mentioned but kt.{first} is not exported"
        if rest and first in kt.__all__ + ["optimizers"]:
            owner = _resolve(first)
            assert owner is None or _resolve(rest, owner) is not None or not HAVE_TENSORFLOW, f"kt.{dotted}"


@pytest.mark.core
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX (pip install '.[jax]')")
def test_importing_the_package_leaves_tensorflow_out_on_other_backends():
    """Only a loader imports TensorFlow; on JAX a fresh interpreter imports keras_transfer without it."""
    import subprocess
    import sys

    code = ("import os, sys; os.environ['KERAS_BACKEND'] = 'jax'; import keras_transfer as kt; "
            "kt.RandomAffine(flip='horizontal'); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
