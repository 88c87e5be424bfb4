"""Accuracy metrics that take integer labels or class probabilities.

MixUp and CutMix turn a training batch's labels into class probabilities,
while the validation set keeps integer labels. Keras resolves `"accuracy"`
once, from the first labels it sees, and its sparse metrics misread
probabilities; these metrics read either kind, batch by batch, and compare
the prediction with the most likely class.
"""

import keras
from keras import ops

from keras_transfer.losses import are_probabilities


def _class_ids(y_true, y_pred):
    """Integer class ids of `y_true`, whether ids `(batch,)` / `(batch, 1)` or probabilities."""
    if are_probabilities(y_true, y_pred):
        return ops.argmax(y_true, axis=-1)
    return ops.reshape(y_true, (-1,))


def _accuracy(y_true, y_pred):
    return keras.metrics.sparse_categorical_accuracy(_class_ids(y_true, y_pred), y_pred)


@keras.saving.register_keras_serializable(package="keras_transfer")
class Accuracy(keras.metrics.MeanMetricWrapper):
    """Top-1 accuracy for integer labels or class probabilities (MixUp, CutMix).

    Args:
        name: metric name.
        dtype: dtype of the result.

    Example:

    >>> import numpy as np, keras_transfer as kt
    >>> scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> float(kt.metrics.Accuracy()(np.array([0, 0]), scores))
    0.5
    >>> float(kt.metrics.Accuracy()(np.array([[0.7, 0.3], [0.4, 0.6]]), scores))
    1.0
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_transfer")
class TopKAccuracy(keras.metrics.MeanMetricWrapper):
    """Top-k accuracy for integer labels or class probabilities (MixUp, CutMix).

    Args:
        k: how many of the highest-scoring classes count as a hit; >= 1.
        name: metric name; `"top{k}_accuracy"` by default.
        dtype: dtype of the result.

    Example:

    >>> import numpy as np, keras_transfer as kt
    >>> scores = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    >>> float(kt.metrics.TopKAccuracy(k=2)(np.array([1, 2]), scores))
    0.5
    """

    def __init__(self, k=5, name=None, dtype=None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive integer. Received: k={k!r}")
        self.k = k

        def top_k(y_true, y_pred):
            # Keras' top-k op takes float32 scores only.
            y_pred = ops.cast(y_pred, "float32")
            return keras.metrics.sparse_top_k_categorical_accuracy(_class_ids(y_true, y_pred), y_pred, k=k)

        super().__init__(top_k, name=name or f"top{k}_accuracy", dtype=dtype)

    def get_config(self):
        return {"k": self.k, "name": self.name, "dtype": self.dtype}
