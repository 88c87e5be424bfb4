"""The block-spec table: how each known family's layers group into blocks.

One module per source of models: `applications` (keras.applications),
`hub_vision` and `hub_text` (keras-hub). `BLOCK_SPECS` is tried in order, so
the generic keras-hub transformer rule, which matches any `*Backbone` with
`transformer_layer_N` layers, comes last.
"""

from keras_transfer.specs import applications, hub_text, hub_vision
from keras_transfer.specs._spec import BlockSpec

# Any keras-hub backbone whose layers are `transformer_layer_N`, when no family spec above matched.
TRANSFORMER_FALLBACK = BlockSpec(
    "keras_hub.transformer",
    r".*Backbone",
    (
        ("embeddings", r".*embedding.*|embeddings_.*"),
        (r"\1", r"(transformer_layer_\d+)"),
        ("pooler", r"pooled_dense|final_layernorm|layer_norm|.*_layer_?norm"),
    ),
    signature=(r"transformer_layer_0",),
)

BLOCK_SPECS = applications.SPECS + hub_vision.SPECS + hub_text.SPECS + (TRANSFORMER_FALLBACK,)

__all__ = ["BLOCK_SPECS", "BlockSpec"]
