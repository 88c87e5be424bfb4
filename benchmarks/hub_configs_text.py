"""Tiny keras-hub text backbones, built offline from a config (presets need the internet).

`TEXT_CONFIGS` maps a family name to a zero-argument function that builds a
small instance of that family's backbone with random weights: 2 layers, hidden
size 16-32, a vocabulary of 128. The block-discovery benchmark and
`tests/test_hub_text_specs.py` use them; their block structure is the
pretrained presets', only smaller.

`VARIANT_CONFIGS` holds other shapes the same specs must handle (a Gemma3
with a vision encoder, an ALBERT with several groups, a Gemma3 embedding
model), and `UNKNOWN_TEXT_CONFIGS` a text family keras_transfer has no spec
for (FNet), which goes through the generic fallback.
"""

import keras_hub

VOCAB = 128


def _bert():
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32,
    )


def _roberta():
    return keras_hub.models.RobertaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32,
    )


def _deberta_v3():
    return keras_hub.models.DebertaV3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32, bucket_size=8,
    )


def _distil_bert():
    return keras_hub.models.DistilBertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32,
    )


def _albert():
    # One group holding one shared layer, called `num_layers` times, as in every ALBERT preset.
    return keras_hub.models.AlbertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, num_groups=1, num_inner_repetitions=1, max_sequence_length=32,
    )


def _electra():
    # embedding_dim != hidden_dim, as in the presets: the model has its `embeddings_projection`.
    return keras_hub.models.ElectraBackbone(
        vocab_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, embedding_dim=8,
        intermediate_dim=32, max_sequence_length=32,
    )


def _gemma():
    return keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8,
    )


def _gemma3():
    # Text only (no vision encoder), as the 1B preset.
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCAB, image_size=16, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8,
        vision_encoder=None,
    )


def _llama():
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32,
    )


def _llama3():
    return keras_hub.models.Llama3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32,
    )


def _mistral():
    return keras_hub.models.MistralBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, sliding_window=8,
    )


def _qwen():
    # keras-hub's `qwen` family: Qwen 1.5 and Qwen2 presets share this backbone.
    return keras_hub.models.QwenBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32,
    )


def _qwen3():
    return keras_hub.models.Qwen3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        head_dim=8, hidden_dim=16, intermediate_dim=32,
    )


def _phi3():
    return keras_hub.models.Phi3Backbone(
        vocabulary_size=VOCAB, num_layers=2, hidden_dim=16, intermediate_dim=32,
        num_query_heads=2, num_key_value_heads=1, max_sequence_length=32,
        pretraining_sequence_length=32,
    )


def _gpt2():
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32,
    )


TEXT_CONFIGS = {
    "bert": _bert,
    "roberta": _roberta,
    "deberta_v3": _deberta_v3,
    "distil_bert": _distil_bert,
    "albert": _albert,
    "electra": _electra,
    "gemma": _gemma,
    "gemma3": _gemma3,
    "llama": _llama,
    "llama3": _llama3,
    "mistral": _mistral,
    "qwen": _qwen,
    "qwen3": _qwen3,
    "phi3": _phi3,
    "gpt2": _gpt2,
}


def _gemma3_vision():
    encoder = keras_hub.models.Gemma3VisionEncoder(
        image_size=16, patch_size=4, num_heads=2, hidden_dim=8, num_layers=1, intermediate_dim=16,
        output_dim=16, pool_size=2,
    )
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCAB, image_size=16, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8,
        vision_encoder=encoder,
    )


def _gemma3_embedding():
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCAB, image_size=16, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8,
        vision_encoder=None, is_embedding_model=True, pooling_intermediate_dim=32, embedding_dim=8,
    )


def _albert_groups():
    # Two groups of two distinct layers, each group called twice: 8 layers deep, 4 weight sets.
    return keras_hub.models.AlbertBackbone(
        vocabulary_size=VOCAB, num_layers=4, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, num_groups=2, num_inner_repetitions=2, max_sequence_length=32,
    )


def _f_net():
    return keras_hub.models.FNetBackbone(
        vocabulary_size=VOCAB, num_layers=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=32,
    )


VARIANT_CONFIGS = {
    "gemma3_vision": _gemma3_vision,
    "gemma3_embedding": _gemma3_embedding,
    "albert_groups": _albert_groups,
}

UNKNOWN_TEXT_CONFIGS = {
    "f_net": _f_net,
}
