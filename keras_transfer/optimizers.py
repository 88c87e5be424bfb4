"""Per-block learning rates, built on Keras' `MultiOptimizer`.

Pretrained blocks want small rates and new layers large ones, and the best
rate often shrinks block by block from the head down (layer-wise decay, as in
timm and ULMFiT). `differential_optimizer(model, ...)` reads the model's
blocks, gives each a rate, and returns a `keras.optimizers.MultiOptimizer`
with one inner optimizer per distinct rate, so `compile`, `fit` and `.keras`
files work as usual on every backend.

Learning-rate callbacks (`ReduceLROnPlateau`, `LearningRateScheduler`) change
every group together and keep the ratios between them; `scale_learning_rates`
is the primitive they share. A group whose rate is a schedule (warmup, cosine
decay) is scaled through a `ScaledSchedule`, whose multiplier is an optimizer
variable, so a change takes effect inside compiled train steps and survives
save/load.
"""

import math
import re
import warnings

import keras
import numpy as np
import pandas as pd
from keras import ops

from keras_transfer import _keras_compat as compat
from keras_transfer.blocks import _select, count_params, get_blocks

_Optimizer = keras.optimizers.Optimizer
_NOT_INNER = (keras.optimizers.LossScaleOptimizer, keras.optimizers.MultiOptimizer)
_OPTIMIZERS = {
    name.lower(): cls
    for name, cls in sorted(vars(keras.optimizers).items())
    if isinstance(cls, type) and issubclass(cls, _Optimizer) and cls is not _Optimizer
    and not issubclass(cls, _NOT_INNER)
}


