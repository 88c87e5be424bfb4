"""The learning-rate finder: what it leaves behind, what it sweeps, and what it suggests.

Most tests use least squares on a linear model, `loss = mean((x @ w - y)**2)`,
whose Hessian is `2 * x.T @ x / n`. With `x.T @ x / n = s2 * I` (orthogonal
columns), every direction has curvature `h = 2 * s2`, so plain SGD contracts
the error by `1 - lr * h` per step: the best constant rate is `1 / h` (one
step to the minimum) and rates above `2 / h` diverge.
"""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.lr_finder import LRFinderResult, lr_find
from keras_transfer.optimizers import ScaledSchedule, current_learning_rates

pytestmark = pytest.mark.core


def orthogonal_inputs(n, d, s2, seed=0):
    """`n x d` inputs with `x.T @ x / n == s2 * I` exactly (up to float32)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, d)))
    return (q * np.sqrt(n * s2)).astype("float32")


def regression(d=4, s2=5.0, n=32, batch_size=8, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = orthogonal_inputs(n, d, s2, seed)
    y = x @ rng.normal(size=(d, 1)).astype("float32") + noise * rng.normal(size=(n, 1)).astype("float32")
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def linear_model(d=4, name="linear", use_bias=True):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(1, use_bias=use_bias, name=f"{name}_dense")],
                            name=name)


def two_layer_model():
    """`Input(4) -> Dense(3) -> Dense(1)`: two layers, so two rate groups."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))


