"""Anchoring: keeping fine-tuned weights near their pretrained values.

Fine-tuning can wander far from the pretrained weights and forget what made
them useful (catastrophic forgetting). Two guards, both measured in weight
space:

- L2-SP (Li, Grandvalet & Davoine, 2018) pulls each fine-tuned backbone weight
  toward its pretrained Starting Point instead of toward zero, during
  training: `apply_l2_sp(model, weight)` before `fit`, `remove_l2_sp(model)`
  after.
- WiSE-FT (Wortsman et al., 2022) averages the weights after training:
  `interpolate_weights(fine_tuned, pretrained, alpha)` gives
  `(1 - alpha) * pretrained + alpha * fine_tuned`, and `wise_ft(...)` scores a
  range of `alpha` on validation (and, given source data, source) accuracy.

L2-SP here is DECOUPLED from the gradient, as AdamW decouples weight decay:
after each optimizer update, every anchored weight moves a fixed fraction of
the way back to its anchor,

    w <- w - min(1, lr * weight) * (w - w0),

where `lr` is the learning rate of the variable's block. The paper adds
`weight/2 * ||w - w0||²` to the loss instead; under Adam such a penalty's
gradient is divided by each coordinate's running gradient scale, so its pull
is large where gradients are small and vanishes where they are large, and
`weight` loses its meaning (Loshchilov & Hutter's argument for AdamW). The
decoupled pull is the same for every optimizer, is exactly one SGD step of the
paper's penalty, and with SGD equals the paper's update to first order. Its
strength is fixed from the block's peak rate (the warmup target of a
schedule); it does not follow a schedule's decay.

The pull runs through Keras' own per-variable hook: `variable.constraint`,
which every Keras optimizer (each group of a `MultiOptimizer` included)
applies right after its update, inside compiled train steps, on every
backend. The constraint is a `PullToPretrained` holding the anchor as a
constant array (host memory, and a constant of the compiled step: one extra
copy of the anchored weights). Constraints set on variables are not part of
layer configs, so `.keras` files neither keep nor mind them: re-apply L2-SP
after loading. With `gradient_accumulation_steps`, Keras applies constraints
on every micro-step, so the pull acts that many times per update.
"""

import dataclasses
import math
import numbers
import warnings

import keras
import numpy as np
import pandas as pd
from keras import ops

from keras_transfer import _checks
from keras_transfer.blocks import get_blocks
from keras_transfer import _inputs as inputs
from keras_transfer.diagnostics import _as_model, _collect, _matched_backbone_weights, forgetting
from keras_transfer.optimizers import describe_learning_rates


