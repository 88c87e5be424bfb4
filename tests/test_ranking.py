"""LogME and backbone ranking, checked against the evidence's definition and on models built to be good or bad.

The score's right answers are known by construction: the log evidence of
Bayesian linear regression is `log N(y | 0, I / beta + F F^T / alpha)`, which
the tests compute directly (slogdet and solve on the N x N covariance) at the
`alpha` and `beta` LogME's fixed point settles on.
"""

import math

import keras
import numpy as np
import pandas as pd
import pytest

import keras_transfer as kt
from keras_transfer._inputs import stratified_indices
from keras_transfer.backbones import Preprocessing
from keras_transfer.ranking import _class_evidences

pytestmark = pytest.mark.core

# Evidence per example with no features at all, for two balanced classes: the best
# noise precision is beta = n / (n / 2) = 2, so log N(y | 0, I / 2) / n is this.
NO_FEATURES_TWO_CLASSES = 0.5 * math.log(2) - 0.5 - 0.5 * math.log(2 * math.pi)


def direct_evidence(features, y, alpha, beta):
    """log N(y | 0, I / beta + F F^T / alpha) / n, straight from the definition."""
    n = len(y)
    covariance = np.eye(n) / beta + features @ features.T / alpha
    sign, logdet = np.linalg.slogdet(covariance)
    assert sign > 0
    return (-0.5 * logdet - 0.5 * y @ np.linalg.solve(covariance, y) - 0.5 * n * math.log(2 * math.pi)) / n


