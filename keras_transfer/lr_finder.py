"""A learning-rate finder that keeps the per-block ratios.

`lr_find(model, train_ds)` is fastai's learning-rate range test (Leslie
Smith's, as `Learner.lr_find` runs it) for a compiled Keras model: train one
batch per step while the rate grows exponentially from `min_lr` to `max_lr`,
smooth the losses, stop when they blow up, and suggest a rate from the curve.

With per-block rates (`kt.differential_optimizer`) every group is scaled
together (`kt.scale_learning_rates`), so the ratios between blocks (layer
decay) are kept and the sweep is read in the highest group's rate, usually the
head's. The result's `scale` multiplies every group to the suggestion:
`kt.scale_learning_rates(model.optimizer, result.scale)`.

The model and its optimizer come back exactly as they were: every weight and
every optimizer variable (step counters, moments, rates) is put back.
"""

import contextlib
import dataclasses
import math

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks
from keras_transfer import _keras_compat as compat
from keras_transfer.optimizers import ScaledSchedule, _groups, _unwrap, current_learning_rates, scale_learning_rates

RULES = ("valley", "steepest", "minimum")


@dataclasses.dataclass
class LRFinderResult:
    """What `lr_find` returns.

    Attributes:
        table: one row per step: `step`, `learning_rate` (the highest group's
            rate), `lr_group_0`, `lr_group_1`, ... (each group's rate, in the
            order of the optimizer's inner optimizers), `loss` (the batch's
            loss) and `smoothed_loss`.
        suggestion: the suggested rate for the highest group, by `rule`.
        rule: the rule that chose `suggestion`.
        suggestions: every rule's suggestion, `{"valley": ..., "steepest":
            ..., "minimum": ...}`.
        scale: `suggestion` divided by the highest group's rate before the
            sweep (its peak, for a warmup/decay schedule): the factor to pass
            to `kt.scale_learning_rates` to move every group there.

    Example:

    >>> import pandas as pd
    >>> from keras_transfer.lr_finder import LRFinderResult
    >>> table = pd.DataFrame({"step": [0, 1], "learning_rate": [0.01, 0.1], "lr_group_0": [0.01, 0.1],
    ...                       "loss": [1.0, 0.5], "smoothed_loss": [1.0, 0.7]})
    >>> result = LRFinderResult(table, 0.05, "valley", {"valley": 0.05}, scale=5.0)
    >>> result.plot().axes[0].get_xscale()
    'log'
    """

    table: pd.DataFrame
    suggestion: float
    rule: str
    suggestions: dict
    scale: float

    def plot(self):
        """The smoothed loss against the highest group's rate (log axis), the suggestion marked.

        Returns:
            A `matplotlib.figure.Figure`.
        """
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), layout="constrained")
        ax = figure.subplots()
        ax.plot(self.table["learning_rate"], self.table["loss"], color="0.8", linewidth=1, label="batch loss")
        ax.plot(self.table["learning_rate"], self.table["smoothed_loss"], color="C0", label="smoothed loss")
        ax.axvline(self.suggestion, color="C3", linestyle="--", label=f"{self.rule}: {self.suggestion:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (highest group)")
        ax.set_ylabel("loss")
        finite = self.table["smoothed_loss"][np.isfinite(self.table["smoothed_loss"])]
        if len(finite):
            # The divergent tail would squash the part of the curve that matters.
            low, high = float(finite.min()), float(finite.iloc[0])
            margin = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
            ax.set_ylim(low - margin, max(high, low) + 3 * margin)
        ax.legend()
        return figure


