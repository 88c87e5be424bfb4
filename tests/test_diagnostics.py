"""Transfer diagnostics on hand-built backbones whose right answers are known by construction.

The backbones are chains of bias-free Dense blocks named like the demo family
(`stem`, `block1`, `block2`, `top`), with kernels set by hand: identity blocks
pass the label information on, a zero block destroys it, and a ReLU top block
creates features a linear probe needs (XOR).
"""

import os
import pathlib

import keras
import numpy as np
import pandas as pd
import pytest

import keras_transfer as kt

EYE = np.eye(4)
ZEROS = np.zeros((4, 4))
# relu(x0 + x1), relu(-x0 - x1), relu(x0 - x1), relu(x1 - x0): XOR of the signs becomes linear.
XOR_TOP = np.array([[1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]])


def chain(*kernels, top_activation=None, input_shape=None):
    """`demo_convnet`-named backbone of Dense blocks stem, block1, ..., top with the given kernels."""
    names = ["stem"] + [f"block{i}" for i in range(1, len(kernels) - 1)] + ["top"]
    inputs = keras.Input(input_shape or (kernels[0].shape[0],))
    x = inputs
    for name, kernel in zip(names, kernels):
        activation = top_activation if name == "top" else None
        x = keras.layers.Dense(kernel.shape[1], use_bias=False, activation=activation, name=f"{name}_dense")(x)
    model = keras.Model(inputs, x, name="demo_convnet")
    for name, kernel in zip(names, kernels):
        model.get_layer(f"{name}_dense").set_weights([kernel])
    return model


def low_level_task(n, seed):
    """Label in input feature 0 (a clean ±1 plus noise); features 1..3 are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 4))
    x[:, 0] = 2 * y - 1 + 0.2 * rng.normal(size=n)
    return x.astype("float32"), y


def xor_task(n, seed):
    """Label = sign(x0) XOR sign(x1): no linear probe on the inputs can read it."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, size=(n, 2)) * rng.choice([-1, 1], size=(n, 2))
    return x.astype("float32"), (x[:, 0] * x[:, 1] > 0).astype("int64")


def split(data, n_train):
    x, y = data
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


# --- probe_blocks ------------------------------------------------------------------


@pytest.mark.core
def test_probe_accuracy_falls_exactly_to_chance_after_a_block_that_destroys_the_label():
    backbone = chain(EYE, EYE, ZEROS, EYE)
    train, val = split(low_level_task(200, seed=0), 100)
    table = kt.probe_blocks(backbone, train, val, verbose=0)
    assert list(table.columns) == [
        "block", "depth", "blocks_above", "feature_dim", "params", "train_accuracy", "probe_accuracy"
    ]
    assert table.block.tolist() == ["stem", "block1", "block2", "top"]
    assert table.depth.tolist() == [0, 1, 2, 3]
    assert table.blocks_above.tolist() == [3, 2, 1, 0]
    assert table.feature_dim.tolist() == [4, 4, 4, 4]
    assert table.params.tolist() == [16, 16, 16, 16]
    # Feature 0 separates the classes (|noise| < 1 on these draws); after the zero
    # block every score is the class prior 0.5/0.5 and argmax picks class 0 = half.
    assert table.train_accuracy.tolist() == [1.0, 1.0, 0.5, 0.5]
    assert table.probe_accuracy.tolist() == [1.0, 1.0, 0.5, 0.5]
    assert table.attrs["backbone_blocks"] == ["stem", "block1", "block2", "top"]


@pytest.mark.core
def test_probe_finds_the_xor_only_after_the_relu_top_block():
    backbone = chain(np.eye(2), np.eye(2), np.eye(2), XOR_TOP, top_activation="relu")
    train, val = split(xor_task(300, seed=1), 150)
    table = kt.probe_blocks(backbone, train, val, verbose=0)
    assert table.feature_dim.tolist() == [2, 2, 2, 4]
    assert table.probe_accuracy.iloc[:3].max() < 0.65
    assert table.probe_accuracy.iloc[3] >= 0.9


@pytest.mark.core
def test_probe_skips_the_head_of_a_classifier_and_matches_its_backbone():
    backbone = chain(EYE, EYE, ZEROS, EYE)
    train, val = split(low_level_task(120, seed=2), 60)
    classifier = kt.build_classifier(backbone, num_classes=2)
    pd.testing.assert_frame_equal(
        kt.probe_blocks(classifier, train, val, verbose=0), kt.probe_blocks(backbone, train, val, verbose=0)
    )


@pytest.mark.core
def test_probe_a_subset_of_blocks_keeps_their_depths():
    train, val = split(low_level_task(120, seed=3), 60)
    table = kt.probe_blocks(chain(EYE, EYE, ZEROS, EYE), train, val, blocks=["top", "block1"], verbose=0)
    assert table.block.tolist() == ["block1", "top"]
    assert table.depth.tolist() == [1, 3]
    suggestion = kt.suggest_unfreeze(table)
    # Peak at block1 -> everything above it, including the unprobed block2, unfreezes.
    assert (suggestion.top_blocks, suggestion.from_block) == (2, "block2")


@pytest.mark.core
def test_probe_pools_feature_maps_of_an_image_backbone():
    from keras_transfer import demo

    x, y = demo.make_shapes(("disk", "square"), per_class=6, seed=0)
    table = kt.probe_blocks(demo.build_demo_backbone(), (x[::2], y[::2]), (x[1::2], y[1::2]), verbose=0)
    assert table.block.tolist() == ["stem", "block1", "block2", "block3", "top"]
    assert table.feature_dim.tolist() == [24, 32, 64, 96, 128]


def test_probe_on_a_reshuffling_tf_dataset_pairs_features_with_their_labels():
    import tensorflow as tf

    backbone = chain(EYE, EYE, ZEROS, EYE)
    train, val = split(low_level_task(160, seed=4), 80)
    shuffled = tf.data.Dataset.from_tensor_slices(train).shuffle(80, seed=0, reshuffle_each_iteration=True).batch(16)
    from_arrays = kt.probe_blocks(backbone, train, val, verbose=0)
    from_dataset = kt.probe_blocks(backbone, shuffled, tf.data.Dataset.from_tensor_slices(val).batch(32), verbose=0)
    pd.testing.assert_frame_equal(from_dataset, from_arrays)


