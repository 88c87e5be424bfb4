"""Tiny keras-hub vision backbones, built offline from small configs.

`VISION_CONFIGS` maps a family name to a zero-argument function that builds a
small, randomly initialised instance of that family's keras-hub class (2-3
layers or stages, widths of 8-32, images of 32-64 pixels), so block discovery
and everything built on it can be timed and tested without downloading a
preset. The names are keras-hub's folders of the classes, as the block specs
in `keras_transfer.specs.hub_vision` name their families (`keras_hub.dinov2`);
`clip` is CLIP's vision encoder and `clip_text` its text encoder, which share
the `keras_hub.clip` spec. SigLIP2 is the SigLIP classes with other presets.

Example:

>>> from benchmarks.hub_configs_vision import VISION_CONFIGS
>>> type(VISION_CONFIGS["dinov2"]()).__name__
'DINOV2Backbone'
"""

import keras_hub


def vit():
    return keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32)


def deit():
    return keras_hub.models.DeiTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, intermediate_dim=32)


def dinov2():
    return keras_hub.models.DINOV2Backbone(
        patch_size=8, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32,
        image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3))


def dinov3():
    return keras_hub.models.DINOV3Backbone(
        patch_size=8, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32,
        num_register_tokens=2, image_shape=(32, 32, 3))


def siglip():
    return keras_hub.models.SigLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=3, num_heads=2, intermediate_dim=32, image_shape=(32, 32, 3))


def clip():
    return keras_hub.models.CLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=3, num_heads=2, intermediate_dim=32, image_shape=(32, 32, 3))


def clip_text():
    return keras_hub.models.CLIPTextEncoder(
        vocabulary_size=64, embedding_dim=16, hidden_dim=16, num_layers=3, num_heads=2, intermediate_dim=32,
        max_sequence_length=8)


def swin_transformer():
    return keras_hub.models.SwinTransformerBackbone(
        image_shape=(32, 32, 3), embed_dim=8, depths=(1, 1), num_heads=(2, 2), window_size=4, patch_size=4)


def mit():
    return keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1, 1], num_layers=3, layerwise_num_heads=[1, 1, 2], layerwise_sr_ratios=[2, 1, 1],
        max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3, 3], layerwise_strides=[4, 2, 2],
        image_shape=(32, 32, 3), hidden_dims=[8, 8, 16])


def efficientnet():
    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 3, stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 3], stackwise_num_repeats=[1, 2, 1],
        stackwise_input_filters=[8, 8, 16], stackwise_output_filters=[8, 16, 16],
        stackwise_expansion_ratios=[1, 2, 2], stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0.25],
        stackwise_strides=[1, 2, 2], stackwise_block_types=["fused", "fused", "unfused"],
        stackwise_force_input_filters=[0] * 3, stackwise_nores_option=[False] * 3,
        num_features=32, input_shape=(32, 32, 3))


def resnet():
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block", use_pre_activation=True,
        image_shape=(32, 32, 3))


def mobilenet():
    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16, 24], [32, 32]], stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[8, 8], [16, 16]], stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]], output_num_filters=32, depthwise_filters=8,
        depthwise_stride=2, depthwise_residual=False, last_layer_filter=32, squeeze_and_excite=0.5,
        input_num_filters=8, image_shape=(32, 32, 3))


def cspnet():
    return keras_hub.models.CSPNetBackbone(
        stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 2, 1],
        stackwise_strides=2, stackwise_num_filters=[8, 16, 16], block_type="dark_block", stage_type="csp",
        down_growth=True, bottle_ratio=(0.5, 1.0), block_ratio=(1.0, 0.5), expand_ratio=(2.0, 1.0),
        stem_padding="same", image_shape=(32, 32, 3))


def hgnetv2():
    return keras_hub.models.HGNetV2Backbone(
        depths=[1, 1], embedding_size=16, hidden_sizes=[16, 32], stem_channels=[3, 8, 16], hidden_act="relu",
        use_learnable_affine_block=False, stackwise_stage_filters=[[16, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, True], image_shape=(32, 32, 3))


VISION_CONFIGS = {
    "vit": vit,
    "deit": deit,
    "dinov2": dinov2,
    "dinov3": dinov3,
    "siglip": siglip,
    "clip": clip,
    "clip_text": clip_text,
    "swin_transformer": swin_transformer,
    "mit": mit,
    "efficientnet": efficientnet,
    "resnet": resnet,
    "mobilenet": mobilenet,
    "cspnet": cspnet,
    "hgnetv2": hgnetv2,
}
