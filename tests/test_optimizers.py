"""Per-block learning rates: exact updates on a tiny linear model, on TF and JAX.

The model is `Input(2) -> demo_convnet backbone (stem, block1, block2, top: one
Dense(2) each) -> head Dense(1)`, with no activations, so the MSE gradients are
computed by hand in numpy and every update can be checked to the last digit.
"""

import math

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.optimizers import DifferentialOptimizer, ScaledSchedule, current_learning_rates

pytestmark = pytest.mark.core

BACKBONE_LAYERS = ("stem_dense", "block1_dense", "block2_dense", "top_dense")
# Regex characters in a layer name: the optimizer map must escape them.
HEAD_LAYER = "head.logits"
X = np.array([[0.5, -1.0], [1.0, 0.25], [-0.5, 0.75], [0.2, 0.4]], "float32")
Y = np.array([[1.0], [-1.0], [0.5], [0.0]], "float32")


def tiny_model():
    init = dict(kernel_initializer=keras.initializers.RandomUniform(-1, 1, seed=1),
                bias_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=2))
    inputs = keras.Input((2,))
    x = inputs
    for name in BACKBONE_LAYERS:
        x = keras.layers.Dense(2, name=name, **init)(x)
    backbone = keras.Model(inputs, x, name="demo_convnet")
    outer = keras.Input((2,))
    return keras.Model(outer, keras.layers.Dense(1, name=HEAD_LAYER, **init)(backbone(outer)), name="tiny")


def dense_layers(model):
    backbone = model.get_layer("demo_convnet")
    return [backbone.get_layer(n) for n in BACKBONE_LAYERS] + [model.get_layer(HEAD_LAYER)]


def weights_of(model):
    return [[np.array(w) for w in layer.get_weights()] for layer in dense_layers(model)]


def mse_gradients(weights, x=X, y=Y):
    """Backpropagation through the linear chain, by hand."""
    activations = [x.astype("float64")]
    for kernel, bias in weights:
        activations.append(activations[-1] @ kernel + bias)
    delta = 2 * (activations[-1] - y) / y.size
    grads = []
    for i in reversed(range(len(weights))):
        grads.append([activations[i].T @ delta, delta.sum(0)])
        delta = delta @ weights[i][0].T
    return grads[::-1]


def fit_one_step(model, optimizer, x=X, y=Y):
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)


def assert_sgd_step(before, after, rates, weight_decay=0.0):
    grads = mse_gradients(before)
    for (kernel, bias), (gk, gb), new, rate in zip(before, grads, after, rates):
        np.testing.assert_allclose(new[0], kernel * (1 - weight_decay * rate) - rate * gk, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(new[1], bias - rate * gb, rtol=1e-5, atol=1e-7)


def test_sgd_moves_every_variable_by_its_group_rate_and_frozen_blocks_not_at_all():
    model = kt.unfreeze(tiny_model(), from_block="block2")
    optimizer = kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd")
    before = weights_of(model)
    fit_one_step(model, optimizer)
    # head 0.1, top 0.1 * 0.5, block2 0.1 * 0.5**2; stem and block1 are frozen.
    assert_sgd_step(before, weights_of(model), [0.0, 0.0, 0.025, 0.05, 0.1])
    assert isinstance(model.optimizer, keras.optimizers.MultiOptimizer)
    assert sorted(current_learning_rates(optimizer)) == [0.025, 0.05, 0.1]
    # Own (iteration, learning_rate) + 3 groups x (iteration, learning_rate); SGD keeps no slots.
    assert len(model.optimizer.variables) == 8


def test_adam_first_step_matches_the_update_computed_by_hand():
    model = kt.unfreeze(tiny_model(), from_block="block2")
    optimizer = kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="adam", epsilon=1e-3)
    before = weights_of(model)
    fit_one_step(model, optimizer)
    beta_1, beta_2, eps = 0.9, 0.999, 1e-3
    for (kernel, bias), grads, new, rate in zip(before, mse_gradients(before), weights_of(model),
                                                [0.0, 0.0, 0.025, 0.05, 0.1]):
        for old, g, value in zip((kernel, bias), grads, new):
            m, v = (1 - beta_1) * g, (1 - beta_2) * g**2
            alpha = rate * math.sqrt(1 - beta_2) / (1 - beta_1)
            np.testing.assert_allclose(value, old - alpha * m / (np.sqrt(v) + eps), rtol=1e-5, atol=1e-6)
    # 2 own + 3 groups x 2 + (m, v) for the 6 trainable variables; frozen ones get no slots.
    assert len(model.optimizer.variables) == 2 + 6 + 12


