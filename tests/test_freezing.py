"""Freezing by blocks: exact trainable counts, the BatchNorm policy, nesting, saving, errors."""

import warnings

import keras
import numpy as np
import pytest

import keras_transfer as kt

pytestmark = pytest.mark.core

A = keras.applications


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):
    """Trainable BatchNorm parameters (gamma, beta) of c channels."""
    return 2 * c


def n_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def classifier(backbone, classes=3):
    inputs = keras.Input(backbone.input_shape[1:])
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


@pytest.fixture
def effnet_classifier():
    return classifier(A.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3)))


# EfficientNetB0's last two blocks, counted from the architecture (no biases in convs).
TOP_CONVS = conv(1, 320, 1280, bias=False)
TOP_BN = bn(1280)
BLOCK7_CONVS = (
    conv(1, 192, 1152, bias=False)  # expand
    + 3 * 3 * 1152  # depthwise
    + conv(1, 1152, 48) + conv(1, 48, 1152)  # squeeze-excite
    + conv(1, 1152, 320, bias=False)  # project
)
BLOCK7_BN = bn(1152) + bn(1152) + bn(320)
HEAD = 1280 * 3 + 3


def test_freeze_trains_only_the_head(effnet_classifier):
    kt.freeze(effnet_classifier)
    assert n_trainable(effnet_classifier) == HEAD


def test_unfreeze_top_blocks_keeps_batchnorm_frozen(effnet_classifier):
    kt.unfreeze(effnet_classifier, top_blocks=1)
    assert n_trainable(effnet_classifier) == HEAD + TOP_CONVS
    kt.unfreeze(effnet_classifier, top_blocks=2)
    assert n_trainable(effnet_classifier) == HEAD + TOP_CONVS + BLOCK7_CONVS


def test_unfreeze_from_block_equals_top_blocks(effnet_classifier):
    kt.unfreeze(effnet_classifier, from_block="block7")
    assert n_trainable(effnet_classifier) == HEAD + TOP_CONVS + BLOCK7_CONVS
    table = kt.trainable_summary(effnet_classifier).set_index("block")
    assert table.loc["block7", "trainable_params"] == BLOCK7_CONVS
    assert table.loc["block7", "params"] == BLOCK7_CONVS + 2 * BLOCK7_BN  # + moving mean/var
    assert list(table.state) == ["frozen"] * 7 + ["partial", "partial", "trainable"]


def test_train_bn_trains_every_backbone_batchnorm(effnet_classifier):
    all_bn = sum(
        bn(layer.gamma.shape[0])
        for layer in effnet_classifier.layers[1].layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    kt.freeze(effnet_classifier, train_bn=True)
    assert n_trainable(effnet_classifier) == HEAD + all_bn
    kt.unfreeze(effnet_classifier, top_blocks=1, train_bn=True)
    assert n_trainable(effnet_classifier) == HEAD + all_bn + TOP_CONVS
    assert kt.trainable_summary(effnet_classifier).state.iloc[-2] == "trainable"


def test_resnet50_conv5():
    model = classifier(A.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)), classes=5)
    kt.unfreeze(model, from_block="conv5")
    block1 = conv(1, 1024, 512) + conv(3, 512, 512) + conv(1, 512, 2048) + conv(1, 1024, 2048)
    later = conv(1, 2048, 512) + conv(3, 512, 512) + conv(1, 512, 2048)
    assert n_trainable(model) == block1 + 2 * later + 2048 * 5 + 5


def test_unfreeze_zero_blocks_is_freeze(effnet_classifier):
    kt.unfreeze(effnet_classifier, top_blocks=0)
    assert n_trainable(effnet_classifier) == HEAD
    kt.unfreeze(effnet_classifier, top_blocks=9)  # every backbone block
    assert kt.trainable_summary(effnet_classifier).state.tolist() == ["partial"] * 9 + ["trainable"]


def test_backbone_frozen_the_keras_way_is_reopened_block_by_block(effnet_classifier):
    backbone = effnet_classifier.layers[1]
    backbone.trainable = False  # the Keras guide's first step
    kt.unfreeze(effnet_classifier, top_blocks=1)
    assert backbone.trainable
    assert n_trainable(effnet_classifier) == HEAD + TOP_CONVS


