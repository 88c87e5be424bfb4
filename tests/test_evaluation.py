"""evaluate: exact metrics on a model whose logits are its inputs; the two plots as real PNGs."""

import keras
import numpy as np
import pandas as pd
import pytest

import keras_transfer as kt
from keras_transfer.evaluation import Evaluation
from matplotlib.figure import Figure

pytestmark = pytest.mark.core


def identity(num_classes):
    """A model returning its input: the test data are the logits."""
    return keras.Sequential([keras.Input((num_classes,)), keras.layers.Identity()])


# Four classes, eight examples. Row i's logits rank the classes as written.
LOGITS = np.array([
    [4, 3, 2, 1],  # true 0, predicted 0
    [4, 3, 2, 1],  # true 1, predicted 0 (label 2nd)
    [1, 4, 3, 2],  # true 1, predicted 1
    [1, 4, 3, 2],  # true 2, predicted 1 (label 2nd)
    [1, 2, 4, 3],  # true 2, predicted 2
    [1, 2, 4, 3],  # true 3, predicted 2 (label 2nd)
    [4, 1, 2, 3],  # true 1, predicted 0 (label 4th)
    [1, 2, 3, 4],  # true 3, predicted 3
], dtype="float32")
LABELS = np.array([0, 1, 1, 2, 2, 3, 1, 3])
NAMES = ["ant", "bee", "wasp", "fly"]


def test_exact_metrics_on_known_logits():
    result = kt.evaluate(identity(4), (LOGITS, LABELS), class_names=NAMES, top_k=2, batch_size=3, verbose=0)
    assert isinstance(result, Evaluation)
    assert result.accuracy == 4 / 8
    assert result.top_k == 2 and result.top_k_accuracy == 7 / 8
    assert result.confusion.index.name == "true" and result.confusion.columns.name == "predicted"
    assert result.confusion.to_numpy().tolist() == [
        [1, 0, 0, 0],
        [2, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 1],
    ]
    expected = pd.DataFrame({
        "class": NAMES,
        "support": [1, 3, 2, 2],
        "correct": [1, 1, 1, 1],
        "recall": [1.0, 1 / 3, 0.5, 0.5],
        "precision": [1 / 3, 0.5, 0.5, 1.0],
        "f1": [0.5, 0.4, 0.5, 2 / 3],
    })
    pd.testing.assert_frame_equal(result.per_class, expected, check_dtype=False)
    summary = result.summary.iloc[0].to_dict()
    assert summary["examples"] == 8 and summary["top2_accuracy"] == 7 / 8
    assert summary["balanced_accuracy"] == pytest.approx((1 + 1 / 3 + 0.5 + 0.5) / 4)
    assert summary["macro_f1"] == pytest.approx((0.5 + 0.4 + 0.5 + 2 / 3) / 4)
    top = result.most_confused(1)
    assert top.to_dict("list") == {"true": ["bee"], "predicted": ["ant"], "count": [2]}
    assert len(result.most_confused()) == 3


def test_predictions_keep_dataset_order_with_softmax_confidence():
    result = kt.evaluate(identity(4), (LOGITS, LABELS), class_names=NAMES, verbose=0)
    p = result.predictions
    assert p.label.tolist() == LABELS.tolist()
    assert p.predicted.tolist() == [0, 0, 1, 1, 2, 2, 0, 3]
    assert p.predicted_name.tolist()[:2] == ["ant", "ant"] and p.label_name.tolist()[1] == "bee"
    softmax_top = np.exp(4) / np.exp([4, 3, 2, 1]).sum()
    np.testing.assert_allclose(p.confidence, softmax_top, rtol=1e-6)
    assert p.correct.sum() == 4


def test_probability_outputs_are_used_as_given_and_one_hot_labels_work():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4]], "float32")
    one_hot = np.eye(3, dtype="float32")[[0, 2, 2]]
    result = kt.evaluate(identity(3), (probs, one_hot), verbose=0)
    assert result.accuracy == 1 / 3
    np.testing.assert_allclose(result.predictions.confidence, [0.7, 0.6, 0.5], rtol=1e-6)
    assert list(result.confusion.index) == ["0", "1", "2"]
    # With no more classes than k, top-k accuracy would be 1 by construction: it is left out.
    assert result.top_k_accuracy is None and result.top_k == 5