def test_describe_learning_rates_one_row_per_block():
    model = kt.unfreeze(tiny_model(), from_block="block2")
    table = kt.describe_learning_rates(model, kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5))
    assert list(table.columns) == ["block", "learning_rate", "trainable_params"]
    assert table.block.tolist() == ["stem", "block1", "block2", "top", "head"]
    assert table.trainable_params.tolist() == [0, 0, 6, 6, 3]
    np.testing.assert_array_equal(table.learning_rate, [np.nan, np.nan, 0.025, 0.05, 0.1])


def test_backbone_lr_defaults_to_a_tenth_and_equal_rates_share_one_optimizer():
    model = tiny_model()
    default = kt.differential_optimizer(model, head_lr=0.1)
    assert kt.describe_learning_rates(model, default).learning_rate.tolist() == [0.01] * 4 + [0.1]
    assert len(default.optimizers) == 2
    single = kt.differential_optimizer(model, head_lr=0.1, backbone_lr=0.1, optimizer="sgd")
    assert len(single.optimizers) == 1
    before = weights_of(model)
    fit_one_step(model, single)
    assert_sgd_step(before, weights_of(model), [0.1] * 5)


def test_layer_decay_starts_at_backbone_lr_so_no_pretrained_block_trains_faster():
    model = tiny_model()
    optimizer = kt.differential_optimizer(model, head_lr=1.0, layer_decay=0.5, backbone_lr=0.2)
    # head 1.0; top 0.2 (backbone_lr), block2 0.1, block1 0.05, stem 0.025
    assert kt.describe_learning_rates(model, optimizer).learning_rate.tolist() == [0.025, 0.05, 0.1, 0.2, 1.0]
    assert len(optimizer.optimizers) == 5
    # The README's workflow rates: every pretrained block at or under backbone_lr=1e-5.
    optimizer = kt.differential_optimizer(model, head_lr=1e-3, layer_decay=0.6, backbone_lr=1e-5)
    rates = kt.describe_learning_rates(model, optimizer).learning_rate.tolist()
    np.testing.assert_allclose(rates, [1e-5 * 0.6**3, 1e-5 * 0.6**2, 1e-5 * 0.6, 1e-5, 1e-3])
    # A block's rate depends on its depth, not on how many blocks below it train.
    kt.unfreeze(model, from_block="top")
    table = kt.describe_learning_rates(model, kt.differential_optimizer(model, head_lr=1.0, layer_decay=0.5))
    assert table.learning_rate.tolist()[-2:] == [0.5, 1.0]


def test_learning_rates_by_block_name_and_by_variable_path_regex():
    model = tiny_model()
    rates = {"head": 0.3, "block1": 0.02, r"top_dense/bias": 0.07}
    optimizer = kt.differential_optimizer(model, learning_rates=rates, backbone_lr=0.01, optimizer="sgd")
    table = kt.describe_learning_rates(model, optimizer)
    assert table.values.tolist() == [
        ["stem", 0.01, 6], ["block1", 0.02, 6], ["block2", 0.01, 6],
        ["top", 0.01, 4], ["top", 0.07, 2], ["head", 0.3, 3],
    ]
    before = weights_of(model)
    fit_one_step(model, optimizer)
    after = weights_of(model)
    grads = mse_gradients(before)
    np.testing.assert_allclose(after[3][1], before[3][1] - 0.07 * grads[3][1], rtol=1e-5)
    np.testing.assert_allclose(after[3][0], before[3][0] - 0.01 * grads[3][0], rtol=1e-5)
    np.testing.assert_allclose(after[4][0], before[4][0] - 0.3 * grads[4][0], rtol=1e-5)


