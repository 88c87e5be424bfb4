"""kt.model_parallel: a backbone's weights split over devices (JAX), LoRA adapters laid out beside their kernels.

The training test runs JAX in a fresh process with 8 host CPU devices (the
device count is fixed when JAX starts); the rest run on any backend.
"""

import textwrap

import keras
import pytest
from keras_hub.models import GemmaBackbone

from conftest import run_on_jax_devices

import keras_transfer as kt
from keras_transfer import distribute

on_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow backend's error")


def _mesh(batch=2, model=4):
    # Device names only: a mesh and its layouts are plain data until a variable is placed.
    return keras.distribution.DeviceMesh((batch, model), ("batch", "model"),
                                         [f"cpu:{i}" for i in range(batch * model)])


def test_lora_adapters_follow_the_kernel_they_update():
    layouts = distribute._with_adapter_layouts(GemmaBackbone.get_layout_map(_mesh()))
    axes = {path: getattr(layouts[path], "axes", None) for path in (
        "token_embedding/embeddings",
        "decoder_block_0/attention/query/kernel",
        "decoder_block_0/attention/query/lora_a",        # kt.apply_lora: kernel[:-1] + (rank,)
        "decoder_block_0/attention/query/lora_b",        # (rank, kernel[-1])
        "decoder_block_1/ffw_gating/lora_a",
        "decoder_block_1/ffw_gating/lora_b",
        "decoder_block_1/attention/value/lora_kernel_a",  # Keras' own enable_lora
        "token_embedding/lora_embeddings_b",
        "head_dense/lora_a",                             # its kernel is replicated: so is it
    )}
    assert axes == {
        "token_embedding/embeddings": ("model", "batch"),
        "decoder_block_0/attention/query/kernel": ("model", "batch", None),
        "decoder_block_0/attention/query/lora_a": ("model", "batch", None),
        "decoder_block_0/attention/query/lora_b": (None, None),
        "decoder_block_1/ffw_gating/lora_a": ("batch", None),
        "decoder_block_1/ffw_gating/lora_b": (None, "model"),
        "decoder_block_1/attention/value/lora_kernel_a": ("model", "batch", None),
        "token_embedding/lora_embeddings_b": (None, "batch"),
        "head_dense/lora_a": None,
    }


def test_a_loose_pattern_never_gives_an_adapter_its_kernels_rank():
    mesh = _mesh()
    loose = keras.distribution.LayoutMap(mesh)
    loose[".*query.*"] = (None, "model", None)
    layouts = distribute._with_adapter_layouts(loose)
    assert layouts["block/query/kernel"].axes == (None, "model", None)
    # Matched by ".*query.*" itself, lora_b would get a 3-axis layout for its 2 axes.
    assert layouts["block/query/lora_b"].axes == (None, None)
    assert layouts["block/query/lora_a"].axes == (None, "model", None)
    assert layouts["block/query/lora_a"].device_mesh is mesh


def test_adapter_names_are_the_ones_lora_layers_create():
    # If kt.LoRADense or Keras' enable_lora renamed their factors, adapters would silently be replicated.
    lora = kt.LoRADense(4, rank=2)
    lora.build((None, 3))
    dense = keras.layers.Dense(4)
    dense.build((None, 3))
    dense.enable_lora(2)
    embedding = keras.layers.Embedding(10, 4)
    embedding.build((None,))
    embedding.enable_lora(2)
    names = {w.path.rpartition("/")[2] for layer in (lora, dense, embedding) for w in layer.trainable_weights
             if "lora" in w.name}
    assert names == set(distribute._ADAPTER_FACTORS)


def test_weights_are_measured_in_bytes_of_their_dtype(monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2, dtype="bfloat16")])
    assert distribute._weights_bytes(model) == (3 * 4 + 4) * 4 + (4 * 2 + 2) * 2  # 64 + 20
    monkeypatch.setattr(distribute, "_device_memory_bytes", lambda: 168)
    assert distribute._too_large_for_one_device(model) == ""  # 84 bytes: half of 168 still fits
    monkeypatch.setattr(distribute, "_device_memory_bytes", lambda: 160)
    assert distribute._too_large_for_one_device(model) == (
        " (weights 8.4e-08 GB, over 50% of one device's 1.6e-07 GB)")
    monkeypatch.setattr(distribute, "_device_memory_bytes", lambda: None)  # CPUs report no limit
    assert distribute._too_large_for_one_device(model) == ""


@on_tf
def test_tensorflow_backend_says_model_parallelism_needs_jax(capsys):
    with pytest.raises(RuntimeError, match=r"kt.model_parallel needs the JAX backend.*backend is 'tensorflow'"):
        kt.model_parallel(GemmaBackbone, model_dim=2)
    with pytest.raises(RuntimeError, match=r"auto_distribution\(model_parallel=True\) needs the JAX backend"):
        kt.auto_distribution(model=GemmaBackbone, model_parallel=True)
    # "auto" keeps TensorFlow's own strategies: they spread batches, not weights.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert kt.auto_distribution(verbose=0, model=model).num_replicas_in_sync == 1
    assert capsys.readouterr().out == ""


