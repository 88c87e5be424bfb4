"""LoRA: parity with Keras' enable_lora, what trains, merging, .keras files, adapter files, BERT."""

import math
import os

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import demo
from keras_transfer.lora import LoRAEinsumDense

pytestmark = pytest.mark.core

# demo_convnet + head Dense(128 -> 4); LoRA rank 2 on top_dense (96 -> 128), counted by hand.
LORA_TOP = 96 * 2 + 2 * 128
HEAD = 128 * 4 + 4
TOP = 96 * 128 + 128


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _classifier():
    keras.utils.set_random_seed(7)
    return kt.build_classifier(demo.build_demo_backbone(), num_classes=4, dropout=0.0)


def _images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 32, 32, 3)).astype("float32")


def _top_dense(model):
    return model.get_layer("demo_convnet").get_layer("top_dense")


def _random_b(layer, seed=1):
    layer.lora_b.assign(np.random.default_rng(seed).normal(size=layer.lora_b.shape).astype("float32"))


# --- the layer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [None, 6.0])
def test_dense_equals_keras_enable_lora_and_merge_keeps_outputs(alpha):
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    lora = kt.LoRADense(4, rank=3, alpha=alpha)
    lora(x)
    _random_b(lora)
    reference = keras.layers.Dense(4)
    reference(x)
    reference.set_weights([_np(lora.kernel), _np(lora.bias)])
    reference.enable_lora(3, lora_alpha=alpha)
    reference.lora_kernel_a.assign(lora.lora_a)
    reference.lora_kernel_b.assign(lora.lora_b)
    np.testing.assert_allclose(_np(lora(x)), _np(reference(x)), atol=1e-6)
    assert lora.scaling == (alpha or 3) / 3
    expected = _np(reference(x))
    lora.merge()
    np.testing.assert_allclose(_np(lora(x)), expected, atol=1e-5)
    np.testing.assert_array_equal(_np(lora.lora_b), 0.0)


def test_einsum_dense_equals_keras_enable_lora():
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    kwargs = dict(equation="abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de")
    lora = LoRAEinsumDense(rank=2, alpha=4, **kwargs)
    lora(x)
    _random_b(lora)
    reference = keras.layers.EinsumDense(**kwargs)
    reference(x)
    reference.set_weights([_np(lora._kernel), _np(lora.bias)])
    reference.enable_lora(2, lora_alpha=4)
    assert tuple(reference.lora_kernel_a.shape) == tuple(lora.lora_a.shape) == (8, 2, 2)
    reference.lora_kernel_a.assign(lora.lora_a)
    reference.lora_kernel_b.assign(lora.lora_b)
    np.testing.assert_allclose(_np(lora(x)), _np(reference(x)), atol=1e-6)


def test_rslora_scaling_and_the_math_by_hand():
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    lora = kt.LoRADense(5, rank=4, alpha=8, use_rslora=True, use_bias=False)
    lora(x)
    _random_b(lora)
    assert lora.scaling == 8 / math.sqrt(4) == 4.0
    by_hand = x @ _np(lora.kernel) + 4.0 * (x @ _np(lora.lora_a)) @ _np(lora.lora_b)
    np.testing.assert_allclose(_np(lora(x)), by_hand, rtol=1e-5, atol=1e-5)


def test_from_dense_starts_equal_and_trains_only_a_and_b():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    dense = keras.layers.Dense(3, activation="relu", name="proj")
    expected = _np(dense(x))
    lora = kt.LoRADense.from_dense(dense, rank=2, alpha=4)
    np.testing.assert_allclose(_np(lora(x)), expected, atol=1e-6)
    assert lora.name == "proj" and lora.activation is dense.activation
    assert [w.path for w in lora.trainable_weights] == ["proj/lora_a", "proj/lora_b"]
    assert tuple(lora.lora_a.shape) == (6, 2) and tuple(lora.lora_b.shape) == (2, 3)
    np.testing.assert_array_equal(_np(lora.lora_b), 0.0)
    # He-uniform: limit sqrt(6 / fan_in) with fan_in = 6.
    assert 0 < np.abs(_np(lora.lora_a)).max() <= 1.0
    lora.trainable = False
    lora.trainable = True  # Keras' own setter would re-enable the kernel here
    assert [w.name for w in lora.trainable_weights] == ["lora_a", "lora_b"]