def two_group_optimizer(optimizer="adam", **kwargs):
    return kt.DifferentialOptimizer(keras.optimizers.OptimizerMap(
        keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": 0.001, **kwargs}}),
        {"out/.*": keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": 0.01, **kwargs}})}))


def values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def assert_all_equal(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def tiny_mobilenet_classifier():
    backbone = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    return kt.unfreeze(kt.build_classifier(backbone, 2), top_blocks=2)


# --- what it leaves behind ---------------------------------------------------------------------------------------


def test_a_trained_model_and_optimizer_come_back_exactly():
    model = two_layer_model()
    model.compile(two_group_optimizer("adam"), loss="mse")
    batches = regression()
    model.fit(batches[0][0], batches[0][1], epochs=3, verbose=0)  # nonzero moments and step counters
    weights, state = values(model.variables), values(model.optimizer.variables)

    result = lr_find(model, batches, num_steps=20, verbose=0)

    assert len(result.table) > 5
    assert_all_equal(weights, values(model.variables))
    assert_all_equal(state, values(model.optimizer.variables))
    assert int(model.optimizer.iterations) == 3
    assert model.stop_training is False


def test_an_unbuilt_optimizer_comes_back_freshly_built():
    model = linear_model()
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    twin = linear_model(name="twin")
    twin.set_weights(model.get_weights())
    fresh = keras.optimizers.Adam(0.01)
    fresh.build(twin.trainable_variables)
    weights = values(model.variables)
    assert not model.optimizer.built

    lr_find(model, regression(), num_steps=10, verbose=0)

    assert model.optimizer.built
    assert_all_equal(weights, values(model.variables))
    assert_all_equal(values(fresh.variables), values(model.optimizer.variables))
    assert [float(np.abs(v).sum()) for v in values(model.optimizer.variables)[2:]] == [0.0] * 4  # moments


def test_a_loss_scale_optimizer_around_a_multi_optimizer_comes_back_exactly():
    model = two_layer_model()
    model.compile(keras.optimizers.LossScaleOptimizer(two_group_optimizer("sgd", momentum=0.9)), loss="mse")
    batches = regression()
    model.fit(*batches[0], epochs=2, verbose=0)
    weights, state = values(model.variables), values(model.optimizer.variables)

    result = lr_find(model, batches, min_lr=1e-4, max_lr=1.0, num_steps=8, verbose=0)

    assert len(result.table) == 8
    assert_all_equal(weights, values(model.variables))
    assert_all_equal(state, values(model.optimizer.variables))


@pytest.mark.filterwarnings("ignore:keras_transfer has no block spec")
def test_a_warmup_schedule_is_swept_at_its_peak_and_put_back():
    """With 1000 warmup steps the rate would be ~0 during the sweep; it is held at its peak instead."""
    model = two_layer_model()
    optimizer = kt.differential_optimizer(model, learning_rates={"hidden/.*": 1e-4, "out/.*": 1e-3},
                                          optimizer="sgd", warmup_steps=1000)
    model.compile(optimizer, loss="mse")
    twin = two_layer_model()
    twin.set_weights(model.get_weights())
    twin.compile(kt.differential_optimizer(twin, learning_rates={"hidden/.*": 1e-4, "out/.*": 1e-3},
                                           optimizer="sgd", warmup_steps=1000), loss="mse")
    schedules = [inner._learning_rate.schedule for inner in optimizer.optimizers]
    batches = regression()

    result = lr_find(model, batches, min_lr=1e-3, max_lr=1e-1, num_steps=5, verbose=0)

    np.testing.assert_allclose(result.table["learning_rate"], [1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1], rtol=1e-6)
    np.testing.assert_allclose(result.table["lr_group_1"], result.table["learning_rate"] / 10, rtol=1e-5)
    assert result.scale == pytest.approx(result.suggestion / 1e-3)
    assert [inner._learning_rate.schedule for inner in optimizer.optimizers] == schedules
    assert all(isinstance(inner._learning_rate, ScaledSchedule) for inner in optimizer.optimizers)
    assert current_learning_rates(optimizer) == [0.0, 0.0]  # warmup starts from 0 again
    # Training afterwards follows the warmup schedule, as if no sweep had run. (Not bit for bit: on JAX two
    # separately compiled twins differ in the last bits even without a sweep.) Held at its peak, the
    # rate would be 1000x the warmup's and the weights far apart.
    model.fit(*batches[0], epochs=3, verbose=0)
    twin.fit(*batches[0], epochs=3, verbose=0)
    for a, b in zip(values(twin.trainable_variables), values(model.trainable_variables)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


# --- what it sweeps ----------------------------------------------------------------------------------------------


def test_layer_decay_groups_keep_their_ratios_at_every_step():
    """A linear chain backbone (stem, block1, block2, top) and a head, layer decay 0.5: five rate groups."""
    inputs = keras.Input((2,))
    x = inputs
    for name in ("stem_dense", "block1_dense", "block2_dense", "top_dense"):
        x = keras.layers.Dense(2, name=name)(x)
    backbone = keras.Model(inputs, x, name="demo_convnet")
    outer = keras.Input((2,))
    model = keras.Model(outer, keras.layers.Dense(1, name="head_logits")(backbone(outer)))
    optimizer = kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd", momentum=0.9)
    model.compile(optimizer, loss="mse")
    ratios = np.array(current_learning_rates(optimizer)) / max(current_learning_rates(optimizer))
    optimizer.build(model.trainable_variables)
    weights, state = values(model.variables), values(optimizer.variables)
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(8, 2)).astype("float32"), rng.normal(size=(8, 1)).astype("float32"))]

    table = lr_find(model, batches, min_lr=1e-4, max_lr=1.0, num_steps=9, stop_factor=1e9, verbose=0).table

    assert sorted(ratios) == [0.0625, 0.125, 0.25, 0.5, 1.0]  # 0.5 per block from the head down
    np.testing.assert_allclose(table["learning_rate"], 10.0 ** np.arange(-4, 0.01, 0.5), rtol=1e-6)
    group_rates = table[[f"lr_group_{i}" for i in range(5)]].to_numpy()
    np.testing.assert_allclose(group_rates / table["learning_rate"].to_numpy()[:, None],
                               np.tile(ratios, (9, 1)), rtol=1e-6)
    assert_all_equal(weights, values(model.variables))
    assert_all_equal(state, values(optimizer.variables))


@pytest.mark.slow
def test_a_mobilenet_with_layer_decay_keeps_its_ratios_and_comes_back_exactly():
    """A tiny MobileNetV2, top 2 blocks unfrozen, layer decay 0.5: three rate groups (head, block_16, block_15)."""
    model = tiny_mobilenet_classifier()
    optimizer = kt.differential_optimizer(model, head_lr=1e-3, layer_decay=0.5)
    model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, 32, 32, 3)).astype("float32"), np.array([0, 1, 0, 1])) for _ in range(2)]
    model.train_on_batch(*batches[0])  # nonzero moments and step counters
    weights, state = values(model.variables), values(optimizer.variables)
    ratios = np.array(current_learning_rates(optimizer)) / max(current_learning_rates(optimizer))

    table = lr_find(model, batches, min_lr=1e-6, max_lr=1e-2, num_steps=5, verbose=0).table

    assert list(ratios) == [1.0, 0.5, 0.25]  # layer decay 0.5 from the head down
    assert list(table.columns) == [
        "step", "learning_rate", "lr_group_0", "lr_group_1", "lr_group_2", "loss", "smoothed_loss"]
    np.testing.assert_allclose(table["learning_rate"], [1e-6, 1e-5, 1e-4, 1e-3, 1e-2], rtol=1e-6)
    group_rates = table[["lr_group_0", "lr_group_1", "lr_group_2"]].to_numpy()
    np.testing.assert_allclose(group_rates / table["learning_rate"].to_numpy()[:, None],
                               np.tile(ratios, (5, 1)), rtol=1e-5)
    assert_all_equal(weights, values(model.variables))
    assert_all_equal(state, values(optimizer.variables))