# --- L2-SP -----------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_transfer")
class PullToPretrained(keras.constraints.Constraint):
    """Moves a weight a fixed fraction of the way back to its pretrained value.

    Returns `w - strength * (w - anchor)`, and `anchor` itself (exactly) when
    `strength` is 1. A variable's own constraint (`kernel_constraint=...`),
    given as `constraint`, is applied after the pull, so its guarantee (non-
    negativity, a norm bound) still holds.

    Args:
        anchor: the pretrained value, an array of the weight's shape.
        strength: the fraction in [0, 1] pulled back per update
            (`min(1, lr * weight)` in `apply_l2_sp`).
        constraint: optional constraint applied after the pull.

    Returns:
        The pulled weight, when called on a weight.

    Example:

    >>> import numpy as np, keras_transfer as kt
    >>> pull = kt.PullToPretrained(np.zeros(2, "float32"), strength=0.25)
    >>> np.asarray(pull(np.array([4.0, -8.0], "float32"))).tolist()
    [3.0, -6.0]
    """

    def __init__(self, anchor, strength, constraint=None):
        anchor = np.asarray(anchor)
        if anchor.dtype.kind in "biu":
            anchor = anchor.astype(keras.config.floatx())
        if not _is_number(strength) or not 0 <= strength <= 1:
            raise ValueError(f"`strength` must be a number in [0, 1]. Received: strength={strength!r}")
        if constraint is not None and not callable(constraint):
            raise ValueError(f"`constraint` must be a callable or None. Received: constraint={constraint!r}")
        self.anchor = anchor
        self.strength = float(strength)
        self.constraint = constraint

    def __call__(self, w):
        anchor = ops.convert_to_tensor(self.anchor, dtype=_dtype_of(w))
        if self.strength >= 1:
            pulled = anchor
        else:
            pulled = ops.subtract(w, ops.multiply(ops.cast(self.strength, anchor.dtype), ops.subtract(w, anchor)))
        return pulled if self.constraint is None else self.constraint(pulled)

    def get_config(self):
        constraint = self.constraint
        if constraint is not None:
            constraint = keras.saving.serialize_keras_object(constraint)
        return {
            "anchor": self.anchor.tolist(),
            "dtype": str(self.anchor.dtype),
            "strength": self.strength,
            "constraint": constraint,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        dtype = config.pop("dtype", None)
        config["anchor"] = np.asarray(config["anchor"], dtype=dtype)
        if config.get("constraint") is not None:
            config["constraint"] = keras.saving.deserialize_keras_object(config["constraint"])
        return cls(**config)


def apply_l2_sp(model, weight, optimizer=None):
    """Anchors the trainable backbone weights to their current values (L2-SP, decoupled).

    After every optimizer update, each anchored weight `w` becomes
    `w - min(1, lr * weight) * (w - w0)`: `w0` is its value now (so call this
    right before fine-tuning, after the head is trained and the backbone
    unfrozen), and `lr` the peak learning rate of its block in
    `kt.describe_learning_rates(model, optimizer)` (a block trained at several
    rates is pulled at its highest). Anchored are the float variables of
    trainable backbone blocks that train now; the `head` (new layers, with no
    pretrained value) and frozen blocks are not. A variable's own constraint
    is kept and applied after the pull; `remove_l2_sp` restores it.

    The model's cached train step is dropped, so the next `fit` traces one
    that applies the pull (no recompile needed). The optimizer must be the
    one `fit` will use: its rates set the strength.

    Args:
        model: a built `keras.Model` whose blocks `kt.get_blocks` finds.
        weight: the L2-SP strength, a number >= 0; 0 anchors nothing.
            `lr * weight` is the fraction of the way back pulled per step
            (AdamW's `learning_rate * weight_decay`); at 1 or more the
            backbone stays exactly at its anchor.
        optimizer: the optimizer `fit` will use (a `MultiOptimizer` from
            `kt.differential_optimizer`, any Keras optimizer, or one in a
            `LossScaleOptimizer`); default `model.optimizer`.

    Returns:
        The number of variables anchored.

    Example:

    >>> import keras, keras_transfer as kt
    >>> backbone = keras.applications.MobileNetV2(
    ...     alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> model = kt.unfreeze(kt.build_classifier(backbone, 2), top_blocks=2)
    >>> opt = kt.differential_optimizer(model, head_lr=1e-2, optimizer="sgd")
    >>> kt.apply_l2_sp(model, weight=10.0, optimizer=opt)  # block_16: 3 conv kernels, top: 1 (BatchNorm stays frozen)
    4
    >>> model.get_layer(backbone.name).get_layer("Conv_1").kernel.constraint.strength  # 1e-3 * 10
    0.01
    >>> kt.remove_l2_sp(model)
    4
    """
    _check_model(model, "model")
    if not _is_number(weight) or not (weight >= 0 and math.isfinite(weight)):
        raise ValueError(f"`weight` must be a finite number >= 0. Received: weight={weight!r}")
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                f"`optimizer` is needed: its learning rates set the pull's strength, and model {model.name!r} "
                "has not been compiled. Received: optimizer=None"
            )
    rates = describe_learning_rates(model, optimizer).groupby("block").learning_rate.max()
    if weight == 0:
        return 0
    chosen = []
    for block in get_blocks(model):
        rate = rates.get(block.name, math.nan)
        if block.is_head or not rate > 0:
            continue
        for variable in block.trainable_weights:
            if not keras.backend.is_float_dtype(variable.dtype):
                continue
            if isinstance(variable.constraint, PullToPretrained):
                raise ValueError(
                    f"Variable {variable.path!r} is already anchored by L2-SP; anchors do not stack. Call "
                    f"`kt.remove_l2_sp(model)` first. Received: model={model.name!r}"
                )
            chosen.append((variable, min(1.0, float(rate) * float(weight))))
    for variable, strength in chosen:
        anchor = np.array(ops.convert_to_numpy(variable))
        variable.constraint = PullToPretrained(anchor, strength, constraint=variable.constraint)
    model.train_function = None
    return len(chosen)


