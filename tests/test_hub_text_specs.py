"""keras-hub text backbones: each family's exact blocks, freezing by blocks, and its default LoRA targets.

Every model is a tiny random instance from `benchmarks.hub_configs_text` (presets
need the internet). An unknown family (FNet) goes through the generic fallback
until a spec is registered for it.
"""

import collections
import warnings

import keras
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras_transfer as kt  # noqa: E402
from benchmarks.hub_configs_text import (  # noqa: E402
    TEXT_CONFIGS,
    UNKNOWN_TEXT_CONFIGS,
    VARIANT_CONFIGS,
)
from keras_transfer import _keras_compat as compat  # noqa: E402

# Not `core`: block discovery is backend-agnostic code, and building these models on JAX compiles each
# (minutes in CI's two JAX runs); the JAX paths are tested in test_multi_replica and test_model_parallel.

BUILDERS = {**TEXT_CONFIGS, **VARIANT_CONFIGS}
# The families run by default; the variants (other shapes of the same families) with `-m slow`.
MODELS = list(TEXT_CONFIGS) + [pytest.param(name, marks=pytest.mark.slow) for name in VARIANT_CONFIGS]

BERT_EMBEDDINGS = ["token_embedding", "position_embedding", "segment_embedding", "embeddings_add",
                   "embeddings_layer_norm", "embeddings_dropout"]
LAYERS = ["transformer_layer_0", "transformer_layer_1"]
DECODER_BLOCKS = ["decoder_block_0", "decoder_block_1"]


def _own(names):
    """Blocks holding one layer of the same name."""
    return {name: [name] for name in names}


# Per model: its spec family, then each block (in order) with the names of its
# layers, in order.
BLOCKS = {
    "bert": ("bert", {"embeddings": BERT_EMBEDDINGS, **_own(LAYERS), "pooler": ["pooled_dense"]}),
    "roberta": ("roberta", {"embeddings": ["embeddings", "embeddings_layer_norm", "embeddings_dropout"],
                            **_own(LAYERS)}),
    "deberta_v3": ("deberta_v3", {
        "embeddings": ["token_embedding", "embeddings_layer_norm", "embeddings_dropout", "rel_embedding"],
        **_own(["disentangled_attention_encoder_layer_0", "disentangled_attention_encoder_layer_1"])}),
    "distil_bert": ("distil_bert", {
        "embeddings": ["token_and_position_embedding", "embeddings_layer_norm", "embeddings_dropout"],
        **_own(LAYERS)}),
    "albert": ("albert", {"embeddings": BERT_EMBEDDINGS + ["embedding_projection"],
                          "group_0_inner_layer_0": ["group_0_inner_layer_0"], "pooler": ["pooled_dense"]}),
    "electra": ("electra", {"embeddings": BERT_EMBEDDINGS + ["embeddings_projection"], **_own(LAYERS),
                            "pooler": ["pooled_dense"]}),
    "gemma": ("gemma", {"embeddings": ["token_embedding"], **_own(DECODER_BLOCKS),
                        "final_norm": ["final_normalization"]}),
    "gemma3": ("gemma3", {"embeddings": ["token_embedding"], **_own(DECODER_BLOCKS),
                          "final_norm": ["final_normalization"]}),
    **{
        family: (family, {"embeddings": ["token_embedding"], **_own(LAYERS),
                          "final_norm": ["sequence_output_layernorm"]})
        for family in ("llama", "llama3", "mistral", "qwen", "qwen3", "phi3")
    },
    "gpt2": ("gpt2", {"embeddings": ["token_embedding", "position_embedding", "embeddings_add",
                                     "embeddings_dropout"], **_own(LAYERS), "final_norm": ["layer_norm"]}),
    "gemma3_vision": ("gemma3", {"embeddings": ["token_embedding"],
                                 "vision_encoder": ["gemma3_vision_encoder", "interleave_embeddings"],
                                 **_own(DECODER_BLOCKS), "final_norm": ["final_normalization"]}),
    "gemma3_embedding": ("gemma3", {
        "embeddings": ["token_embedding"], **_own(DECODER_BLOCKS), "final_norm": ["final_normalization"],
        "pooler": ["mean_pooling", "pooling_dense_1", "embedding_projection", "unit_normalization"]}),
    "albert_groups": ("albert", {
        "embeddings": BERT_EMBEDDINGS + ["embedding_projection"],
        **_own([f"group_{g}_inner_layer_{i}" for g in (0, 1) for i in (0, 1)]), "pooler": ["pooled_dense"]}),
}