@pytest.mark.core
def test_probe_max_examples_caps_each_dataset():
    train, val = split(low_level_task(120, seed=5), 60)
    table = kt.probe_blocks(chain(EYE, EYE, ZEROS, EYE), train, val, max_examples=10, verbose=0)
    assert table.probe_accuracy.iloc[0] == 1.0


def class_sorted_task(per_class, seed, classes=3):
    """Examples sorted by class; class k raises feature k by 6 (features are N(0, 1) noise otherwise)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(len(y), 4))
    x[np.arange(len(y)), y] += 6.0
    return x.astype("float32"), y


@pytest.mark.core
def test_a_probe_capped_by_max_examples_sees_every_class_of_a_class_sorted_input():
    """The first 30 of 180 class-sorted examples were all class 0: "at least 2 classes"."""
    train, val = class_sorted_task(60, seed=0), class_sorted_task(30, seed=1)
    table = kt.probe_blocks(chain(EYE, EYE, ZEROS, EYE), train, val, max_examples=30, verbose=0)
    assert table.attrs["train_class_counts"] == [10, 10, 10]
    assert table.attrs["val_class_counts"] == [10, 10, 10]
    # After the zero block every score is the prior (1/3 each) and argmax picks class 0: 10 of 30.
    assert table.probe_accuracy.tolist() == [1.0, 1.0, 1 / 3, 1 / 3]


def test_a_loader_dataset_capped_by_max_examples_gives_the_same_stratified_sample_as_its_arrays():
    """A shuffled, augmented loader dataset was read from its start: whatever its first 30 held."""
    (x, y), (val_x, val_y) = class_sorted_task(60, seed=0), class_sorted_task(30, seed=1)
    images, val = x.reshape(-1, 1, 1, 4), (val_x.reshape(-1, 1, 1, 4), val_y)
    loader = kt.data.from_arrays(images, y, batch_size=16, shuffle=True, seed=3, augment=[lambda t: t + 100.0])
    backbone = chain(EYE, EYE, ZEROS, EYE, input_shape=(1, 1, 4))
    from_arrays = kt.probe_blocks(backbone, (images, y), val, max_examples=30, verbose=0)
    from_loader = kt.probe_blocks(backbone, loader, val, max_examples=30, verbose=0)
    assert from_loader.attrs["train_class_counts"] == [10, 10, 10]
    pd.testing.assert_frame_equal(from_loader, from_arrays)
    assert from_loader.probe_accuracy.iloc[0] == 1.0  # the un-augmented images (+100 would ruin the probe)


def test_a_capped_start_of_a_class_sorted_dataset_warns():
    import tensorflow as tf

    train, val = class_sorted_task(60, seed=0), class_sorted_task(30, seed=1)
    sorted_ds = tf.data.Dataset.from_tensor_slices(train).batch(16)
    with pytest.warns(UserWarning) as caught:
        table = kt.probe_blocks(chain(EYE, EYE, ZEROS, EYE), sorted_ds, val, max_examples=80, verbose=0)
    messages = [str(w.message) for w in caught]
    assert any("`train_ds`: its first 80 examples (max_examples=80) come sorted by label" in m for m in messages)
    assert any("`val_ds` holds classes [2] that the training sample lacks" in m for m in messages)
    assert table.attrs["train_class_counts"] == [60, 20, 0]


@pytest.mark.core
def test_probe_errors_name_the_argument():
    backbone = chain(EYE, EYE, ZEROS, EYE)
    train, val = split(low_level_task(40, seed=0), 20)
    with pytest.raises(ValueError, match=r"Unknown blocks in `blocks`: \['block9'\]. Valid block names: "
                                         r"\['stem', 'block1', 'block2', 'top'\]"):
        kt.probe_blocks(backbone, train, val, blocks=["block9"])
    with pytest.raises(ValueError, match="at least 2 classes"):
        kt.probe_blocks(backbone, (train[0], np.zeros(20, "int64")), val, verbose=0)
    with pytest.raises(TypeError, match="`val_ds` must be .x, y. arrays or a dataset.*Received: val_ds=3"):
        kt.probe_blocks(backbone, train, 3, verbose=0)
    with pytest.raises(ValueError, match="as many x as y. Received: 20 x, 5 y"):
        kt.probe_blocks(backbone, (train[0], train[1][:5]), val, verbose=0)
    with pytest.raises(ValueError, match="integer class ids"):
        kt.probe_blocks(backbone, (train[0], train[1] + 0.5), val, verbose=0)
    with pytest.raises(TypeError, match="`backbone` must be a keras.Model"):
        kt.probe_blocks("resnet50", train, val)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer. Received: batch_size=0"):
        kt.probe_blocks(backbone, train, val, batch_size=0)


# --- suggest_unfreeze ----------------------------------------------------------------


@pytest.mark.core
def test_a_target_needing_high_level_features_unfreezes_fewer_blocks_than_one_needing_low_level():
    low = kt.suggest_unfreeze(chain(EYE, EYE, ZEROS, EYE), *split(low_level_task(200, 0), 100), verbose=0)
    high = kt.suggest_unfreeze(chain(np.eye(2), np.eye(2), np.eye(2), XOR_TOP, top_activation="relu"),
                               *split(xor_task(300, 1), 150), verbose=0)
    assert (low.top_blocks, low.from_block, low.peak_block) == (2, "block2", "block1")
    assert (high.top_blocks, high.from_block, high.peak_block) == (0, None, "top")
    assert high.top_blocks < low.top_blocks
    assert "peaks at 'block1'" in low.reason and "unfreeze from 'block2' (top_blocks=2)" in low.reason
    assert "trains 32 of 64" in low.reason
    assert "feature extraction" in str(high)


@pytest.mark.core
def test_a_suggestion_feeds_unfreeze_directly():
    backbone = chain(EYE, EYE, ZEROS, EYE)
    suggestion = kt.suggest_unfreeze(backbone, *split(low_level_task(200, 0), 100), verbose=0)
    classifier = kt.build_classifier(backbone, num_classes=2)
    states = kt.trainable_summary(kt.unfreeze(classifier, top_blocks=suggestion.top_blocks)).state.tolist()
    assert states == ["frozen", "frozen", "trainable", "trainable", "trainable"]
    kt.freeze(classifier)
    again = kt.trainable_summary(kt.unfreeze(classifier, from_block=suggestion.from_block)).state.tolist()
    assert again == states


@pytest.mark.core
def test_tolerance_treats_small_drops_as_a_plateau():
    table = pd.DataFrame({"block": ["stem", "block1", "block2", "top"], "depth": [0, 1, 2, 3],
                          "blocks_above": [3, 2, 1, 0], "probe_accuracy": [0.70, 0.90, 0.89, 0.86]})
    assert kt.suggest_unfreeze(table, tolerance=0.0).top_blocks == 2
    assert kt.suggest_unfreeze(table, tolerance=0.02).top_blocks == 1
    assert kt.suggest_unfreeze(table, tolerance=0.05).top_blocks == 0
    peaked_at_stem = table.assign(probe_accuracy=[0.9, 0.6, 0.6, 0.6])
    assert "check `negative_transfer`" in kt.suggest_unfreeze(peaked_at_stem).reason


def at_chance(*accuracies, val_class_counts=(50, 50), train_accuracy=None):
    """A probe table as `probe_blocks` returns it, with the validation class counts chance is read from."""
    table = RISING.assign(probe_accuracy=list(accuracies))
    if train_accuracy is not None:
        table["train_accuracy"] = train_accuracy
    table.attrs.update(backbone_blocks=RISING.block.tolist(), val_class_counts=list(val_class_counts))
    return table


@pytest.mark.core
def test_suggest_unfreeze_refuses_to_advise_when_the_probe_is_at_chance():
    """A flat curve at chance read as "keeps rising to the top block ... keep the backbone frozen"."""
    flat = kt.suggest_unfreeze(at_chance(0.50, 0.52, 0.55, 0.54, 0.53, train_accuracy=[1.0] * 5))
    assert (flat.depth_class, flat.strategy, flat.top_blocks, flat.from_block) == ("unknown", "auto", None, None)
    assert flat.fine_tune_kwargs == {"strategy": "auto", "top_blocks": None}
    assert "unknown" not in kt.diagnostics.DEPTH_CLASSES
    assert flat.reason.startswith(
        "No depth can be read from the probe: its best validation accuracy, 0.55 at 'block2' (55 of 100), is "
        "not clearly above chance, 0.50 (the largest class's share of the validation labels): one-sided exact "
        "binomial p = 0.18, and the best of 5 blocks needs p < 0.002 (0.01 / 5)."
    )
    assert "keep the backbone frozen" not in flat.reason
    assert "fits its training sample perfectly (train accuracy 1.00 at 'stem')" in flat.reason
    assert "strategy='auto'" in flat.reason
    # 100 examples at chance 0.5: P(K >= 64) = 0.0033 and P(K >= 65) = 0.0018 against 0.01 / 5.
    assert kt.suggest_unfreeze(at_chance(0.5, 0.5, 0.5, 0.5, 0.64)).depth_class == "unknown"
    assert kt.suggest_unfreeze(at_chance(0.5, 0.5, 0.5, 0.5, 0.65)).depth_class == "none"
    # The largest class sets chance: 0.75 of 100 is chance when 75 of them are one class.
    assert kt.suggest_unfreeze(at_chance(0.6, 0.7, 0.75, 0.7, 0.7, val_class_counts=(75, 25))).depth_class == \
        "unknown"


@pytest.mark.core
def test_at_chance_the_shift_is_reported_but_sets_no_depth():
    far = kt.suggest_unfreeze(at_chance(0.5, 0.5, 0.5, 0.5, 0.5), shift_table=shift_table(0.2, 0.1, 0.09, 0.1, 0.3))
    assert (far.depth_class, far.strategy, far.top_blocks, far.shift_level) == ("unknown", "auto", None, 0.1)
    assert "median block shift 0.100" in far.reason and "prunes its candidates" in far.reason


@pytest.mark.core
def test_a_probe_of_a_backbone_that_erases_the_labels_gives_no_advice():
    erased = kt.suggest_unfreeze(chain(ZEROS, EYE, EYE, EYE), *split(low_level_task(200, 0), 100), verbose=0)
    assert (erased.depth_class, erased.strategy, erased.top_blocks) == ("unknown", "auto", None)
    assert erased.table.attrs["val_class_counts"] == [50, 50]
    assert "0.50 at 'stem' (50 of 100)" in erased.reason


@pytest.mark.core
def test_suggest_unfreeze_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`tolerance` must be a number in \[0, 1\). Received: tolerance=2"):
        kt.suggest_unfreeze(pd.DataFrame(), tolerance=2)
    with pytest.raises(ValueError, match="columns.*Received columns: \\['a'\\]"):
        kt.suggest_unfreeze(pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="needs `train_ds` and `val_ds`"):
        kt.suggest_unfreeze(chain(EYE, EYE, ZEROS, EYE))


# --- bn_shift ---------------------------------------------------------------------------

EPS = 1e-3


def bn_chain(channels=3, spatial=True, epsilon=EPS):
    """`stem_bn` on the input, an identity `block1_conv`, then `block1_bn`: two BatchNorm blocks."""
    shape = (4, 4, channels) if spatial else (channels,)
    inputs = keras.Input(shape)
    x = keras.layers.BatchNormalization(epsilon=epsilon, name="stem_bn")(inputs)
    x = keras.layers.Dense(channels, use_bias=False, name="block1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=epsilon, name="block1_bn")(x)
    model = keras.Model(inputs, x, name="demo_convnet")
    model.get_layer("block1_conv").set_weights([np.eye(channels)])
    return model


def set_bn(model, name, mean, variance):
    mean, variance = np.asarray(mean, "float32"), np.asarray(variance, "float32")
    model.get_layer(name).set_weights([np.ones_like(mean), np.zeros_like(mean), mean, variance])


def exact_sample(mean, variance, n=24, seed=0, spatial=True):
    """Inputs whose per-channel sample mean and (population) variance over examples and positions are exact."""
    mean, variance = np.asarray(mean, "float64"), np.asarray(variance, "float64")
    z = np.random.default_rng(seed).normal(size=(n, 4, 4, len(mean)) if spatial else (n, len(mean)))
    axes = tuple(range(z.ndim - 1))
    z = (z - z.mean(axes)) / z.std(axes)
    return mean + np.sqrt(variance) * z


MU_S, VAR_S = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 1.0])


def matched_bn_chain():
    """`bn_chain` whose both BatchNorm layers store exactly the statistics of `exact_sample(MU_S, VAR_S)`."""
    model = bn_chain()
    set_bn(model, "stem_bn", MU_S, VAR_S)
    # stem_bn's output is (x - mu) / sqrt(var + eps): mean 0, variance var / (var + eps).
    set_bn(model, "block1_bn", np.zeros(3), VAR_S / (VAR_S + EPS))
    return model


def hand_kl(mu_t, var_t, mu_s, var_s, eps=EPS):
    """The textbook KL(N(mu_t, var_t + eps) || N(mu_s, var_s + eps)), averaged over channels."""
    p, q = var_t + eps, var_s + eps
    return float(np.mean(0.5 * (np.log(q / p) + (p + (mu_t - mu_s) ** 2) / q - 1)))


@pytest.mark.core
def test_bn_shift_is_zero_when_the_target_matches_the_stored_statistics():
    table = kt.bn_shift(matched_bn_chain(), exact_sample(MU_S, VAR_S).astype("float32"), verbose=0)
    assert list(table.columns) == ["block", "depth", "bn_layers", "shift", "mean_shift", "var_shift"]
    assert table.block.tolist() == ["stem", "block1"]
    assert table.depth.tolist() == [0, 1] and table.bn_layers.tolist() == [1, 1]
    np.testing.assert_allclose(table[["shift", "mean_shift", "var_shift"]].to_numpy(), 0.0, atol=1e-6)
    assert table.attrs["backbone_blocks"] == ["stem", "block1"]


@pytest.mark.core
def test_bn_shift_equals_the_gaussian_kl_computed_by_hand():
    model = bn_chain()
    set_bn(model, "stem_bn", MU_S, VAR_S)
    set_bn(model, "block1_bn", np.zeros(3), np.ones(3))
    mu_t, var_t = np.array([2.0, -2.0, 0.0]), np.array([9.0, 0.25, 0.5])
    table = kt.bn_shift(model, (exact_sample(mu_t, var_t).astype("float32"), np.zeros(24)), per_layer=True,
                        verbose=0)
    assert list(table.columns) == ["block", "depth", "layer", "channels", "shift", "mean_shift", "var_shift"]
    assert table.layer.tolist() == ["stem_bn", "block1_bn"] and table.channels.tolist() == [3, 3]
    stem = table.iloc[0]
    assert stem["shift"] == pytest.approx(hand_kl(mu_t, var_t, MU_S, VAR_S), rel=1e-5)
    assert stem["mean_shift"] == pytest.approx(np.mean(0.5 * (mu_t - MU_S) ** 2 / (VAR_S + EPS)), rel=1e-5)
    assert stem["shift"] == pytest.approx(stem["mean_shift"] + stem["var_shift"])
    # block1_bn sees stem_bn's output: mean (mu_t - mu_s) / sqrt(var_s + eps), variance var_t / (var_s + eps).
    scale = np.sqrt(VAR_S + EPS)
    expected = hand_kl((mu_t - MU_S) / scale, var_t / scale**2, np.zeros(3), np.ones(3))
    assert table.iloc[1]["shift"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.core
def test_bn_shift_grows_with_a_mean_offset_and_with_a_scale_change_either_way():
    model = matched_bn_chain()

    def stem_shift(offset_in_sd=0.0, scale=1.0):
        x = exact_sample(MU_S + offset_in_sd * np.sqrt(VAR_S), scale**2 * VAR_S).astype("float32")
        return kt.bn_shift(model, x, blocks=["stem"], verbose=0).iloc[0]

    offsets = [stem_shift(offset_in_sd=k) for k in (0.0, 0.5, 1.0, 2.0)]
    # A pure mean offset of k source standard deviations: k^2 / 2 (eps shrinks it slightly).
    np.testing.assert_allclose([row["mean_shift"] for row in offsets],
                               [0.5 * k**2 * np.mean(VAR_S / (VAR_S + EPS)) for k in (0.0, 0.5, 1.0, 2.0)],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([row["var_shift"] for row in offsets], 0.0, atol=1e-6)
    wider = [stem_shift(scale=s)["shift"] for s in (1.0, 1.5, 2.0, 3.0)]
    narrower = [stem_shift(scale=s)["shift"] for s in (1.0, 0.7, 0.5, 0.25)]
    for shifts in ([row["shift"] for row in offsets], wider, narrower):
        assert shifts[0] < 1e-6 and np.all(np.diff(shifts) > 0)
    r = (4 * VAR_S + EPS) / (VAR_S + EPS)
    assert wider[2] == pytest.approx(np.mean(0.5 * (r - 1 - np.log(r))), rel=1e-5)


@pytest.mark.core
def test_bn_shift_reads_features_without_positions_and_skips_blocks_without_batchnorm():
    inputs = keras.Input((2,))
    x = keras.layers.Dense(2, name="stem_dense")(inputs)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.Dense(2, name="top_dense")(x)
    model = keras.Model(inputs, x, name="demo_convnet")
    model.get_layer("stem_dense").set_weights([np.eye(2), np.zeros(2)])
    set_bn(model, "block1_bn", [0.0, 3.0], [1.0, 1.0])
    x = np.array([[1.0, 2.0], [-1.0, 4.0]] * 8, "float32")
    table = kt.bn_shift(model, x, verbose=0)
    assert table.block.tolist() == ["block1"] and table.depth.tolist() == [1]
    assert table["shift"].iloc[0] < 1e-7
    # max_examples on rows sorted by label: a class-stratified sample, one row of each kind, still
    # averages to (0, 3) with variance (1, 1); the first two rows alone have variance 0.
    class_sorted = (np.array([[1.0, 3.0]] * 8 + [[-1.0, 5.0]] * 8, "float32"), np.repeat([0, 1], 8))
    assert kt.bn_shift(model, class_sorted, max_examples=2, verbose=0)["mean_shift"].iloc[0] == \
        pytest.approx(0.5 * 0.5 / (1 + 1e-3))
    assert kt.bn_shift(model, class_sorted, max_examples=2, verbose=0)["var_shift"].iloc[0] < 1e-7


def test_bn_shift_on_a_dataset_matches_arrays():
    import tensorflow as tf

    model = matched_bn_chain()
    x = exact_sample(MU_S + 1.0, 2 * VAR_S).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(24))).batch(5)
    pd.testing.assert_frame_equal(kt.bn_shift(model, ds, verbose=0), kt.bn_shift(model, x, verbose=0),
                                  rtol=1e-6)


@pytest.mark.core
def test_bn_shift_errors_name_what_is_missing():
    x = exact_sample(MU_S, VAR_S).astype("float32")
    with pytest.raises(ValueError, match="`bn_shift` needs BatchNormalization layers.*'demo_convnet' has none in "
                                         r"blocks \['stem', 'block1', 'block2', 'top'\].*evidence='probe'"):
        kt.bn_shift(chain(EYE, EYE, ZEROS, EYE), gaussian(8, 0))
    with pytest.raises(ValueError, match="`max_examples` must be a positive integer. Received: max_examples=0"):
        kt.bn_shift(matched_bn_chain(), x, max_examples=0)
    with pytest.raises(ValueError, match=r"Unknown blocks in `blocks`: \['top'\]"):
        kt.bn_shift(matched_bn_chain(), x, blocks=["top"])
    with pytest.raises(TypeError, match="`target_ds` must be .x, y. arrays or a dataset"):
        kt.bn_shift(matched_bn_chain(), "images/", verbose=0)


# --- suggest_unfreeze with the BatchNorm shift ---------------------------------------------

RISING = pd.DataFrame({"block": ["stem", "block1", "block2", "block3", "top"], "depth": [0, 1, 2, 3, 4],
                       "blocks_above": [4, 3, 2, 1, 0], "probe_accuracy": [0.5, 0.6, 0.7, 0.8, 0.9]})


def shift_table(*values):
    return pd.DataFrame({"block": RISING.block, "depth": RISING.depth, "shift": values})


@pytest.mark.core
def test_the_shift_level_sets_the_depth_class_when_the_probe_rises_to_the_top():
    near = kt.suggest_unfreeze(RISING, shift_table=shift_table(0.1, 0.02, 0.01, 0.02, 0.3))
    moderate = kt.suggest_unfreeze(RISING, shift_table=shift_table(0.1, 0.07, 0.06, 0.07, 0.3))
    far = kt.suggest_unfreeze(RISING, shift_table=shift_table(0.2, 0.1, 0.09, 0.1, 0.3))
    # Medians 0.02, 0.07 and 0.1 against NEAR_SHIFT 0.03 and FAR_SHIFT 0.08.
    assert (near.depth_class, near.top_blocks, near.from_block, near.strategy) == \
        ("none", 0, None, "feature_extraction")
    assert (moderate.depth_class, moderate.top_blocks, moderate.from_block, moderate.strategy) == \
        ("few", 2, "block3", "fine_tune")
    assert (far.depth_class, far.top_blocks, far.from_block, far.strategy) == ("most", 5, "stem", "full")
    assert [s.shift_level for s in (near, moderate, far)] == pytest.approx([0.02, 0.07, 0.1])
    assert far.fine_tune_kwargs == {"strategy": "full", "top_blocks": 5}
    assert near.reason.startswith("Keep the backbone frozen") and "median block shift 0.020" in near.reason
    assert "close to the source's" in near.reason and "keeps rising to the top block" in near.reason
    assert "moderately far" in moderate.reason and "top_blocks=2, from 'block3'" in moderate.reason
    assert far.reason.startswith("Unfreeze most of the backbone") and "median block shift 0.100" in far.reason
    assert "highest at 'top' (0.300), lowest at 'block2' (0.090)" in far.reason
    assert "cannot see what fine-tuning gains" in far.reason
    assert "stem 0.50, block1 0.60" in far.reason


@pytest.mark.core
def test_the_deeper_of_probe_and_shift_wins():
    peaked = RISING.assign(probe_accuracy=[0.5, 0.6, 0.9, 0.7, 0.7])
    low_shift = shift_table(0.01, 0.01, 0.01, 0.01, 0.01)
    few = kt.suggest_unfreeze(peaked, shift_table=low_shift)
    assert (few.depth_class, few.top_blocks, few.from_block, few.peak_block) == ("few", 2, "block3", "block2")
    assert "peaks at 'block2' (0.90)" in few.reason and "close to the source's" in few.reason
    from_stem = kt.suggest_unfreeze(RISING.assign(probe_accuracy=[0.9, 0.6, 0.6, 0.6, 0.6]), shift_table=low_shift)
    assert (from_stem.depth_class, from_stem.top_blocks, from_stem.strategy) == ("most", 4, "fine_tune")
    # The probe's 2 blocks exceed the 'few' default, and a moderate shift keeps them.
    moderate = kt.suggest_unfreeze(peaked, shift_table=shift_table(0.07, 0.07, 0.07, 0.07, 0.07))
    assert (moderate.depth_class, moderate.top_blocks) == ("few", 2)
    far = kt.suggest_unfreeze(peaked, shift_table=shift_table(0.2, 0.2, 0.2, 0.2, 0.2))
    assert (far.depth_class, far.top_blocks, far.from_block) == ("most", 5, "stem")


@pytest.mark.core
def test_a_probe_table_alone_gives_the_old_answer_and_a_class_from_it():
    table = RISING.assign(probe_accuracy=[0.6, 0.9, 0.7, 0.65, 0.6])
    s = kt.suggest_unfreeze(table)
    assert (s.top_blocks, s.from_block, s.depth_class, s.strategy) == (3, "block2", "most", "fine_tune")
    assert s.shift is None and s.shift_level is None
    assert "from the probe alone" in s.reason
    assert kt.suggest_unfreeze(RISING).depth_class == "none"
    assert kt.suggest_unfreeze(RISING.assign(probe_accuracy=[0.6, 0.7, 0.8, 0.9, 0.8])).depth_class == "few"


def matched_dense_bn_backbone(x):
    """Identity Dense blocks with BatchNorm after each, storing exactly the statistics of `x`."""
    inputs = keras.Input((4,))
    h = inputs
    for name in ("stem", "block1", "top"):
        h = keras.layers.Dense(4, use_bias=False, name=f"{name}_dense")(h)
        h = keras.layers.BatchNormalization(epsilon=EPS, name=f"{name}_bn")(h)
    model = keras.Model(inputs, h, name="demo_convnet")
    mean, var = x.astype("float64").mean(0), x.astype("float64").var(0)
    for name in ("stem", "block1", "top"):
        model.get_layer(f"{name}_dense").set_weights([np.eye(4)])
        set_bn(model, f"{name}_bn", mean, var)
        mean, var = np.zeros(4), var / (var + EPS)
    return model


@pytest.mark.core
def test_suggest_unfreeze_measures_the_shift_of_a_batchnorm_backbone_itself():
    (train_x, train_y), val = split(low_level_task(200, 0), 100)
    backbone = matched_dense_bn_backbone(train_x)
    near = kt.suggest_unfreeze(backbone, (train_x, train_y), val, verbose=0)
    assert (near.depth_class, near.top_blocks) == ("none", 0)
    assert near.shift.block.tolist() == ["stem", "block1", "top"] and near.shift_level < 1e-6
    # Every feature moved by 3 source standard deviations: shift ~ 9/2 per channel, far.
    sd = train_x.std(0)
    far = kt.suggest_unfreeze(backbone, (train_x + 3 * sd, train_y), (val[0] + 3 * sd, val[1]), verbose=0)
    assert (far.depth_class, far.top_blocks, far.from_block, far.strategy) == ("most", 3, "stem", "full")
    var = train_x.astype("float64").var(0)
    assert far.shift["shift"].iloc[0] == pytest.approx(4.5 * np.mean(var / (var + EPS)), rel=1e-5)
    classifier = kt.build_classifier(backbone, num_classes=2)
    states = kt.trainable_summary(kt.unfreeze(classifier, top_blocks=far.top_blocks)).state.tolist()
    assert states == ["partial"] * 3 + ["trainable"]  # BatchNorm stays frozen inside trainable blocks
    probe_only = kt.suggest_unfreeze(backbone, (train_x + 3 * sd, train_y), (val[0] + 3 * sd, val[1]),
                                     evidence="probe", verbose=0)
    assert (probe_only.depth_class, probe_only.shift) == ("none", None)
    # Trained on shifted features, validated on unshifted ones: train 1.0, validation at chance, no advice
    # (this read "keep the backbone frozen" before).
    mismatched = kt.suggest_unfreeze(backbone, (train_x + 3 * sd, train_y), val, evidence="probe", verbose=0)
    assert (mismatched.depth_class, mismatched.strategy, mismatched.top_blocks) == ("unknown", "auto", None)
    assert "train accuracy 1.00 at 'stem'" in mismatched.reason


@pytest.mark.core
def test_suggest_unfreeze_shift_errors_name_the_argument():
    with pytest.raises(ValueError, match="`evidence` must be one of \\['auto', 'probe', 'bn_shift'\\]. "
                                         "Received: evidence='trial'"):
        kt.suggest_unfreeze(RISING, evidence="trial")
    with pytest.raises(ValueError, match="`shift_table` must be a non-empty table from `bn_shift`, with columns "
                                         "\\['block', 'depth', 'shift'\\]. Received columns: \\['block'\\]"):
        kt.suggest_unfreeze(RISING, shift_table=pd.DataFrame({"block": ["stem"]}))
    with pytest.raises(ValueError, match="`shift_table` goes with a probe table"):
        kt.suggest_unfreeze(chain(EYE, EYE, ZEROS, EYE), shift_table=shift_table(0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="data, `evidence` and probe arguments are only used with a backbone"):
        kt.suggest_unfreeze(RISING, evidence="probe")
    train, val = split(low_level_task(40, seed=0), 20)
    with pytest.raises(ValueError, match="`bn_shift` needs BatchNormalization layers"):
        kt.suggest_unfreeze(chain(EYE, EYE, ZEROS, EYE), train, val, evidence="bn_shift", verbose=0)


# --- domain_shift ----------------------------------------------------------------------


def gaussian(n, seed, shift=0.0):
    x = np.random.default_rng(seed).normal(size=(n, 4))
    x[:, 0] += shift
    return x.astype("float32")


@pytest.mark.core
def test_same_distribution_is_as_close_as_the_null_reference():
    table = kt.domain_shift(chain(EYE, EYE, EYE, EYE), gaussian(150, 0), gaussian(150, 1), verbose=0)
    assert list(table.columns) == ["block", "depth", "feature_dim", "mmd", "null_mmd", "p_value"]
    assert (table.p_value > 0.05).all()
    assert (table.mmd.abs() < 0.02).all() and (table.null_mmd.abs() < 0.02).all()


@pytest.mark.core
def test_a_shift_shows_in_the_blocks_that_see_it_and_vanishes_after_one_that_drops_it():
    drop_feature_0 = np.diag([0.0, 1.0, 1.0, 1.0])
    backbone = chain(EYE, EYE, drop_feature_0, EYE)
    table = kt.domain_shift(backbone, (gaussian(150, 0), np.zeros(150)), gaussian(150, 1, shift=1.5), verbose=0)
    before, after = table.iloc[:2], table.iloc[2:]
    assert (before.p_value < 0.01).all() and (before.mmd > 0.05).all()
    assert (before.mmd > 10 * before.null_mmd.abs()).all()
    assert (after.p_value > 0.05).all() and (after.mmd.abs() < 0.02).all()
    # The permutation test's smallest p-value is 1 / (permutations + 1).
    assert before.p_value.iloc[0] == pytest.approx(1 / 201)


@pytest.mark.core
def test_sensor_noise_clearly_shifts_the_texture_blocks_of_an_image_backbone(tmp_path):
    from keras_transfer import demo

    x, _ = demo.make_shapes(("disk", "square"), per_class=16, seed=0)
    noisy = np.clip(x[16:] + np.random.default_rng(0).normal(0, 60, x[16:].shape), 0, 255).astype("uint8")
    backbone = demo.build_demo_backbone()
    same = kt.domain_shift(backbone, x[:16], x[16:], permutations=50, verbose=0)
    shifted = kt.domain_shift(backbone, x[:16], noisy, permutations=50, verbose=0, plot_path=tmp_path / "shift.png")
    # Zero-mean noise partly averages out in the stem's pooled colours; the ReLU
    # blocks after it respond to texture.
    texture = shifted.iloc[1:]
    assert (texture.mmd > 10 * same.mmd.abs().iloc[1:]).all()
    assert texture.p_value.tolist() == pytest.approx([1 / 51] * 4)
    assert (tmp_path / "shift.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.core
def test_domain_shift_errors_name_the_argument():
    backbone = chain(EYE, EYE, EYE, EYE)
    with pytest.raises(ValueError, match="`max_examples` must be at least 4. Received: max_examples=3"):
        kt.domain_shift(backbone, gaussian(10, 0), gaussian(10, 1), max_examples=3)
    with pytest.raises(ValueError, match="`target_ds` must hold at least 4 examples. Received: 3"):
        kt.domain_shift(backbone, gaussian(10, 0), gaussian(3, 1), verbose=0)
    with pytest.raises(ValueError, match="`permutations` must be a positive integer"):
        kt.domain_shift(backbone, gaussian(10, 0), gaussian(10, 1), permutations=0)


# --- forgetting ----------------------------------------------------------------------------


def source_classifier():
    """Identity backbone + a head reading feature 0: perfect on the low-level task."""
    backbone = chain(EYE, EYE, EYE, EYE)
    classifier = kt.build_classifier(backbone, num_classes=2, dropout=0.0)
    kernel = np.zeros((4, 2))
    kernel[0] = [-1.0, 1.0]
    classifier.get_layer("head_logits").set_weights([kernel, np.zeros(2)])
    return classifier


@pytest.mark.core
def test_forgetting_judges_the_fine_tuned_backbone_with_the_source_head():
    before = source_classifier()
    source = low_level_task(64, seed=0)
    target_backbone = keras.models.clone_model(before.layers[1])
    target_backbone.set_weights(before.layers[1].get_weights())
    target_backbone.get_layer("block2_dense").set_weights([ZEROS])
    after = kt.build_classifier(target_backbone, num_classes=3)
    kept_weights = [w.copy() for w in before.get_weights()]
    result = kt.forgetting(before, after, source, verbose=0)
    # Four Dense layers copied; the zero block leaves only the head's bias: class 0 = half.
    assert (result.accuracy_before, result.accuracy_after, result.retained) == (1.0, 0.5, 0.5)
    assert result.copied_layers == 4
    assert "50% retained" in result.message
    for kept, now in zip(kept_weights, before.get_weights()):
        np.testing.assert_array_equal(kept, now)


@pytest.mark.core
def test_an_unchanged_backbone_retains_everything_and_head_after_evaluates_the_model_itself():
    before = source_classifier()
    source = low_level_task(64, seed=0)
    same = kt.forgetting(before, chain(EYE, EYE, EYE, EYE), source, verbose=0)
    assert (same.accuracy_after, same.retained, same.copied_layers) == (1.0, 1.0, 4)
    flipped = source_classifier()
    kernel = flipped.get_layer("head_logits").get_weights()
    flipped.get_layer("head_logits").set_weights([-kernel[0], kernel[1]])
    result = kt.forgetting(before, flipped, source, head="after", verbose=0)
    assert (result.accuracy_after, result.retained, result.copied_layers) == (0.0, 0.0, 0)


@pytest.mark.core
def test_forgetting_errors_name_what_does_not_match():
    before = source_classifier()
    source = low_level_task(16, seed=0)
    wider = chain(EYE, EYE, np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="Layer 'block2_dense' of `model_after` has weights of shapes \\[\\(4, 5\\)\\]"):
        kt.forgetting(before, wider, source, verbose=0)
    with pytest.raises(ValueError, match="`head` must be 'source' or 'after'. Received: head='new'"):
        kt.forgetting(before, before, source, head="new")
    with pytest.raises(ValueError, match="one score per class"):
        kt.forgetting(chain(EYE, EYE, EYE, np.ones((4, 1))), before, source)


# --- negative_transfer ----------------------------------------------------------------------


def bright_or_dark(n, seed, size=16):
    """Class 1 bright, class 0 dark, with pixel noise: easy for any network that sees pixels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = np.where(y[:, None, None, None] == 1, 170.0, 85.0) + rng.normal(0, 20, (n, size, size, 3))
    return np.clip(x, 0, 255).astype("uint8"), y