def test_a_slice_spreads_rates_geometrically_over_trainable_blocks():
    model = tiny_model()
    table = kt.describe_learning_rates(model, kt.differential_optimizer(model, learning_rates=slice(1e-4, 1.0)))
    np.testing.assert_allclose(table.learning_rate, [1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-6)
    kt.unfreeze(model, from_block="block2")
    table = kt.describe_learning_rates(model, kt.differential_optimizer(model, learning_rates=slice(0.01, 1.0)))
    np.testing.assert_allclose(table.learning_rate[2:], [0.01, 0.1, 1.0], rtol=1e-6)
    table = kt.describe_learning_rates(model, kt.differential_optimizer(model, learning_rates=slice(0.5)))
    assert table.learning_rate.tolist()[2:] == [0.05, 0.05, 0.5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rates": {"block9": 1e-3}},
         r"block9.*Valid block names: \['stem', 'block1', 'block2', 'top', 'head'\]"),
        ({"head_lr": -0.1}, r"`head_lr` must be a positive number. Received: head_lr=-0.1"),
        ({"learning_rates": {"head": -1.0}}, r"learning_rates\['head'\].*Received.*-1.0"),
        ({"layer_decay": 0}, r"`layer_decay` must be a number in \(0, 1\]. Received: layer_decay=0"),
        ({"layer_decay": 1.5}, r"Received: layer_decay=1.5"),
        ({"learning_rates": slice(1e-5, 1e-3), "layer_decay": 0.8}, r"slice.*layer_decay=0.8"),
        ({"learning_rates": slice(1e-5, 1e-3), "backbone_lr": 1e-5}, r"slice.*backbone_lr=1e-05"),
        ({"learning_rates": slice(1e-3, 1e-5)}, r"start <= stop"),
        ({"learning_rates": [1e-3]}, r"Received: learning_rates=\[0.001\]"),
        ({"learning_rates": {"top": 0.1, "top_dense/.*": 0.2}}, r"'top_dense/kernel'.*two `learning_rates` keys"),
        ({"optimizer": "adamx"}, r"Received: optimizer='adamx'. Valid names: \[.*'adamw'.*'sgd'"),
        ({"learning_rate": 0.1}, r"not `learning_rate`"),
        ({"warmup_steps": -1}, r"Received: warmup_steps=-1"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kt.differential_optimizer(tiny_model(), **kwargs)


def test_a_model_with_nothing_to_train_is_refused():
    model = tiny_model()
    model.trainable = False
    with pytest.raises(ValueError, match="no trainable variables"):
        kt.differential_optimizer(model)


def test_optimizer_by_class_or_template_instance():
    model = tiny_model()
    by_class = kt.differential_optimizer(model, optimizer=keras.optimizers.Lion, beta_1=0.8)
    assert {type(o) for o in by_class.optimizers} == {keras.optimizers.Lion}
    assert by_class.optimizers[0].beta_1 == 0.8
    template = kt.differential_optimizer(model, optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    assert [o.momentum for o in template.optimizers] == [0.9, 0.9]
    assert sorted(current_learning_rates(template)) == [1e-4, 1e-3]


def test_weight_decay_is_scaled_by_each_group_rate_and_kept_off_biases():
    model = tiny_model()
    optimizer = kt.differential_optimizer(model, head_lr=0.2, backbone_lr=0.1, optimizer="sgd", weight_decay=0.5)
    before = weights_of(model)
    fit_one_step(model, optimizer)
    assert_sgd_step(before, weights_of(model), [0.1] * 4 + [0.2], weight_decay=0.5)


def test_global_clipnorm_clips_over_all_groups_together():
    model = tiny_model()
    optimizer = kt.differential_optimizer(model, head_lr=0.2, backbone_lr=0.1, optimizer="sgd", global_clipnorm=0.01)
    before = weights_of(model)
    fit_one_step(model, optimizer)
    grads = mse_gradients(before)
    norm = math.sqrt(sum(float((g**2).sum()) for pair in grads for g in pair))
    assert norm > 0.01
    for (kernel, bias), (gk, gb), new, rate in zip(before, grads, weights_of(model), [0.1] * 4 + [0.2]):
        np.testing.assert_allclose(new[0], kernel - rate * gk * 0.01 / norm, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(new[1], bias - rate * gb * 0.01 / norm, rtol=1e-5, atol=1e-7)


def test_warmup_then_cosine_decay_around_each_group_peak():
    model = tiny_model()
    optimizer = kt.differential_optimizer(model, head_lr=0.4, backbone_lr=0.1, warmup_steps=2, decay_steps=4)
    assert kt.describe_learning_rates(model, optimizer).learning_rate.tolist() == [0.1] * 4 + [0.4]
    for inner in optimizer.optimizers:
        schedule = inner._learning_rate
        assert isinstance(schedule, ScaledSchedule)
        peak = schedule.peak
        values = [float(schedule(step)) for step in (0, 1, 2, 4, 6)]
        np.testing.assert_allclose(values, [0.0, peak / 2, peak, peak / 2, 0.0], atol=1e-7)


def test_scaling_a_schedule_takes_effect_inside_the_compiled_step():
    model = tiny_model()
    optimizer = kt.differential_optimizer(model, head_lr=0.2, backbone_lr=0.1, optimizer="sgd", decay_steps=1000)
    fit_one_step(model, optimizer)
    assert kt.scale_learning_rates(model.optimizer, 0.5) == pytest.approx(
        [0.1 * (1 + math.cos(math.pi / 1000)) / 2 * 0.5 * f for f in (2, 1)], rel=1e-6
    )
    before = weights_of(model)
    model.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    decayed = (1 + math.cos(math.pi / 1000)) / 2
    assert_sgd_step(before, weights_of(model), [0.05 * decayed] * 4 + [0.1 * decayed])
    assert kt.describe_learning_rates(model).learning_rate.tolist() == [0.05] * 4 + [0.1]


def test_scale_learning_rates_refuses_a_schedule_it_cannot_scale():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    with pytest.raises(ValueError, match="ExponentialDecay, which has no multiplier"):
        kt.scale_learning_rates(keras.optimizers.SGD(schedule), 0.5)
    with pytest.raises(ValueError, match="Received: factor=0"):
        kt.scale_learning_rates(keras.optimizers.SGD(0.1), 0)


def test_save_and_load_keep_rates_and_state_and_training_resumes_identically(tmp_path):
    model = kt.unfreeze(tiny_model(), from_block="block1")
    optimizer = kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="adamw",
                                          weight_decay=0.3, warmup_steps=2, decay_steps=10)
    fit_one_step(model, optimizer)
    kt.scale_learning_rates(model.optimizer, 0.5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, DifferentialOptimizer)
    assert kt.describe_learning_rates(loaded).equals(kt.describe_learning_rates(model))
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for m in (model, loaded):
        m.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    for a, b in zip(weights_of(model), weights_of(loaded)):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


def test_optimizer_config_round_trip_keeps_groups_and_clipnorm():
    model = tiny_model()
    optimizer = kt.differential_optimizer(model, head_lr=0.2, layer_decay=0.5, global_clipnorm=1.0, warmup_steps=3)
    kt.scale_learning_rates(optimizer, 0.25)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, DifferentialOptimizer) and clone.global_clipnorm == 1.0
    assert kt.describe_learning_rates(model, clone).equals(kt.describe_learning_rates(model, optimizer))
    # Each ScaledSchedule multiplier is optimizer state, after a round trip too.
    assert len(clone.variables) == len(optimizer.variables) == 2 + 5 + 5 * 1


def test_reduce_lr_on_plateau_scales_every_group_and_keeps_ratios():
    model = kt.unfreeze(tiny_model(), from_block="block2")
    model.compile(kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd"), loss="mse")
    # A huge min_delta: no epoch after the first counts as an improvement.
    callback = kt.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9)
    history = model.fit(X, Y, epochs=3, verbose=0, callbacks=[callback])
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05]
    assert kt.describe_learning_rates(model).learning_rate.tolist()[2:] == [0.00625, 0.0125, 0.025]


def test_reduce_lr_on_plateau_floors_the_highest_rate_at_min_lr():
    model = kt.unfreeze(tiny_model(), from_block="block2")
    model.compile(kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd"), loss="mse")
    callback = kt.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=1e9, min_lr=0.05)
    model.fit(X, Y, epochs=4, verbose=0, callbacks=[callback])
    assert kt.describe_learning_rates(model).learning_rate.tolist()[2:] == [0.0125, 0.025, 0.05]


def test_learning_rate_scheduler_with_a_function_of_epoch_keeps_ratios():
    model = kt.unfreeze(tiny_model(), from_block="block2")
    model.compile(kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd"), loss="mse")
    callback = kt.LearningRateScheduler(lambda epoch: 0.2 * 0.5**epoch)
    history = model.fit(X, Y, epochs=3, verbose=0, callbacks=[callback])
    assert history.history["learning_rate"] == [0.2, 0.1, 0.05]
    assert kt.describe_learning_rates(model).learning_rate.tolist()[2:] == [0.0125, 0.025, 0.05]


def test_learning_rate_scheduler_with_a_plain_optimizer_and_two_arguments():
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(X, Y, epochs=2, verbose=0, callbacks=[kt.LearningRateScheduler(lambda e, lr: lr * 0.5)])
    assert history.history["learning_rate"] == [0.05, 0.025]
    with pytest.raises(ValueError, match="must return a positive float. Received: 'x'"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[kt.LearningRateScheduler(lambda e: "x")])


def test_rate_callbacks_with_verbose_1_say_each_change(capsys):
    # Both used to raise AttributeError (keras.utils has no io_utils) at the first change.
    model = kt.unfreeze(tiny_model(), from_block="block2")
    model.compile(kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd"), loss="mse")
    callbacks = [kt.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9, verbose=1),
                 kt.LearningRateScheduler(lambda epoch, lr: lr, verbose=1)]
    model.fit(X, Y, epochs=2, verbose=0, callbacks=callbacks)
    out = capsys.readouterr().out
    assert "Epoch 1: LearningRateScheduler setting the highest learning rate to 0.1." in out
    assert "Epoch 2: ReduceLROnPlateau scaling every learning rate by 0.5 (highest now 0.05)." in out


@pytest.fixture
def dtype_policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision(dtype_policy):
    model = kt.unfreeze(tiny_model(), from_block="block2")
    optimizer = kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd")
    before = weights_of(model)
    # Small inputs keep float16 gradients, times the initial loss scale 2**15, finite,
    # so the LossScaleOptimizer does not skip the step.
    fit_one_step(model, optimizer, X / 8, Y / 8)
    if dtype_policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.inner_optimizer is optimizer
    grads = mse_gradients(before, X / 8, Y / 8)
    for (kernel, _), (gk, _), new, rate in zip(before, grads, weights_of(model), [0.0, 0.0, 0.025, 0.05, 0.1]):
        np.testing.assert_allclose(new[0], kernel - rate * gk, atol=2e-2 * rate + 1e-7)
        if rate == 0:
            np.testing.assert_array_equal(new[0], kernel)
    assert kt.describe_learning_rates(model).learning_rate.tolist()[2:] == [0.025, 0.05, 0.1]
    callback = kt.LearningRateScheduler(lambda epoch: 0.01)
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    assert kt.describe_learning_rates(model).learning_rate.tolist()[2:] == pytest.approx([0.0025, 0.005, 0.01])

