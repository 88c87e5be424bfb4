"""The sparse cross-entropy with label smoothing equals Keras' one-hot version, and takes soft labels."""

import keras
import numpy as np
import pytest

from keras_transfer.losses import SparseCategoricalCrossentropy

pytestmark = pytest.mark.core


def test_equals_keras_sparse_without_smoothing_and_categorical_with_it():
    y = np.array([0, 2, 1])
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.1, 1.5], [0.0, 0.0, 0.0]], "float32")
    ours = SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    keras_sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    np.testing.assert_allclose(float(ours), float(keras_sparse), rtol=1e-6)
    smoothed = SparseCategoricalCrossentropy(label_smoothing=0.2, from_logits=True)(y, logits)
    one_hot = keras.losses.CategoricalCrossentropy(label_smoothing=0.2, from_logits=True)(np.eye(3)[y], logits)
    np.testing.assert_allclose(float(smoothed), float(one_hot), rtol=1e-6)
    # By hand for the first row: targets (0.8+0.2/3, 0.2/3, 0.2/3).
    log_p = logits[0] - np.log(np.exp(logits[0]).sum())
    by_hand = -(np.array([0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]) * log_p).sum()
    row = SparseCategoricalCrossentropy(label_smoothing=0.2, from_logits=True)(y[:1], logits[:1])
    np.testing.assert_allclose(float(row), by_hand, rtol=1e-6)


def test_soft_labels_from_mixup_are_used_as_probabilities():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.1, 1.5]], "float32")
    soft = np.array([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]], "float32")
    ours = SparseCategoricalCrossentropy(label_smoothing=0.1, from_logits=True)(soft, logits)
    keras_soft = keras.losses.CategoricalCrossentropy(label_smoothing=0.1, from_logits=True)(soft, logits)
    np.testing.assert_allclose(float(ours), float(keras_soft), rtol=1e-6)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    by_hand = -(soft * log_p).sum(axis=1).mean()
    np.testing.assert_allclose(float(SparseCategoricalCrossentropy(from_logits=True)(soft, logits)), by_hand, rtol=1e-6)
    # Integer labels shaped (batch, 1) stay integer labels.
    column = SparseCategoricalCrossentropy(from_logits=True)(np.array([[0], [2]]), logits)
    np.testing.assert_allclose(float(column), -(log_p[0, 0] + log_p[1, 2]) / 2, rtol=1e-6)


def test_round_trips_in_a_saved_model(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(loss=SparseCategoricalCrossentropy(label_smoothing=0.1, from_logits=True), optimizer="sgd")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.loss.label_smoothing == 0.1 and loaded.loss.from_logits
    x, y = np.ones((2, 2), "float32"), np.array([0, 1])
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_rejects_label_smoothing_outside_unit_interval(value):
    with pytest.raises(ValueError, match=rf"Received: label_smoothing={value}"):
        SparseCategoricalCrossentropy(label_smoothing=value)