def lr_find(model, train_ds, *, min_lr=1e-7, max_lr=10.0, num_steps=100, stop_factor=4.0, beta=0.98,
            suggest="valley", verbose=1):
    """Sweeps the learning rate up exponentially and suggests one (fastai's `lr_find`).

    Each step trains `model` on one batch of `train_ds` (repeated when it has
    fewer than `num_steps` batches) with `model.train_on_batch`, at a rate that
    grows geometrically from `min_lr` to `max_lr` over `num_steps` steps.
    Every rate group of the optimizer is scaled together, keeping its ratio to
    the others; the sweep is expressed in the highest group's rate. A group
    whose rate is a warmup/decay schedule (`ScaledSchedule`) is swept at its
    peak: the schedule is held flat at its peak during the sweep.

    The smoothed loss is the debiased exponential moving average of the batch
    losses, `avg = beta * avg + (1 - beta) * loss`, divided by `1 - beta**(t+1)`.
    The sweep stops early when the smoothed loss exceeds `stop_factor` times
    the best one so far, or is not finite. Suggestions are read from the
    smoothed curve without its first tenth and last five steps (as fastai):

    - `"valley"`: halfway along the longest valley, the longest strictly
      decreasing run of smoothed losses (fastai's default);
    - `"steepest"`: where the smoothed loss falls fastest against log(rate);
    - `"minimum"`: a tenth of the rate at the lowest smoothed loss.

    Afterwards every model variable and every optimizer variable (step
    counters, moments, rates, schedule multipliers) holds exactly its value
    from before the call. An optimizer that was not built yet is built on the
    model's trainable variables first, so it comes back in its freshly built
    state (zero moments and step counters) with its original rates.

    Args:
        model: a compiled `keras.Model`. Its optimizer may be any Keras
            optimizer, a `MultiOptimizer` such as `kt.differential_optimizer`
            builds, or either inside a `LossScaleOptimizer`.
        train_ds: batches of `(x, y)` or `(x, y, sample_weight)`: a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, or any iterable that
            can be iterated again (a one-shot iterator ends the sweep when it
            is exhausted).
        min_lr: the highest group's rate at the first step.
        max_lr: the highest group's rate at the last step.
        num_steps: at most this many steps (batches), an integer >= 5.
        stop_factor: stop when the smoothed loss exceeds this many times the
            best smoothed loss, a number > 1.
        beta: the smoothing factor, in [0, 1).
        suggest: the rule for `suggestion`, one of `"valley"`, `"steepest"`,
            `"minimum"`.
        verbose: 0: silent; 1: a progress bar over the steps.

    Returns:
        An `LRFinderResult`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> keras.utils.set_random_seed(0)
    >>> x = np.random.normal(size=(64, 4)).astype("float32")
    >>> y = x @ np.ones((4, 1), "float32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.01), "mse")
    >>> batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]
    >>> result = kt.lr_find(model, batches, min_lr=1e-4, max_lr=10.0, num_steps=30, verbose=0)
    >>> 0.01 < result.suggestion < 1.0, result.rule
    (True, 'valley')
    >>> round(result.scale * 0.01, 12) == round(result.suggestion, 12)
    True
    """
    min_lr = _check_positive("min_lr", min_lr)
    max_lr = _check_positive("max_lr", max_lr)
    if not min_lr < max_lr:
        raise ValueError(f"`min_lr` must be less than `max_lr`. Received: min_lr={min_lr!r}, max_lr={max_lr!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 5:
        raise ValueError(f"`num_steps` must be an integer >= 5. Received: num_steps={num_steps!r}")
    if not _is_number(stop_factor) or not stop_factor > 1:
        raise ValueError(f"`stop_factor` must be a number > 1. Received: stop_factor={stop_factor!r}")
    if not _is_number(beta) or not 0 <= beta < 1:
        raise ValueError(f"`beta` must be a number in [0, 1). Received: beta={beta!r}")
    if suggest not in RULES:
        raise ValueError(f"Unknown `suggest`. Received: suggest={suggest!r}. Valid rules: {list(RULES)}")
    verbose = _checks.verbose(verbose)
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError(
            f"`model` must be compiled with an optimizer and a loss before `lr_find`. Received: model={model.name!r}, "
            "which is not compiled. Call `model.compile(optimizer, loss)` first."
        )
    if isinstance(train_ds, np.ndarray) or (isinstance(train_ds, tuple) and train_ds and isinstance(
            train_ds[0], np.ndarray)):
        raise ValueError(
            "`train_ds` must be an iterable of batches (a tf.data.Dataset, a PyDataset, a list of (x, y) "
            f"batches), not arrays. Received: train_ds of type {type(train_ds).__name__}"
        )
    try:
        iter(train_ds)
    except TypeError:
        raise ValueError(
            f"`train_ds` must be an iterable of (x, y) batches. Received: train_ds={train_ds!r}"
        ) from None

    optimizer = model.optimizer
    groups = _groups(_unwrap(optimizer, "model.optimizer"))
    batches = _cycle(train_ds)
    first = next(batches, None)
    if first is None:
        raise ValueError("`train_ds` is empty: it yielded no batches.")
    if not optimizer.built:
        _build_optimizer(model, first)

    saved_variables = [(v, keras.ops.convert_to_numpy(v)) for v in model.variables + optimizer.variables]
    saved_stop_training = getattr(model, "stop_training", False)
    flattened = _hold_schedules_at_peak(groups)
    if flattened:
        model.make_train_function(force=True)
    try:
        reference = max(current_learning_rates(optimizer))
        if not reference > 0:
            raise ValueError(
                f"The highest learning rate of `model.optimizer` is {reference}; a rate of 0 cannot be scaled."
            )
        rows = _sweep(model, optimizer, first, batches, min_lr, max_lr, num_steps, stop_factor, beta, verbose)
    finally:
        for scaled, schedule in flattened:
            scaled.schedule = schedule
        for variable, value in saved_variables:
            variable.assign(value)
        if flattened:
            model.make_train_function(force=True)
        model.reset_metrics()
        model.stop_training = saved_stop_training

    table = pd.DataFrame(rows)
    suggestions = _suggest(table, num_steps)
    return LRFinderResult(
        table=table,
        suggestion=suggestions[suggest],
        rule=suggest,
        suggestions=suggestions,
        scale=suggestions[suggest] / reference,
    )


# --- internals ---------------------------------------------------------------


def _sweep(model, optimizer, first, batches, min_lr, max_lr, num_steps, stop_factor, beta, verbose):
    progbar = keras.utils.Progbar(num_steps, verbose=verbose, unit_name="step") if verbose else None
    rows, average, best = [], 0.0, math.inf
    batch = first
    for step in range(num_steps):
        target = min_lr * (max_lr / min_lr) ** (step / (num_steps - 1))
        # Scaling towards the target from the current rate each step keeps
        # float32 rounding from piling up in the highest group's rate.
        rates = scale_learning_rates(optimizer, target / max(current_learning_rates(optimizer)))
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(_to_numpy(batch))
        loss = float(model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)["loss"])
        average = beta * average + (1 - beta) * loss
        smoothed = average / (1 - beta ** (step + 1))
        rows.append({"step": step, "learning_rate": max(rates),
                     **{f"lr_group_{i}": rate for i, rate in enumerate(rates)},
                     "loss": loss, "smoothed_loss": smoothed})
        if progbar is not None:
            progbar.update(step + 1, [("loss", loss), ("learning_rate", max(rates))])
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > stop_factor * best:
            break
        batch = next(batches, None)
        if batch is None:
            break
    if progbar is not None and len(rows) < num_steps:
        progbar.update(len(rows), finalize=True)
    return rows