def remove_l2_sp(model):
    """Removes the L2-SP anchors `apply_l2_sp` set, restoring each variable's own constraint.

    Args:
        model: a `keras.Model`.

    Returns:
        The number of variables un-anchored (0 if none were).

    Example:

    >>> import keras, keras_transfer as kt
    >>> kt.remove_l2_sp(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    0
    """
    _check_model(model, "model")
    removed = 0
    for variable in model.weights:
        if isinstance(variable.constraint, PullToPretrained):
            variable.constraint = variable.constraint.constraint
            removed += 1
    if removed:
        model.train_function = None
    return removed


# --- WiSE-FT -----------------------------------------------------------------------


def interpolate_weights(fine_tuned, pretrained, alpha):
    """A new model with weights `(1 - alpha) * pretrained + alpha * fine_tuned` (WiSE-FT).

    Every weight of `fine_tuned`'s backbone blocks that `pretrained` also has
    (same block name, same layer name, as `kt.forgetting` matches them) is
    interpolated, BatchNorm moving statistics included (they are weights
    both models hold). Weights only `fine_tuned` has (the new `head`) are kept
    as fine-tuned, as are non-float variables (counters, seeds). The result
    is a clone of `fine_tuned` (not compiled); neither input changes.

    `alpha=0` gives the pretrained backbone under the fine-tuned head, exactly;
    `alpha=1` gives the fine-tuned model, exactly. Weights equal in both
    models (frozen blocks) stay exactly as they are.

    Args:
        fine_tuned: the fine-tuned `keras.Model` (LoRA merged, `kt.merge_lora`).
        pretrained: its starting point: the backbone `keras.Model`, a
            `kt.Backbone`, or a snapshot of the classifier before fine-tuning
            (its head is ignored).
        alpha: the weight of the fine-tuned model, a number in [0, 1].

    Returns:
        A new `keras.Model`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((2,))
    >>> x = keras.layers.Dense(2, name="stem_dense", kernel_initializer="zeros")(inputs)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> tuned_backbone = keras.models.clone_model(backbone)
    >>> tuned_backbone.get_layer("stem_dense").set_weights([np.full((2, 2), 4.0), np.ones(2)])
    >>> tuned = kt.build_classifier(tuned_backbone, 2)
    >>> mixed = kt.interpolate_weights(tuned, backbone, alpha=0.25)
    >>> [w.tolist() for w in mixed.get_layer("demo_convnet").get_layer("stem_dense").get_weights()]
    [[[1.0, 1.0], [1.0, 1.0]], [0.25, 0.25]]
    """
    _check_model(fine_tuned, "fine_tuned")
    _as_model(pretrained, "pretrained")
    if not _is_number(alpha) or not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
    pairs, unmatched = _matched_backbone_weights(fine_tuned, pretrained, "fine_tuned", "pretrained")
    if unmatched:
        warnings.warn(
            f"`pretrained` has no twin of {len(unmatched)} backbone layer(s) of `fine_tuned` (kept as fine-tuned): "
            f"{unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}",
            stacklevel=2,
        )
    if not pairs:
        raise ValueError(
            "`fine_tuned` and `pretrained` share no backbone weights (matched by block and layer name). "
            f"Backbone blocks of `fine_tuned`: {[b.name for b in get_blocks(fine_tuned) if not b.is_head]}"
        )
    index = {id(v): i for i, v in enumerate(fine_tuned.weights)}
    values = [ops.convert_to_numpy(v) for v in fine_tuned.weights]
    for mine, theirs in pairs:
        if not keras.backend.is_float_dtype(mine.dtype):
            continue
        i = index[id(mine)]
        values[i] = _mix(ops.convert_to_numpy(theirs), values[i], float(alpha))
    model = keras.models.clone_model(fine_tuned)
    model.set_weights(values)
    return model


