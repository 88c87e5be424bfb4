"""Accelerator detection and distribution strategies: TPU, several GPUs, JAX data and model parallel.

`auto_distribution()` picks what the machine offers and says so in one line:
a `tf.distribute.TPUStrategy` on a TPU (a Colab TPU runtime included), a
`MirroredStrategy` on several GPUs, Keras' `DataParallel` distribution on the
JAX backend with several devices, and otherwise a strategy that changes
nothing. `model_parallel()` splits a large backbone's weights over the
devices (JAX's `ModelParallel`), and `auto_distribution` does so when a
given model would not fit one device. Every result has `.scope()` and
`num_replicas_in_sync`, so callers write `with distribution.scope():`
whatever the backend.

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
import math
import os
import re
import warnings

import keras

from keras_transfer import _checks
from keras_transfer import _keras_compat as compat

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


def auto_distribution(verbose=1, model=None, model_parallel="auto"):
    """How to spread work over this machine's devices, with a one-line report.

    On TensorFlow: a `tf.distribute.TPUStrategy` on a TPU (connected and
    initialised once per process), a `tf.distribute.MirroredStrategy` over
    several GPUs, and otherwise the default strategy. On JAX with several
    devices it sets a `keras.distribution.DataParallel` distribution
    (`keras.distribution.set_distribution`) and returns a
    `KerasDistributionStrategy` around it; with one device, one whose scope
    changes nothing. On JAX, a model whose weights would not fit one device
    has them split over the devices instead (`kt.model_parallel`).

    Args:
        verbose: 1 (or "auto") prints what was found ("keras_transfer: 8 TPU
            cores, TPUStrategy"); 0 is silent.
        model: the model to train, for `model_parallel` (as `kt.model_parallel`'s
            `backbone`: a keras-hub backbone class, a model holding one, or a
            layout function).
        model_parallel: True splits `model`'s weights over all devices
            (`kt.model_parallel(model)`, JAX only); False never does; "auto"
            does on JAX when `model` is given, built, and its weights take
            more than half the memory one device has (as JAX reports it:
            accelerators do, CPUs do not, so on CPUs "auto" never splits).
            Half, because training needs room beside the weights for
            activations and for the gradients and optimizer slots of what
            trains. Weights are laid out when they are created: build the
            model to train afterwards, inside `.scope()`.

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
    if model_parallel not in (True, False, "auto") or not isinstance(model_parallel, (bool, str)):
        raise ValueError(f"`model_parallel` must be True, False or 'auto'. Received: model_parallel={model_parallel!r}")
    if model is None and model_parallel is True:
        raise ValueError("`model_parallel=True` needs `model`, whose layout map says how to split the weights. "
                         "Received: model=None")
    if model is not None and model_parallel == "auto" and not isinstance(model, keras.layers.Layer):
        raise ValueError("`model_parallel='auto'` decides from a built model's weights; for a class or a layout "
                         f"function pass model_parallel=True (or False). Received: model={model!r}")
    layouts = _layout_source(model, "model") if model_parallel is True else None
    why = _too_large_for_one_device(model) if model_parallel == "auto" and model is not None and (
        keras.backend.backend() == "jax") else ""
    if model_parallel is True:
        _require_jax("auto_distribution(model_parallel=True)")
    if keras.backend.backend() == "tensorflow":
        strategy, found = _tf_strategy()
    elif layouts is not None or why:
        if layouts is None:
            try:
                layouts = _layout_source(model, "model")
            except ValueError as error:
                raise ValueError(f"`model`'s weights would not fit one device{why}, and {error}") from None
        strategy, found = _model_parallel_strategy(layouts, None, None, why)
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


def model_parallel(backbone, model_dim=None, devices=None, verbose=1):
    """Splits a large backbone's weights over several devices (JAX): Keras' `ModelParallel` with its layout map.

    Large language backbones (Gemma, Llama, Qwen) do not fit one
    accelerator. The devices become a `(batch, model)`
    `keras.distribution.DeviceMesh`; every weight the backbone's
    `get_layout_map` names is split over the `model` axis (keras-hub's maps
    also split a second dimension over `batch`, as the Gemma team trained),
    the others are replicated, and each batch is split over the `batch` axis.
    The distribution is set globally (`keras.distribution.set_distribution`),
    as `auto_distribution` does, so what is built afterwards (the model, LoRA
    adapters, optimizer slots) is laid out by it and `fit` splits batches:
    build or load the model after this call.

    LoRA adapters (`kt.apply_lora`, and Keras' own `enable_lora`) follow the
    kernel they update: the first factor (`lora_a`, `kernel.shape[:-1] +
    (rank,)`) takes the kernel's layout on all its axes but the rank, the
    second (`lora_b`, `(rank, kernel.shape[-1])`) the kernel's layout on its
    last axis. `lora_a @ lora_b` then has the kernel's layout, so the update
    is computed where the kernel's shards live. The layout map's own patterns
    are never tried on adapter paths, so a loose pattern (`".*query.*"`)
    cannot give an adapter a layout of another rank.

    Args:
        backbone: where the layouts come from: a keras-hub backbone class
            with `get_layout_map` (`keras_hub.models.GemmaBackbone`), a model
            holding one (the backbone, a keras-hub Task, a classifier around
            it), or a function `device_mesh -> keras.distribution.LayoutMap`
            for other architectures (the mesh's axes are named "batch" and
            "model").
        model_dim: how many devices each weight is split over (the "model"
            axis), a positive integer dividing the number of devices; the
            rest split the batch. Defaults to all devices. Sharded dimensions
            (keras-hub's: attention heads, vocabulary, feed-forward width)
            must be divisible by it.
        devices: the device names to use, as `keras.distribution.list_devices()`
            gives them (`"gpu:0"`); defaults to all.
        verbose: 1 (or "auto") prints the mesh ("keras_transfer: 8 GPU
            devices (jax), ModelParallel, mesh batch=2 x model=4"); 0 is silent.

    Returns:
        A `KerasDistributionStrategy` around the `keras.distribution.ModelParallel`;
        its `num_replicas_in_sync` is the size of the batch axis.

    Raises:
        RuntimeError: on a backend other than JAX.
        ValueError: for invalid arguments (named in the message), or a
            model without a layout map.

    Example (JAX with several devices only, and it sets the global
    distribution, so the doctest run skips it):

    >>> import keras_hub, keras_transfer as kt
    >>> distribution = kt.model_parallel(keras_hub.models.GemmaBackbone, model_dim=4)  # doctest: +SKIP
    keras_transfer: 8 GPU devices (jax), ModelParallel, mesh batch=2 x model=4
    >>> backbone = keras_hub.models.GemmaBackbone.from_preset("gemma_7b_en")  # doctest: +SKIP
    >>> backbone.get_layer("token_embedding").embeddings.value.sharding.spec  # doctest: +SKIP
    PartitionSpec('model', 'batch')
    """
    verbose = _checks.verbose(verbose)
    layouts = _layout_source(backbone, "backbone")
    model_dim = _checks.positive_int("model_dim", model_dim, optional=True)
    devices = _check_devices(devices, model_dim)
    _require_jax("kt.model_parallel")
    strategy, found = _model_parallel_strategy(layouts, model_dim, devices)
    if verbose:
        print(f"keras_transfer: {found}")
    return strategy


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


# LoRA factors and the variable they update, beside it in the same layer: keras_transfer's
# LoRADense / LoRAEinsumDense, and Keras' own `enable_lora` (Dense, EinsumDense, Embedding).
# Factor "a" has the base's shape but its last axis (the rank's), factor "b" is (rank, last axis).
_ADAPTER_FACTORS = {
    "lora_a": ("kernel", "a"), "lora_b": ("kernel", "b"),
    "lora_kernel_a": ("kernel", "a"), "lora_kernel_b": ("kernel", "b"),
    "lora_embeddings_a": ("embeddings", "a"), "lora_embeddings_b": ("embeddings", "b"),
}
# `auto_distribution(model=...)` splits the weights when they would take more than this share of
# one device's memory: training also needs room for activations, and for the gradients and
# optimizer slots of what trains.
_WEIGHTS_SHARE = 0.5


class _AdapterLayoutMap(keras.distribution.LayoutMap):
    """A layout map in which LoRA factors follow the layout of the variable they update."""

    def __getitem__(self, key):
        parent, _, name = key.rpartition("/")
        if name not in _ADAPTER_FACTORS:
            return super().__getitem__(key)
        base, factor = _ADAPTER_FACTORS[name]
        layout = super().__getitem__(f"{parent}/{base}" if parent else base)
        if layout is None:
            return None
        axes = tuple(layout.axes)
        axes = axes[:-1] + (None,) if factor == "a" else (None, axes[-1])
        return keras.distribution.TensorLayout(axes, self.device_mesh)


def _with_adapter_layouts(layout_map):
    out = _AdapterLayoutMap(layout_map.device_mesh)
    for key in layout_map:
        out[key] = layout_map[key]
    return out


def _layout_owner(model):
    """The object whose `get_layout_map` lays `model` out: itself, a Task's backbone, or a nested layer."""
    if hasattr(model, "get_layout_map"):
        return model
    if isinstance(model, keras.layers.Layer):
        return next((layer for layer in compat.walk_layers(model) if hasattr(layer, "get_layout_map")), None)
    return None


def _layout_source(model, name):
    """A function `device_mesh -> LayoutMap` from what the user passed as `name`."""
    owner = _layout_owner(model)
    if owner is not None:
        def layouts(mesh):
            return owner.get_layout_map(mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch")
        return layouts
    if isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"`{name}` has no layer with a `get_layout_map` (keras-hub's Gemma, Llama, Qwen backbones have "
            f"one); pass a function `device_mesh -> keras.distribution.LayoutMap` instead. Received: {name}={model.name!r}"
        )
    if not callable(model) or isinstance(model, type):
        raise ValueError(
            f"`{name}` must be a keras-hub backbone class or model with `get_layout_map`, or a function "
            f"`device_mesh -> keras.distribution.LayoutMap`. Received: {name}={model!r}"
        )
    return model


def _check_devices(devices, model_dim):
    if devices is None:
        return None
    if (isinstance(devices, str) or not isinstance(devices, (list, tuple)) or not devices
            or not all(isinstance(d, str) and d for d in devices) or len(set(devices)) != len(devices)):
        raise ValueError("`devices` must be a non-empty list of distinct device names, as "
                         f"keras.distribution.list_devices() gives them. Received: devices={devices!r}")
    if model_dim is not None and len(devices) % model_dim:
        raise ValueError(f"`model_dim` must divide the number of devices, {len(devices)}. "
                         f"Received: model_dim={model_dim}")
    return list(devices)


def _require_jax(what):
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(
            f"{what} needs the JAX backend: Keras splits weights over devices (keras.distribution.ModelParallel) "
            f"on JAX only, and the backend is {backend!r}. Set KERAS_BACKEND=jax before importing keras; on "
            "TensorFlow, kt.auto_distribution() spreads batches (not weights) over devices."
        )


def _model_parallel_strategy(layouts, model_dim, devices, why=""):
    available = _keras_devices()
    devices = available if devices is None else devices
    unknown = [d for d in devices if d not in available]
    if unknown:
        raise ValueError(f"`devices` names devices this machine lacks: {unknown}; it has {available}. "
                         f"Received: devices={devices!r}")
    model_dim = len(devices) if model_dim is None else model_dim
    if len(devices) % model_dim:
        raise ValueError(f"`model_dim` must divide the number of devices, {len(devices)}. "
                         f"Received: model_dim={model_dim}")
    batch_dim = len(devices) // model_dim
    mesh = keras.distribution.DeviceMesh((batch_dim, model_dim), ("batch", "model"), devices)
    layout_map = layouts(mesh)
    if not isinstance(layout_map, keras.distribution.LayoutMap) or layout_map.device_mesh is not mesh:
        raise ValueError("The layout function must return a keras.distribution.LayoutMap of the device mesh it "
                         f"is given. Received: {layout_map!r}")
    distribution = keras.distribution.ModelParallel(layout_map=_with_adapter_layouts(layout_map),
                                                    batch_dim_name="batch")
    keras.distribution.set_distribution(distribution)
    kind = _device_kind(devices).upper()
    found = (f"{len(devices)} {kind} device{'s' if len(devices) > 1 else ''} ({keras.backend.backend()}), "
             f"ModelParallel{why}, mesh batch={batch_dim} x model={model_dim}")
    return KerasDistributionStrategy(distribution, batch_dim), found


def _weights_bytes(model):
    total, seen = 0, set()
    for variable in model.weights:
        if id(variable) not in seen:
            seen.add(id(variable))
            bits = re.search(r"\d+", keras.backend.standardize_dtype(variable.dtype))
            total += math.prod(variable.shape) * (int(bits.group()) if bits else 8) / 8
    return int(total)


def _device_memory_bytes():
    """One device's memory as JAX reports it (`bytes_limit`), or None where it does not (CPUs)."""
    import jax

    stats = jax.local_devices()[0].memory_stats()
    return (stats or {}).get("bytes_limit")


def _too_large_for_one_device(model):
    """Why `model`'s weights would not fit one JAX device (" (weights ... GB, ...)"), or "" when they would."""
    limit = _device_memory_bytes()
    size = _weights_bytes(model)
    if limit is None or size <= _WEIGHTS_SHARE * limit:
        return ""
    return f" (weights {size / 1e9:.3g} GB, over {_WEIGHTS_SHARE:.0%} of one device's {limit / 1e9:.3g} GB)"
