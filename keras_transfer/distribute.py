"""Accelerator detection and distribution strategies: TPU, several GPUs, JAX data parallel.

`auto_distribution()` picks what the machine offers and says so in one line:
a `tf.distribute.TPUStrategy` on a TPU (a Colab TPU runtime included), a
`MirroredStrategy` on several GPUs, Keras' `DataParallel` distribution on the
JAX backend with several devices, and otherwise a strategy that changes
nothing. Every result has `.scope()` and `num_replicas_in_sync`, so callers
write `with distribution.scope():` whatever the backend.

Names: in keras_transfer, `strategy` is how a model is trained
(`fine_tune(strategy="lora")`); how work is spread over devices is a
`distribution`, the word `keras.distribution` uses. `auto_strategy` is the
old name of `auto_distribution`.

TensorFlow is imported only when the TensorFlow backend asks for it, so the
JAX backend runs without touching it.
"""

import contextlib
import functools
import glob
import os
import warnings

import keras

from keras_transfer import _checks

ACCELERATORS = ("tpu", "gpu", "cpu")
# What a TPU VM (Colab's TPU runtime among them) sets, where TPUClusterResolver()
# without a name finds nothing and tpu="local" is needed. Not TPU_SKIP_MDS_QUERY:
# importing TensorFlow sets that one everywhere.
_TPU_VM_ENV = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID")


class KerasDistributionStrategy:
    """What `auto_distribution` returns off TensorFlow: a `keras.distribution` behind a strategy's interface.

    Args:
        distribution: the `keras.distribution.Distribution` in effect, or
            None for a single device.
        num_replicas_in_sync: how many devices a global batch is split over.

    Example:

    >>> from keras_transfer.distribute import KerasDistributionStrategy
    >>> strategy = KerasDistributionStrategy()
    >>> with strategy.scope():
    ...     pass
    >>> strategy.num_replicas_in_sync
    1
    """

    def __init__(self, distribution=None, num_replicas_in_sync=1):
        # keras.distribution exports DataParallel and ModelParallel but not their base class.
        if distribution is not None and not (hasattr(distribution, "scope") and hasattr(distribution, "device_mesh")):
            raise TypeError(
                "`distribution` must be None or a keras.distribution (DataParallel, ModelParallel). "
                f"Received: distribution={distribution!r}"
            )
        if isinstance(num_replicas_in_sync, bool) or not isinstance(num_replicas_in_sync, int) or (
            num_replicas_in_sync < 1
        ):
            raise ValueError(
                "`num_replicas_in_sync` must be a positive integer. "
                f"Received: num_replicas_in_sync={num_replicas_in_sync!r}"
            )
        self.distribution = distribution
        self.num_replicas_in_sync = num_replicas_in_sync

    def scope(self):
        """A context manager under which models are built (the distribution's scope)."""
        return contextlib.nullcontext() if self.distribution is None else self.distribution.scope()

    def __repr__(self):
        kind = "no distribution" if self.distribution is None else type(self.distribution).__name__
        return f"KerasDistributionStrategy({kind}, num_replicas_in_sync={self.num_replicas_in_sync})"


@functools.lru_cache(maxsize=None)
def accelerator_kind():
    """What the current Keras backend computes on: `"tpu"`, `"gpu"` or `"cpu"`.

    Cheap and cached: it does not initialise a TPU or allocate GPU memory.

    Returns:
        One of `ACCELERATORS`.

    Example:

    >>> from keras_transfer.distribute import accelerator_kind
    >>> accelerator_kind() in ("tpu", "gpu", "cpu")
    True
    """
    if keras.backend.backend() == "tensorflow":
        if _tpu_resolver() is not None:
            return "tpu"
        return "gpu" if _gpu_devices() else "cpu"
    return _device_kind(_keras_devices())


def auto_distribution(verbose=1):
    """How to spread work over this machine's devices, with a one-line report.

    On TensorFlow: a `tf.distribute.TPUStrategy` on a TPU (connected and
    initialised once per process), a `tf.distribute.MirroredStrategy` over
    several GPUs, and otherwise the default strategy. On JAX with several
    devices it sets a `keras.distribution.DataParallel` distribution
    (`keras.distribution.set_distribution`) and returns a
    `KerasDistributionStrategy` around it; with one device, one whose scope
    changes nothing.

    Args:
        verbose: 1 (or "auto") prints what was found ("keras_transfer: 8 TPU
            cores, TPUStrategy"); 0 is silent.

    Returns:
        A `tf.distribute.Strategy` or a `KerasDistributionStrategy`: either
        has `.scope()` and `num_replicas_in_sync`.

    Example:

    >>> import keras_transfer as kt
    >>> distribution = kt.auto_distribution(verbose=0)
    >>> with distribution.scope():
    ...     batch_size = kt.scale_batch_size(32, distribution)
    """
    verbose = _checks.verbose(verbose)
    if keras.backend.backend() == "tensorflow":
        strategy, found = _tf_strategy()
    else:
        strategy, found = _keras_strategy()
    if verbose:
        print(f"keras_transfer: {found}")
    return strategy