def test_negative_transfer_is_flagged_for_a_degenerate_pretrained_backbone():
    from keras_transfer import demo

    degenerate = demo.build_demo_backbone(size=16)
    for layer in degenerate.layers:
        if layer.name.endswith(("_conv", "_dense")):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    import random

    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    result = kt.negative_transfer(degenerate, bright_or_dark(64, 0), bright_or_dark(64, 1), epochs=2, head_lr=1e-2)
    # The caller's random streams carry on as if the call had drawn nothing from them.
    assert (random.random(), np.random.rand()) == expected
    # All-zero features: the head can only learn the (balanced) prior, i.e. chance.
    assert result.pretrained_accuracy == 0.5
    assert result.scratch_accuracy == 1.0
    assert (result.margin, result.negative) == (-0.5, True)
    assert result.message.startswith("Negative transfer: training from scratch beats the pretrained start by 0.500")
    assert result.history.groupby("start").size().to_dict() == {"pretrained": 2, "scratch": 2}


@pytest.mark.slow
def test_a_backbone_pretrained_on_a_related_source_is_not_flagged():
    from keras_transfer import demo

    backbone = demo.build_demo_backbone(size=16)
    source = keras.Sequential([backbone, keras.layers.Dense(2)])
    source.compile(optimizer=keras.optimizers.Adam(1e-2),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    source.fit(*bright_or_dark(128, 2), epochs=3, verbose=0)
    result = kt.negative_transfer(backbone, bright_or_dark(64, 0), bright_or_dark(64, 1), epochs=2, head_lr=1e-2)
    assert result.pretrained_accuracy == 1.0
    assert result.negative is False and result.margin >= 0
    assert result.message.startswith("Transfer helps")


def test_negative_transfer_errors_name_the_argument():
    from keras_transfer import demo

    import tensorflow as tf

    backbone = demo.build_demo_backbone(size=16)
    data = bright_or_dark(8, 0)
    with pytest.raises(ValueError, match="`strategy` is how the pretrained start trains. Received: strategy='scratch'"):
        kt.negative_transfer(backbone, data, data, strategy="scratch")
    with pytest.raises(ValueError, match="`epochs` must be at least 2"):
        kt.negative_transfer(backbone, data, data, epochs=1)
    with pytest.raises(TypeError, match=r"sets \['head_epochs'\] itself"):
        kt.negative_transfer(backbone, data, data, head_epochs=3)
    with pytest.raises(ValueError, match="`num_classes` is needed when `train_ds` is a dataset"):
        ds = tf.data.Dataset.from_tensor_slices(data).batch(4)
        kt.negative_transfer(backbone, ds, ds)


# --- keras-transfer diagnose -------------------------------------------------------------------


def test_diagnose_names_a_missing_data_folder(tmp_path):
    from keras_transfer import cli

    with pytest.raises(SystemExit, match="--data must be a folder of images. Received: --data .*nowhere"):
        cli.main(["diagnose", "--backbone", "mobilenet_v2", "--data", str(tmp_path / "nowhere")])


@pytest.mark.slow
@pytest.mark.large
def test_diagnose_imagenet_mobilenet_v2_on_ants_and_bees(mobilenet_weights, hymenoptera_dir, tmp_path, capsys):
    from keras_transfer import cli

    plot = tmp_path / "shift.png"
    code = cli.main(["diagnose", "--backbone", "mobilenet_v2", "--weights", str(mobilenet_weights),
                     "--data", str(hymenoptera_dir), "--image-size", "160",
                     "--source-data", str(hymenoptera_dir / "val"), "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    # Probe rows have 7 columns, domain-shift rows 6.
    probe = {row[0]: float(row[-1]) for row in rows if len(row) == 7 and row[1].isdigit()}
    assert list(probe)[:2] == ["stem", "block_1"] and "top" in probe
    # ImageNet features: the top is far better than the stem, and good on its own.
    assert probe["top"] >= 0.85 and probe["top"] - probe["stem"] >= 0.15
    assert "Suggestion: unfreeze top_blocks=0" in out
    assert "Domain shift" in out and plot.read_bytes()[:4] == b"\x89PNG"


# --- the depth class on real near and far domains -------------------------------------------

SHARED = pathlib.Path(os.environ.get("KERAS_TRANSFER_SHARED", pathlib.Path(__file__).resolve().parents[2] / "shared"))
STEEL = SHARED / "assets" / "neu_steel_defects"


@pytest.fixture
def steel_dir():
    """Path of the real steel-surface defect photos (far from ImageNet); skips when ../shared is absent."""
    if not STEEL.exists():
        pytest.skip(f"real assets not found at {STEEL}")
    return STEEL


@pytest.mark.slow
@pytest.mark.large
def test_imagenet_mobilenet_v2_unfreezes_nothing_on_ants_and_bees_and_most_on_steel(
        mobilenet_weights, hymenoptera_dir, steel_dir):
    backbone = kt.get_backbone("mobilenet_v2", weights=str(mobilenet_weights), input_shape=(160, 160, 3),
                               pooling=None)
    answers = {}
    for name, root in (("near", hymenoptera_dir), ("far", steel_dir)):
        train, val = (kt.data.from_directory(root / split_name, image_size=(160, 160), batch_size=32,
                                             preprocess=backbone.preprocess, shuffle=True, seed=0)
                      for split_name in ("train", "val"))
        answers[name] = kt.suggest_unfreeze(backbone, train, val, max_examples=300, verbose=0)
    near, far = answers["near"], answers["far"]
    assert near.depth_class == "few" and near.top_blocks == 2
    assert far.depth_class == "most" and far.strategy == "full" and far.top_blocks == 18
    # Measured: median block shift 0.053 on ants/bees and 0.108 on steel.
    assert kt.diagnostics.NEAR_SHIFT < near.shift_level < kt.diagnostics.FAR_SHIFT < far.shift_level
    assert far.shift_level > 1.5 * near.shift_level
    assert "median block shift" in far.reason


@pytest.mark.core
def test_depth_class_names_a_depth_by_the_share_of_blocks():
    from keras_transfer.diagnostics import depth_class

    assert [depth_class(k, 18) for k in (0, 1, 6, 7, 18)] == ["none", "few", "few", "most", "most"]
    assert [depth_class(k, 5) for k in (0, 2, 3)] == ["none", "few", "most"]  # a short backbone keeps its "few"
    with pytest.raises(ValueError, match="Received: top_blocks=-1"):
        depth_class(-1, 5)
    with pytest.raises(ValueError, match="Received: num_blocks=0"):
        depth_class(0, 0)
    with pytest.raises(ValueError, match="Received: top_blocks=6, num_blocks=5"):
        depth_class(6, 5)