def labelled_features(n=60, dim=4, signal=1.0, classes=3, seed=0):
    """Features whose first `classes` columns are the one-hot label times `signal`, plus unit noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    features = rng.normal(size=(n, dim))
    features[:, :classes] += signal * np.eye(classes)[labels]
    return features, labels


# --- logme ---------------------------------------------------------------------------------


def test_logme_is_the_mean_of_each_class_evidence_computed_from_its_definition():
    features, labels = labelled_features(n=12, dim=3, signal=2.0, seed=1)
    targets = np.eye(3)[labels]
    evidence, alphas, betas = _class_evidences(features, targets)
    assert np.all(np.isfinite(alphas)) and np.all(np.isfinite(betas))
    for c in range(3):
        y, alpha, beta = targets[:, c], alphas[c], betas[c]
        best = direct_evidence(features, y, alpha, beta)
        np.testing.assert_allclose(evidence[c], best, rtol=0, atol=1e-10)
        # The fixed point is a stationary point: moving alpha or beta either way lowers the evidence.
        for step in (1 - 1e-3, 1 + 1e-3):
            assert direct_evidence(features, y, alpha * step, beta) < best
            assert direct_evidence(features, y, alpha, beta * step) < best
    np.testing.assert_allclose(kt.logme(features, labels), evidence.mean(), rtol=0, atol=1e-12)


def test_logme_matches_the_definition_when_features_outnumber_examples():
    # D > N: the features span every target, and zero singular values must not leak into the score.
    features, labels = labelled_features(n=10, dim=25, signal=1.0, classes=2, seed=2)
    targets = np.eye(2)[labels]
    evidence, alphas, betas = _class_evidences(features, targets)
    for c in range(2):
        np.testing.assert_allclose(evidence[c], direct_evidence(features, targets[:, c], alphas[c], betas[c]),
                                   rtol=0, atol=1e-10)


def test_logme_of_zero_features_is_the_evidence_of_noise_alone():
    labels = np.arange(8) % 2
    assert kt.logme(np.zeros((8, 5)), labels) == pytest.approx(NO_FEATURES_TWO_CLASSES, abs=1e-12)


def test_features_that_carry_the_label_score_higher_than_noise():
    informative, labels = labelled_features(signal=2.0)
    noise = np.random.default_rng(5).normal(size=informative.shape)
    weak, _ = labelled_features(signal=0.5)
    assert kt.logme(informative, labels) > kt.logme(weak, labels) > kt.logme(noise, labels)


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda f, y, rng: (f[p := rng.permutation(len(f))], y[p]), id="permute_examples"),
        pytest.param(lambda f, y, rng: (f @ np.linalg.qr(rng.normal(size=(f.shape[1],) * 2))[0], y),
                     id="rotate_features"),
        pytest.param(lambda f, y, rng: (37.0 * f, y), id="rescale_features"),
        pytest.param(lambda f, y, rng: (1e-120 * f, y), id="shrink_features_to_1e-120"),
        pytest.param(lambda f, y, rng: (1e120 * f, y), id="grow_features_to_1e120"),
        pytest.param(lambda f, y, rng: (np.hstack([f, np.zeros((len(f), 3))]), y), id="append_zero_columns"),
        pytest.param(lambda f, y, rng: (f, np.array([2, 0, 1])[y]), id="rename_classes"),
    ],
)
def test_logme_invariances(transform):
    features, labels = labelled_features(signal=1.0)
    moved_features, moved_labels = transform(features, labels, np.random.default_rng(3))
    assert kt.logme(moved_features, moved_labels) == pytest.approx(kt.logme(features, labels), rel=1e-9)


def test_logme_is_deterministic_and_accepts_float32():
    features, labels = labelled_features()
    first = kt.logme(features.astype("float32"), labels)
    assert kt.logme(features.astype("float32"), labels) == first
    assert isinstance(first, float)


@pytest.mark.parametrize(
    "features, labels, message",
    [
        (np.zeros(4), [0, 1, 0, 1], "non-empty 2-D array"),
        (np.zeros((4, 2)), [0, 1, 0], "one label per row"),
        (np.zeros((4, 2)), [0.0, 1.0, 0.0, 1.0], "integer class ids"),
        (np.zeros((4, 2)), [[0], [1], [0], [1]], "1-D array"),
        (np.zeros((4, 2)), [0, 0, 0, 0], "at least 2 classes. Received: classes [0]"),
        (np.zeros((4, 2)), [0, -1, 0, 1], "class ids >= 0"),
        (np.array([[np.nan, 0.0]] * 4), [0, 1, 0, 1], "`features` must be finite"),
    ],
)
def test_logme_rejects_bad_input(features, labels, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kt.logme(features, labels)


# --- logme_blocks ----------------------------------------------------------------------------


def dense_chain(*kernels):
    """`demo_convnet`-named backbone of bias-free Dense blocks stem, block1, ..., top."""
    names = ["stem"] + [f"block{i}" for i in range(1, len(kernels) - 1)] + ["top"]
    inputs = keras.Input((kernels[0].shape[0],))
    x = inputs
    for name, kernel in zip(names, kernels):
        x = keras.layers.Dense(kernel.shape[1], use_bias=False, name=f"{name}_dense")(x)
    model = keras.Model(inputs, x, name="demo_convnet")
    for name, kernel in zip(names, kernels):
        model.get_layer(f"{name}_dense").set_weights([kernel])
    return model


def test_logme_blocks_scores_each_block_on_its_own_features():
    features, labels = labelled_features(n=40, dim=4, signal=2.0, classes=2)
    x = features.astype("float32")
    backbone = dense_chain(np.eye(4), np.diag([1.0, 1.0, 0.0, 0.0]), np.zeros((4, 4)))
    table = kt.logme_blocks(backbone, (x, labels), verbose=0)
    assert table.columns.tolist() == ["block", "depth", "feature_dim", "logme"]
    assert table.block.tolist() == ["stem", "block1", "top"]
    assert table.depth.tolist() == [0, 1, 2]
    assert table.feature_dim.tolist() == [4, 4, 4]
    # stem passes x through, block1 keeps its label columns (zeroing the noise), top keeps nothing.
    assert table.logme[0] == pytest.approx(kt.logme(x, labels), abs=1e-12)
    assert table.logme[1] == pytest.approx(kt.logme(x[:, :2], labels), abs=1e-12)
    assert table.logme[2] == pytest.approx(NO_FEATURES_TWO_CLASSES, abs=1e-12)
    assert table.logme[1] > table.logme[2]


def test_logme_blocks_chosen_blocks_and_max_examples():
    features, labels = labelled_features(n=40, dim=4, signal=2.0, classes=2)
    x = features.astype("float32")
    backbone = kt.Backbone("demo", dense_chain(np.eye(4), np.eye(4), np.eye(4)), Preprocessing("none"), 4, None,
                           "demo")
    table = kt.logme_blocks(backbone, (x, labels), blocks=["top", "stem"], max_examples=30, verbose=0)
    assert table.block.tolist() == ["stem", "top"]
    assert table.depth.tolist() == [0, 2]
    keep = stratified_indices(labels, 30)  # a sample of every class, not the first 30
    assert table.logme[1] == pytest.approx(kt.logme(x[keep], labels[keep]), abs=1e-12)


def test_logme_blocks_rejects_bad_input():
    backbone = dense_chain(np.eye(2), np.eye(2))
    x = np.ones((4, 2), "float32")
    with pytest.raises(ValueError, match=r"at least 2 classes.*\[0\]"):
        kt.logme_blocks(backbone, (x, np.zeros(4, "int32")), verbose=0)
    with pytest.raises(ValueError, match="Valid block names"):
        kt.logme_blocks(backbone, (x, np.arange(4) % 2), blocks=["block9"], verbose=0)
    with pytest.raises(ValueError, match="max_examples=0"):
        kt.logme_blocks(backbone, (x, np.arange(4) % 2), max_examples=0, verbose=0)
    with pytest.raises(TypeError, match="`backbone` must be a keras.Model"):
        kt.logme_blocks("not a model", (x, np.arange(4) % 2), verbose=0)


# --- rank_backbones ----------------------------------------------------------------------------


def conv_backbone(kernel, name):
    """A 1x1-convolution backbone on 2x2 RGB images with a fixed 3 x 3 channel kernel; outputs a feature map."""
    inputs = keras.Input((2, 2, 3))
    outputs = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(inputs)
    model = keras.Model(inputs, outputs, name=name)
    model.get_layer("conv").set_weights([np.asarray(kernel, "float32").reshape(1, 1, 3, 3)])
    return model


def raw_images(n=48, seed=0):
    """2x2 RGB images in 0..255 whose red channel tells the class (bright or dark), the rest noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.uniform(0, 255, size=(n, 2, 2, 3))
    images[..., 0] = np.where(labels[:, None, None] == 1, 200.0, 60.0) + rng.normal(0, 20, size=(n, 2, 2))
    return images.astype("float32"), labels


