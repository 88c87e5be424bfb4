"""Recipes: published transfer-learning tasks as configuration plus calls into keras_transfer."""
