"""Evaluation of a classifier as DataFrames, and plots. (placeholder: being written.)"""


class Evaluation:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError


def evaluate(*args, **kwargs):
    raise NotImplementedError


def plot_history(*args, **kwargs):
    raise NotImplementedError


def plot_confusion(*args, **kwargs):
    raise NotImplementedError

