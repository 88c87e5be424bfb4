"""Every Keras internal keras_transfer relies on, checked against the installed Keras.

If a Keras upgrade moves one of them, the test named after it fails here,
before anything subtler breaks. Fix `keras_transfer/_keras_compat.py`, not
the callers.
"""

import pathlib
import re

import keras
import numpy as np
import pytest

from keras_transfer import _keras_compat as compat

pytestmark = pytest.mark.core
PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_transfer"


def nested_model():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d1"),
                              keras.layers.BatchNormalization(name="bn")], name="inner")
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(inputs)), name="outer")


def test_walk_layers_reaches_nested_layers_and_child_layers_one_level():
    model = nested_model()
    names = sorted(layer.name for layer in compat.walk_layers(model))
    assert names == ["bn", "d1", "inner", "input_layer", "input_layer_1", "out", "outer"]
    assert "outer" not in [layer.name for layer in compat.walk_layers(model, include_self=False)]
    assert [layer.name for layer in compat.child_layers(model)] == ["input_layer_1", "inner", "out"]


def test_trainable_kind_variables_outlive_freezing_and_skip_moving_statistics():
    bn = nested_model().get_layer("inner").get_layer("bn")
    bn.trainable = False
    assert bn.trainable_variables == []
    assert [v.name for v in compat.trainable_kind_variables(bn)] == ["gamma", "beta"]


def test_set_trainable_flag_does_not_recurse():
    inner = nested_model().get_layer("inner")
    inner.trainable = False
    compat.set_trainable_flag(inner, True)
    assert inner.trainable and compat.trainable_flag(inner) is True
    assert not inner.get_layer("d1").trainable  # the public setter would have enabled it


def test_is_functional_tells_config_owned_models_from_subclasses():
    class Custom(keras.Model):
        def call(self, x):
            return x

    assert compat.is_functional(nested_model()) and compat.is_functional(keras.Sequential([keras.Input((1,))]))
    assert not compat.is_functional(Custom())


def test_retype_tracking_unlocked_and_untrack_round_trip():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))

    class Extended(keras.layers.Dense):
        pass

    compat.retype(layer, Extended)
    with compat.tracking_unlocked(layer):
        layer.extra = layer.add_weight(shape=(2,), initializer="ones", name="extra")
        layer.helper = keras.layers.Dropout(0.5)
    assert isinstance(layer, Extended) and len(layer.weights) == 3
    with compat.tracking_unlocked(layer):
        compat.untrack(layer, variables=[layer.extra], sublayers=[layer.helper], attributes=("extra", "helper"))
    compat.retype(layer, keras.layers.Dense)
    assert type(layer) is keras.layers.Dense and len(layer.weights) == 2 and not hasattr(layer, "extra")
    with pytest.raises(ValueError, match="already built"):  # locked again after the block
        layer.more = layer.add_weight(shape=(1,), name="more")


def test_base_kernel_is_dense_own_variable():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    assert compat.base_kernel(layer) is layer.kernel


def test_compile_arguments_are_the_live_objects():
    model = nested_model()
    loss = keras.losses.MeanSquaredError()
    model.compile(optimizer="sgd", loss=loss, metrics=["mae"])
    arguments = compat.compile_arguments(model)
    assert arguments["loss"] is loss and arguments["metrics"] == ["mae"]
    assert compat.compile_arguments(keras.Sequential()) is None


def test_replace_optimizer_mid_fit_uses_the_new_one_without_the_trainable_state_warning():
    model = nested_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")
    before = model.get_layer("out").get_weights()[0].copy()

    class Swap(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.get_layer("inner").trainable = False
                new = keras.optimizers.SGD(0.1)
                new.build(self.model.trainable_variables)
                compat.replace_optimizer(self.model, new)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=2, verbose=0, callbacks=[Swap()])
    assert model.optimizer.learning_rate.numpy() == pytest.approx(0.1)
    assert compat.compile_arguments(model)["optimizer"] is model.optimizer
    assert not np.allclose(model.get_layer("out").get_weights()[0], before)


def test_set_initial_epoch_makes_fit_continue_after_it():
    model = nested_model()
    model.compile(optimizer="sgd", loss="mse")

    class Resume(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            compat.set_initial_epoch(self.model, 2)

    history = model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=3, verbose=0, callbacks=[Resume()])
    assert len(history.history["loss"]) == 1


def test_learning_rate_object_is_the_variable_or_the_schedule_itself():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert compat.learning_rate_object(keras.optimizers.SGD(schedule)) is schedule
    constant = keras.optimizers.SGD(0.1)
    assert isinstance(compat.learning_rate_object(constant), keras.Variable)


def test_route_and_track_optimizer_variable():
    model = nested_model()
    fast, slow = keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.01)
    optimizer = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(slow, {"out/.*": fast}))
    assert compat.route(optimizer, model.get_layer("out").kernel) is fast
    assert compat.route(optimizer, model.get_layer("inner").get_layer("d1").kernel) is slow
    extra = keras.Variable(1.0, name="extra_state")
    compat.track_optimizer_variable(optimizer, extra)
    assert any(v is extra for v in optimizer.variables)


def test_base_image_preprocessing_layer_is_the_base_of_keras_augmentations():
    assert issubclass(keras.layers.RandomFlip, compat.BaseImagePreprocessingLayer)


def test_no_reach_into_keras_internals_outside_the_compat_module():
    pattern = re.compile(r"keras\.src|\._[a-z_]*optimizer|__class__ =|_flatten_layers|_compile_config|_tracker\b")
    offenders = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "_keras_compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_build_without_reading_keeps_fit_from_opening_the_data_an_extra_time():
    """Under a tf.distribute strategy, Keras' `fit` opens the training data once to build the model (through
    `_maybe_symbolic_build`), which moves a reshuffling dataset on by an epoch; the compat hook builds from the
    dataset's spec instead."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the extra read is the TensorFlow trainer's")
    import inspect

    import tensorflow as tf
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    from keras.src.trainers.trainer import Trainer

    assert list(inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters) == [
        "self", "iterator", "data_batch"]
    assert "data_batch" in inspect.signature(Trainer._symbolic_build).parameters
    opened = []

    def examples():
        opened.append(1)
        for i in range(4):
            yield np.full((2,), i, "float32"), np.float32(i)

    signature = (tf.TensorSpec((2,), tf.float32), tf.TensorSpec((), tf.float32))
    dataset = tf.data.Dataset.from_generator(examples, output_signature=signature).batch(2)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(2))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert len(opened) == 2  # Keras' own behaviour: one extra pass opened to build
    opened.clear()
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    with compat.build_without_reading(model, dataset):
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert len(opened) == 1 and model.built
