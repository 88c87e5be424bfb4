"""Block specs of keras-hub text backbones (encoders and decoder LLMs), recognised by class name.

Each backbone is its embedding layers, then its transformer layers (one block
each, named as keras-hub names the layer, so a block name is also the prefix
of its variables' paths), then its final norm or pooler where it has one:

- encoders: `embeddings`, `transformer_layer_0..N-1`, and `pooler` for the
  families with a pooled `[CLS]` output (BERT, ALBERT, ELECTRA). DeBERTaV3's
  layers are `disentangled_attention_encoder_layer_N`; its relative position
  embeddings (`rel_embedding`), shared by every layer, are embeddings.
- decoder LLMs: `embeddings`, `transformer_layer_0..N-1` (Gemma, Gemma3:
  `decoder_block_N`), `final_norm`. A Gemma3 with images has a
  `vision_encoder` block after `embeddings`, and a Gemma3 embedding model a
  `pooler` after `final_norm`.

Token embeddings are one layer, so they form one block, `embeddings`, also
where the LM head reuses them (tied weights: Gemma, Qwen) or keeps its own
`reverse_embeddings` inside the same layer (Llama, Mistral, Phi3 untied):
blocks group layers, and a layer's variables stay together.

ALBERT shares its transformer layer across depth: `num_layers` calls of
`num_groups` groups of `num_inner_repetitions` layers. Its blocks are the
distinct layers, `group_G_inner_layer_I` (one, `group_0_inner_layer_0`, in
every preset), each covering all the depths it is called at: depth-wise
unfreezing cannot separate what the weights do not.

`lora_targets` are the layers keras-hub's `Backbone.enable_lora` picks by
default (`default_lora_layer_names()`: `query_dense`, `value_dense`, `query`,
`value`), which in these families are the attention's `query` and `value`
EinsumDense projections.
"""

from keras_transfer.specs._spec import BlockSpec

# Attention query and value projections: what `default_lora_layer_names()` names in every family here.
_QUERY_VALUE = (r"query", r"value")
# The embedding layers of the BERT-style encoders: token, position and segment embeddings, their
# sum, norm and dropout, and the projection to the hidden size where the embeddings are smaller.
_ENCODER_EMBEDDINGS = r"token_embedding|position_embedding|segment_embedding|embeddings?_.*"
_LAYERS = (r"\1", r"(transformer_layer_\d+)")


def _encoder(family, model, embeddings=_ENCODER_EMBEDDINGS, layers=_LAYERS, pooler=None):
    rules = (("embeddings", embeddings), layers) + ((("pooler", pooler),) if pooler else ())
    return BlockSpec(f"keras_hub.{family}", model, rules, lora_targets=_QUERY_VALUE)


def _decoder(family, model, final_norm, embeddings=r"token_embedding", layers=_LAYERS):
    rules = (("embeddings", embeddings), layers, ("final_norm", final_norm))
    return BlockSpec(f"keras_hub.{family}", model, rules, lora_targets=_QUERY_VALUE)


SPECS = (
    _encoder("bert", r"BertBackbone", pooler=r"pooled_dense"),
    _encoder("roberta", r"RobertaBackbone", embeddings=r"embeddings|embeddings_.*"),
    _encoder(
        "deberta_v3",
        r"DebertaV3Backbone",
        embeddings=r"token_embedding|embeddings_.*|rel_embedding",
        layers=(r"\1", r"(disentangled_attention_encoder_layer_\d+)"),
    ),
    _encoder("distil_bert", r"DistilBertBackbone", embeddings=r"token_and_position_embedding|embeddings_.*"),
    _encoder("albert", r"AlbertBackbone", layers=(r"\1", r"(group_\d+_inner_layer_\d+)"), pooler=r"pooled_dense"),
    _encoder("electra", r"ElectraBackbone", pooler=r"pooled_dense"),
    _decoder("gemma", r"GemmaBackbone", r"final_normalization", layers=(r"\1", r"(decoder_block_\d+)")),
    # With a vision encoder (the 4B+ presets) it is a block of its own, feeding the interleaved
    # embeddings; its attention's `query_proj` / `value_proj` are LoRA targets too, as in
    # `Gemma3Backbone.default_lora_layer_names`. An embedding model ends in a `pooler`.
    BlockSpec(
        "keras_hub.gemma3",
        r"Gemma3Backbone",
        (
            ("embeddings", r"token_embedding"),
            ("vision_encoder", r"gemma3_vision_encoder|interleave_embeddings"),
            (r"\1", r"(decoder_block_\d+)"),
            ("final_norm", r"final_normalization"),
            ("pooler", r"mean_pooling|pooling_dense_\d+|embedding_projection|unit_normalization"),
        ),
        lora_targets=_QUERY_VALUE + (r"query_proj", r"value_proj"),
    ),
    _decoder("llama", r"LlamaBackbone", r"sequence_output_layernorm"),
    _decoder("llama3", r"Llama3Backbone", r"sequence_output_layernorm"),
    _decoder("mistral", r"MistralBackbone", r"sequence_output_layernorm"),
    # keras-hub's `qwen` family: Qwen 1.5 and Qwen2 (`keras_hub.models.Qwen2Backbone` is this class).
    _decoder("qwen", r"QwenBackbone", r"sequence_output_layernorm"),
    _decoder("qwen3", r"Qwen3Backbone", r"sequence_output_layernorm"),
    _decoder("phi3", r"Phi3Backbone", r"sequence_output_layernorm"),
    _decoder("gpt2", r"GPT2Backbone", r"layer_norm", embeddings=r"token_embedding|position_embedding|embeddings_.*"),
)
