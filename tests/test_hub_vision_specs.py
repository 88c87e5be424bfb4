"""Block specs of keras-hub vision backbones (issue 15), on tiny offline configs.

Each family of `benchmarks.hub_configs_vision.VISION_CONFIGS` splits into its
architecture's own blocks, in order, with every variable in exactly one
block; `unfreeze(top_blocks=2)` trains exactly the parameters of the family's
last two units, counted from the model's own layers; `apply_lora` puts
adapters on exactly the attention query and value projections. A tiny DINOv2
classifier then fine-tunes only its top blocks, and `layer_decay` gives each
transformer layer its own rate.
"""

import collections
import warnings

import keras
import keras_hub
import numpy as np
import pytest

import keras_transfer as kt
from benchmarks.hub_configs_vision import VISION_CONFIGS
from keras_transfer import _keras_compat as compat

# Not `core`: block discovery is backend-agnostic code, and building these models on JAX compiles each
# (minutes in CI's two JAX runs); the JAX paths are tested in test_multi_replica and test_model_parallel.


def _at(model, path):
    """The layer at `path` ("encoder/layers_2"): top-level name, then names of sublayers."""
    first, *rest = path.split("/")
    layer = model.get_layer(first)
    for name in rest:
        layer = next(child for child in compat.child_layers(layer) if child.name == name)
    return layer


def _paths(*paths):
    return lambda model: [_at(model, p) for p in paths]


def _from(name):
    """Every top-level layer from `name` to the output."""
    def layers(model):
        names = [layer.name for layer in model.layers]
        return model.layers[names.index(name):]
    return layers


def _attention(template, indices, names=("query", "value")):
    return {template.format(i=i, name=n) for i in indices for n in names}


# family: (blocks, the last two units as the model's own layers, their trainable parameters, LoRA layer paths).
# Counts by hand for the transformers (hidden 16, MLP 32): a layer is 2 LayerNorms (2 * 32), q/k/v/out
# projections (4 * (16 * 16 + 16)) and the MLP (16 * 32 + 32 + 32 * 16 + 16): 2224, DINO adds two
# LayerScales (2 * 16): 2256; a final LayerNorm is 32. LoRA `None`: no Dense layer to adapt (an error).
CASES = {
    "vit": (
        ["embeddings", "transformer_block_1", "transformer_block_2", "transformer_block_3", "top"],
        _paths("vit_encoder/transformer_block_3", "vit_encoder/ln"), 2224 + 32,
        _attention("vit_encoder/transformer_block_{i}/mha/{name}", (1, 2, 3)),
    ),
    "deit": (
        ["embeddings", "transformer_block_1", "transformer_block_2", "transformer_block_3", "top"],
        _paths("deit_encoder/transformer_block_3", "deit_encoder/ln"), 2224 + 32,
        _attention("deit_encoder/transformer_block_{i}/mha/{name}", (1, 2, 3)),
    ),
    "dinov2": (
        ["embeddings", "transformer_layer_0", "transformer_layer_1", "transformer_layer_2", "top"],
        _paths("encoder/layers_2", "layernorm"), 2256 + 32,
        _attention("encoder/layers_{i}/attention/attention/{name}", (0, 1, 2)),
    ),
    "dinov3": (
        ["embeddings", "transformer_layer_0", "transformer_layer_1", "transformer_layer_2", "top"],
        _paths("encoder/layers_2", "layernorm"), 2256 + 32,
        _attention("encoder/layers_{i}/attention/{name}", (0, 1, 2), ("q_proj", "v_proj")),
    ),
    "siglip": (
        ["embeddings", "encoder_block_0", "encoder_block_1", "encoder_block_2", "top"],
        # The attention-pooling head: a probe (16), attention (1088), LayerNorm (32), MLP (1072).
        _paths("encoder_block_2", "post_layer_norm", "head"), 2224 + 32 + 16 + 1088 + 32 + 1072,
        _attention("encoder_block_{i}/self_attn/{name}", (0, 1, 2)) | {"head/attention/query", "head/attention/value"},
    ),
    "clip": (
        ["embeddings", "encoder_block_0", "encoder_block_1", "encoder_block_2", "top"],
        _paths("encoder_block_2", "layer_norm"), 2224 + 32,
        _attention("encoder_block_{i}/attention/{name}", (0, 1, 2)),
    ),
    "clip_text": (
        ["embeddings", "encoder_block_0", "encoder_block_1", "encoder_block_2", "top"],
        _paths("encoder_block_2", "layer_norm"), 2224 + 32,
        _attention("encoder_block_{i}/attention/{name}", (0, 1, 2)),
    ),
    "swin_transformer": (
        ["embeddings", "stage_0", "stage_1", "top"],
        # Stage 1 (width 16, MLP 64, 4x4 windows), one block: 2 LayerNorms (64), qkv (16 * 48 + 48), the
        # projection (272), a relative position bias table ((2 * 4 - 1) ** 2 * 2 heads) and the MLP
        # (16 * 64 + 64 + 64 * 16 + 16): 3378.
        _paths("stage_1", "norm"), 3378 + 32,
        {"stage_0/blocks_0/attn/attention_qkv", "stage_1/blocks_0/attn/attention_qkv"},
    ),
    "mit": (["stage_0", "stage_1", "stage_2"], _from("patch_and_embed_1"), 6960, "last_block_dense"),
    "efficientnet": (
        ["stem", "block1", "block2", "block3", "top"], _paths("block3a_", "top_conv", "top_bn"),
        # Block 3 (16 -> 32 -> 16 channels): expand 512, depthwise 288, squeeze-excite 132 + 160, project 512;
        # top conv 16 * 32. BatchNorm stays frozen.
        1604 + 512, None,
    ),
    # Stack 1 (64 -> 16 channels, no conv biases): 3x3 conv 9216, 1x1 shortcut 1024, 3x3 conv 2304.
    "resnet": (["stem", "stack0", "stack1", "top"], _from("stack1_block0_pre_activation_bn"), 12544, None),
    "mobilenet": (
        ["stem", "block_0", "block_1", "block_2", "block_3"], _paths("block_2_0", "block_2_1", "block_3_0"), 5008, None,
    ),
    "cspnet": (["stem", "stage_0", "stage_1", "stage_2"], _from("stage_1_csp_conv_pad_1"), 6528, None),
    "hgnetv2": (["stem", "stage_0", "stage_1"], _paths("encoder/encoder_stage_0", "encoder/encoder_stage_1"), 2712, None),
}