def test_rank_backbones_puts_the_informative_backbone_first():
    images, labels = raw_images()
    keeps = conv_backbone(np.eye(3), "keeps_red")
    drops = conv_backbone(np.diag([0.0, 1.0, 1.0]), "drops_red")
    table = kt.rank_backbones([drops, keeps], (images, labels), verbose=0)
    assert table.columns.tolist() == ["candidate", "logme", "feature_dim", "params", "seconds", "rank"]
    assert table.candidate.tolist() == ["keeps_red", "drops_red"]
    assert table["rank"].tolist() == [1, 2]
    assert table.feature_dim.tolist() == [3, 3]
    assert table.params.tolist() == [9, 9]
    assert (table.seconds > 0).all()
    # A plain model gets the raw batches; its feature map is averaged over the 2x2 positions.
    assert table.logme[0] == pytest.approx(kt.logme(images.mean(axis=(1, 2)), labels), abs=1e-9)
    assert table.logme[0] > table.logme[1]


def test_rank_backbones_applies_a_backbones_own_preprocessing():
    images, labels = raw_images()
    relu = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.ReLU()], name="relu")
    # Raw 0..255 images pass ReLU unchanged; after x / 127.5 - 1 it cuts everything below 127.5.
    backbone = kt.Backbone("relu_tf", relu, Preprocessing("tf"), 2, None, "demo")
    table = kt.rank_backbones({"plain model": relu, "kt.Backbone": backbone}, (images, labels), verbose=0)
    scores = dict(zip(table.candidate, table.logme))
    assert set(scores) == {"plain model", "kt.Backbone"}
    expected_backbone = kt.logme(np.maximum(images / 127.5 - 1, 0).mean(axis=(1, 2)), labels)
    expected_plain = kt.logme(images.mean(axis=(1, 2)), labels)
    assert scores["kt.Backbone"] == pytest.approx(expected_backbone, abs=1e-6)
    assert scores["plain model"] == pytest.approx(expected_plain, abs=1e-9)
    assert abs(expected_backbone - expected_plain) > 0.05