def test_losses_are_the_batches_losses_and_smoothing_is_the_debiased_average():
    """A rate of 1e-12 leaves the weights where they are, so each loss is the batch's loss at the start."""
    model = linear_model()
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    batches = regression(n=16, batch_size=8)
    expected = [float(np.mean((model.predict(x, verbose=0) - y) ** 2)) for x, y in batches] * 3

    table = lr_find(model, batches, min_lr=1e-13, max_lr=1e-12, num_steps=5, beta=0.5, verbose=0).table

    np.testing.assert_allclose(table["loss"], expected[:5], rtol=1e-5)  # the 2 batches, repeated
    average, smoothed = 0.0, []
    for t, loss in enumerate(table["loss"]):
        average = 0.5 * average + 0.5 * loss
        smoothed.append(average / (1 - 0.5 ** (t + 1)))
    np.testing.assert_allclose(table["smoothed_loss"], smoothed, rtol=1e-12)


def test_divergence_stops_the_sweep_only_above_the_stability_bound():
    """One full batch, no bias, h = 2 * s2 = 10: the loss can only grow once the rate exceeds 2 / h = 0.2.

    (It grows visibly a few steps later: the rates below 0.2 have shrunk the error to rounding level.)
    """
    model = linear_model(use_bias=False)
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    batches = regression(n=8, batch_size=8)

    table = lr_find(model, batches, min_lr=1e-4, max_lr=100.0, num_steps=50, verbose=0).table

    assert len(table) < 50
    last = table.iloc[-1]
    assert last["smoothed_loss"] > 4 * table["smoothed_loss"].min() or not np.isfinite(last["smoothed_loss"])
    below = table[table["learning_rate"] < 0.2]["loss"].to_numpy()
    assert np.all(np.diff(below) <= 0)
    assert last["learning_rate"] > 0.2


def test_a_one_shot_iterator_ends_the_sweep_when_it_ends():
    model = linear_model()
    model.compile(keras.optimizers.SGD(0.01), loss="mse")

    table = lr_find(model, iter(regression()), num_steps=10, verbose=0).table

    assert len(table) == 4


# --- what it suggests --------------------------------------------------------------------------------------------