# Per model: the layers `unfreeze(top_blocks=2)` trains, and how many scalars they hold.
TOP_TWO = {
    "bert": (["transformer_layer_1", "pooled_dense"], 2224 + 272),
    "roberta": (LAYERS, 2 * 2224),
    "deberta_v3": (["disentangled_attention_encoder_layer_0", "disentangled_attention_encoder_layer_1"], 2 * 2224),
    "distil_bert": (LAYERS, 2 * 2224),
    # ALBERT's one shared layer is every depth: training it trains the whole stack.
    "albert": (["group_0_inner_layer_0", "pooled_dense"], 2224 + 272),
    "electra": (["transformer_layer_1", "pooled_dense"], 2224 + 272),
    "gemma": (["decoder_block_1", "final_normalization"], 1568 + 16),
    "gemma3": (["decoder_block_1", "final_normalization"], 2352 + 16),
    "llama": (["transformer_layer_1", "sequence_output_layernorm"], 2336 + 16),
    "llama3": (["transformer_layer_1", "sequence_output_layernorm"], 2336 + 16),
    "mistral": (["transformer_layer_1", "sequence_output_layernorm"], 2336 + 16),
    "qwen": (["transformer_layer_1", "sequence_output_layernorm"], 2368 + 16),
    "qwen3": (["transformer_layer_1", "sequence_output_layernorm"], 2352 + 16),
    "phi3": (["transformer_layer_1", "sequence_output_layernorm"], 2336 + 16),
    "gpt2": (["transformer_layer_1", "layer_norm"], 2224 + 32),
    "gemma3_vision": (["decoder_block_1", "final_normalization"], 2352 + 16),
    "gemma3_embedding": (["final_normalization", "mean_pooling", "pooling_dense_1", "embedding_projection",
                          "unit_normalization"], 16 + 16 * 32 + 32 * 8),  # the pooling Dense layers have no bias
    "albert_groups": (["group_1_inner_layer_1", "pooled_dense"], 2224 + 272),
}


def _query_value(prefix, layers):
    return sorted(f"{layer}/{prefix}/{name}" for layer in layers for name in ("query", "value"))


# Per model: the layers `apply_lora` puts adapters on by default, as keras-hub's `enable_lora` does.
LORA = {
    "bert": _query_value("self_attention_layer", LAYERS),
    "roberta": _query_value("self_attention_layer", LAYERS),
    "deberta_v3": _query_value("self_attention_layer", ["disentangled_attention_encoder_layer_0",
                                                        "disentangled_attention_encoder_layer_1"]),
    "distil_bert": _query_value("self_attention_layer", LAYERS),
    "albert": _query_value("self_attention_layer", ["group_0_inner_layer_0"]),
    "electra": _query_value("self_attention_layer", LAYERS),
    "gemma": _query_value("attention", DECODER_BLOCKS),
    "gemma3": _query_value("attention", DECODER_BLOCKS),
    "llama": _query_value("self_attention", LAYERS),
    "llama3": _query_value("self_attention", LAYERS),
    "mistral": _query_value("self_attention", LAYERS),
    "qwen": _query_value("self_attention", LAYERS),
    "qwen3": _query_value("self_attention", LAYERS),
    "phi3": _query_value("attention", LAYERS),
    "gpt2": _query_value("self_attention", LAYERS),
    "gemma3_vision": sorted(_query_value("attention", DECODER_BLOCKS) + [
        "image_encoder/encoder_block_0/multi_head_attention/query_proj",
        "image_encoder/encoder_block_0/multi_head_attention/value_proj"]),
    "gemma3_embedding": _query_value("attention", DECODER_BLOCKS),
    "albert_groups": _query_value("self_attention_layer", [f"group_{g}_inner_layer_{i}" for g in (0, 1)
                                                           for i in (0, 1)]),
}


