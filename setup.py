"""Installs keras_transfer; `recipes/` ships as the subpackage `keras_transfer.recipes`."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["keras_transfer", "keras_transfer.*"])
    + ["keras_transfer.recipes"],
    package_dir={"keras_transfer.recipes": "recipes"},
)