def test_rank_backbones_builds_names_at_the_data_size(monkeypatch):
    images, labels = raw_images()
    built = []

    def fake_get_backbone(name, input_shape=None):
        built.append((name, input_shape))
        return kt.Backbone(name, conv_backbone(np.eye(3), "conv"), Preprocessing("tf"), 224, None, "demo")

    monkeypatch.setattr("keras_transfer.ranking.get_backbone", fake_get_backbone)
    table = kt.rank_backbones(["mobilenet_v2"], (images, labels), verbose=0)
    assert built == [("mobilenet_v2", (2, 2, 3))]
    assert table.candidate.tolist() == ["mobilenet_v2"]
    # x / 127.5 - 1 is an affine map, and LogME has no intercept: the score differs from the raw one.
    assert table.logme[0] == pytest.approx(kt.logme((images / 127.5 - 1).mean(axis=(1, 2)), labels), abs=1e-6)


class Reshuffling:
    """A dataset of (x, y) batches that reshuffles on every pass, as a shuffled tf.data pipeline does."""

    def __init__(self, images, labels, batch_size):
        self.images, self.labels, self.batch_size, self.passes = images, labels, batch_size, 0

    def __iter__(self):
        order = np.random.default_rng(self.passes).permutation(len(self.labels))
        self.passes += 1
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images[index], self.labels[index]


def test_rank_backbones_reads_a_reshuffling_dataset_once():
    images, labels = raw_images(n=64)
    data = Reshuffling(images, labels, batch_size=8)
    model = conv_backbone(np.eye(3), "same")
    table = kt.rank_backbones({"first": model, "second": model}, data, max_examples=20, batch_size=8, verbose=0)
    assert data.passes == 1
    assert table.logme[0] == table.logme[1]
    order = np.random.default_rng(0).permutation(64)[:20]
    assert table.logme[0] == pytest.approx(kt.logme(images[order].mean(axis=(1, 2)), labels[order]), abs=1e-9)


def test_rank_backbones_verbose(capsys):
    images, labels = raw_images()
    candidates = {"keeps": conv_backbone(np.eye(3), "a"), "drops": conv_backbone(np.diag([0.0, 1, 1]), "b")}
    kt.rank_backbones(candidates, (images, labels), verbose=0)
    assert capsys.readouterr().out == ""
    kt.rank_backbones(candidates, (images, labels), verbose=1)
    out = capsys.readouterr().out
    assert "Candidate 1/2: keeps" in out and "Candidate 2/2: drops" in out
    assert "keeps: LogME" in out and "on 48 examples, 3 features" in out


@pytest.mark.parametrize(
    "candidates, error, message",
    [
        ([], ValueError, r"`candidates` must hold at least one candidate. Received: candidates=\[\]"),
        ({}, ValueError, "`candidates` must hold at least one candidate"),
        ("mobilenet_v2", TypeError, "`candidates` must be a list of candidates or a dict"),
        ([42], TypeError, "Each of `candidates` must be a backbone name, a kt.Backbone or a keras.Model. "
                          "Received: 42 of type int"),
        (["mobilenet_v9"], ValueError, r"`candidates` holds an unknown backbone name.*'mobilenet_v9'.*"
                                       r"Valid names: .*'mobilenet_v2'"),
        ({1: "mobilenet_v2"}, ValueError, "labels \\(keys\\) of `candidates` must be non-empty strings"),
    ],
)
def test_rank_backbones_rejects_bad_candidates(candidates, error, message):
    images, labels = raw_images()
    with pytest.raises(error, match=message):
        kt.rank_backbones(candidates, (images, labels), verbose=0)