def _suggest(table, num_steps):
    """{rule: rate} from the smoothed curve, without its first tenth and last five steps (as fastai)."""
    table = table[np.isfinite(table["smoothed_loss"])]
    if table.empty:
        raise ValueError(
            "The loss was not finite at the first step of the sweep, so no rate can be suggested. Check the "
            "model and data, or lower `min_lr`."
        )
    window = table.iloc[num_steps // 10:len(table) - 5]
    if len(window) < 2:
        window = table
    rates = window["learning_rate"].to_numpy(dtype="float64")
    losses = window["smoothed_loss"].to_numpy(dtype="float64")

    # The longest strictly decreasing subsequence (fastai's "valley").
    run = np.ones(len(losses), dtype=int)
    for i in range(1, len(losses)):
        earlier = run[:i][losses[:i] > losses[i]]
        if earlier.size:
            run[i] = earlier.max() + 1
    end = int(np.argmax(run))
    start = end - run[end] + 1
    valley = rates[start + (end - start) // 2]

    if len(losses) > 1:
        slopes = np.diff(losses) / np.diff(np.log(rates))
        steepest = rates[int(np.argmin(slopes))]
    else:
        steepest = rates[0]
    minimum = rates[int(np.argmin(losses))] / 10
    return {"valley": float(valley), "steepest": float(steepest), "minimum": float(minimum)}


def _hold_schedules_at_peak(groups):
    """Swaps each `ScaledSchedule`'s inner schedule for a constant at its peak; returns what to put back."""
    flattened = []
    for inner in groups:
        scaled = compat.learning_rate_object(inner)
        if isinstance(scaled, ScaledSchedule):
            top = scaled.peak / float(keras.ops.convert_to_numpy(scaled.scale))
            # CosineDecay with alpha=1 is a constant: Keras' own, so the swap needs no new class.
            flat = keras.optimizers.schedules.CosineDecay(top, decay_steps=1, alpha=1.0)
            flattened.append((scaled, scaled.schedule))
            scaled.schedule = flat
    return flattened


def _build_optimizer(model, batch):
    if not model.built:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(_to_numpy(batch))
        model(x, training=False)
    # Variables created under the model's tf.distribute strategy, as Keras' trainer does.
    strategy = getattr(model, "distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model.optimizer.build(model.trainable_variables)


def _cycle(train_ds):
    """Batches of `train_ds`, starting over when it ends; stops if a pass yields nothing."""
    while True:
        empty = True
        for batch in train_ds:
            empty = False
            yield batch
        if empty:
            return


def _to_numpy(batch):
    return keras.tree.map_structure(lambda t: t if t is None else keras.ops.convert_to_numpy(t), batch)


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, float) and math.isnan(value))


def _check_positive(name, value):
    if not _is_number(value) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)