def test_suggestions_on_a_quadratic_whose_best_rate_is_known():
    """Noisy least squares with curvature h = 10 in every direction: the best constant SGD rate is 1/h = 0.1.

    The inputs are 16-dimensional with `x.T @ x / n = 5 I` over the whole set (mini-batches of 16 only
    approximately), targets carry noise, and the sweep runs fastai's defaults (1e-7 to 10 in 100 steps).
    The sweep trains as it goes: by the time the rate reaches `r`, the rates before it have added up to
    about `r / (1 - 1/1.2) = 6 r`, so the loss falls at rates near `1 / (6 h)` and is at its floor before
    `1 / h`; the smoothed loss, which lags about 50 steps, keeps falling until the raw loss grows again
    past the stability bound `2 / h`. So the lowest smoothed loss sits between `1 / h` and `10 / h`, the
    "minimum" rule (a tenth of it) between `1 / (10 h)` and `1 / h`, and the valley, halfway along the
    longest decreasing stretch, which also reaches back into the noisy plateau, is below `1 / h` too:
    conservative, as fastai intends. (Over seeds 0-4 on both backends the valley ranged over 0.02-0.18 / h
    and the minimum rule over 0.17-0.20 / h: the valley is the less stable of the two here.)
    """
    best = 0.1
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    batches = regression(d=16, s2=5.0, n=1600, batch_size=16, noise=0.1)

    result = lr_find(model, batches, verbose=0)

    assert result.rule == "valley" and result.suggestion == result.suggestions["valley"]
    rate_at_lowest = result.table["learning_rate"][result.table["smoothed_loss"].idxmin()]
    assert best < rate_at_lowest < 10 * best
    assert best / 10 < result.suggestions["minimum"] < best
    assert best / 100 < result.suggestions["valley"] < best
    assert result.scale == pytest.approx(result.suggestion / 0.01)


def test_the_rules_on_a_hand_made_curve():
    """The three rules read a known smoothed curve: flat, then falling, then blowing up."""
    from keras_transfer.lr_finder import _suggest
    import pandas as pd

    rates = 10.0 ** np.arange(-6, 1, 0.25)  # 28 rates, 1e-6 .. 10**0.75
    falling = [4.8, 4.5, 4.0, 2.5, 2.0, 1.6, 1.4, 1.2, 1.1, 1.05, 1.0]  # steps 8 .. 18
    losses = np.r_[[5.0] * 8, falling, [1.5, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0, 384.0]]
    table = pd.DataFrame({"learning_rate": rates, "smoothed_loss": losses})

    suggestions = _suggest(table, num_steps=20)  # the window drops the first 2 and the last 5 steps

    # Valley: the longest strictly decreasing run is 5.0 (step 7) .. 1.0 (step 18): its halfway point is step 12.
    assert suggestions["valley"] == pytest.approx(rates[12])
    # Steepest: the biggest drop per log-rate, 4.0 (step 10) -> 2.5; the rate where it starts.
    assert suggestions["steepest"] == pytest.approx(rates[10])
    # Minimum: 1.0 first at step 18, a tenth of its rate.
    assert suggestions["minimum"] == pytest.approx(rates[18] / 10)