def test_rank_backbones_rejects_repeated_labels_and_bad_data():
    images, labels = raw_images()
    a, b = conv_backbone(np.eye(3), "twin"), conv_backbone(np.eye(3), "twin")
    with pytest.raises(ValueError, match=r"share the labels \['twin'\]; pass a dict"):
        kt.rank_backbones([a, b], (images, labels), verbose=0)
    with pytest.raises(ValueError, match=r"`train_ds` must hold at least 2 classes.*\[0\]"):
        kt.rank_backbones([a], (images, np.zeros_like(labels)), verbose=0)
    with pytest.raises(TypeError, match="`train_ds` must be \\(x, y\\) arrays or a dataset"):
        kt.rank_backbones([a], 42, verbose=0)
    with pytest.raises(ValueError, match="max_examples=0"):
        kt.rank_backbones([a], (images, labels), max_examples=0, verbose=0)
    with pytest.raises(ValueError, match="`verbose` must be 0, 1, 2 or 'auto'. Received: verbose='loud'"):
        kt.rank_backbones([a], (images, labels), verbose="loud")
    inputs = keras.Input((2, 2, 3))
    two_outputs = keras.Model(inputs, [inputs, inputs], name="two")
    with pytest.raises(ValueError, match="must have one output. Received: 'two' with 2 outputs"):
        kt.rank_backbones([two_outputs], (images, labels), verbose=0)


# --- real data ----------------------------------------------------------------------------------


@pytest.fixture
def neu_steel_dir(mobilenet_weights):
    """Path of the real steel-surface defect photos (the far domain); skips when ../shared is absent."""
    path = mobilenet_weights.parents[1] / "neu_steel_defects"
    if not path.exists():
        pytest.skip(f"real assets not found at {path}")
    return path


def balanced_raw_sample(root, per_class):
    """Up to `per_class` raw 160 px images of each class, from a shuffled (seed 0) pass over `root`."""
    data = kt.data.from_directory(root, image_size=(160, 160), batch_size=32, preprocess=None, shuffle=True, seed=0)
    taken = {c: [] for c in range(len(data.class_names))}
    for images, labels in data.as_numpy_iterator():
        for image, label in zip(images, labels):
            if len(taken[int(label)]) < per_class:
                taken[int(label)].append(image)
        if all(len(t) == per_class for t in taken.values()):
            break
    x = np.concatenate([np.stack(t) for t in taken.values()])
    y = np.concatenate([np.full(len(t), c, "int32") for c, t in taken.items()])
    order = np.random.default_rng(0).permutation(len(y))
    return x[order], y[order]


def spearman(a, b):
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


@pytest.mark.slow
@pytest.mark.large
@pytest.mark.parametrize("dataset, train_per_class, val_per_class",
                         [("hymenoptera_data", 120, 70), ("neu_steel_defects", 50, 50)])
def test_imagenet_mobilenet_v2_outranks_random_weights_on_real_photos(mobilenet_weights, hymenoptera_dir,
                                                                        neu_steel_dir, dataset, train_per_class,
                                                                        val_per_class):
    root = {"hymenoptera_data": hymenoptera_dir, "neu_steel_defects": neu_steel_dir}[dataset]
    x_train, y_train = balanced_raw_sample(root / "train", train_per_class)
    x_val, y_val = balanced_raw_sample(root / "val", val_per_class)
    shape = (160, 160, 3)
    imagenet = kt.get_backbone("mobilenet_v2", weights=str(mobilenet_weights), input_shape=shape, pooling=None)
    random = kt.get_backbone("mobilenet_v2", weights=None, input_shape=shape, pooling=None)
    table = kt.rank_backbones({"imagenet": imagenet, "random": random}, (x_train, y_train), max_examples=300,
                              verbose=0)
    print(f"\n{dataset}: {len(y_train)} training examples\n{table.to_string()}")
    assert table.candidate.tolist() == ["imagenet", "random"]

    # Across the pretrained backbone's blocks, LogME (training set only) against the probe's validation accuracy.
    train, val = (imagenet.preprocess(x_train), y_train), (imagenet.preprocess(x_val), y_val)
    scores = kt.logme_blocks(imagenet, train, verbose=0)
    probes = kt.probe_blocks(imagenet, train, val, verbose=0)
    curve = scores.merge(probes[["block", "probe_accuracy"]], on="block")
    rho = spearman(curve.logme, curve.probe_accuracy)
    print(curve.to_string())
    print(f"{dataset}: Spearman(LogME, probe accuracy) over {len(curve)} blocks = {rho:.3f}")
    assert rho > 0.3
