"""Block discovery: every family's spec, nested classifiers, the fallback, selectors."""

import warnings

import keras
import keras_hub
import pytest

import keras_transfer as kt

pytestmark = pytest.mark.core

A = keras.applications
SMALL = (64, 64, 3)

# (constructor, kwargs, expected block names). Built without a top, so the
# names are those a fine-tuner sees.
FAMILIES = [
    (A.EfficientNetB0, {}, ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"]),
    (A.EfficientNetV2B0, {}, ["stem"] + [f"block{i}" for i in range(1, 7)] + ["top"]),
    (A.ResNet50, {}, ["stem", "conv2", "conv3", "conv4", "conv5"]),
    (A.ResNet50V2, {}, ["stem", "conv2", "conv3", "conv4", "conv5", "top"]),
    (A.MobileNetV2, {"alpha": 0.35}, ["stem"] + [f"block_{i}" for i in range(1, 17)] + ["top"]),
    (A.MobileNetV3Small, {"alpha": 0.75}, ["stem", "expanded_conv"] + [f"expanded_conv_{i}" for i in range(1, 11)] + ["top"]),
    (A.ConvNeXtTiny, {}, ["stem", "stage_0", "stage_1", "stage_2", "stage_3", "top"]),
    (A.DenseNet121, {}, ["stem", "conv2", "conv3", "conv4", "conv5", "top"]),
    (A.VGG16, {}, [f"block{i}" for i in range(1, 6)]),
    (A.Xception, {"input_shape": (71, 71, 3)}, [f"block{i}" for i in range(1, 15)]),
    (A.InceptionV3, {"input_shape": (75, 75, 3)}, ["stem"] + [f"mixed{i}" for i in range(11)]),
]


def _assert_partition(model, blocks):
    """Every weight of the model sits in exactly one block."""
    ids = [id(w) for b in blocks for w in b.weights]
    assert len(ids) == len(set(ids)), "a weight appears in two blocks"
    assert set(ids) == {id(w) for w in model.weights}, "a weight is in no block"
    assert sum(b.num_params for b in blocks) == model.count_params()


@pytest.mark.parametrize("fn,kwargs,expected", FAMILIES, ids=[f[0].__name__ for f in FAMILIES])
def test_keras_applications_families(fn, kwargs, expected):
    kwargs = {"input_shape": SMALL, **kwargs}
    model = fn(include_top=False, weights=None, **kwargs)
    blocks = kt.get_blocks(model)
    assert [b.name for b in blocks] == expected
    _assert_partition(model, blocks)


@pytest.mark.parametrize("fn", [A.EfficientNetB0, A.ResNet50, A.VGG16, A.MobileNetV3Large])
def test_with_top_the_classifier_layers_form_the_top_block(fn):
    model = fn(weights=None, include_top=True, classes=10)
    blocks = kt.get_blocks(model)
    assert blocks[-1].name == "top"
    assert "predictions" in [layer.name for layer in blocks[-1].layers]
    _assert_partition(model, blocks)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fn",
    [A.EfficientNetB3, A.EfficientNetV2S, A.ResNet101, A.ResNet152V2, A.DenseNet169, A.VGG19, A.ConvNeXtSmall],
)
def test_larger_family_members(fn):
    model = fn(include_top=False, weights=None, input_shape=(96, 96, 3))
    _assert_partition(model, kt.get_blocks(model))


def test_exact_block_sizes_vgg16():
    vgg = A.VGG16(include_top=False, weights=None, input_shape=SMALL)
    conv = lambda cin, cout: 3 * 3 * cin * cout + cout  # noqa: E731
    expected = {
        "block1": conv(3, 64) + conv(64, 64),
        "block2": conv(64, 128) + conv(128, 128),
        "block3": conv(128, 256) + 2 * conv(256, 256),
        "block4": conv(256, 512) + 2 * conv(512, 512),
        "block5": 3 * conv(512, 512),
    }
    assert {b.name: b.num_params for b in kt.get_blocks(vgg)} == expected


def test_renamed_backbone_is_recognised_by_signature():
    model = A.ResNet50(include_top=False, weights=None, input_shape=SMALL, name="my_resnet")
    assert kt.find_spec(model).family == "resnet"
    assert kt.block_names(model) == ["stem", "conv2", "conv3", "conv4", "conv5"]


def _classifier(backbone, classes=3):
    inputs = keras.Input(backbone.input_shape[1:])
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


def test_nested_classifier_gets_backbone_blocks_and_head():
    backbone = A.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    model = _classifier(backbone)
    blocks = kt.get_blocks(model)
    assert blocks[0].name == "stem" and blocks[0].layers[0].name == "scale"
    assert [b.name for b in blocks[-2:]] == ["top", "head"]
    assert blocks[-1].num_params == 1280 * 3 + 3
    _assert_partition(model, blocks)


