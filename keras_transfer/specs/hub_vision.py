"""Block specs of keras-hub image backbones (and the CLIP text tower), recognised by class name.

A spec's family is keras-hub's folder of the class (`keras_hub.swin_transformer`), as
`kt.get_backbone` names a hub backbone's family; CLIP's two towers share one.
The two-tower `SigLIPBackbone` and `CLIPBackbone`, taken whole, split into
`vision_encoder`, `text_encoder` and `top` (projections and logit scale).

Transformers split into `embeddings`, one block per transformer layer (named
as keras-hub names the layer: ViT's `transformer_block_1`.., CLIP's and
SigLIP's `encoder_block_0`..; DINOv2/v3's `layers_N` become
`transformer_layer_N`) and `top` (the final norm, and SigLIP's attention
pooling). Where the transformer layers sit inside an encoder layer (ViT, DeiT,
DINOv2, DINOv3, HGNetV2's stages), `expand` opens it. Swin and MiT split
into stages (`stage_0`..; a MiT stage is its patch embedding, encoder layers
and norm). Convolutional families split into `stem`, their stages as
keras-hub names them, and `top` where they have one (MobileNet's last block,
`block_N`, is its final 1x1 convolution).

Layers of CLIP, SigLIP and DINO backbones carry the model's name as a prefix
when one was given (`vision_encoder_encoder_block_0`), so their rules accept
any prefix.

`lora_targets` are the attention query and value projections, the layers
keras-hub's `Backbone.default_lora_layer_names()` (`query`, `value`, ...)
picks. DINOv3 names them `q_proj` / `v_proj` and Swin fuses them into one
`attention_qkv` Dense; keras-hub's default names miss both, these specs name
them. MiT's attention Dense layers have automatic names (`dense_7`), which no
regex can tell apart, so MiT keeps `apply_lora`'s general rule (the Dense
layers of its last stage); convolutional families have no Dense layers, and
`apply_lora` adapts only Dense and EinsumDense.

Example:

>>> import keras_hub, keras_transfer as kt
>>> dino = keras_hub.models.DINOV2Backbone(
...     patch_size=8, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
...     image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3))
>>> kt.block_names(dino)
['embeddings', 'transformer_layer_0', 'transformer_layer_1', 'top']
"""

from keras_transfer.specs._spec import BlockSpec

# An optional model-name prefix, as CLIP, SigLIP and DINO give their layers.
_P = r"(?:.+_)?"
_QUERY_VALUE = (r"query", r"value")

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
        "keras_hub.mobilenet",
        r"MobileNetBackbone",
        (("stem", r"input_.*"), (r"\1", r"(block_\d+)_\d+")),
    ),
    BlockSpec(
        "keras_hub.cspnet",
        r"CSPNetBackbone",
        (("stem", r"csp_stem_.*"), (r"\1", r"(stage_\d+)_.*")),
    ),
    BlockSpec(
        "keras_hub.hgnetv2",
        r"HGNetV2Backbone",
        # Loaded from a preset, keras-hub prefixes these layers with the model's name.
        (("stem", _P + r"embedder"), (r"stage_\1", _P + r"encoder_stage_(\d+)")),
        expand=_P + r"encoder",
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
        lora_targets=_QUERY_VALUE,
    ),
    BlockSpec(
        "keras_hub.deit",
        r"DeiTBackbone",
        (
            ("embeddings", r"deit_patching_and_embedding"),
            (r"\1", r"(transformer_block_\d+)"),
            ("top", r"ln"),
        ),
        expand=r"deit_encoder",
        lora_targets=_QUERY_VALUE,
    ),
    BlockSpec(
        "keras_hub.dinov2",
        r"DINOV2Backbone",
        (
            ("embeddings", _P + r"embeddings"),
            (r"transformer_layer_\1", r"layers_(\d+)"),
            ("top", _P + r"layernorm"),
        ),
        expand=_P + r"encoder",
        lora_targets=_QUERY_VALUE,
    ),
    BlockSpec(
        "keras_hub.dinov3",
        r"DINOV3Backbone",
        (
            ("embeddings", _P + r"embeddings"),
            (r"transformer_layer_\1", r"layers_(\d+)"),
            ("top", _P + r"layernorm"),
        ),
        expand=_P + r"encoder",
        lora_targets=(r"q_proj", r"v_proj"),
    ),
    BlockSpec(
        "keras_hub.siglip",
        r"SigLIPVisionEncoder",
        (
            ("embeddings", _P + r"embedding"),
            (r"\1", _P + r"(encoder_block_\d+)"),
            ("top", _P + r"post_layer_norm"),
        ),
        lora_targets=_QUERY_VALUE,
    ),
    BlockSpec(
        "keras_hub.clip",
        r"CLIPVisionEncoder|CLIPTextEncoder",
        (
            ("embeddings", _P + r"embedding|" + _P + r"pre_layer_norm"),
            (r"\1", _P + r"(encoder_block_\d+)"),
            ("top", _P + r"layer_norm"),
        ),
        lora_targets=_QUERY_VALUE,
    ),
    # The two-tower models, whole: one block per tower, then the projections and logit scale. Without
    # these, the vision tower's spec would split the model and leave the text tower in `head`.
    BlockSpec(
        "keras_hub.siglip",
        r"SigLIPBackbone",
        (("vision_encoder", r".*vision_encoder"), ("text_encoder", r".*text_encoder"), ("top", r"siglip_head")),
        lora_targets=_QUERY_VALUE,
    ),
    BlockSpec(
        "keras_hub.clip",
        r"CLIPBackbone",
        (
            ("vision_encoder", r".*vision_encoder"),
            ("text_encoder", r".*text_encoder"),
            ("top", r"vision_pooler|text_pooler|vision_projection|text_projection|clip_head"),
        ),
        lora_targets=_QUERY_VALUE,
    ),
    BlockSpec(
        "keras_hub.swin_transformer",
        r"SwinTransformerBackbone",
        (("embeddings", r"patch_embedding"), (r"\1", r"(stage_\d+)"), ("top", r"norm")),
        lora_targets=(r"attention_qkv",),
    ),
    BlockSpec(
        "keras_hub.mit",
        r"MiTBackbone",
        ((r"stage_\1", r"patch_and_embed_(\d+)"),),
    ),
)