def test_every_vision_config_has_a_case():
    assert sorted(CASES) == sorted(VISION_CONFIGS)


_BUILT = {}


def _model(family):
    """One instance per family for this module (building them all twice would double its time).

    The LoRA test leaves adapters on it; block names and coverage hold with them too, in any test order.
    """
    if family not in _BUILT:
        with warnings.catch_warnings():
            # Swin's window attention warns about masks on any input.
            warnings.filterwarnings("ignore", message=".*does not support masking.*")
            _BUILT[family] = VISION_CONFIGS[family]()
    return _BUILT[family]


def _size(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def _trainable_kind(layers):
    """What the layers would train under `kt.unfreeze`: every trainable-kind variable but BatchNorm's, by id."""
    variables = {}
    for layer in layers:
        for sub in compat.walk_layers(layer):
            if not isinstance(sub, keras.layers.BatchNormalization):
                variables.update((id(v), v) for v in compat.trainable_kind_variables(sub))
    return variables


@pytest.mark.parametrize("family", sorted(CASES))
def test_blocks_are_the_families_own_units_and_cover_every_variable(family):
    model = _model(family)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no generic-fallback warning
        blocks = kt.get_blocks(model)
    # A spec's family is keras-hub's folder of the class, as `kt.get_backbone` names it.
    assert kt.find_spec(model).family == "keras_hub." + type(model).__module__.split(".")[-2]
    assert [b.name for b in blocks] == CASES[family][0]
    owners = collections.Counter(id(v) for b in blocks for v in b.weights)
    assert sorted(owners) == sorted(id(v) for v in model.weights)
    assert set(owners.values()) == {1}
    assert sum(b.num_params for b in blocks) == model.count_params()


@pytest.mark.parametrize("family", sorted(CASES))
def test_unfreeze_top_two_blocks_then_lora_on_the_query_and_value_projections(family):
    _, top_two, count, lora = CASES[family]
    model = _model(family)
    expected = _trainable_kind(top_two(model))
    assert _size(expected.values()) == count
    assert count < _size(model.weights)
    kt.unfreeze(model, top_blocks=2)
    assert _size(model.trainable_weights) == count
    assert {id(v) for v in model.trainable_weights} == set(expected)

    if lora is None:
        with pytest.raises(ValueError, match="no Dense or EinsumDense layer outside the head"):
            kt.apply_lora(model, rank=2)
        return
    if lora == "last_block_dense":
        # MiT's Dense layers are auto-named (`dense_7`): no spec names its attention, so LoRA's general
        # rule takes the Dense layers of the last block with any (stage 2's encoder).
        lora = {sub.path for sub in compat.walk_layers(model.get_layer("hierarchical_encoder_2_0"))
                if type(sub) is keras.layers.Dense}
        assert len(lora) == 6  # q, k, v, proj, and MixFFN's two
    kt.apply_lora(model, rank=2)
    adapted = {layer.path for layer in compat.walk_layers(model)
               if isinstance(layer, (kt.LoRADense, kt.LoRAEinsumDense))}
    assert adapted == lora


@pytest.mark.parametrize("family, name", [("siglip", "vision_encoder"), ("clip_text", "text_encoder"),
                                          ("dinov2", "dino")])
def test_a_named_model_prefixes_its_layers_and_keeps_its_blocks(family, name):
    config = {**_model(family).get_config(), "name": name}
    model = type(_model(family)).from_config(config)
    assert model.layers[1].name.startswith(name + "_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kt.block_names(model) == CASES[family][0]


@pytest.mark.parametrize("family", ["siglip", "clip"])
def test_a_two_tower_model_is_one_block_per_tower_and_none_is_the_head(family):
    vision = VISION_CONFIGS[family]()
    text_class = keras_hub.models.SigLIPTextEncoder if family == "siglip" else keras_hub.models.CLIPTextEncoder
    text = text_class(vocabulary_size=64, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2,
                      intermediate_dim=32, max_sequence_length=8)
    model = (keras_hub.models.SigLIPBackbone(vision, text) if family == "siglip"
             else keras_hub.models.CLIPBackbone(vision, text, projection_dim=8))
    blocks = kt.get_blocks(model)
    assert [b.name for b in blocks] == ["vision_encoder", "text_encoder", "top"]
    assert blocks[0].layers == (vision,) and blocks[1].layers == (text,)
    assert sum(b.num_params for b in blocks) == model.count_params()
    # SigLIP's top is a logit scale and bias; CLIP's two projections (16 * 8 each) and a logit scale.
    assert blocks[2].num_params == {"siglip": 2, "clip": 2 * 16 * 8 + 1}[family]


# --- a DINOv2 classifier -----------------------------------------------------


def _dino_classifier():
    # By hand, not `kt.build_classifier`: keras-hub's DINOv2 takes a dict of inputs ({"images": ...}).
    backbone = VISION_CONFIGS["dinov2"]()
    images = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling1D(name="head_pool")(backbone({"images": images}, training=False))
    return keras.Model(images, keras.layers.Dense(2, name="head_logits")(x))


def _images(n=8):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, 32, 32, 3)).astype("float32"), np.arange(n) % 2