def test_sequential_classifier():
    backbone = A.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([backbone, keras.layers.Flatten(), keras.layers.Dense(4)])
    assert kt.block_names(model) == ["block1", "block2", "block3", "block4", "block5", "head"]


def test_keras_hub_bert_backbone_blocks():
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )
    blocks = kt.get_blocks(bert)
    assert [b.name for b in blocks] == ["embeddings", "transformer_layer_0", "transformer_layer_1", "pooler"]
    # token 50*8, position 8*8, segment 2*8, layer norm 2*8
    assert blocks[0].num_params == 400 + 64 + 16 + 16
    assert blocks[3].num_params == 8 * 8 + 8
    _assert_partition(bert, blocks)


def test_a_hub_transformer_without_a_spec_keeps_its_final_norm_out_of_the_last_layer():
    """OPT has no family spec; the generic transformer rule put its final `layer_norm` in the last layer."""
    opt = keras_hub.models.OPTBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )
    blocks = kt.get_blocks(opt)
    assert [(b.name, [layer.name for layer in b.layers]) for b in blocks] == [
        ("embeddings", ["embeddings"]), ("transformer_layer_0", ["transformer_layer_0"]),
        ("transformer_layer_1", ["transformer_layer_1"]), ("pooler", ["layer_norm"]),
    ]
    assert blocks[0].family == "keras_hub.transformer"
    _assert_partition(opt, blocks)


def test_keras_hub_vit_backbone_opens_its_encoder():
    vit = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    blocks = kt.get_blocks(vit)
    assert [b.name for b in blocks] == ["embeddings", "transformer_block_1", "transformer_block_2", "top"]
    _assert_partition(vit, blocks)


def test_keras_hub_resnet_and_efficientnet_backbones():
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    assert kt.block_names(resnet) == ["stem", "stack0", "stack1"]
    _assert_partition(resnet, kt.get_blocks(resnet))
    effnet = keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0, 1.0], stackwise_depth_coefficients=[1.0, 1.0],
        stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 2], stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, 16], stackwise_expansion_ratios=[1, 2],
        stackwise_squeeze_and_excite_ratios=[0.25, 0.25], stackwise_strides=[1, 2],
        stackwise_block_types=["v1", "v1"], stackwise_force_input_filters=[0, 0],
        stackwise_nores_option=[False, False], num_features=32, input_shape=(32, 32, 3),
    )
    assert kt.block_names(effnet) == ["stem", "block1", "block2", "top"]
    _assert_partition(effnet, kt.get_blocks(effnet))


def test_generic_fallback_by_prefix_warns():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="encoder_a")(inputs)
    x = keras.layers.Dense(3, name="encoder_b")(x)
    x = keras.layers.ReLU(name="act")(x)
    x = keras.layers.Dense(2, name="decoder_a")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    with pytest.warns(UserWarning, match="generic fallback"):
        blocks = kt.get_blocks(model)
    assert [(b.name, b.num_params) for b in blocks] == [("encoder", 15 + 12), ("decoder", 8), ("dense", 3)]
    # Once per model: the freeze / optimizer / summary calls of one script said it 7 times.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kt.freeze(model)
        kt.trainable_summary(model)
        kt.block_names(model)
    assert [str(w.message) for w in caught] == []
    twin = keras.Model(model.inputs, model.outputs, name="twin")
    with pytest.warns(UserWarning, match="'twin'.*generic fallback"):
        kt.block_names(twin)


def test_a_classifier_around_a_known_backbone_has_the_backbones_spec():
    backbone = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    assert kt.find_spec(backbone).family == "mobilenet_v2"
    assert kt.find_spec(kt.build_classifier(backbone, 2)).family == "mobilenet_v2"
    assert kt.find_spec(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])) is None
    with pytest.raises(TypeError, match="Received: model='mobilenet_v2'"):
        kt.find_spec("mobilenet_v2")


def test_generic_fallback_nested_models_become_blocks():
    inner_a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="part_a")
    inner_b = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)], name="part_b")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inner_b(inner_a(inputs))))
    with pytest.warns(UserWarning, match="nested model"):
        assert kt.block_names(model) == ["part_a", "part_b", "head"]


def test_select_variables_by_block_and_by_path_regex():
    vgg = A.VGG16(include_top=False, weights=None, input_shape=SMALL)
    assert len(kt.select_variables(vgg, "block1")) == 4
    assert [v.path for v in kt.select_variables(vgg, r"block5_conv\d/bias")] == [
        "block5_conv1/bias", "block5_conv2/bias", "block5_conv3/bias"
    ]