def test_dropout_applies_to_the_update_while_training_only():
    x = np.ones((64, 8), "float32")
    lora = kt.LoRADense(4, rank=2, dropout=0.5, use_bias=False)
    lora(x)
    _random_b(lora)
    plain = x @ _np(lora.kernel) + lora.scaling * (x @ _np(lora.lora_a)) @ _np(lora.lora_b)
    np.testing.assert_allclose(_np(lora(x, training=False)), plain, atol=1e-5)
    assert np.abs(_np(lora(x, training=True)) - plain).max() > 1e-3


def test_merge_refuses_to_produce_inf():
    lora = kt.LoRADense(2, rank=1)
    lora(np.ones((1, 2), "float32"))
    lora.lora_a.assign(np.full((2, 1), 1e30, "float32"))
    lora.lora_b.assign(np.full((1, 2), 1e30, "float32"))
    kernel = _np(lora.kernel).copy()
    with pytest.raises(ValueError, match="NaN or inf"):
        lora.merge()
    np.testing.assert_array_equal(_np(lora.kernel), kernel)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rank": 0}, r"`rank` must be a positive integer. Received: rank=0"),
        ({"rank": 2.5}, r"Received: rank=2.5"),
        ({"rank": 2, "alpha": 0}, r"`alpha` must be a positive number .* Received: alpha=0"),
        ({"rank": 2, "dropout": 1.0}, r"`dropout` must be a number in \[0, 1\). Received: dropout=1.0"),
        ({"rank": 2, "dropout": -0.1}, r"Received: dropout=-0.1"),
        ({"rank": 2, "use_rslora": "yes"}, r"Received: use_rslora='yes'"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.LoRADense(4, **kwargs)
    with pytest.raises(ValueError, match=match):
        kt.apply_lora(_classifier(), **kwargs)


def test_rank_larger_than_the_layer_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"at most min\(input_dim, output_dim\) = 3 .*'tiny'.*rank=4"):
        kt.LoRADense(8, rank=4, name="tiny")(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"= 96 for target layer 'top_dense'.*Received: rank=97"):
        kt.apply_lora(_classifier(), rank=97)


# --- across a model -----------------------------------------------------------------------------


def test_apply_lora_trains_only_adapters_and_head_and_keeps_base_weights():
    model = _classifier()
    x, y = _images(), np.arange(8) % 4
    before = model.predict(x, verbose=0)
    kt.apply_lora(model, rank=2)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-6)
    assert type(_top_dense(model)).__name__ == "LoRADense"
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == LORA_TOP + HEAD
    frozen = {w.path: _np(w).copy() for w in model.weights if "lora" not in w.path and "head" not in w.path}
    b_before, head_before = _np(_top_dense(model).lora_b).copy(), _np(model.get_layer("head_logits").kernel).copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for w in model.weights:
        if w.path in frozen:
            np.testing.assert_array_equal(_np(w), frozen[w.path], err_msg=w.path)
    assert np.abs(_np(_top_dense(model).lora_b) - b_before).max() > 0
    assert np.abs(_np(model.get_layer("head_logits").kernel) - head_before).max() > 0


def test_unfreeze_after_apply_lora_keeps_the_base_kernel_frozen():
    model = kt.apply_lora(_classifier(), rank=2)
    kt.unfreeze(model, top_blocks=2)
    paths = {w.path for w in model.trainable_weights}
    assert "top_dense/kernel" not in paths and "top_dense/bias" not in paths
    assert {"top_dense/lora_a", "top_dense/lora_b", "block3_conv/kernel"} <= paths
    assert "block3_bn/gamma" not in paths  # BatchNorm stays frozen
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == LORA_TOP + HEAD + 3 * 3 * 64 * 96
    kt.freeze(model)
    assert {w.path for w in model.trainable_weights} == {"head_logits/kernel", "head_logits/bias"}


def test_lora_summary_one_row_per_block():
    table = kt.lora_summary(kt.apply_lora(_classifier(), rank=2))
    assert list(table.columns) == ["block", "params", "trainable_params", "lora_params", "trainable_fraction"]
    assert list(table.block) == ["stem", "block1", "block2", "block3", "top", "head"]
    top = table.set_index("block").loc["top"]
    assert (top.params, top.trainable_params, top.lora_params) == (TOP + LORA_TOP, LORA_TOP, LORA_TOP)
    assert top.trainable_fraction == pytest.approx(LORA_TOP / (TOP + LORA_TOP))
    assert table.set_index("block").loc["block3"].trainable_params == 0


