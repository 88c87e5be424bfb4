"""Block specs of `keras.applications` backbones, recognised by model name."""

from keras_transfer.specs._spec import BlockSpec

_TOP = r"avg_pool|max_pool|predictions|global_.*_pooling2d(_\d+)?|flatten(_\d+)?"

SPECS = (
    BlockSpec(
        "efficientnet",
        r"efficientnet(b\d|v2-.*)",
        (("stem", r"stem_.*"), (r"\1", r"(block\d+)[a-z]_.*"), ("top", rf"top_.*|{_TOP}")),
        signature=(r"stem_conv", r"top_conv", r"block1a_.*"),
    ),
    BlockSpec(
        "resnet",
        r"resnet\d+(v2)?",
        (("stem", r"conv1_.*|pool1_.*"), (r"\1", r"(conv\d)_block.*"), ("top", rf"post_.*|{_TOP}")),
        signature=(r"conv1_conv", r"conv2_block1_.*", r"conv5_block\d+_out"),
    ),
    BlockSpec(
        "mobilenet_v2",
        r"mobilenetv2_.*",
        (
            ("stem", r"Conv1|bn_Conv1|Conv1_relu|expanded_conv_.*"),
            (r"\1", r"(block_\d+)_.*"),
            ("top", rf"Conv_1|Conv_1_bn|out_relu|{_TOP}"),
        ),
        signature=(r"Conv1", r"block_1_expand", r"Conv_1"),
    ),
    BlockSpec(
        "mobilenet_v3",
        r"MobileNetV3(Small|Large)",
        (
            ("stem", r"conv|conv_bn"),
            (r"\1", r"(expanded_conv(?:_\d+)?)_.*"),
            ("top", rf"conv_1|conv_1_bn|conv_2|logits|{_TOP}"),
        ),
        signature=(r"conv_bn", r"expanded_conv_depthwise", r"conv_1_bn"),
    ),
    BlockSpec(
        "convnext",
        r"convnext_.*",
        (
            ("stem", r".*_stem"),
            (r"\1", r".*_(stage_\d+)_block_\d+_.*"),
            ("top", rf".*_head_.*|layer_normalization(_\d+)?|{_TOP}"),
        ),
        unmatched="next",
        signature=(r".*_prestem_normalization", r".*_stage_0_block_0_.*"),
    ),
    BlockSpec(
        "densenet",
        r"densenet\d+",
        (("stem", r"conv1_.*|pool1"), (r"\1", r"(conv\d)_block.*"), ("top", rf"bn|relu|{_TOP}")),
        signature=(r"conv1_conv", r"conv2_block1_0_bn", r"pool2_conv"),
    ),
    BlockSpec(
        "vgg",
        r"vgg1[69]",
        ((r"\1", r"(block\d)_.*"), ("top", rf"fc1|fc2|{_TOP}")),
        signature=(r"block1_conv1", r"block5_conv3", r"block5_pool"),
    ),
    BlockSpec(
        "xception",
        r"xception",
        ((r"\1", r"(block\d+)_.*"), ("top", _TOP)),
        signature=(r"block1_conv1_bn", r"block14_sepconv2"),
    ),
    BlockSpec(
        "inception_v3",
        r"inception_v3",
        (("stem", r"max_pooling2d(_\d+)?"), (r"\1", r"(mixed\d+)"), ("top", _TOP)),
        unmatched="next",
        signature=(r"mixed0", r"mixed10"),
    ),
)