@pytest.mark.parametrize("selector", ["block9", "no_such/.*", "("])
def test_unknown_selector_lists_valid_blocks(selector):
    vgg = A.VGG16(include_top=False, weights=None, input_shape=SMALL)
    with pytest.raises(ValueError, match=r"Valid block names: \['block1', 'block2'"):
        kt.select_variables(vgg, selector)


def test_get_block_and_argument_errors():
    vgg = A.VGG16(include_top=False, weights=None, input_shape=SMALL)
    assert kt.get_block(vgg, "block2").num_params == 73856 + 147584
    with pytest.raises(ValueError, match="Unknown block 'head'.*block5"):
        kt.get_block(vgg, "head")
    with pytest.raises(TypeError, match="Received: model="):
        kt.get_blocks("resnet50")
    with pytest.raises(ValueError, match="Received: selector=3"):
        kt.select_variables(vgg, 3)


def test_a_registered_spec_is_used_by_every_block_aware_function():
    def model():
        inputs = keras.Input((4,))
        x = keras.layers.Dense(3, name="low_dense")(inputs)
        x = keras.layers.Dense(3, name="mid_dense")(x)
        return keras.Model(inputs, keras.layers.Dense(2, name="high_dense")(x), name="custom_net")

    spec = kt.BlockSpec("custom", r"custom_net", (("low", r"low_.*"), ("mid", r"mid_.*"), ("high", r"high_.*")))
    with pytest.warns(UserWarning, match=r"kt.register_block_spec\(kt.BlockSpec\(...\)\)"):
        assert kt.block_names(model()) == ["low", "mid", "high"]  # prefix fallback: right here by luck only
    assert kt.register_block_spec(spec) is spec
    try:
        assert kt.block_specs()[0] is spec and kt.find_spec(model()) is spec
        classifier = kt.build_classifier(model(), num_classes=2)
        assert kt.block_names(classifier) == ["low", "mid", "high", "head"]
        kt.unfreeze(classifier, top_blocks=1)
        assert kt.trainable_summary(classifier).state.tolist() == ["frozen", "frozen", "trainable", "trainable"]
        rates = kt.describe_learning_rates(classifier, kt.differential_optimizer(classifier, head_lr=0.1))
        assert rates.block.tolist() == ["low", "mid", "high", "head"]
        assert rates.learning_rate.tolist()[2:] == [0.01, 0.1]
        # Registering the same family again replaces it.
        renamed = kt.BlockSpec("custom", r"custom_net", (("bottom", r"low_.*|mid_.*"), ("top", r"high_.*")))
        kt.register_block_spec(renamed)
        assert kt.block_names(model()) == ["bottom", "top"]
        assert [s.family for s in kt.block_specs()].count("custom") == 1
    finally:
        kt.unregister_block_spec("custom")
    assert kt.find_spec(model()) is None
    with pytest.raises(ValueError, match=r"No block spec is registered for `family`. Received: family='custom'"):
        kt.unregister_block_spec("custom")
    with pytest.raises(TypeError, match=r"`spec` must be a kt.BlockSpec. Received: spec='custom'"):
        kt.register_block_spec("custom")


@pytest.mark.parametrize("kwargs, message", [
    (dict(family="", model="m", rules=(("a", "a"),)), r"`family` must be a non-empty string. Received: family=''"),
    (dict(family="f", model="(", rules=(("a", "a"),)), r"`model` must be a regular expression. Received: model='\('"),
    (dict(family="f", model="m", rules=()), r"`rules` must be a non-empty sequence of \(block, regex\) pairs"),
    (dict(family="f", model="m", rules=(("a", "["),)), r"`rules\['a'\]` must be a regular expression"),
    (dict(family="f", model="m", rules=(("a", "a"),), unmatched="last"),
     r"`unmatched` must be one of 'previous', 'next'. Received: unmatched='last'"),
])
def test_block_spec_checks_its_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kt.BlockSpec(**kwargs)


@pytest.mark.slow
def test_hub_backbones_rebuilt_from_their_config_keep_their_blocks():
    """A preset loads a backbone from its config, whose `name` some families prefix to their layers (HGNetV2 lost
    every block that way)."""
    from benchmarks.hub_configs_text import TEXT_CONFIGS
    from benchmarks.hub_configs_vision import VISION_CONFIGS

    for family, build in {**VISION_CONFIGS, **TEXT_CONFIGS}.items():
        built = build()
        rebuilt = type(built).from_config(built.get_config())
        assert kt.block_names(rebuilt) == kt.block_names(built), family
        assert kt.find_spec(rebuilt).family.startswith("keras_hub."), family