@dataclasses.dataclass
class WiseFTResult:
    """What `wise_ft` returns.

    Attributes:
        table: a `pandas.DataFrame`, one row per alpha: `alpha`, `accuracy`
            (on `val_ds`), and, with source data, `source_accuracy` and
            `retained` (as in `kt.forgetting`).
        best_alpha: the alpha with the highest `accuracy`; ties go to the
            higher `source_accuracy`, then to the smaller alpha (nearer the
            pretrained weights, the robust side).
        model: the interpolated model at `best_alpha`.
    """

    table: pd.DataFrame
    best_alpha: float
    model: keras.Model

    def plot(self):
        """Accuracy against alpha; returns a `matplotlib.figure.Figure`."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.5))
        axes = figure.add_subplot()
        axes.plot(self.table.alpha, self.table.accuracy, marker="o", label="target (val_ds)")
        if "source_accuracy" in self.table.columns:
            axes.plot(self.table.alpha, self.table.source_accuracy, marker="s", label="source (source_ds)")
        axes.axvline(self.best_alpha, color="gray", linestyle=":", label=f"best alpha = {self.best_alpha:g}")
        axes.set_xlabel("alpha (0: pretrained backbone, 1: fine-tuned)")
        axes.set_ylabel("accuracy")
        axes.set_title("WiSE-FT: weight-space interpolation")
        axes.legend()
        figure.tight_layout()
        return figure


def wise_ft(fine_tuned, pretrained, val_ds, *, alphas=(0, 0.25, 0.5, 0.75, 1.0), source_model=None,
            source_ds=None, batch_size=32, verbose=0):
    """Scores weight-space interpolations between pretrained and fine-tuned weights (WiSE-FT).

    For each alpha, `interpolate_weights(fine_tuned, pretrained, alpha)` is
    evaluated on `val_ds` (accuracy: argmax of the model's outputs against the
    labels). Given `source_model` (the source classifier, e.g. the backbone
    with its ImageNet top) and `source_ds`, each interpolation is also judged
    on the source task with `kt.forgetting(source_model, interpolated,
    source_ds)`: the source head on the interpolated backbone.

    Args:
        fine_tuned: the fine-tuned classifier (`keras.Model`).
        pretrained: its starting point, as in `interpolate_weights`.
        val_ds: target validation data: `(x, y)` arrays or a dataset of
            `(x, y)` batches, preprocessed; integer labels (one-hot accepted).
            Not shuffled.
        alphas: the alphas to try, distinct numbers in [0, 1].
        source_model: the source classifier, or None.
        source_ds: source-task data for `source_model` (same forms), or None.
        batch_size: batch size for array inputs.
        verbose: 0 silent, 1 one line per alpha.

    Returns:
        A `WiseFTResult` (`table`, `best_alpha`, `model`, `plot()`).

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((2,))
    >>> x = keras.layers.Dense(2, name="stem_dense", kernel_initializer="identity")(inputs)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> tuned_backbone = keras.models.clone_model(backbone)
    >>> tuned_backbone.get_layer("stem_dense").set_weights([-np.eye(2), np.zeros(2)])  # gone wrong
    >>> tuned = kt.build_classifier(tuned_backbone, 2)
    >>> tuned.get_layer("head_logits").set_weights([np.eye(2), np.zeros(2)])
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]] * 4, "float32"); y = np.array([0, 1] * 4)
    >>> result = kt.wise_ft(tuned, backbone, (x, y), alphas=(0, 0.5, 1))
    >>> result.table.accuracy.tolist(), result.best_alpha
    ([1.0, 0.5, 0.0], 0.0)
    """
    _check_model(fine_tuned, "fine_tuned")
    _as_model(pretrained, "pretrained")
    if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__iter__"):
        raise ValueError(f"`alphas` must be a sequence of numbers in [0, 1]. Received: alphas={alphas!r}")
    alphas = list(alphas)
    if not alphas or not all(_is_number(a) and 0 <= a <= 1 for a in alphas):
        raise ValueError(f"`alphas` must be a non-empty sequence of numbers in [0, 1]. Received: alphas={alphas!r}")
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"`alphas` must be distinct. Received: alphas={alphas!r}")
    for name, data in (("val_ds", val_ds), ("source_ds", source_ds)):
        if hasattr(data, "__next__"):  # a generator or iterator: empty after the first alpha
            raise ValueError(
                f"`{name}` is read once per alpha, so it must be re-iterable (arrays, a tf.data.Dataset), not "
                f"a one-shot iterator. Received: {name}={inputs.short(data)}"
            )
    if (source_model is None) != (source_ds is None):
        raise ValueError(
            "Pass `source_model` and `source_ds` together (the source head judges the interpolated backbone "
            f"on source data), or neither. Received: source_model={inputs.short(source_model)}, "
            f"source_ds={inputs.short(source_ds)}"
        )
    if source_model is not None:
        _as_model(source_model, "source_model")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    verbose = _checks.verbose(verbose)
    rows = []
    for alpha in alphas:
        model = interpolate_weights(fine_tuned, pretrained, alpha)
        (scores,), labels = _collect(model, val_ds, "val_ds", batch_size, None, 0)
        if labels is None:
            raise ValueError("`val_ds` must yield (x, y) batches with labels.")
        row = {"alpha": float(alpha), "accuracy": float(np.mean(np.argmax(scores, -1) == labels))}
        if source_model is not None:
            judged = forgetting(source_model, model, source_ds, batch_size=batch_size, verbose=0)
            row["source_accuracy"], row["retained"] = judged.accuracy_after, judged.retained
        if verbose:
            print("WiSE-FT " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
        rows.append(row)
    table = pd.DataFrame(rows)
    source = table.source_accuracy if "source_accuracy" in table.columns else 0.0
    ranking = table.assign(_source=source).sort_values(
        ["accuracy", "_source", "alpha"], ascending=[False, False, True], kind="stable"
    )
    best_alpha = float(table.alpha[ranking.index[0]])
    return WiseFTResult(table, best_alpha, interpolate_weights(fine_tuned, pretrained, best_alpha))


# --- internals ---------------------------------------------------------------------


def _mix(pretrained, fine_tuned, alpha):
    """(1 - alpha) * pretrained + alpha * fine_tuned, exact at alpha 0 and 1 and where both agree."""
    mixed = (1.0 - alpha) * pretrained.astype("float64") + alpha * fine_tuned.astype("float64")
    mixed = np.where(pretrained == fine_tuned, fine_tuned, mixed.astype(fine_tuned.dtype))
    return mixed.astype(fine_tuned.dtype)


def _check_model(value, name):
    if not isinstance(value, keras.Model):
        raise TypeError(f"`{name}` must be a keras.Model. Received: {name}={inputs.short(value)}")


def _dtype_of(w):
    dtype = getattr(w, "dtype", None)
    return keras.backend.standardize_dtype(dtype) if dtype is not None else keras.config.floatx()


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value)
    )
