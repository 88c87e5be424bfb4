"""Accuracy metrics read integer labels and MixUp / CutMix class probabilities alike."""

import keras
import numpy as np
import pytest

from keras_transfer.metrics import Accuracy, TopKAccuracy

pytestmark = pytest.mark.core

SCORES = np.array([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7], [0.3, 0.4, 0.3], [0.5, 0.1, 0.4]], "float32")
IDS = np.array([0, 1, 1, 2])
SOFT = np.array([[0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.0, 0.6, 0.4], [0.2, 0.0, 0.8]], "float32")  # argmax = IDS


@pytest.mark.parametrize("labels", [IDS, IDS[:, None], SOFT], ids=["ids", "column", "probabilities"])
def test_accuracy_and_top_k_for_every_kind_of_label(labels):
    assert float(Accuracy()(labels, SCORES)) == 0.5  # rows 0 and 2 right
    assert float(TopKAccuracy(k=2)(labels, SCORES)) == 0.75  # row 1's class 1 is third
    assert float(keras.metrics.SparseCategoricalAccuracy()(IDS, SCORES)) == 0.5


def test_one_metric_object_takes_soft_training_labels_then_integer_validation_labels():
    metric = Accuracy()
    metric.update_state(SOFT, SCORES)
    metric.update_state(IDS[:2], SCORES[:2])
    assert float(metric.result()) == pytest.approx(3 / 6)
    assert metric.name == "accuracy" and TopKAccuracy().name == "top5_accuracy"


def test_metrics_round_trip_in_a_saved_model(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, kernel_initializer="identity", use_bias=False)])
    model.compile(loss="categorical_crossentropy", metrics=[Accuracy(), TopKAccuracy(k=2)])
    before = model.evaluate(SCORES, SOFT, verbose=0, return_dict=True)
    model.optimizer.build(model.trainable_variables)  # never trained: saved unbuilt, Keras warns on loading it
    model.save(tmp_path / "m.keras")
    after = keras.saving.load_model(tmp_path / "m.keras").evaluate(SCORES, SOFT, verbose=0, return_dict=True)
    assert before["accuracy"] == after["accuracy"] == 0.5
    assert before["top2_accuracy"] == after["top2_accuracy"] == 0.75


def test_k_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"`k` must be a positive integer. Received: k=0"):
        TopKAccuracy(k=0)