def test_top_k_is_left_out_when_k_reaches_the_number_of_classes():
    ants_bees = np.array([[2., 1.], [2., 1.], [1., 2.]], "float32")
    two = kt.evaluate(identity(2), (ants_bees, np.array([0, 1, 1])), class_names=["ants", "bees"], verbose=0)
    assert two.top_k_accuracy is None
    assert two.summary.iloc[0].to_dict() == {
        "examples": 3, "accuracy": 2 / 3, "balanced_accuracy": 0.75, "macro_f1": pytest.approx(2 / 3),
    }
    # Six steel classes: label 5 ranks 6th in the last row, so top-5 misses it once.
    logits = np.tile(np.arange(6, 0, -1, dtype="float32"), (4, 1))
    labels = np.array([0, 1, 4, 5])
    six = kt.evaluate(identity(6), (logits, labels), verbose=0)
    assert six.top_k_accuracy == 3 / 4
    assert list(six.summary.columns) == ["examples", "accuracy", "top5_accuracy", "balanced_accuracy", "macro_f1"]
    assert six.summary.iloc[0].to_dict()["top5_accuracy"] == 3 / 4
    assert "top6_accuracy" not in kt.evaluate(identity(6), (logits, labels), top_k=6, verbose=0).summary


def test_a_shuffled_dataset_is_read_once_so_labels_stay_paired():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((LOGITS, LABELS[:, None])).shuffle(8, seed=1).batch(3)
    result = kt.evaluate(identity(4), ds, class_names=NAMES, top_k=2, verbose=0)
    assert result.accuracy == 0.5 and result.top_k_accuracy == 7 / 8
    assert result.confusion.to_numpy().sum(axis=1).tolist() == [1, 3, 2, 2]


def test_evaluate_rejects_bad_input_clearly():
    model = identity(4)
    with pytest.raises(ValueError, match=r"`class_names` must name each of the model's 4 outputs. Received 2 names"):
        kt.evaluate(model, (LOGITS, LABELS), class_names=["a", "b"], verbose=0)
    with pytest.raises(ValueError, match=r"Labels must be class ids in \[0, 4\).*Received labels such as \[7\]"):
        kt.evaluate(model, (LOGITS, np.full(8, 7)), verbose=0)
    with pytest.raises(ValueError, match=r"`top_k` must be a positive integer. Received: top_k=0"):
        kt.evaluate(model, (LOGITS, LABELS), top_k=0)
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model"):
        kt.evaluate("model", (LOGITS, LABELS))
    with pytest.raises(ValueError, match=r"one score per class.*Received output shape \(8, 1\)"):
        kt.evaluate(identity(1), (LOGITS[:, :1], LABELS * 0), batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"`dataset` must yield \(x, y\) batches with labels"):
        kt.evaluate(model, [LOGITS], verbose=0)
    with pytest.raises(ValueError, match="`dataset` is empty"):
        kt.evaluate(model, [], verbose=0)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_history_from_a_phased_dataframe_and_a_keras_history(tmp_path):
    history = pd.DataFrame({
        "phase": ["head"] * 3 + ["fine_tune"] * 3,
        "epoch": range(1, 7),
        "head_lr": 1e-3,
        "loss": [1.2, 0.9, 0.8, 0.6, 0.5, 0.45],
        "accuracy": [0.5, 0.6, 0.65, 0.75, 0.8, 0.82],
        "val_loss": [1.1, 0.95, 0.9, 0.7, 0.65, 0.66],
        "val_accuracy": [0.55, 0.6, 0.62, 0.72, 0.76, 0.75],
    })
    path = tmp_path / "plots" / "history.png"
    figure = kt.plot_history(history, path, title="dogs")
    assert [ax.get_title() for ax in figure.axes] == ["loss", "accuracy"]
    assert figure.get_suptitle() == "dogs" and path.stat().st_size > 10_000
    width, height = png_size(path)
    assert width > 2 * height  # two panels side by side: loss and accuracy

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    fit = model.fit(np.ones((4, 2)), np.ones((4, 2)), epochs=2, verbose=0)
    kt.plot_history(fit, tmp_path / "fit.png")
    assert png_size(tmp_path / "fit.png")[0] < width


def test_plot_history_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="`history` must be a pandas DataFrame"):
        kt.plot_history([1, 2], tmp_path / "h.png")
    with pytest.raises(ValueError, match=r"Unknown `metrics` \['auc'\]"):
        kt.plot_history({"loss": [1.0]}, tmp_path / "h.png", metrics=["auc"])
    with pytest.raises(ValueError, match=r"`path` must end in .png. Received: path="):
        kt.plot_history({"loss": [1.0]}, tmp_path / "h.jpg")
    with pytest.raises(ValueError, match="no epochs"):
        kt.plot_history(pd.DataFrame(), tmp_path / "h.png")


