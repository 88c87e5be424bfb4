"""Every place keras_transfer reaches into Keras internals, and why.

The rest of the package uses Keras' public API only. Each function here does
one thing Keras has no public way to do; its comment says what the public API
lacks. `tests/test_keras_compat.py` checks every one against the installed
Keras, so an upgrade that moves an internal fails there, loudly and by name,
instead of somewhere deep inside a training run.

Keep this module small: before adding to it, look for the public way again.
"""

import contextlib

import keras

from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: F401
    BaseImagePreprocessingLayer,
)
# `BaseImagePreprocessingLayer` gives `RandomAffine` Keras' image-augmentation
# contract (bounding boxes, masks, `transform_images`, tf.data graph mode on
# any backend); Keras exports the subclasses but not the base class.


# --- layers ------------------------------------------------------------------


def walk_layers(layer, include_self=True):
    """Every layer nested in `layer` (and `layer` itself), each once.

    `Model.layers` lists one level of a functional model only, and a custom
    layer's sublayers have no public listing at all.
    """
    return layer._flatten_layers(include_self=include_self, recursive=True)


def child_layers(layer):
    """The layers `layer` holds directly (one level), whatever kind of layer it is."""
    return layer._flatten_layers(include_self=False, recursive=False)


def trainable_kind_variables(layer):
    """The variables `layer` created as trainable, whether or not they train now.

    `layer.trainable_variables` is empty for a frozen layer and
    `layer.weights` also holds moving statistics, which never train; Keras
    keeps the "could train" list privately.
    """
    return list(layer._trainable_variables)


def set_trainable_flag(layer, value):
    """Sets `layer.trainable` without recursing into its sublayers.

    The public setter also sets every sublayer and variable, which would undo
    per-block choices made inside a container (and re-enable frozen LoRA base
    kernels).
    """
    layer._trainable = bool(value)


def trainable_flag(layer):
    """The layer's own flag, as `set_trainable_flag` left it."""
    return layer._trainable


def is_functional(model):
    """Whether a `.keras` file records `model`'s layers by class and config.

    Keras exports `Model` and `Sequential` but not `Functional`, the class
    `keras.Model(inputs, outputs)` returns.
    """
    from keras.src.models.functional import Functional

    return type(model).get_config in (Functional.get_config, keras.Sequential.get_config)


# --- rewriting a live layer (LoRA, until it is rebuilt on `enable_lora`) -----


@contextlib.contextmanager
def tracking_unlocked(layer):
    """Lets a built layer take new variables and sublayers.

    Keras locks a layer's tracker after `build`; its own `enable_lora` unlocks
    it the same way.
    """
    layer._tracker.unlock()
    try:
        yield layer
    finally:
        layer._tracker.lock()


def retype(layer, cls):
    """Makes the live `layer` an instance of `cls`, a subclass or base class of its own.

    Swapping the layer on its parent would need a setter per container kind
    (functional graphs, keras-hub's Python attributes and lists).
    """
    layer.__class__ = cls


def untrack(layer, variables=(), sublayers=(), attributes=()):
    """Removes variables, sublayers and attributes that `tracking_unlocked` let `layer` add."""
    for variable in variables:
        layer._untrack_variable(variable)
    for sublayer in sublayers:
        layer._layers.remove(sublayer)
    for name in attributes:
        # Layer.__delattr__ refuses tracked attributes; these are untracked above.
        object.__delattr__(layer, name)


def base_kernel(layer):
    """The kernel variable of a `Dense` / `EinsumDense` itself.

    The public `kernel` property returns Keras' own LoRA sum or dequantized
    values when those are enabled.
    """
    return layer._kernel


# --- compiling and fitting -----------------------------------------------------


def compile_arguments(model):
    """The live arguments of `model`'s last `compile` (optimizer, loss, metrics, ...).

    `model.get_compile_config()` serializes them, and functions or metrics
    that are not registered for serialization do not come back from it.
    """
    config = getattr(model, "_compile_config", None)
    return None if config is None else dict(config.config)


def replace_optimizer(model, optimizer):
    """Installs `optimizer` on a compiled model mid-`fit`, as a recompile would.

    A `compile` inside `fit` would reset the metrics and lose the running
    epoch; this swaps the optimizer, records it as the compile argument (what
    `.keras` files and `kt.recompile` use), notes the new trainable state (so
    Keras does not warn that it changed since compiling) and retraces the
    train step.
    """
    model.optimizer = optimizer
    if getattr(model, "_compile_config", None) is not None:
        model._compile_config.config["optimizer"] = optimizer
    model._compiled_trainable_state = {layer: layer.trainable for layer in walk_layers(model)}
    model.compiled = True  # `kt.unfreeze` marked it as needing a compile; this was one
    model.make_train_function(force=True)


def set_initial_epoch(model, epoch):
    """Makes the running `fit` continue after `epoch`, as Keras' `BackupAndRestore` does.

    A callback restoring a backup cannot pass `initial_epoch` to a `fit` that
    has already been called.
    """
    model._initial_epoch = int(epoch)


# --- optimizers ----------------------------------------------------------------


def learning_rate_object(optimizer):
    """The optimizer's learning rate as given: a variable, or the schedule object.

    `optimizer.learning_rate` evaluates a schedule at the current step, and
    `get_config()` serializes it into a copy; scaling a schedule in place
    needs the object itself.
    """
    return optimizer._learning_rate


def route(multi_optimizer, variable):
    """The inner optimizer a `keras.optimizers.MultiOptimizer` gives `variable`.

    MultiOptimizer takes its `OptimizerMap` in `__init__` but exposes only
    the list of inner optimizers. `DifferentialOptimizer` keeps its own map;
    this serves MultiOptimizers built by users.
    """
    return multi_optimizer._optimizer_map(variable)


def track_optimizer_variable(optimizer, variable):
    """Makes `variable` part of `optimizer`'s state (saved with it, seen by compiled steps).

    `add_variable` creates a new variable; a `ScaledSchedule`'s multiplier
    exists before the optimizer that must own it.
    """
    optimizer._track_variable(variable)


# --- distribution ------------------------------------------------------------


@contextlib.contextmanager
def build_without_reading(model, dataset):
    """Within it, `fit` builds `model` from `dataset.element_spec`, not from a batch it reads first.

    Keras' TensorFlow trainer, for a model built under a `tf.distribute`
    strategy, opens an iterator of the training data to build the model
    before the first epoch (`_maybe_symbolic_build`). Opening an iterator of
    a dataset that reshuffles each iteration moves its shuffle on by one
    epoch, so under a MirroredStrategy epoch `k` trained on the order of
    epoch `k + 1` of one device. A spec builds the same variables; Keras has
    no public switch for this.
    """
    if keras.backend.backend() != "tensorflow" or getattr(model, "_distribute_strategy", None) is None:
        yield
        return

    def build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=dataset.element_spec if data_batch is None else data_batch)

    model._maybe_symbolic_build = build
    try:
        yield
    finally:
        del model._maybe_symbolic_build
