"""auto_distribution, accelerator_kind and scale_batch_size: the CPU paths for real, TPU / multi-GPU by patching detection."""

import textwrap

import keras
import pytest

from conftest import run_on_jax_devices

from keras_transfer import distribute
from keras_transfer.distribute import (
    KerasDistributionStrategy,
    accelerator_kind,
    auto_distribution,
    scale_batch_size,
)

pytestmark = pytest.mark.core
on_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow strategies")


@pytest.fixture(autouse=True)
def _fresh_detection():
    accelerator_kind.cache_clear()
    distribute._tpu_strategy.cache_clear()
    yield
    accelerator_kind.cache_clear()
    distribute._tpu_strategy.cache_clear()


def test_cpu_machine_gets_a_single_replica_strategy(capsys):
    strategy = auto_distribution()
    line = capsys.readouterr().out.strip()
    assert accelerator_kind() == "cpu"
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        assert scale_batch_size(32) == 32
    assert scale_batch_size(32, strategy) == 32
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert strategy is tf.distribute.get_strategy()
        assert line == "keras_transfer: CPU only, default strategy"
    else:
        assert isinstance(strategy, KerasDistributionStrategy) and strategy.distribution is None
        assert line == f"keras_transfer: 1 CPU device ({keras.backend.backend()}), no distribution"
        assert keras.distribution.distribution() is None


def test_verbose_false_prints_nothing(capsys):
    auto_distribution(verbose=False)
    assert capsys.readouterr().out == ""


@on_tf
def test_tpu_is_connected_initialised_once_and_reported(monkeypatch, capsys):
    import tensorflow as tf

    calls = []
    resolver = object()

    class FakeTPUStrategy:
        num_replicas_in_sync = 8

        def __init__(self, cluster_resolver):
            calls.append(("strategy", cluster_resolver))

    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: resolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: calls.append(("connect", r)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: calls.append(("init", r)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPUStrategy)

    first = auto_distribution()
    second = auto_distribution(verbose=False)
    assert isinstance(first, FakeTPUStrategy) and second is first
    assert calls == [("connect", resolver), ("init", resolver), ("strategy", resolver)]
    assert capsys.readouterr().out == "keras_transfer: 8 TPU cores, TPUStrategy\n"
    assert accelerator_kind() == "tpu"
    assert scale_batch_size(16, first) == 128


@on_tf
def test_several_gpus_get_a_mirrored_strategy(monkeypatch, capsys):
    import tensorflow as tf

    class FakeMirroredStrategy:
        num_replicas_in_sync = 2

    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: None)
    monkeypatch.setattr(distribute, "_gpu_devices", lambda: ["/physical_device:GPU:0", "/physical_device:GPU:1"])
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirroredStrategy)

    strategy = auto_distribution()
    assert isinstance(strategy, FakeMirroredStrategy)
    assert capsys.readouterr().out == "keras_transfer: 2 GPUs, MirroredStrategy\n"
    assert accelerator_kind() == "gpu"
    assert scale_batch_size(16, strategy) == 32


@on_tf
def test_one_gpu_keeps_the_default_strategy(monkeypatch, capsys):
    import tensorflow as tf

    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: None)
    monkeypatch.setattr(distribute, "_gpu_devices", lambda: ["/physical_device:GPU:0"])
    assert auto_distribution() is tf.distribute.get_strategy()
    assert capsys.readouterr().out == "keras_transfer: 1 GPU, default strategy\n"
    assert accelerator_kind() == "gpu"


def test_device_strings_map_to_accelerator_kinds():
    assert distribute._device_kind(["tpu:0", "tpu:1"]) == "tpu"
    assert distribute._device_kind(["gpu:0"]) == "gpu"
    assert distribute._device_kind(["cuda:0"]) == "gpu"
    assert distribute._device_kind(["cpu:0"]) == "cpu"
    assert distribute._device_kind([]) == "cpu"


def test_keras_distribution_strategy_scopes_its_distribution():
    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices()[:1])
    strategy = KerasDistributionStrategy(distribution, 1)
    with strategy.scope():
        assert keras.distribution.distribution() is distribution
    assert keras.distribution.distribution() is None
    assert repr(strategy) == "KerasDistributionStrategy(DataParallel, num_replicas_in_sync=1)"


def test_argument_errors():
    with pytest.raises(ValueError, match=r"`verbose` must be 0, 1, 2 or 'auto'. Received: verbose='yes'"):
        auto_distribution(verbose="yes")
    for bad in (0, -4, 2.5, True, "32"):
        with pytest.raises(ValueError, match="`per_replica_batch_size` must be a positive integer"):
            scale_batch_size(bad)
    with pytest.raises(TypeError, match="`distribution` must have a positive integer `num_replicas_in_sync`"):
        scale_batch_size(8, distribution=object())
    with pytest.raises(ValueError, match="Received: num_replicas_in_sync=0"):
        KerasDistributionStrategy(num_replicas_in_sync=0)
    with pytest.raises(TypeError, match="Received: distribution='mesh'"):
        KerasDistributionStrategy("mesh", 2)


@pytest.mark.slow
def test_jax_with_four_devices_trains_data_parallel():
    # A fresh process: the device count is fixed when JAX starts.
    script = textwrap.dedent(
        """
        import keras, numpy as np
        from keras_transfer.distribute import accelerator_kind, auto_distribution, scale_batch_size
        strategy = auto_distribution()
        assert isinstance(keras.distribution.distribution(), keras.distribution.DataParallel)
        assert strategy.num_replicas_in_sync == 4, strategy
        assert scale_batch_size(2) == 8 and scale_batch_size(2, strategy) == 8
        assert accelerator_kind() == "cpu"
        with strategy.scope():
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="ones")])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        # d(mse)/dw = 2 * 3 * 1 = 6 for every kernel entry: 1 - 0.1 * 6 = 0.4
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].kernel), 0.4, rtol=1e-6)
        print("OK")
        """
    )
    stdout = run_on_jax_devices(script, devices=4, timeout=240)
    assert "keras_transfer: 4 CPU devices (jax), DataParallel" in stdout
    assert stdout.strip().endswith("OK")


def test_old_names_still_work_and_warn():
    with pytest.warns(FutureWarning, match=r"`kt.auto_strategy\(\)` is now `kt.auto_distribution\(\)`"):
        distribution = distribute.auto_strategy(verbose=0)
    with pytest.warns(FutureWarning, match=r"`scale_batch_size\(strategy=...\)` is now `distribution=`"):
        assert scale_batch_size(8, strategy=distribution) == 8
    with pytest.raises(ValueError, match="Received: strategy=.*, distribution="), pytest.warns(FutureWarning):
        scale_batch_size(8, distribution, strategy=distribution)
    with pytest.raises(TypeError, match="scale_batch_size\\(\\) got unexpected keyword arguments: replicas"):
        scale_batch_size(8, replicas=2)