@keras.saving.register_keras_serializable(package="keras_transfer")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule times a multiplier that callbacks can change.

    The multiplier is a non-trainable variable. `DifferentialOptimizer` tracks
    it as optimizer state, so a change (say, by `ReduceLROnPlateau`) is seen by
    already-compiled train steps, on JAX too, and is saved with the optimizer.

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule`.
        scale: the initial multiplier, a positive number.

    Returns:
        The schedule's value at `step`, times the multiplier, when called.

    Example:

    >>> import keras, keras_transfer as kt
    >>> from keras_transfer.optimizers import ScaledSchedule
    >>> decay = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=10)
    >>> round(float(ScaledSchedule(decay, scale=0.5)(0)), 6)
    0.05
    """

    def __init__(self, schedule, scale=1.0):
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError(
                "`schedule` must be a keras.optimizers.schedules.LearningRateSchedule. "
                f"Received: schedule={schedule!r}"
            )
        _check_rate("scale", scale)
        self.schedule = schedule
        self.scale = keras.Variable(
            float(scale),
            dtype="float32",
            trainable=False,
            name="learning_rate_scale",
            aggregation="only_first_replica",
        )

    def __call__(self, step):
        value = self.schedule(step)
        return ops.multiply(value, ops.cast(self.scale, value.dtype))

    @property
    def peak(self):
        """The schedule's highest rate (the warmup target, else its start), scaled."""
        inner = self.schedule
        top = getattr(inner, "warmup_target", None) or getattr(inner, "initial_learning_rate", None)
        if top is None:
            top = float(ops.convert_to_numpy(inner(0)))
        return _as_float(float(top) * ops.convert_to_numpy(self.scale))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scale": float(ops.convert_to_numpy(self.scale)),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_transfer")
class DifferentialOptimizer(keras.optimizers.MultiOptimizer):
    """Keras' `MultiOptimizer`, plus what per-block rates need from it.

    Routing variables to inner optimizers is Keras' own. This subclass adds
    three things: it tracks each `ScaledSchedule` multiplier as optimizer
    state (so callbacks can scale schedules inside compiled steps and the
    multiplier is saved); it keeps weight decay off 1-D variables (biases,
    normalization scales and offsets) in every inner optimizer, also after a
    `.keras` load, which forgets Keras' `exclude_from_weight_decay` settings;
    and `global_clipnorm` clips by the norm over all groups, where each inner
    optimizer would only see its own group's gradients.

    Build one with `differential_optimizer(model, ...)`.

    Args:
        optimizer_map: a `keras.optimizers.OptimizerMap`.
        global_clipnorm: if set, clip all gradients together to this norm.
        loss_scale_factor: as in `keras.optimizers.MultiOptimizer`.
        name: the optimizer's name.

    Returns:
        A `keras.optimizers.MultiOptimizer`.

    Example:

    >>> import keras
    >>> from keras_transfer.optimizers import DifferentialOptimizer
    >>> opt = DifferentialOptimizer(keras.optimizers.OptimizerMap(
    ...     keras.optimizers.SGD(0.01), {"head_logits/.*": keras.optimizers.SGD(0.1)}))
    >>> len(opt.optimizers)
    2
    """

    def __init__(self, optimizer_map, global_clipnorm=None, loss_scale_factor=None, name=None):
        if global_clipnorm is not None:
            _check_rate("global_clipnorm", global_clipnorm)
        super().__init__(optimizer_map, loss_scale_factor=loss_scale_factor, name=name)
        # `MultiOptimizer.__init__` cannot take `global_clipnorm`; set it after.
        self.global_clipnorm = global_clipnorm
        self.optimizer_map = optimizer_map
        for inner in self.optimizers:
            rate = compat.learning_rate_object(inner)
            if isinstance(rate, ScaledSchedule):
                compat.track_optimizer_variable(self, rate.scale)

    def optimizer_for(self, variable):
        """The inner optimizer that updates `variable` (the default one for unmapped variables)."""
        return self.optimizer_map(variable)

    def build(self, var_list):
        if self.built:
            return
        one_dimensional = [v for v in var_list if len(v.shape) <= 1]
        for inner in self.optimizers:
            inner.exclude_from_weight_decay(var_list=one_dimensional)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if self.global_clipnorm and len(grads):
            grads = _clip_by_global_norm(list(grads), self.global_clipnorm)
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "global_clipnorm": self.global_clipnorm}


def differential_optimizer(
    model,
    *,
    head_lr=1e-3,
    backbone_lr=None,
    layer_decay=None,
    learning_rates=None,
    optimizer="adam",
    weight_decay=None,
    warmup_steps=0,
    decay_steps=None,
    **optimizer_kwargs,
):
    """Builds a `MultiOptimizer` that gives each block of `model` its own rate.

    Each trainable block gets a rate; blocks with equal rates share one inner
    optimizer. Frozen variables are not mapped and cost no optimizer state.

    How rates are chosen, by precedence:
    - `learning_rates` as a dict: `{"head": 1e-3, "block7": 1e-4}` sets rates
      by block name, or by regex full-matched on `variable.path` (the
      selector language of `kt.select_variables`). A variable matched by two
      keys is an error.
    - `learning_rates` as a slice (fastai style): `slice(1e-5, 1e-3)` spreads
      rates geometrically from the lowest trainable block (`1e-5`) up to the
      top one, usually the head (`1e-3`); `slice(1e-3)` gives the top block
      `1e-3` and every other one `1e-4`. A slice sets every rate, so it
      cannot be combined with `backbone_lr` or `layer_decay`.
    - Otherwise the head gets `head_lr` and the top backbone block
      `backbone_lr`: the rate of pretrained weights, which want a smaller
      one than new weights. Without `layer_decay` every backbone block
      trains at `backbone_lr` (default `head_lr / 10`; pass
      `backbone_lr=head_lr` for one rate).
    - `layer_decay=d` shrinks the rates from the top backbone block down:
      `backbone_lr`, `backbone_lr * d`, `backbone_lr * d**2`, ... so no
      pretrained block trains faster than `backbone_lr`. Given alone, it
      continues the decay from the head (the BEiT / timm convention):
      `backbone_lr` defaults to `head_lr * d`, giving the head `head_lr`,
      the top block `head_lr * d`, the next `head_lr * d**2`. The power
      counts every backbone block, frozen or not (as timm counts layers):
      a block's rate depends on its depth only, so it does not change as
      more blocks are unfrozen.

    Weight decay is decoupled (scaled by each group's rate) and kept off 1-D
    variables (biases, normalization scales and offsets). Variables the map
    does not know (trainable only after a recompile from config) train at the
    lowest rate, the safe side for pretrained weights.

    Args:
        model: a built `keras.Model` whose blocks `kt.get_blocks` finds.
        head_lr: rate of the `head` block.
        backbone_lr: rate of the top backbone block, and of every backbone
            block without `layer_decay`; default `head_lr / 10`, or
            `head_lr * layer_decay` with `layer_decay`.
        layer_decay: factor in (0, 1] by which rates shrink per block,
            from `backbone_lr` at the top backbone block down.
        learning_rates: a dict of selector -> rate, or a `slice`.
        optimizer: a Keras optimizer name (`"sgd"`, `"adam"`, `"adamw"`,
            `"lion"`, ...), class, or instance used as a template (its rate
            is replaced).
        weight_decay: decoupled weight decay for every group; None keeps the
            optimizer's default (none, or AdamW's own).
        warmup_steps: steps of linear warmup from 0 to each group's rate.
        decay_steps: if set, steps of cosine decay to 0 after the warmup.
        **optimizer_kwargs: other arguments of the optimizer (`beta_1`,
            `momentum`, `clipnorm`, ...). `global_clipnorm` clips over all
            groups together.

    Returns:
        A `keras.optimizers.MultiOptimizer` (a `DifferentialOptimizer`).

    Example:

    >>> import keras, keras_transfer as kt
    >>> backbone = keras.applications.MobileNetV2(
    ...     alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> model = kt.unfreeze(kt.build_classifier(backbone, 2), top_blocks=2)
    >>> opt = kt.differential_optimizer(model, head_lr=1e-3, layer_decay=0.5)
    >>> kt.describe_learning_rates(model, opt).tail(3).to_dict("list")["learning_rate"]
    [0.00025, 0.0005, 0.001]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    head_lr = _check_rate("head_lr", head_lr)
    if backbone_lr is not None:
        backbone_lr = _check_rate("backbone_lr", backbone_lr)
    if layer_decay is not None:
        if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
            raise ValueError(f"`layer_decay` must be a number in (0, 1]. Received: layer_decay={layer_decay!r}")
    if isinstance(learning_rates, slice):
        learning_rates = _check_slice(learning_rates)
        for name, value in (("backbone_lr", backbone_lr), ("layer_decay", layer_decay)):
            if value is not None:
                raise ValueError(
                    f"A `learning_rates` slice sets every block's rate, so `{name}` cannot be given too. "
                    f"Received: learning_rates={learning_rates!r}, {name}={value!r}"
                )
    elif learning_rates is not None and not isinstance(learning_rates, dict):
        raise ValueError(
            "`learning_rates` must be a dict of block name or variable-path regex -> rate, or a slice. "
            f"Received: learning_rates={learning_rates!r}"
        )
    optimizer_class, template = _resolve_optimizer(optimizer)
    for name, value in (("warmup_steps", warmup_steps), ("decay_steps", decay_steps)):
        low = 0 if name == "warmup_steps" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if "learning_rate" in optimizer_kwargs:
        raise ValueError(
            "Pass rates as `head_lr`, `backbone_lr`, `layer_decay` or `learning_rates`, not `learning_rate`. "
            f"Received: learning_rate={optimizer_kwargs['learning_rate']!r}"
        )
    kwargs = {**template, **optimizer_kwargs}
    global_clipnorm = kwargs.pop("global_clipnorm", None)
    loss_scale_factor = kwargs.pop("loss_scale_factor", None)
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay

    blocks = get_blocks(model)
    rates = _variable_rates(model, blocks, head_lr, backbone_lr, layer_decay, learning_rates)
    if not rates:
        raise ValueError(
            f"Model {model.name!r} has no trainable variables, so there is nothing to optimize. "
            "Unfreeze some blocks first (`kt.unfreeze`)."
        )
    groups = {}
    for variable, rate in rates:
        groups.setdefault(rate, []).append(variable)
    _check_unique_paths(groups)

    def make(rate):
        return optimizer_class(learning_rate=_schedule(rate, warmup_steps, decay_steps), **kwargs)

    lowest = min(groups)
    default = make(lowest)
    optimizer_map = keras.optimizers.OptimizerMap(default)
    for rate, variables in sorted(groups.items(), reverse=True):
        if rate != lowest:
            paths = dict.fromkeys(v.path for v in variables)
            optimizer_map["|".join(re.escape(p) for p in paths)] = make(rate)
    return DifferentialOptimizer(optimizer_map, global_clipnorm=global_clipnorm, loss_scale_factor=loss_scale_factor)


def describe_learning_rates(model, optimizer=None):
    """One row per block: its learning rate and how many parameters train.

    Args:
        model: a `keras.Model`.
        optimizer: a `MultiOptimizer` (such as `differential_optimizer`'s),
            any Keras optimizer, or one wrapped in a `LossScaleOptimizer`;
            defaults to `model.optimizer`.

    Returns:
        A `pandas.DataFrame` with columns `block`, `learning_rate` (the
        current rate; the peak for a warmup/decay schedule; NaN for a frozen
        block) and `trainable_params`. A block whose variables train at
        several rates (a regex in `learning_rates`) has one row per rate.

    Example:

    >>> import keras, keras_transfer as kt
    >>> backbone = keras.applications.MobileNetV2(
    ...     alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> model = kt.freeze(kt.build_classifier(backbone, 2))
    >>> table = kt.describe_learning_rates(model, kt.differential_optimizer(model))
    >>> table.iloc[-1].to_dict()
    {'block': 'head', 'learning_rate': 0.001, 'trainable_params': 2562}
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    optimizer = model.optimizer if optimizer is None else optimizer
    optimizer = _unwrap(optimizer, "optimizer")
    rows = []
    for block in get_blocks(model):
        per_rate = {}
        for variable in block.trainable_weights:
            rate = _peak_rate(optimizer_for(optimizer, variable))
            per_rate[rate] = per_rate.get(rate, 0) + count_params([variable])
        if not per_rate:
            per_rate = {math.nan: 0}
        for rate, count in per_rate.items():
            rows.append({"block": block.name, "learning_rate": rate, "trainable_params": count})
    return pd.DataFrame(rows, columns=["block", "learning_rate", "trainable_params"])


def scale_learning_rates(optimizer, factor):
    """Multiplies every group's learning rate by `factor`, keeping their ratios.

    A constant rate is multiplied in place; a `ScaledSchedule` (what
    `differential_optimizer` builds for warmup/decay) has its multiplier
    changed, so the whole schedule scales. Both are optimizer variables, so
    compiled train steps see the change.

    Args:
        optimizer: a `MultiOptimizer`, any Keras optimizer, or either wrapped
            in a `LossScaleOptimizer` (as `mixed_float16` compiles them).
        factor: a positive number.

    Returns:
        The list of the groups' current rates after scaling, one per inner
        optimizer (one for a plain optimizer).

    Example:

    >>> import keras, keras_transfer as kt
    >>> kt.scale_learning_rates(keras.optimizers.SGD(0.1), 0.5)
    [0.05]
    """
    factor = _check_rate("factor", factor)
    groups = _groups(_unwrap(optimizer, "optimizer"))
    for inner in groups:
        rate = compat.learning_rate_object(inner)
        if not isinstance(rate, (ScaledSchedule, keras.Variable)):
            raise ValueError(
                f"Cannot scale the learning rate of optimizer {inner.name!r}: it is a "
                f"{type(rate).__name__}, which has no multiplier. Wrap the schedule in "
                "`keras_transfer.optimizers.ScaledSchedule`, or build the optimizer with "
                "`kt.differential_optimizer`."
            )
    for inner in groups:
        rate = compat.learning_rate_object(inner)
        variable = rate.scale if isinstance(rate, ScaledSchedule) else rate
        variable.assign(ops.convert_to_numpy(variable) * factor)
    return current_learning_rates(optimizer)


def current_learning_rates(optimizer):
    """Each group's learning rate at the current step, one float per inner optimizer.

    Args:
        optimizer: as in `scale_learning_rates`.

    Returns:
        A list of floats.

    Example:

    >>> import keras
    >>> from keras_transfer.optimizers import current_learning_rates
    >>> current_learning_rates(keras.optimizers.SGD(0.1))
    [0.1]
    """
    groups = _groups(_unwrap(optimizer, "optimizer"))
    return [_as_float(inner.learning_rate) for inner in groups]


class ReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """Keras' `ReduceLROnPlateau`, scaling every group together.

    Keras' own callback reduces each inner optimizer of a `MultiOptimizer`
    separately, so `min_lr` stops the low groups first and bends the ratios,
    and it fails on schedules and on a `LossScaleOptimizer` around a
    `MultiOptimizer`. This one multiplies all groups by the same factor
    (`scale_learning_rates`), with `min_lr` flooring the highest group's rate.
    It logs that highest rate as `learning_rate`. With a single optimizer it
    behaves like Keras'.

    Args:
        monitor, factor, patience, verbose, mode, min_delta, cooldown,
            min_lr: as in `keras.callbacks.ReduceLROnPlateau`.

    Returns:
        A Keras callback.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> callback = kt.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9)
    >>> history = model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=3, verbose=0,
    ...                     callbacks=[callback])
    >>> history.history["learning_rate"]  # the rate each epoch trained at
    [0.1, 0.1, 0.05]
    >>> kt.optimizers.current_learning_rates(model.optimizer)
    [0.025]
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"`factor` must be a number in (0, 1). Received: factor={factor!r}")
        super().__init__(monitor=monitor, factor=factor, patience=patience, verbose=verbose, mode=mode,
                         min_delta=min_delta, cooldown=cooldown, min_lr=min_lr, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        current_lr = max(current_learning_rates(self.model.optimizer))
        current = logs.get(self.monitor)
        # Logged before any reduction: the rate this epoch trained at, as Keras does.
        logs["learning_rate"] = current_lr
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                f"available. Available metrics are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and current_lr > np.float32(self.min_lr):
                new_lr = max(current_lr * self.factor, self.min_lr)
                scale_learning_rates(self.model.optimizer, new_lr / current_lr)
                if self.verbose > 0:
                    print(
                        f"\nEpoch {epoch + 1}: ReduceLROnPlateau scaling every learning rate by "
                        f"{new_lr / current_lr:.4g} (highest now {new_lr:.4g})."
                    )
                self.cooldown_counter = self.cooldown
                self.wait = 0


class LearningRateScheduler(keras.callbacks.LearningRateScheduler):
    """Keras' `LearningRateScheduler`, scaling every group together.

    `schedule(epoch, lr)` (or `schedule(epoch)`) returns the new rate of the
    highest group; every group is scaled by the same factor, so the ratios
    between blocks are kept. Keras' own callback applies the function to each
    inner optimizer separately, which sets every group to the same rate when
    the function ignores `lr`. The highest rate is logged as `learning_rate`.
    With a single optimizer it behaves like Keras'.

    Args:
        schedule: a function of the epoch index (from 0) and, optionally, the
            current highest rate, returning the new highest rate (a float).
        verbose: 0: quiet, 1: print each update.

    Returns:
        A Keras callback.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> callback = kt.LearningRateScheduler(lambda epoch: 0.1 * 0.5 ** epoch)
    >>> history = model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=3, verbose=0,
    ...                     callbacks=[callback])
    >>> [round(r, 4) for r in history.history["learning_rate"]]
    [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise ValueError(f"`schedule` must be a function of the epoch. Received: schedule={schedule!r}")
        super().__init__(schedule, verbose=verbose)

    def on_epoch_begin(self, epoch, logs=None):
        current_lr = max(current_learning_rates(self.model.optimizer))
        try:
            new_lr = self.schedule(epoch, current_lr)
        except TypeError:  # the one-argument form Keras also accepts
            new_lr = self.schedule(epoch)
        if isinstance(new_lr, bool) or not isinstance(new_lr, (int, float, np.floating)) or not new_lr > 0:
            raise ValueError(
                f"The `schedule` function must return a positive float. Received: {new_lr!r} at epoch {epoch}"
            )
        if current_lr <= 0:
            raise ValueError(
                f"Cannot rescale learning rates from a highest rate of {current_lr}; every group would stay 0."
            )
        scale_learning_rates(self.model.optimizer, float(new_lr) / current_lr)
        if self.verbose > 0:
            print(
                f"\nEpoch {epoch + 1}: LearningRateScheduler setting the highest learning rate to {new_lr:.4g}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = max(current_learning_rates(self.model.optimizer))


# --- internals ---------------------------------------------------------------


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
        value > 0 and math.isfinite(value)
    ):
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def _check_slice(rates):
    if rates.step is not None:
        raise ValueError(f"A `learning_rates` slice takes no step. Received: learning_rates={rates!r}")
    stop = _check_rate("learning_rates.stop", rates.stop)
    start = None if rates.start is None else _check_rate("learning_rates.start", rates.start)
    if start is not None and start > stop:
        raise ValueError(
            "A `learning_rates` slice goes from the lowest block's rate up to the head's: start <= stop. "
            f"Received: learning_rates={rates!r}"
        )
    return slice(start, stop)


def _resolve_optimizer(optimizer):
    """(optimizer class, config template) for a name, class or instance."""
    if isinstance(optimizer, str):
        key = optimizer.lower().replace("_", "")
        if key not in _OPTIMIZERS:
            raise ValueError(
                f"Unknown `optimizer`. Received: optimizer={optimizer!r}. Valid names: {sorted(_OPTIMIZERS)}"
            )
        return _OPTIMIZERS[key], {}
    if isinstance(optimizer, type) and issubclass(optimizer, _Optimizer) and not issubclass(optimizer, _NOT_INNER):
        return optimizer, {}
    if isinstance(optimizer, _Optimizer) and not isinstance(optimizer, _NOT_INNER):
        config = optimizer.get_config()
        for key in ("name", "learning_rate"):
            config.pop(key, None)
        return type(optimizer), config
    raise ValueError(
        "`optimizer` must be a Keras optimizer name, class or instance (not a MultiOptimizer or "
        f"LossScaleOptimizer). Received: optimizer={optimizer!r}. Valid names: {sorted(_OPTIMIZERS)}"
    )


def _variable_rates(model, blocks, head_lr, backbone_lr, layer_decay, learning_rates):
    """[(trainable variable, rate)] in model order."""
    trainable_blocks = [b for b in blocks if b.trainable_weights]
    backbone = [b for b in blocks if not b.is_head]
    depth = {id(b): len(backbone) - i for i, b in enumerate(backbone)}
    block_rate = {}
    if isinstance(learning_rates, slice):
        top = len(trainable_blocks) - 1
        for j, block in enumerate(trainable_blocks):
            if learning_rates.start is None:
                block_rate[id(block)] = learning_rates.stop if j == top else learning_rates.stop / 10
            else:
                fraction = j / top if top else 1.0
                block_rate[id(block)] = learning_rates.start * (learning_rates.stop / learning_rates.start) ** fraction
    else:
        for block in trainable_blocks:
            if block.is_head:
                rate = head_lr
            elif layer_decay is not None:
                top = backbone_lr if backbone_lr is not None else head_lr * layer_decay
                rate = top * layer_decay ** (depth[id(block)] - 1)
            else:
                rate = backbone_lr if backbone_lr is not None else head_lr / 10
            block_rate[id(block)] = rate
    rates = {id(v): block_rate[id(b)] for b in trainable_blocks for v in b.trainable_weights}
    if isinstance(learning_rates, dict):
        owner = {}
        for selector, rate in learning_rates.items():
            rate = _check_rate(f"learning_rates[{selector!r}]", rate)
            try:
                variables = _select(blocks, selector)
            except ValueError as error:
                raise ValueError(f"Unknown key in `learning_rates`: {error}") from None
            chosen = [v for v in variables if id(v) in rates]
            if not chosen:
                warnings.warn(
                    f"`learning_rates[{selector!r}]` names only frozen variables; it has no effect.",
                    stacklevel=3,
                )
            for v in chosen:
                if id(v) in owner:
                    raise ValueError(
                        f"Variable {v.path!r} is matched by two `learning_rates` keys, {owner[id(v)]!r} and "
                        f"{selector!r}; each variable may have one rate."
                    )
                owner[id(v)] = selector
                rates[id(v)] = rate
    return [(v, rates[id(v)]) for b in trainable_blocks for v in b.trainable_weights]


def _check_unique_paths(groups):
    """`OptimizerMap` routes by path; two variables sharing one path need one rate."""
    seen = {}
    for rate, variables in groups.items():
        for v in variables:
            if seen.setdefault(v.path, rate) != rate:
                raise ValueError(
                    f"Two trainable variables share the path {v.path!r} but need different rates "
                    f"({seen[v.path]} and {rate}); Keras' MultiOptimizer routes by path. Give the layers "
                    "distinct names."
                )


def _schedule(rate, warmup_steps, decay_steps):
    if not warmup_steps and decay_steps is None:
        return rate
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else rate,
        # Warmup alone: one "decay" step with alpha=1 holds the rate constant.
        decay_steps=decay_steps or 1,
        alpha=0.0 if decay_steps else 1.0,
        warmup_target=rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    return ScaledSchedule(schedule)


def _unwrap(optimizer, name):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    if not isinstance(optimizer, _Optimizer):
        raise ValueError(f"`{name}` must be a Keras optimizer. Received: {name}={optimizer!r}")
    return optimizer


def optimizer_for(optimizer, variable):
    """The optimizer that updates `variable`: the routed inner one of a MultiOptimizer, else `optimizer`."""
    if isinstance(optimizer, DifferentialOptimizer):
        return optimizer.optimizer_for(variable)
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        return compat.route(optimizer, variable)
    return optimizer


def _clip_by_global_norm(grads, clipnorm):
    present = [g for g in grads if g is not None]
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in present))
    factor = clipnorm / ops.maximum(norm, clipnorm)
    return [None if g is None else ops.cast(ops.multiply(ops.cast(g, "float32"), factor), g.dtype) for g in grads]


def _groups(optimizer):
    return list(optimizer.optimizers) if isinstance(optimizer, keras.optimizers.MultiOptimizer) else [optimizer]


def _peak_rate(inner):
    rate = compat.learning_rate_object(inner)
    if isinstance(rate, ScaledSchedule):
        return rate.peak
    return _as_float(inner.learning_rate)


def _as_float(value):
    # Rates live in float32 variables; the shortest float32 repr gives back
    # the number the user wrote (0.001, not 0.0010000000474974513).
    return float(str(np.float32(ops.convert_to_numpy(value))))
