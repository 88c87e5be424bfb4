"""Recipes: published transfer-learning tasks as configuration plus calls into keras_transfer.

Each recipe is a module with a `CONFIG` of published defaults and `run(**overrides)`:

>>> from keras_transfer.recipes import dog_breeds  # doctest: +SKIP
>>> result = dog_breeds.run(backbone="resnet50", strategy="fine_tune")  # doctest: +SKIP
"""

RECIPES = ("dog_breeds", "flowers", "pets", "imdb", "imdb_gemma")
