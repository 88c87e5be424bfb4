"""Block specs of keras-hub image backbones, recognised by class name."""

from keras_transfer.specs._spec import BlockSpec

SPECS = (
    BlockSpec(
        "keras_hub.resnet",
        r"ResNetBackbone",
        (("stem", r"conv1_.*|pool1_.*"), (r"\1", r"(stack\d+)_.*"), ("top", r"post_.*")),
    ),
    BlockSpec(
        "keras_hub.efficientnet",
        r"EfficientNetBackbone",
        (("stem", r"stem_.*"), (r"\1", r"(block\d+)[a-z]_.*"), ("top", r"top_.*")),
    ),
    BlockSpec(
        "keras_hub.vit",
        r"ViTBackbone",
        (
            ("embeddings", r"vit_patching_and_embedding"),
            (r"\1", r"(transformer_block_\d+)"),
            ("top", r"ln"),
        ),
        expand=r"vit_encoder",
    ),
)