@pytest.mark.slow
def test_dinov2_fine_tune_trains_only_the_last_transformer_layer_its_norm_and_the_head():
    import tensorflow as tf

    model = _dino_classifier()
    backbone = model.layers[1]
    expected = {id(v) for layer in (_at(backbone, "encoder/layers_2"), backbone.get_layer("layernorm"),
                                   model.get_layer("head_logits"))
                for v in layer.weights}
    before = [(v, keras.ops.convert_to_numpy(v).copy()) for v in model.weights]
    x, y = _images()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    result = kt.fine_tune(model, ds, num_classes=2, strategy="fine_tune", top_blocks=2, head_epochs=1,
                          fine_tune_epochs=1, jit_compile=False, verbose=0)
    assert result.model is model
    assert list(result.history.phase) == ["head", "fine_tune"]
    changed = {id(v) for v, value in before if not np.array_equal(keras.ops.convert_to_numpy(v), value)}
    assert changed == expected
    # Layer 2: 2256 parameters, the final LayerNorm 32, the head 16 * 2 + 2.
    assert result.trainable_params == 2256 + 32 + 34


@pytest.mark.filterwarnings("ignore:Gradients do not exist for variables.*mask_token")
def test_dinov2_layer_decay_gives_each_transformer_layer_its_own_rate():
    # Two copies with the same weights take one step on the same batch: plain SGD at rate 1 moves each
    # variable by its gradient, the differential SGD by its block's rate times it.
    plain, decayed = _dino_classifier(), _dino_classifier()
    decayed.set_weights(plain.get_weights())
    for model in (plain, decayed):
        kt.unfreeze(model, top_blocks=5)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    plain.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss, jit_compile=False)
    decayed.compile(optimizer=kt.differential_optimizer(decayed, head_lr=1.0, layer_decay=0.5, optimizer="sgd"),
                    loss=loss, jit_compile=False)
    before = [keras.ops.convert_to_numpy(v) for v in plain.weights]
    x, y = _images(4)
    plain.train_on_batch(x, y)
    decayed.train_on_batch(x, y)
    step = {id(v): keras.ops.convert_to_numpy(v) - w for v, w in zip(plain.weights, before)}
    decayed_step = {id(v): keras.ops.convert_to_numpy(v) - w for v, w in zip(decayed.weights, before)}
    plain_of = dict(zip((id(v) for v in decayed.weights), (id(v) for v in plain.weights)))
    rates = {}
    for block in kt.get_blocks(decayed):
        moved = np.sqrt(sum(np.sum(decayed_step[id(v)] ** 2) for v in block.weights))
        full = np.sqrt(sum(np.sum(step[plain_of[id(v)]] ** 2) for v in block.weights))
        assert full > 0
        rates[block.name] = float(moved / full)
    assert rates == pytest.approx({"embeddings": 0.03125, "transformer_layer_0": 0.0625, "transformer_layer_1": 0.125,
                                   "transformer_layer_2": 0.25, "top": 0.5, "head": 1.0}, rel=1e-4)