def test_every_family_asked_for_has_a_builder_and_expectations():
    assert list(TEXT_CONFIGS) == ["bert", "roberta", "deberta_v3", "distil_bert", "albert", "electra", "gemma",
                                  "gemma3", "llama", "llama3", "mistral", "qwen", "qwen3", "phi3", "gpt2"]
    assert set(BLOCKS) == set(TOP_TWO) == set(LORA) == set(BUILDERS)


def _params_of(variables):
    return sum(int(keras.ops.size(w)) for w in variables)


def _params(layers):
    return _params_of(w for layer in layers for w in layer.weights)


@pytest.mark.parametrize("name", MODELS)
def test_blocks_are_the_familys_own_units_and_hold_every_weight_once(name):
    model = BUILDERS[name]()
    family, expected = BLOCKS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the generic fallback would warn
        blocks = kt.get_blocks(model)
    assert kt.find_spec(model).family == f"keras_hub.{family}"
    assert {b.name: [layer.name for layer in b.layers] for b in blocks} == expected
    assert [b.name for b in blocks] == list(expected)
    counts = collections.Counter(id(w) for b in blocks for w in b.weights)
    assert set(counts.values()) == {1}, "a variable sits in two blocks"
    assert set(counts) == {id(w) for w in model.weights}, "a variable is in no block"
    assert sum(b.num_params for b in blocks) == _params(model.layers) == model.count_params()


def test_tied_and_untied_embeddings_stay_in_the_embeddings_block():
    # Gemma's LM head is its token embedding; an untied Llama keeps the head's
    # `reverse_embeddings` in the same layer: both sit in `embeddings`.
    gemma, llama = TEXT_CONFIGS["gemma"](), TEXT_CONFIGS["llama"]()
    assert [w.path for w in kt.get_block(gemma, "embeddings").weights] == ["token_embedding/embeddings"]
    assert [w.path for w in kt.get_block(llama, "embeddings").weights] == [
        "token_embedding/embeddings", "token_embedding/reverse_embeddings"]
    assert kt.get_block(llama, "embeddings").num_params == 2 * 128 * 16


@pytest.mark.parametrize("name", MODELS)
def test_unfreeze_top_two_blocks_trains_exactly_their_layers(name):
    model = BUILDERS[name]()
    layers, expected = TOP_TWO[name]
    kt.unfreeze(model, top_blocks=2)
    assert _params_of(model.trainable_weights) == _params(model.get_layer(n) for n in layers) == expected
    assert _params_of(model.non_trainable_weights) == model.count_params() - expected
    blocks = kt.get_blocks(model)
    assert kt.trainable_summary(model).trainable_params.tolist() == (
        [0] * (len(blocks) - 2) + [_params(b.layers) for b in blocks[-2:]])


def _lora_paths(model, classes):
    return sorted(layer.path for layer in compat.walk_layers(model) if isinstance(layer, classes))


@pytest.mark.parametrize("name", MODELS)
def test_apply_lora_defaults_to_keras_hubs_own_query_value_targets(name):
    model = kt.apply_lora(BUILDERS[name](), rank=2)
    assert _lora_paths(model, (kt.LoRADense, kt.LoRAEinsumDense)) == LORA[name]
    # The same layers keras-hub's own `enable_lora` picks (`default_lora_layer_names`).
    reference = BUILDERS[name]()
    reference.enable_lora(2)
    enabled = sorted(layer.path for layer in compat.walk_layers(reference) if getattr(layer, "lora_enabled", False))
    assert enabled == LORA[name]
    # Only the adapters train, as many scalars as Keras' own adapters of the same rank on the same
    # layers (which, unlike these, leave the biases trainable).
    assert {w.path.rsplit("/", 1)[1] for w in model.trainable_weights} == {"lora_a", "lora_b"}
    keras_adapters = [w for w in reference.trainable_weights if w.path.endswith(("lora_kernel_a", "lora_kernel_b"))]
    assert _params_of(model.trainable_weights) == _params_of(keras_adapters) > 0