def test_targets_by_block_name_and_regex_and_errors():
    model = kt.apply_lora(_classifier(), rank=2, targets=["top"])
    assert [layer.path for layer in model._flatten_layers() if "LoRA" in type(layer).__name__] == ["top_dense"]
    model = kt.apply_lora(_classifier(), rank=2, targets="top_.*")
    assert type(_top_dense(model)).__name__ == "LoRADense"
    with pytest.raises(ValueError, match=r"matches no Dense.*Valid block names: \['stem', .*'head'\].*'top_dense'"):
        kt.apply_lora(_classifier(), targets=["block9"])
    with pytest.raises(ValueError, match="cannot include 'head'"):
        kt.apply_lora(_classifier(), targets=["head"])
    with pytest.raises(ValueError, match="already has LoRA layers"):
        kt.apply_lora(model)


def test_keras_file_keeps_adapters_unmerged_and_training_continues(tmp_path):
    model = kt.apply_lora(_classifier(), rank=2, alpha=8.0, dropout=0.1, use_rslora=True)
    _random_b(_top_dense(model))
    x = _images()
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "lora.keras")
    loaded = keras.saving.load_model(tmp_path / "lora.keras")
    layer = _top_dense(loaded)
    assert type(layer).__name__ == "LoRADense"
    assert (layer.rank, layer.alpha, layer.dropout, layer.use_rslora) == (2, 8.0, 0.1, True)
    np.testing.assert_array_equal(_np(layer.kernel), _np(_top_dense(model).kernel))
    np.testing.assert_array_equal(_np(layer.lora_b), _np(_top_dense(model).lora_b))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    assert sum(int(np.prod(w.shape)) for w in loaded.trainable_weights) == LORA_TOP + HEAD
    loaded.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
    b = _np(layer.lora_b).copy()
    loaded.fit(x, np.arange(8) % 4, verbose=0)
    assert np.abs(_np(layer.lora_b) - b).max() > 0


def test_merge_lora_leaves_plain_layers_with_the_same_outputs(tmp_path):
    plain = _classifier()
    assert kt.merge_lora(plain) is plain
    model = kt.apply_lora(_classifier(), rank=2)
    _random_b(_top_dense(model))
    x = _images()
    expected = model.predict(x, verbose=0)
    merged = kt.merge_lora(model)
    assert [w.path for w in _top_dense(merged).weights] == ["top_dense/kernel", "top_dense/bias"]
    merged.save(tmp_path / "merged.keras")
    loaded = keras.saving.load_model(tmp_path / "merged.keras")
    assert not any("LoRA" in type(layer).__name__ for layer in loaded._flatten_layers())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)


def test_adapter_file_round_trip_is_small_and_checks_the_model(tmp_path):
    model = kt.apply_lora(_classifier(), rank=2, alpha=5.0)
    _random_b(_top_dense(model))
    model.get_layer("head_logits").bias.assign(np.arange(4, dtype="float32"))
    x = _images()
    expected = model.predict(x, verbose=0)
    path = kt.save_adapters(model, tmp_path / "adapters", include_head=True)
    model.save(tmp_path / "full.keras")
    assert os.path.getsize(path) < 0.1 * os.path.getsize(tmp_path / "full.keras")
    fresh = kt.load_adapters(_classifier(), path)  # same seed: same base weights
    assert _top_dense(fresh).alpha == 5.0
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"'top_dense'.* has rank=2, but the model's layer has rank=4"):
        kt.load_adapters(kt.apply_lora(_classifier(), rank=4), path)
    other = kt.build_classifier(demo.build_demo_backbone(), num_classes=3)
    with pytest.raises(ValueError, match=r"head variables missing or of another shape"):
        kt.load_adapters(kt.apply_lora(other, rank=2), path)
    with pytest.raises(ValueError, match="not a keras_transfer adapter file"):
        np.savez(tmp_path / "other.npz", x=np.ones(2))
        kt.load_adapters(_classifier(), tmp_path / "other.npz")
    with pytest.raises(ValueError, match="not a keras_transfer adapter file"):
        (tmp_path / "notes.txt").write_text("not numpy")
        kt.load_adapters(_classifier(), tmp_path / "notes.txt")
    missing = tmp_path / "nowhere" / "adapters.npz"
    with pytest.raises(FileNotFoundError, match=f"No adapter file found at '{missing}'"):
        kt.load_adapters(_classifier(), missing)
    with pytest.raises(ValueError, match="`path` is a folder"):
        kt.load_adapters(_classifier(), tmp_path)
    # The name given to save_adapters, without the suffix it added, finds the file.
    np.testing.assert_allclose(kt.load_adapters(_classifier(), str(path)[:-4]).predict(x, verbose=0), expected,
                               atol=1e-6)


