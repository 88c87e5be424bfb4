"""The workflow's loss: cross-entropy on integer labels or class probabilities."""

import keras
from keras import ops


def are_probabilities(y_true, y_pred):
    """Whether `y_true` holds class probabilities (one per output) rather than integer class ids.

    Example:

    >>> import numpy as np
    >>> from keras_transfer.losses import are_probabilities
    >>> are_probabilities(np.zeros((2, 3)), np.zeros((2, 3))), are_probabilities(np.zeros((2, 1)), np.zeros((2, 3)))
    (True, False)
    """
    classes = y_pred.shape[-1]
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == classes and classes != 1


@keras.saving.register_keras_serializable(package="keras_transfer")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing, which also takes soft labels.

    Keras' `SparseCategoricalCrossentropy` has no `label_smoothing`; this one
    one-hot encodes the integer labels and calls Keras'
    `categorical_crossentropy`, so the numbers are Keras' own. Labels that
    are already class probabilities, shape `(batch, num_classes)` (MixUp and
    CutMix make them), are used as they are.

    Args:
        label_smoothing: in [0, 1): mass spread uniformly over the classes.
        from_logits: whether predictions are logits.
        name: loss name.

    Example:

    >>> import numpy as np, keras_transfer as kt
    >>> loss = kt.losses.SparseCategoricalCrossentropy(label_smoothing=0.1, from_logits=True)
    >>> round(float(loss(np.array([0]), np.array([[2.0, 0.0]]))), 4)
    0.2269
    >>> round(float(loss(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]]))), 4)
    0.2269
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="sparse_categorical_crossentropy", **kwargs):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing!r}"
            )
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        if are_probabilities(y_true, y_pred):
            one_hot = ops.cast(y_true, y_pred.dtype)
        else:
            y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            one_hot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "from_logits": self.from_logits,
        }