def test_plot_confusion_small_and_for_120_classes(tmp_path):
    result = kt.evaluate(identity(4), (LOGITS, LABELS), class_names=NAMES, verbose=0)
    small = tmp_path / "small.png"
    kt.plot_confusion(result.confusion, small)
    assert small.stat().st_size > 5_000
    counts = np.random.default_rng(0).integers(0, 3, (120, 120)) + np.diag(np.full(120, 30))
    names = [f"breed_{i:03d}" for i in range(120)]
    big = tmp_path / "big.png"
    kt.plot_confusion(pd.DataFrame(counts, index=names, columns=names), big, normalize=False)
    assert png_size(big)[0] > 2 * png_size(small)[0]
    figure = kt.plot_confusion(result, tmp_path / "from_evaluation.png")
    assert (tmp_path / "from_evaluation.png").exists()
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == NAMES


def test_plot_history_returns_its_figure_with_whole_epoch_ticks(tmp_path):
    history = {"loss": [1.0, 0.6, 0.5], "val_loss": [1.1, 0.8, 0.7]}
    figure = kt.plot_history(history, tmp_path / "h.png")
    assert isinstance(figure, Figure) and (tmp_path / "h.png").exists()
    figure.draw_without_rendering()
    (ax,) = figure.axes
    low, high = ax.get_xlim()
    # Matplotlib's default ticks here are 1.0, 1.5, 2.0, 2.5, 3.0: half epochs that never ran.
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1, 2, 3]
    two = kt.plot_history({"loss": [1.0, 0.6]})
    two.draw_without_rendering()
    assert [t for t in two.axes[0].get_xticks() if 0.9 <= t <= 2.1] == [1, 2]


STEEL = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def x_labels(figure):
    ax = figure.axes[0]
    return {(label.get_text(), label.get_rotation(), label.get_horizontalalignment())
            for label in ax.get_xticklabels()}


def test_plot_confusion_rotates_labels_only_when_they_do_not_fit_their_cells():
    short = kt.plot_confusion(pd.DataFrame([[5, 1], [2, 4]], index=["ants", "bees"], columns=["ants", "bees"]))
    assert x_labels(short) == {("ants", 0.0, "center"), ("bees", 0.0, "center")}
    steel = np.diag(np.full(6, 10))
    long = kt.plot_confusion(pd.DataFrame(steel, index=STEEL, columns=STEEL))
    assert {(rotation, ha) for _, rotation, ha in x_labels(long)} == {(45.0, "right")}
    many = [str(i) for i in range(120)]
    crowded = kt.plot_confusion(pd.DataFrame(np.eye(120, dtype=int), index=many, columns=many))
    assert {(rotation, ha) for _, rotation, ha in x_labels(crowded)} == {(45.0, "right")}


def test_plot_confusion_colour_bar_is_linear_with_a_few_round_ticks():
    from matplotlib.colors import Normalize

    counts = np.array([[5, 1], [2, 4]])
    image = kt.plot_confusion(counts).axes[0].images[0]
    assert type(image.norm) is Normalize and (image.norm.vmin, image.norm.vmax) == (0, 1)
    assert image.colorbar.get_ticks().tolist() == [0, 0.25, 0.5, 0.75, 1]
    image = kt.plot_confusion(counts, normalize=False).axes[0].images[0]
    assert type(image.norm) is Normalize and (image.norm.vmin, image.norm.vmax) == (0, 5)
    assert image.colorbar.get_ticks().tolist() == [0, 1, 2, 3, 4, 5]
    big = np.diag(np.full(12, 37))
    image = kt.plot_confusion(big, normalize=False).axes[0].images[0]
    assert image.colorbar.get_ticks().tolist() == [0, 10, 20, 30]


def test_plot_confusion_rejects_non_square(tmp_path):
    with pytest.raises(ValueError, match=r"`confusion` must be a square matrix of counts. Received shape \(2, 3\)"):
        kt.plot_confusion(np.ones((2, 3)), tmp_path / "c.png")
    with pytest.raises(ValueError, match="non-negative counts"):
        kt.plot_confusion(-np.ones((2, 2)), tmp_path / "c.png")