def test_argument_errors():
    for bad in (0, -2, 2.5, True, "4"):
        with pytest.raises(ValueError, match=rf"`model_dim` must be a positive integer. Received: model_dim={bad!r}"):
            kt.model_parallel(GemmaBackbone, model_dim=bad)
    for bad in ("cpu:0", [], ["cpu:0", "cpu:0"], [0, 1]):
        with pytest.raises(ValueError, match=r"`devices` must be a non-empty list of distinct device names"):
            kt.model_parallel(GemmaBackbone, devices=bad)
    with pytest.raises(ValueError, match=r"`model_dim` must divide the number of devices, 6. Received: model_dim=4"):
        kt.model_parallel(GemmaBackbone, model_dim=4, devices=[f"cpu:{i}" for i in range(6)])
    with pytest.raises(ValueError, match=r"`verbose` must be 0, 1, 2 or 'auto'. Received: verbose='yes'"):
        kt.model_parallel(GemmaBackbone, verbose="yes")
    for bad in (42, "gemma_2b_en", keras.layers.Dense):
        with pytest.raises(ValueError, match=r"`backbone` must be a keras-hub backbone class or model with "
                                             r"`get_layout_map`, or a function"):
            kt.model_parallel(bad)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match=r"`backbone` has no layer with a `get_layout_map`.*Received: backbone='plain'"):
        kt.model_parallel(plain)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=rf"`model_parallel` must be True, False or 'auto'. "
                                             rf"Received: model_parallel={bad!r}"):
            kt.auto_distribution(model_parallel=bad)
    with pytest.raises(ValueError, match=r"`model_parallel=True` needs `model`.*Received: model=None"):
        kt.auto_distribution(model_parallel=True)
    with pytest.raises(ValueError, match=r"`model_parallel='auto'` decides from a built model's weights"):
        kt.auto_distribution(model=GemmaBackbone)


@pytest.mark.slow
def test_gemma_with_lora_trains_model_parallel_as_on_one_device():
    script = textwrap.dedent(
        """
        import keras, numpy as np, tensorflow as tf
        import keras_transfer as kt
        from jax.sharding import PartitionSpec as P
        from keras_hub.models import GemmaBackbone
        from keras_transfer import distribute

        def build():
            keras.utils.set_random_seed(0)
            backbone = GemmaBackbone(vocabulary_size=128, num_layers=2, num_query_heads=4, num_key_value_heads=4,
                                     hidden_dim=32, intermediate_dim=64, head_dim=8)
            inputs = {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
                      "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}
            pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
            return keras.Model(inputs, keras.layers.Dense(3, name="head_dense")(pooled))

        rng = np.random.default_rng(0)
        x = {"token_ids": rng.integers(1, 128, (8, 8)).astype("int32"), "padding_mask": np.ones((8, 8), "int32")}
        ds = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 3)).batch(8)  # one step per epoch

        def losses(model):
            result = kt.fine_tune(model, ds, num_classes=3, strategy="lora", lora_rank=4, head_epochs=0,
                                  fine_tune_epochs=3, backbone_lr=1e-2, cache_features=False, verbose=0)
            return result.history.loss.to_numpy()

        single = build()
        weights = single.get_weights()
        expected = losses(single)

        strategy = kt.model_parallel(GemmaBackbone, model_dim=4)
        assert strategy.num_replicas_in_sync == 2 and kt.scale_batch_size(4) == 8, strategy
        with strategy.scope():
            model = build()
        model.set_weights(weights)
        actual = losses(model)
        np.testing.assert_allclose(actual, expected, rtol=1e-5)
        assert actual[-1] < actual[0], actual

        # Every backbone weight as Gemma's layout map says, the rest replicated.
        layouts = GemmaBackbone.get_layout_map(strategy.distribution.device_mesh)
        for variable in model.weights:
            if not variable.name.startswith("lora_"):
                layout = layouts[variable.path]
                axes = layout.axes if layout is not None else (None,) * len(variable.shape)
                assert variable.value.sharding.spec == P(*axes), (variable.path, variable.value.sharding)
        weights = {v.path: v.value for v in model.weights}
        def spec_and_shard(path):
            return weights[path].sharding.spec, weights[path].addressable_shards[0].data.shape
        assert spec_and_shard("token_embedding/embeddings") == (P("model", "batch"), (32, 16))
        assert spec_and_shard("decoder_block_1/attention/query/kernel") == (P("model", "batch", None), (1, 16, 8))
        assert spec_and_shard("decoder_block_1/attention/query/lora_a") == (P("model", "batch", None), (1, 16, 4))
        assert spec_and_shard("decoder_block_1/attention/query/lora_b") == (P(None, None), (4, 8))
        assert spec_and_shard("head_dense/kernel") == (P(None, None), (32, 3))

        # "auto": split when the weights take over half of what a device reports, else DataParallel.
        size = distribute._weights_bytes(model)
        distribute._device_memory_bytes = lambda: 2 * size - 2
        auto = kt.auto_distribution(model=model)
        assert isinstance(auto.distribution, keras.distribution.ModelParallel), auto
        distribute._device_memory_bytes = lambda: 2 * size
        auto = kt.auto_distribution(model=model)
        assert isinstance(auto.distribution, keras.distribution.DataParallel), auto
        print("OK")
        """
    )
    stdout = run_on_jax_devices(script, devices=8, timeout=300)
    lines = stdout.strip().splitlines()
    assert lines[0] == "keras_transfer: 8 CPU devices (jax), ModelParallel, mesh batch=2 x model=4"
    # 20,867 float32 weights (LoRA's included) = 83,468 bytes, against a device of 2 * 83,468 - 2 bytes.
    assert lines[1] == ("keras_transfer: 8 CPU devices (jax), ModelParallel (weights 8.35e-05 GB, over 50% of one "
                        "device's 0.000167 GB), mesh batch=1 x model=8")
    assert lines[2:] == ["keras_transfer: 8 CPU devices (jax), DataParallel", "OK"]
