"""Evaluation of a classifier as DataFrames, and the two plots every run needs.

`evaluate(model, dataset)` predicts once and returns an `Evaluation`: overall
and top-k accuracy, one row per class, the confusion matrix and every
prediction, all as pandas objects. `plot_history` draws the training curves
of a (multi-phase) history; `plot_confusion` draws a confusion matrix that
stays readable at 120 classes. Both return a matplotlib `Figure` of their own
(and write a PNG when given a path), so they never touch pyplot's global
state or a display.
"""

import dataclasses
import pathlib

import keras

from keras_transfer import _checks
from keras_transfer import _inputs as inputs
import numpy as np
import pandas as pd


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` returns.

    Attributes:
        accuracy: fraction of examples whose top prediction is the label.
        top_k_accuracy: fraction whose label is among the `top_k` highest
            scores; None when `top_k` is at least the number of classes
            (it would be 1 by construction, so it is not reported).
        top_k: the `k` of `top_k_accuracy`.
        per_class: one row per class: `class`, `support` (examples),
            `correct`, `recall` (the class's accuracy), `precision`, `f1`.
            Precision is NaN for a class never predicted.
        confusion: counts, rows are true classes (`true`), columns
            predicted ones (`predicted`), both labelled by class name.
        summary: a one-row DataFrame: `examples`, `accuracy`,
            `top{k}_accuracy` (only when `k` is below the number of
            classes), `balanced_accuracy` (mean recall), `macro_f1`.
        predictions: one row per example, in dataset order: `label`,
            `predicted`, `label_name`, `predicted_name`, `confidence`
            (probability of the prediction) and `correct`.
    """

    accuracy: float
    top_k_accuracy: float | None
    top_k: int
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame

    def most_confused(self, n=10):
        """The `n` most frequent mistakes: `true`, `predicted`, `count`, largest first.

        Example:

        >>> import numpy as np, keras, keras_transfer as kt
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
        >>> x = np.array([[1., 0.], [1., 0.], [0., 1.]]); y = np.array([0, 1, 1])
        >>> kt.evaluate(model, (x, y), class_names=["ant", "bee"], verbose=0).most_confused()
          true predicted  count
        0  bee       ant      1
        """
        n = _checks.positive_int("n", n)
        counts = self.confusion.to_numpy().copy()
        np.fill_diagonal(counts, 0)
        true, predicted = np.nonzero(counts)
        names = list(self.confusion.index)
        table = pd.DataFrame({
            "true": [names[i] for i in true],
            "predicted": [names[j] for j in predicted],
            "count": counts[true, predicted],
        })
        return table.sort_values("count", ascending=False, kind="stable").head(n).reset_index(drop=True)

    def _repr_html_(self):
        return self.summary._repr_html_()

    def __repr__(self):
        return f"Evaluation(\n{self.summary.to_string(index=False)}\n)"


def evaluate(model, dataset, class_names=None, top_k=5, batch_size=32, verbose="auto"):
    """Evaluates a classifier on labelled data, in one pass over it.

    The model runs once per batch (a Keras progress bar shows the pass) and
    labels are read from the same batches, so a shuffled dataset still pairs
    each prediction with its own label.

    Args:
        model: a `keras.Model` returning one score per class (logits or
            probabilities), shape `(batch, num_classes)`.
        dataset: a `tf.data.Dataset` or any iterable of `(x, y)` or
            `(x, y, sample_weight)` batches, or a tuple `(x, y)` of arrays.
            Labels are integer class ids, shape `(batch,)` or `(batch, 1)`,
            or one-hot `(batch, num_classes)`.
        class_names: names of the classes, in class-id order; default
            `"0"`, `"1"`, ...
        top_k: the `k` of the top-k accuracy, a positive integer. With
            `top_k` classes or fewer the top-k accuracy is left out (it
            would be 1 by construction): no `top{k}_accuracy` column, and
            `Evaluation.top_k_accuracy` is None.
        batch_size: batch size when `dataset` is a tuple of arrays.
        verbose: `"auto"`, 0 (silent) or 1 (progress bar).

    Returns:
        An `Evaluation`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
    >>> logits = np.array([[3., 2., 1.], [3., 2., 1.], [1., 3., 2.], [1., 2., 3.]])
    >>> labels = np.array([0, 1, 1, 0])
    >>> result = kt.evaluate(model, (logits, labels), class_names=["a", "b", "c"], top_k=2,
    ...                      verbose=0)
    >>> result.accuracy, result.top_k_accuracy
    (0.5, 0.75)
    >>> result.confusion.loc["b"].tolist()
    [1, 1, 0]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r} of type {type(model).__name__}")
    top_k = _checks.positive_int("top_k", top_k)
    batch_size = _checks.positive_int("batch_size", batch_size)
    verbose = _checks.verbose(verbose)
    scores, labels = _predict(model, dataset, batch_size, verbose)
    num_classes = scores.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    else:
        class_names = [str(name) for name in class_names]
        if len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must name each of the model's {num_classes} outputs. "
                f"Received {len(class_names)} names: class_names={class_names!r}"
            )
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"`class_names` must be unique. Received: class_names={class_names!r}")
    labels = _as_class_ids(labels, num_classes)
    predicted = scores.argmax(axis=1)
    correct = predicted == labels
    n = len(labels)
    accuracy = float(correct.mean())
    top_k_accuracy = None
    if top_k < num_classes:
        # A label is in the top k when fewer than k classes score strictly higher.
        label_scores = scores[np.arange(n), labels]
        higher = (scores > label_scores[:, None]).sum(axis=1)
        top_k_accuracy = float((higher < top_k).mean())

    confusion = np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    support = confusion.sum(axis=1)
    hits = np.diag(confusion)
    predicted_counts = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        precision = np.where(predicted_counts > 0, hits / predicted_counts, np.nan)
        f1 = np.where(hits > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(support > 0, f1, np.nan)
    per_class = pd.DataFrame({
        "class": class_names,
        "support": support,
        "correct": hits,
        "recall": recall,
        "precision": precision,
        "f1": f1,
    })
    index = pd.Index(class_names, name="true")
    columns = pd.Index(class_names, name="predicted")
    confusion_df = pd.DataFrame(confusion, index=index, columns=columns)
    top = {} if top_k_accuracy is None else {f"top{top_k}_accuracy": top_k_accuracy}
    summary = pd.DataFrame([{
        "examples": n,
        "accuracy": accuracy,
        **top,
        "balanced_accuracy": float(np.nanmean(recall)),
        "macro_f1": float(np.nanmean(f1)),
    }])
    probabilities = _probabilities(scores)
    predictions = pd.DataFrame({
        "label": labels,
        "predicted": predicted,
        "label_name": [class_names[i] for i in labels],
        "predicted_name": [class_names[i] for i in predicted],
        "confidence": probabilities[np.arange(n), predicted],
        "correct": correct,
    })
    return Evaluation(accuracy, top_k_accuracy, top_k, per_class, confusion_df, summary, predictions)


def plot_history(history, path=None, metrics=None, title=None):
    """Plots training curves per epoch, with phase boundaries, on a Figure of its own.

    One panel per metric (`loss`, `accuracy`, ... ): the training value as
    a solid line, the validation value (`val_...`) dashed. When the history
    has a `phase` column (as `kt.fine_tune`'s does), a vertical line marks
    where each phase starts and the phase is named at the top.

    Args:
        history: a DataFrame with one row per epoch (optionally `epoch` and
            `phase` columns), a `keras.callbacks.History` (what `fit`
            returns) or its `.history` dict.
        path: optional: where to write the figure as a PNG (parent
            folders are created).
        metrics: metric names to plot; default every numeric column that is
            not a learning rate, validation curves folded into their
            training panel.
        title: title of the figure.

    Returns:
        The `matplotlib.figure.Figure`, one axes per metric; its x-axis
        ticks fall on whole epochs.

    Example:

    >>> import pandas as pd, tempfile, os, keras_transfer as kt
    >>> history = pd.DataFrame({"phase": ["head", "head", "fine_tune"], "loss": [1.0, 0.6, 0.4],
    ...                         "val_loss": [1.1, 0.8, 0.7], "accuracy": [0.5, 0.7, 0.8]})
    >>> path = os.path.join(tempfile.mkdtemp(), "history.png")
    >>> figure = kt.plot_history(history, path)
    >>> [ax.get_title() for ax in figure.axes], os.path.exists(path)
    (['loss', 'accuracy'], True)
    """
    path = _png_path(path)
    frame = _history_frame(history)
    if frame.empty:
        raise ValueError("`history` has no epochs to plot. Received an empty history.")
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    if metrics is None:
        skip = {"epoch", "lr", "learning_rate", "head_lr", "backbone_lr"}
        metrics = [c for c in numeric if c not in skip and not c.startswith("val_")]
        metrics += [c[4:] for c in numeric if c.startswith("val_") and c[4:] not in metrics and c[4:] not in skip]
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in frame.columns and f"val_{m}" not in frame.columns]
        if unknown:
            raise ValueError(f"Unknown `metrics` {unknown}. Valid metrics: {[c for c in numeric if c != 'epoch']}")
    if not metrics:
        raise ValueError(f"`history` has no numeric metric to plot. Received columns: {list(frame.columns)}")
    epochs = frame["epoch"].to_numpy() if "epoch" in frame.columns else np.arange(1, len(frame) + 1)

    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(1, len(metrics), (4.2 * len(metrics), 3.4))
    for ax, metric in zip(axes, metrics):
        if metric in frame.columns:
            ax.plot(epochs, frame[metric], "-o", color="#3b75af", markersize=3, label="train")
        if f"val_{metric}" in frame.columns:
            ax.plot(epochs, frame[f"val_{metric}"], "--o", color="#e1812c", markersize=3, label="validation")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if "phase" in frame.columns:
            _draw_phases(ax, epochs, frame["phase"].astype(str).to_numpy())
        ax.legend(fontsize=8, loc="best")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion(confusion, path=None, normalize=True, title=None, annotate=None):
    """Draws a confusion matrix as a heatmap, readable up to hundreds of classes.

    Args:
        confusion: `Evaluation.confusion` (a square DataFrame of counts, rows
            true classes), an `Evaluation`, or a square array of counts.
        path: optional: where to write the figure as a PNG (parent
            folders are created).
        normalize: show each row as fractions of its true class (recall on
            the diagonal) instead of counts.
        title: title of the figure.
        annotate: write the value in each cell; default only up to 20 classes.

    Returns:
        The `matplotlib.figure.Figure`: the heatmap's axes, then its colour
        bar's.

    Example:

    >>> import numpy as np, tempfile, os, keras_transfer as kt
    >>> path = os.path.join(tempfile.mkdtemp(), "c.png")
    >>> figure = kt.plot_confusion(np.array([[5, 1], [2, 4]]), path, normalize=False)
    >>> figure.axes[0].images[0].colorbar.get_ticks().tolist(), os.path.exists(path)
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], True)
    """
    path = _png_path(path)
    if isinstance(confusion, Evaluation):
        confusion = confusion.confusion
    if not isinstance(confusion, pd.DataFrame):
        array = np.asarray(confusion)
        confusion = pd.DataFrame(array, index=[str(i) for i in range(len(array))],
                                 columns=[str(i) for i in range(array.shape[-1])] if array.ndim == 2 else None)
    counts = confusion.to_numpy()
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(
            f"`confusion` must be a square matrix of counts. Received shape {counts.shape}"
        )
    if not np.issubdtype(counts.dtype, np.number) or (counts < 0).any():
        raise ValueError("`confusion` must hold non-negative counts.")
    n = counts.shape[0]
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(totals > 0, counts / totals, 0.0)
    else:
        values = counts
    annotate = n <= 20 if annotate is None else bool(annotate)
    side = float(np.clip(3.0 + 0.2 * n, 5.0, 28.0))
    # Ticks sized to the cells they label (points per cell, with margins).
    tick_size = float(np.clip(0.5 * side * 72 * 0.8 / n, 4, 10))
    figure, (ax,) = _figure(1, 1, (side + 1.2, side))
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    norm = Normalize(vmin=0, vmax=1 if normalize else max(float(values.max()), 1))
    image = ax.imshow(values, cmap="Blues", norm=norm, interpolation="nearest")
    if normalize:
        ticks = np.linspace(0, 1, 5)
    else:
        ticks = MaxNLocator(5, steps=[1, 2, 5, 10], integer=True).tick_values(0, norm.vmax)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=ticks[ticks <= norm.vmax],
                    label="fraction of true class" if normalize else "examples")
    labels_x, labels_y = [str(c) for c in confusion.columns], [str(c) for c in confusion.index]
    # DejaVu Sans averages about 0.6 em a character; one character more keeps neighbours apart.
    fits = 0.6 * tick_size * (max(map(len, labels_x)) + 1) <= 0.8 * side * 72 / n
    rotation = dict(rotation=0) if fits else dict(rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xticks(np.arange(n), labels_x, fontsize=tick_size, **rotation)
    ax.set_yticks(np.arange(n), labels_y, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if annotate:
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=max(tick_size - 1, 5),
                        color="white" if norm(values[i, j]) > 0.6 else "black")
    ax.set_title(title or ("Confusion matrix (rows: true class)" if normalize else "Confusion matrix (counts)"))
    return _save(figure, path)


# --- internals ---------------------------------------------------------------


def _predict(model, dataset, batch_size, verbose):
    (scores, *rest), labels = inputs.run_model(model, dataset, "dataset", batch_size=batch_size,
                                               verbose=1 if verbose == "auto" else verbose)
    if rest:
        raise ValueError(f"`model` must have a single output of class scores. Received {1 + len(rest)} outputs")
    scores = scores.astype("float32")
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(
            "`model` must return one score per class, shape (batch, num_classes) with num_classes >= 2. "
            f"Received output shape {scores.shape}"
        )
    return scores, labels


def _as_class_ids(labels, num_classes):
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        labels = labels.argmax(axis=1)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            "Labels must be integer class ids, shape (batch,) or (batch, 1), or one-hot "
            f"(batch, {num_classes}). Received labels of shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"Labels must be integer class ids. Received values such as {labels[:5].tolist()}")
        labels = labels.astype("int64")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"Labels must be class ids in [0, {num_classes}) for a model with {num_classes} outputs. "
            f"Received labels such as {sorted(set(bad.tolist()))[:5]}"
        )
    return labels.astype("int64")


def _probabilities(scores):
    """The scores themselves when they already are probabilities, else their softmax."""
    if (scores >= 0).all() and (scores <= 1).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _history_frame(history):
    if isinstance(history, keras.callbacks.History):
        history = history.history
    if isinstance(history, dict):
        return pd.DataFrame(history)
    if isinstance(history, pd.DataFrame):
        return history.reset_index(drop=True)
    raise TypeError(
        "`history` must be a pandas DataFrame, a keras.callbacks.History or a dict of lists. "
        f"Received: history of type {type(history).__name__}"
    )


def _draw_phases(ax, epochs, phases):
    starts = [0] + [i for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    for k, start in enumerate(starts):
        if start > 0:
            ax.axvline((epochs[start - 1] + epochs[start]) / 2, color="grey", linestyle=":", linewidth=1)
        end = starts[k + 1] - 1 if k + 1 < len(starts) else len(phases) - 1
        ax.text((epochs[start] + epochs[end]) / 2, 0.98, phases[start], transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8, color="dimgrey",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})


def _figure(rows, cols, size):
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, list(axes.flat)


def _png_path(path):
    if path is None:
        return None
    path = pathlib.Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end in .png. Received: path='{path}'")
    return path


def _save(figure, path):
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    return figure