def auto_strategy(verbose=1):
    """Deprecated name of `auto_distribution`; it will be removed in the next release.

    Example:

    >>> import warnings, keras_transfer as kt
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     kt.auto_strategy(verbose=0).num_replicas_in_sync
    1
    """
    warnings.warn("`kt.auto_strategy()` is now `kt.auto_distribution()`; the old name will be removed in the "
                  "next release.", FutureWarning, stacklevel=2)
    return auto_distribution(verbose)


def scale_batch_size(per_replica_batch_size, distribution=None, **deprecated):
    """The global batch size: the per-replica batch times the number of replicas.

    Args:
        per_replica_batch_size: the batch each device sees, a positive integer.
        distribution: anything with `num_replicas_in_sync` (what
            `auto_distribution` returns, any `tf.distribute.Strategy`).
            Defaults to the strategy in scope on TensorFlow, the
            distribution in effect on other backends. (`strategy=` is its
            old name.)

    Returns:
        An int.

    Example:

    >>> from keras_transfer.distribute import KerasDistributionStrategy, scale_batch_size
    >>> scale_batch_size(32, KerasDistributionStrategy(num_replicas_in_sync=1))
    32
    """
    old = _checks.renamed(deprecated, "strategy", "distribution", "scale_batch_size")
    _checks.no_unknown(deprecated, "scale_batch_size")
    if old is not None:
        if distribution is not None:
            raise ValueError("`strategy` is the old name of `distribution`; pass `distribution` only. "
                             f"Received: strategy={old!r}, distribution={distribution!r}")
        distribution = old
    per_replica_batch_size = _checks.positive_int("per_replica_batch_size", per_replica_batch_size)
    replicas = _current_replicas() if distribution is None else getattr(distribution, "num_replicas_in_sync", None)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise TypeError(
            "`distribution` must have a positive integer `num_replicas_in_sync` (a tf.distribute strategy or what "
            f"auto_distribution returns). Received: distribution={distribution!r}"
        )
    return per_replica_batch_size * replicas


# --- internals ---------------------------------------------------------------


def _tf():
    import tensorflow as tf

    return tf


def _tpu_resolver():
    tf = _tf()
    resolver_cls = tf.distribute.cluster_resolver.TPUClusterResolver
    try:
        return resolver_cls()
    except (ValueError, RuntimeError):
        pass
    if glob.glob("/dev/accel*") or any(name in os.environ for name in _TPU_VM_ENV):
        try:
            return resolver_cls(tpu="local")
        except (ValueError, RuntimeError):
            return None
    return None


def _gpu_devices():
    return [device.name for device in _tf().config.list_physical_devices("GPU")]


@functools.lru_cache(maxsize=None)
def _tpu_strategy():
    # Initialising a TPU system a second time wipes what lives on it: once per process.
    resolver = _tpu_resolver()
    if resolver is None:
        return None
    tf = _tf()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _tf_strategy():
    tf = _tf()
    strategy = _tpu_strategy()
    if strategy is not None:
        return strategy, f"{strategy.num_replicas_in_sync} TPU cores, TPUStrategy"
    gpus = _gpu_devices()
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        return strategy, f"{strategy.num_replicas_in_sync} GPUs, MirroredStrategy"
    found = "1 GPU" if gpus else "CPU only"
    return tf.distribute.get_strategy(), f"{found}, default strategy"


def _keras_devices():
    return keras.distribution.list_devices()


def _device_kind(devices):
    platform = devices[0].split(":")[0].lower() if devices else "cpu"
    if platform == "tpu":
        return "tpu"
    return "gpu" if platform in ("gpu", "cuda", "rocm") else "cpu"


def _keras_strategy():
    devices = _keras_devices()
    kind = _device_kind(devices)
    backend = keras.backend.backend()
    if len(devices) > 1:
        distribution = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(distribution)
        strategy = KerasDistributionStrategy(distribution, len(devices))
        return strategy, f"{len(devices)} {kind.upper()} devices ({backend}), DataParallel"
    return KerasDistributionStrategy(), f"1 {kind.upper()} device ({backend}), no distribution"


def _current_replicas():
    if keras.backend.backend() == "tensorflow":
        return _tf().distribute.get_strategy().num_replicas_in_sync
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    return int(mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)])