def test_bare_backbone_without_head():
    vgg = A.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert n_trainable(kt.freeze(vgg)) == 0
    assert n_trainable(kt.unfreeze(vgg, top_blocks=1)) == 3 * conv(3, 512, 512)


def _tiny_model():
    backbone = A.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    return classifier(backbone, classes=2)


def _densenet_classifier():
    # DenseNet keeps activations well scaled at random init, so gradients are not ~0.
    return classifier(A.DenseNet121(include_top=False, weights=None, input_shape=(32, 32, 3)), classes=2)


def _fit_once(model):
    x = np.random.RandomState(0).rand(8, 32, 32, 3).astype("float32") * 255
    y = np.array([0, 1] * 4)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_frozen_batchnorm_runs_in_inference_mode_and_does_not_move():
    model = _densenet_classifier()
    kt.unfreeze(model, top_blocks=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    backbone = model.layers[1]
    watched = {
        "trainable conv": backbone.get_layer("conv5_block16_2_conv").kernel,
        "bn gamma": backbone.get_layer("conv5_block16_1_bn").gamma,
        "bn moving mean": backbone.get_layer("conv5_block16_1_bn").moving_mean,
        "bn moving variance": backbone.get_layer("bn").moving_variance,
        "frozen conv": backbone.get_layer("conv4_block24_2_conv").kernel,
    }
    before = {k: keras.ops.convert_to_numpy(v).copy() for k, v in watched.items()}
    _fit_once(model)
    after = {k: keras.ops.convert_to_numpy(v) for k, v in watched.items()}
    assert np.abs(before["trainable conv"] - after["trainable conv"]).max() > 1e-6
    for name in ("bn gamma", "bn moving mean", "bn moving variance", "frozen conv"):
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_unfreeze_then_recompile_warns_nothing_and_makes_the_change_effective():
    model = _densenet_classifier()
    kt.freeze(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    _fit_once(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the README's sequence: no false alarm
        kt.unfreeze(model, top_blocks=2)  # DenseNet's `top` is a lone BatchNorm
        assert not model.compiled
        kt.recompile(model)
    assert model.compiled
    assert model.metrics_names[-1] in ("compile_metrics", "accuracy")
    kernel = model.layers[1].get_layer("conv5_block16_2_conv").kernel
    before = keras.ops.convert_to_numpy(kernel).copy()
    _fit_once(model)
    assert not np.array_equal(before, keras.ops.convert_to_numpy(kernel))


def test_forgetting_to_recompile_is_an_error_at_fit_not_silent_training_of_the_old_weights():
    model = _tiny_model()
    kt.freeze(model)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    _fit_once(model)
    kt.unfreeze(model, top_blocks=1)
    with pytest.raises(ValueError, match=r"You must call `compile\(\)`"):
        _fit_once(model)
    kt.recompile(model)
    _fit_once(model)


def test_no_warning_when_nothing_changes_or_not_compiled():
    model = _tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kt.freeze(model)
        model.compile(optimizer="sgd", loss="mse")
        kt.freeze(model)


def test_recompile_needs_a_compiled_model():
    with pytest.raises(ValueError, match="has not been compiled"):
        kt.recompile(_tiny_model())


def test_trainable_flags_survive_keras_save_and_load(tmp_path):
    model = _tiny_model()
    kt.unfreeze(model, from_block="block_16")
    expected = kt.trainable_summary(model)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert kt.trainable_summary(loaded).equals(expected)
    x = np.random.RandomState(1).rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, r"exactly one of `top_blocks` or `from_block`. Received: top_blocks=None, from_block=None"),
        ({"top_blocks": 1, "from_block": "top"}, "exactly one"),
        ({"top_blocks": 11}, r"between 0 and 9 .*Received: top_blocks=11"),
        ({"top_blocks": -1}, r"Received: top_blocks=-1"),
        ({"top_blocks": True}, r"Received: top_blocks=True"),
        ({"top_blocks": 1.5}, r"Received: top_blocks=1.5"),
        ({"from_block": "block8"}, r"Received: from_block='block8'. Valid block names: \['stem', 'block1'"),
        ({"from_block": "head"}, r"`head` always trains"),
    ],
)
def test_unfreeze_errors(effnet_classifier, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.unfreeze(effnet_classifier, **kwargs)