def test_other_rules_and_the_plot():
    model = linear_model()
    model.compile(keras.optimizers.SGD(0.01), loss="mse")

    result = lr_find(model, regression(noise=0.1), min_lr=1e-4, max_lr=10.0, num_steps=30, suggest="minimum",
                     verbose=0)
    figure = result.plot()

    assert isinstance(result, LRFinderResult)
    assert result.rule == "minimum" and result.suggestion == result.suggestions["minimum"]
    assert set(result.suggestions) == {"valley", "steepest", "minimum"}
    import matplotlib.figure

    assert isinstance(figure, matplotlib.figure.Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [result.suggestion]


def test_verbose_shows_a_progress_bar(capsys):
    model = linear_model()
    model.compile(keras.optimizers.SGD(0.01), loss="mse")

    one_batch = regression(n=8, batch_size=8)  # h = 10: no divergence below 0.2
    lr_find(model, one_batch, min_lr=1e-4, max_lr=1e-2, num_steps=6, verbose=0)
    assert capsys.readouterr().out == ""
    lr_find(model, one_batch, min_lr=1e-4, max_lr=1e-2, num_steps=6, verbose=1)
    out = capsys.readouterr().out
    assert "6/6" in out and "learning_rate" in out
    # A sweep that diverges early ends its bar at the step it stopped at.
    table = lr_find(model, one_batch, min_lr=1.0, max_lr=1e6, num_steps=6, verbose=1).table
    out = capsys.readouterr().out
    assert len(table) < 6 and f"{len(table)}/6" in out and "6/6" not in out


# --- bad arguments -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_lr=0.0), "`min_lr` must be a positive number. Received: min_lr=0.0"),
    (dict(min_lr="1e-3"), "`min_lr` must be a positive number. Received: min_lr='1e-3'"),
    (dict(max_lr=-1.0), "`max_lr` must be a positive number. Received: max_lr=-1.0"),
    (dict(max_lr=float("inf")), "`max_lr` must be a positive number. Received: max_lr=inf"),
    (dict(min_lr=1.0, max_lr=0.1), "`min_lr` must be less than `max_lr`. Received: min_lr=1.0, max_lr=0.1"),
    (dict(num_steps=4), "`num_steps` must be an integer >= 5. Received: num_steps=4"),
    (dict(num_steps=10.0), "`num_steps` must be an integer >= 5. Received: num_steps=10.0"),
    (dict(num_steps=True), "`num_steps` must be an integer >= 5. Received: num_steps=True"),
    (dict(stop_factor=1.0), "`stop_factor` must be a number > 1. Received: stop_factor=1.0"),
    (dict(beta=1.0), "`beta` must be a number in [0, 1). Received: beta=1.0"),
    (dict(beta=-0.1), "`beta` must be a number in [0, 1). Received: beta=-0.1"),
    (dict(suggest="best"), "Unknown `suggest`. Received: suggest='best'. Valid rules: ['valley', 'steepest', "
                           "'minimum']"),
    (dict(verbose="loud"), "`verbose` must be 0, 1, 2 or 'auto'. Received: verbose='loud'"),
])
def test_bad_arguments_are_named_with_their_values(kwargs, message):
    model = linear_model()
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    with pytest.raises(ValueError) as error:
        lr_find(model, regression(), **kwargs)
    assert str(error.value) == message


def test_a_model_that_is_not_compiled_or_data_that_is_empty_is_refused():
    model = linear_model()
    with pytest.raises(ValueError, match=r"`model` must be compiled .* Received: model='linear'"):
        lr_find(model, regression())
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model. Received: model='linear'"):
        lr_find("linear", regression())
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    with pytest.raises(ValueError, match="`train_ds` is empty"):
        lr_find(model, [])
    x, y = regression()[0]
    with pytest.raises(ValueError, match="`train_ds` must be an iterable of batches .* not arrays"):
        lr_find(model, (x, y))
    with pytest.raises(ValueError, match="`train_ds` must be an iterable of"):
        lr_find(model, 3)


# --- real data -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.large
def test_the_head_rate_for_ants_and_bees_on_cached_imagenet_features(mobilenet_weights, hymenoptera_dir):
    """The head of an ImageNet MobileNetV2 on cached ants/bees features, with Adam, as `fine_tune`'s head phase.

    Measured: the valley at ~7e-3 (fastai's usual head range), the loss blowing up past ~1.
    """
    from keras_transfer.workflow import _head_submodel

    backbone = kt.get_backbone("mobilenet_v2", weights=str(mobilenet_weights), input_shape=(160, 160, 3),
                               pooling=None)
    train_ds = kt.data.from_directory(hymenoptera_dir / "train", image_size=(160, 160), batch_size=32,
                                      preprocess=backbone.preprocess, shuffle=True, seed=0)
    model = kt.build_classifier(backbone.model, 2)
    feature_model, head = _head_submodel(model)
    cached = kt.cache_features(feature_model, train_ds, verbose=0)
    head.compile(kt.differential_optimizer(model, head_lr=1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    weights = values(head.variables)

    result = lr_find(head, cached, verbose=0)

    assert 1e-4 < result.suggestion < 1e-1
    assert result.scale == pytest.approx(result.suggestion / 1e-3)
    assert len(result.table) < 100  # it diverged before 10
    assert_all_equal(weights, values(head.variables))