def test_lora_targets_of_the_spec_are_the_ones_apply_lora_uses():
    # A spec that names other layers moves the adapters: apply_lora reads `lora_targets`.
    model = TEXT_CONFIGS["gpt2"]()
    spec = kt.find_spec(model)
    assert spec.lora_targets == ("query", "value")
    moved = kt.BlockSpec("test.gpt2_key", r"GPT2Backbone", spec.rules, lora_targets=(r"key",))
    kt.register_block_spec(moved)
    try:
        kt.apply_lora(model, rank=2)
    finally:
        kt.unregister_block_spec("test.gpt2_key")
    assert _lora_paths(model, kt.LoRAEinsumDense) == [
        "transformer_layer_0/self_attention/key", "transformer_layer_1/self_attention/key"]


def test_a_keras_hub_task_has_its_backbones_blocks_and_a_head():
    backbone = TEXT_CONFIGS["bert"]()
    task = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None, dropout=0.0)
    assert kt.block_names(task) == ["embeddings", "transformer_layer_0", "transformer_layer_1", "pooler", "head"]
    kt.apply_lora(task, rank=2)
    assert _lora_paths(task, kt.LoRAEinsumDense) == LORA["bert"]
    # 4 targets with kernels 16 x (2 heads x 8): A is 16 x 2 heads x rank 2, B is rank 2 x 8;
    # the head (`logits`) is 16 x 3 + 3.
    assert _params_of(task.trainable_weights) == 4 * (16 * 2 * 2 + 2 * 8) + 16 * 3 + 3


F_NET_SPEC = kt.BlockSpec(
    "test.f_net",
    r"FNetBackbone",
    (
        ("embeddings", r"token_embedding|position_embedding|segment_embedding|embeddings?_.*"),
        (r"\1", r"(f_net_layer_\d+)"),
        ("pooler", r"pooled_dense"),
    ),
)


def test_an_unknown_family_falls_back_and_says_how_to_register_a_spec():
    model = UNKNOWN_TEXT_CONFIGS["f_net"]()
    assert kt.find_spec(model) is None
    with pytest.warns(UserWarning, match=r"generic fallback.*kt\.register_block_spec\(kt\.BlockSpec\(\.\.\.\)\)"):
        names = kt.block_names(model)
    # Name prefixes: FNet's two layers fall together into one block `f`.
    assert names == ["token", "position", "segment", "embeddings", "embedding", "f", "pooled"]


def test_a_registered_spec_drives_block_names_unfreeze_and_differential_optimizer():
    model = UNKNOWN_TEXT_CONFIGS["f_net"]()
    kt.register_block_spec(F_NET_SPEC)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            assert kt.block_names(model) == ["embeddings", "f_net_layer_0", "f_net_layer_1", "pooler"]
            kt.unfreeze(model, top_blocks=2)
            trained = [model.get_layer("f_net_layer_1"), model.get_layer("pooled_dense")]
            assert _params_of(model.trainable_weights) == _params(trained) == 1136 + 272
            optimizer = kt.differential_optimizer(model, head_lr=1.0, layer_decay=0.5)
            table = kt.describe_learning_rates(model, optimizer)
    finally:
        kt.unregister_block_spec("test.f_net")
    assert table.block.tolist() == ["embeddings", "f_net_layer_0", "f_net_layer_1", "pooler"]
    # The top block gets head_lr * 0.5, the next 0.25; the frozen ones none.
    assert table.learning_rate.tolist()[2:] == [0.25, 0.5]
    assert table.trainable_params.tolist() == [0, 0, 1136, 272]
    assert len(optimizer.optimizers) == 2