# --- a keras-hub transformer ---------------------------------------------------------------------


def _bert_classifier():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(3)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=16
    )
    return keras_hub.models.BertTextClassifier(backbone=backbone, preprocessor=None, num_classes=2, dropout=0.0)


def _tokens(n=4):
    rng = np.random.default_rng(0)
    return {"token_ids": rng.integers(0, 100, (n, 16)), "padding_mask": np.ones((n, 16), "int32"),
            "segment_ids": np.zeros((n, 16), "int32")}


def _trained_bert():
    """A BertTextClassifier after apply_lora and two epochs, checked on the way: (model, inputs)."""
    model, x, y = _bert_classifier(), _tokens(), np.array([0, 1, 0, 1])
    before = model.predict(x, verbose=0)
    kt.apply_lora(model, rank=4, alpha=8.0)
    assert not model.compiled  # keras-hub Tasks come compiled; the adapters need a new compile
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-6)
    lora = [layer for layer in model._flatten_layers() if isinstance(layer, LoRAEinsumDense)]
    assert sorted(layer.path for layer in lora) == [
        f"transformer_layer_{i}/self_attention_layer/{p}" for i in (0, 1) for p in ("query", "value")
    ]
    # query/value kernels (32, 2 heads, 16): A (32, 2, 4), B (4, 16); head Dense 32 -> 2.
    per_projection = 32 * 2 * 4 + 4 * 16
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 4 * per_projection + 32 * 2 + 2
    frozen = {w.path: _np(w).copy() for w in model.weights if "lora" not in w.path and "logits" not in w.path}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)  # the Task's preprocessor makes a dataset
    for w in model.weights:
        if w.path in frozen:
            np.testing.assert_array_equal(_np(w), frozen[w.path], err_msg=w.path)
    assert np.abs(_np(lora[0].lora_b)).max() > 0
    return model, x


def test_bert_classifier_trains_lora_on_query_and_value_and_merges():
    model, x = _trained_bert()
    trained = model.predict(x, verbose=0)
    kt.merge_lora(model)
    assert not any("LoRA" in type(layer).__name__ for layer in model._flatten_layers())
    np.testing.assert_allclose(model.predict(x, verbose=0), trained, atol=1e-5)


@pytest.mark.slow
def test_bert_keras_file_and_adapter_file(tmp_path):
    model, x = _trained_bert()
    trained = model.predict(x, verbose=0)
    # The backbone rebuilds its layers from code, so its .keras file holds merged kernels.
    model.save(tmp_path / "bert.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "bert.keras").predict(x, verbose=0), trained,
                               atol=1e-5)
    path = kt.save_adapters(model, tmp_path / "bert_adapters", include_head=True)
    fresh = kt.load_adapters(_bert_classifier(), path)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), trained, atol=1e-5)
    demo_adapters = kt.save_adapters(kt.apply_lora(_classifier(), rank=2), tmp_path / "demo")
    with pytest.raises(ValueError, match=r"names layers that model .* does not have: \['top_dense'\]"):
        kt.load_adapters(_bert_classifier(), demo_adapters)
    with pytest.raises(ValueError, match=r"not in the model: \['top_dense'\]; in the model but not in the file: "
                                         r"\['transformer_layer_0/self_attention_layer/query'"):
        kt.load_adapters(model, demo_adapters)
    kt.merge_lora(model)
    assert not any("LoRA" in type(layer).__name__ for layer in model._flatten_layers())
    np.testing.assert_allclose(model.predict(x, verbose=0), trained, atol=1e-5)
