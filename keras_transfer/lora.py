"""LoRA: low-rank adapter layers, and LoRA across a model by blocks.

LoRA trains a low-rank update of a frozen kernel `W` instead of `W` itself:

    y = x·W + scaling · dropout(x)·A·B + bias,   A: in × rank,  B: rank × out
    scaling = alpha / rank              (alpha defaults to rank)
    scaling = alpha / sqrt(rank)        (rsLoRA, `use_rslora=True`)

`B` starts at zero, so a fresh adapter leaves the layer's output unchanged.
`A` and `B` have the shapes Keras' own `enable_lora` gives them, so the numbers
agree with `keras.layers.Dense(...).enable_lora(rank, lora_alpha=alpha)`.

Unlike Keras' built-in LoRA, the adapters here have dropout and rsLoRA, a
`.keras` file keeps `A`, `B`, `alpha` and the unmerged kernel, adapter files
keep `alpha`, and `apply_lora` targets layers across a model by block name or
regex. `apply_lora` converts layers in place (their class changes, the object
stays): a built functional graph cannot swap one of its layers for another, and
keras-hub Tasks (with their preprocessor) and backbones hold their attention
projections as attributes of their own layers. Keras' `enable_lora` is in place
for the same reason.
"""

import json
import math
import pathlib
import re

import keras
import numpy as np
import pandas as pd

from keras_transfer import _keras_compat as compat
from keras_transfer.blocks import compile_selector, count_params, find_spec, get_blocks
from keras_transfer.freezing import freeze

ADAPTER_FORMAT = "keras_transfer.lora_adapters"
ADAPTER_VERSION = 1
# keras-hub's own default LoRA targets (`Backbone.default_lora_layer_names`).
ATTENTION_TARGETS = ("query_dense", "value_dense", "query", "value")


class _LoRAMixin:
    """Adapter state and behaviour shared by `LoRADense` and `LoRAEinsumDense`."""

    def _init_lora(self, rank, alpha, dropout, use_rslora):
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.dropout = float(dropout)
        self.use_rslora = bool(use_rslora)
        # Inside a layer that rebuilds its children from code (keras-hub
        # backbones), a `.keras` file can only hold what the plain layer
        # expects: the merged kernel. `apply_lora` sets this where needed.
        self._save_merged = False
        self.lora_dropout = keras.layers.Dropout(dropout, name="lora_dropout") if dropout else None

    @property
    def scaling(self):
        """The factor of the low-rank update: `alpha/rank`, or `alpha/sqrt(rank)` with rsLoRA."""
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)

    def _build_lora(self):
        kernel_shape = tuple(compat.base_kernel(self).shape)
        fan_in = int(np.prod(kernel_shape[:-1]))
        limit = min(fan_in, kernel_shape[-1])
        if self.rank > limit:
            raise ValueError(
                f"`rank` must be at most min(input_dim, output_dim) = {limit} for layer "
                f"{self.name!r} (kernel shape {kernel_shape}). Received: rank={self.rank}"
            )
        # float32 like Keras' own LoRA weights: small updates would underflow in float16.
        self.lora_a = self.add_weight(
            name="lora_a", shape=kernel_shape[:-1] + (self.rank,), initializer="he_uniform",
            dtype="float32", regularizer=self.kernel_regularizer,
        )
        self.lora_b = self.add_weight(
            name="lora_b", shape=(self.rank, kernel_shape[-1]), initializer="zeros",
            dtype="float32", regularizer=self.kernel_regularizer,
        )
        # Created trainable, then set: TensorFlow only differentiates variables
        # that were trainable when created, whatever the flag says later.
        self.lora_a.trainable = self.lora_b.trainable = compat.trainable_flag(self)
        compat.base_kernel(self).trainable = False
        if self.bias is not None:
            self.bias.trainable = False

    @property
    def trainable(self):
        return compat.trainable_flag(self)

    @trainable.setter
    def trainable(self, value):
        # Keras' setter would re-enable every variable, the frozen base kernel
        # included; here only the adapters follow the layer's flag.
        compat.set_trainable_flag(self, value)
        for variable in (getattr(self, "lora_a", None), getattr(self, "lora_b", None)):
            if variable is not None:
                variable.trainable = bool(value)

    def _lora_inputs(self, inputs, training):
        if self.lora_dropout is None:
            return inputs
        return self.lora_dropout(inputs, training=training)

    def _finish(self, x):
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def merged_kernel(self):
        """The kernel with the low-rank update folded in, `W + scaling·A·B`.

        Raises:
            ValueError: if the result holds NaN or inf.
        """
        delta = keras.ops.matmul(self.lora_a, self.lora_b) * self.scaling
        kernel = keras.ops.add(keras.ops.cast(compat.base_kernel(self), "float32"), delta)
        if not bool(keras.ops.all(keras.ops.isfinite(kernel))):
            raise ValueError(
                f"Merging the LoRA update of layer {self.name!r} gives NaN or inf values "
                f"(rank={self.rank}, alpha={self.alpha}); the kernel was left unchanged."
            )
        return keras.ops.cast(kernel, compat.base_kernel(self).dtype)

    def merge(self):
        """Folds the update into the kernel and resets `lora_b` to zero.

        The outputs stay the same, the layer now computes a plain Dense with
        the merged kernel plus a zero update, and training can continue from
        the merged weights. `merge_lora(model)` also turns the layer back into
        its plain Keras class.

        Returns:
            The layer.
        """
        compat.base_kernel(self).assign(self.merged_kernel())
        self.lora_b.assign(keras.ops.zeros(self.lora_b.shape, self.lora_b.dtype))
        return self

    def save_own_variables(self, store):
        if not self.built:
            return
        kernel = self.merged_kernel() if self._save_merged else compat.base_kernel(self)
        values = [kernel] + ([self.bias] if self.bias is not None else [])
        if not self._save_merged:
            values += [self.lora_a, self.lora_b]
        for index, value in enumerate(values):
            store[str(index)] = keras.ops.convert_to_numpy(value)

    def load_own_variables(self, store):
        if not self.built:
            return
        base = [compat.base_kernel(self)] + ([self.bias] if self.bias is not None else [])
        count = len(store.keys())
        if count not in (len(base), len(base) + 2):
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects {len(base) + 2} variables "
                f"(kernel, {'bias, ' if self.bias is not None else ''}lora_a, lora_b) or "
                f"{len(base)} (merged), but the file holds {count}."
            )
        for index, variable in enumerate(base):
            variable.assign(store[str(index)])
        if count == len(base):
            self.lora_b.assign(keras.ops.zeros(self.lora_b.shape, self.lora_b.dtype))
        else:
            self.lora_a.assign(store[str(len(base))])
            self.lora_b.assign(store[str(len(base) + 1)])

    def _lora_config(self):
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "use_rslora": self.use_rslora}


@keras.saving.register_keras_serializable(package="keras_transfer")
class LoRADense(_LoRAMixin, keras.layers.Dense):
    """A Dense layer with a frozen kernel and bias and a trainable low-rank update.

    `y = activation(x·W + scaling · dropout(x)·A·B + b)` with `A` (`lora_a`,
    in × rank, He-uniform as in Keras and PEFT) and `B` (`lora_b`, rank × units,
    zeros). `scaling = alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA. Only
    `lora_a` and `lora_b` ever train: setting `layer.trainable = True` (as
    `kt.unfreeze` does) leaves `W` and `b` frozen.

    Args:
        units: output size, a positive integer.
        rank: rank of the update, a positive integer at most
            `min(input_dim, units)` (checked when the layer is built).
        alpha: scale of the update, a positive number; defaults to `rank`.
        dropout: dropout rate on the update's input, in [0, 1).
        use_rslora: scale by `alpha / sqrt(rank)` (rank-stabilised LoRA).
        **dense_kwargs: any other `keras.layers.Dense` argument.

    Example:

    >>> import keras, numpy as np, keras_transfer as kt
    >>> layer = kt.LoRADense(4, rank=2, alpha=4)
    >>> y = layer(np.ones((1, 3), "float32"))
    >>> [w.path for w in layer.trainable_weights], layer.scaling
    (['lo_ra_dense/lora_a', 'lo_ra_dense/lora_b'], 2.0)
    """

    def __init__(self, units, rank, alpha=None, dropout=0.0, use_rslora=False, **dense_kwargs):
        _check_lora_args(rank, alpha, dropout, use_rslora)
        for key in ("lora_rank", "lora_alpha", "quantization_config"):
            if dense_kwargs.get(key) is not None:
                raise ValueError(
                    f"`LoRADense` does not take `{key}` (use `rank`/`alpha`; quantized kernels are "
                    f"not supported). Received: {key}={dense_kwargs[key]!r}"
                )
            dense_kwargs.pop(key, None)
        super().__init__(units, **dense_kwargs)
        self._init_lora(rank, alpha, dropout, use_rslora)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_lora()

    def call(self, inputs, training=None):
        x = keras.ops.matmul(inputs, compat.base_kernel(self))
        # (x·A)·B costs far less than x·(A·B) when rank is small.
        update = keras.ops.matmul(keras.ops.matmul(self._lora_inputs(inputs, training), self.lora_a), self.lora_b)
        return self._finish(keras.ops.add(x, update * self.scaling))

    @classmethod
    def from_dense(cls, dense, rank, alpha=None, dropout=0.0, use_rslora=False):
        """A new `LoRADense` with a built Dense layer's config, kernel and bias.

        Args:
            dense: a built `keras.layers.Dense` without Keras' own LoRA.
            rank, alpha, dropout, use_rslora: as in `LoRADense`.

        Returns:
            A built `LoRADense` whose output equals `dense`'s.

        Example:

        >>> import keras, numpy as np, keras_transfer as kt
        >>> dense = keras.layers.Dense(3)
        >>> x = np.ones((2, 5), "float32")
        >>> lora = kt.LoRADense.from_dense(dense if dense(x) is not None else dense, rank=2)
        >>> bool(np.allclose(lora(x), dense(x)))
        True
        """
        _check_convertible(dense, "dense")
        config = dense.get_config()
        for key in ("lora_rank", "lora_alpha", "quantization_config"):
            config.pop(key, None)
        layer = cls(rank=rank, alpha=alpha, dropout=dropout, use_rslora=use_rslora, **config)
        layer.build((None, dense.kernel.shape[0]))
        compat.base_kernel(layer).assign(dense.kernel)
        if dense.bias is not None:
            layer.bias.assign(dense.bias)
        return layer

    def get_config(self):
        return {**super().get_config(), **self._lora_config()}


@keras.saving.register_keras_serializable(package="keras_transfer")
class LoRAEinsumDense(_LoRAMixin, keras.layers.EinsumDense):
    """An EinsumDense layer (attention projections) with a frozen kernel and a LoRA update.

    The update has Keras' `EinsumDense.enable_lora` shapes: `lora_a` is
    `kernel.shape[:-1] + (rank,)`, `lora_b` is `(rank, kernel.shape[-1])`, and
    the kernel becomes `W + scaling · A·B`. Everything else is as in `LoRADense`.

    Args:
        equation: the einsum equation, as in `keras.layers.EinsumDense`.
        output_shape: as in `keras.layers.EinsumDense`.
        rank, alpha, dropout, use_rslora: as in `LoRADense`.
        **kwargs: any other `keras.layers.EinsumDense` argument.

    Example:

    >>> import numpy as np
    >>> from keras_transfer.lora import LoRAEinsumDense
    >>> layer = LoRAEinsumDense("ab,bc->ac", 4, rank=2, bias_axes="c")
    >>> tuple(layer(np.ones((1, 3), "float32")).shape)
    (1, 4)
    >>> [w.name for w in layer.trainable_weights]
    ['lora_a', 'lora_b']
    """

    def __init__(self, equation, output_shape, rank, alpha=None, dropout=0.0, use_rslora=False, **kwargs):
        _check_lora_args(rank, alpha, dropout, use_rslora)
        for key in ("lora_rank", "lora_alpha", "quantization_config"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"`LoRAEinsumDense` does not take `{key}`. Received: {key}={kwargs[key]!r}"
                )
            kwargs.pop(key, None)
        super().__init__(equation, output_shape, **kwargs)
        self._init_lora(rank, alpha, dropout, use_rslora)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_lora()

    def call(self, inputs, training=None):
        x = keras.ops.einsum(self.equation, inputs, compat.base_kernel(self))
        delta = keras.ops.matmul(self.lora_a, self.lora_b) * self.scaling
        update = keras.ops.einsum(self.equation, self._lora_inputs(inputs, training), delta)
        return self._finish(keras.ops.add(x, update))

    def get_config(self):
        return {**super().get_config(), **self._lora_config()}


_LORA_CLASSES = {keras.layers.Dense: LoRADense, keras.layers.EinsumDense: LoRAEinsumDense}


def apply_lora(model, rank=8, alpha=None, dropout=0.0, targets=None, use_rslora=False):
    """Turns a model's chosen Dense / EinsumDense layers into LoRA layers; freezes the rest.

    The layers are converted in place, so functional graphs, nested backbones
    and keras-hub Tasks (with their preprocessor) keep working and keep their
    weights. Afterwards only the LoRA weights and the `head` block train
    (`kt.freeze`, BatchNorm stays frozen); compile the model again.

    Args:
        model: a built `keras.Model`, usually `inputs -> backbone -> head`.
        rank, alpha, dropout, use_rslora: as in `LoRADense`.
        targets: where to put adapters. A block name or regex, or a list of
            them; a regex is full-matched against each candidate layer's name
            and path (`"transformer_layer_0/self_attention/query"`). Default:
            the attention query/value projections of a transformer, otherwise
            the Dense layers of the last backbone block that has any (the ones
            next to the head).

    Returns:
        The model.

    Raises:
        ValueError: for invalid arguments, targets that match no layer (the
            message lists the block names and the candidate layers), or a
            rank too large for a target layer (the message names it).

    Example:

    >>> import keras, keras_transfer as kt
    >>> from keras_transfer import demo
    >>> model = kt.build_classifier(demo.build_demo_backbone(), num_classes=4)
    >>> model = kt.apply_lora(model, rank=2)
    >>> kt.lora_summary(model).set_index("block").loc["top", "lora_params"]
    np.int64(448)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    _check_lora_args(rank, alpha, dropout, use_rslora)
    if not model.built:
        raise ValueError(f"`model` must be built before LoRA can be applied. Received: model={model.name!r}")
    existing = _lora_layers(model)
    if existing:
        raise ValueError(
            f"Model {model.name!r} already has LoRA layers ({[layer.path for layer in existing][:4]}); "
            "call `kt.merge_lora(model)` first to start again."
        )
    blocks = get_blocks(model)
    chosen = _resolve_targets(model, blocks, targets)
    _check_ranks(chosen, rank)
    freeze(model)
    _add_lora(model, chosen, rank, alpha, dropout, use_rslora)
    return model


def merge_lora(model):
    """Folds every LoRA update into its kernel and turns the layers back into plain Keras layers.

    Like PEFT's `merge_and_unload`, this works in place: the returned model is
    `model`, with the same outputs, no LoRA weights and no LoRA layer types,
    ready for export. The merged layers stay frozen, as their base kernels
    were. A model without LoRA layers is returned unchanged.
    Save the adapters first (`kt.save_adapters`) to keep them.

    Args:
        model: a `keras.Model`.

    Returns:
        The model.

    Example:

    >>> import keras, keras_transfer as kt
    >>> from keras_transfer import demo
    >>> model = kt.apply_lora(kt.build_classifier(demo.build_demo_backbone(), num_classes=4), rank=2)
    >>> type(kt.merge_lora(model).get_layer("demo_convnet").get_layer("top_dense")).__name__
    'Dense'
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    layers = _lora_layers(model)
    merged = [(layer, layer.merged_kernel()) for layer in layers]
    for layer, kernel in merged:
        _unconvert(layer, kernel)
    if layers:
        _forget_traced_functions(model)
    return model


def save_adapters(model, path, include_head=False):
    """Writes only the LoRA weights (and optionally the head) to one `.npz` file.

    The file also records each adapter's layer path, class, rank, alpha,
    rsLoRA flag and dropout, so `load_adapters` can check the model it loads
    into and restore the exact scaling.

    Args:
        model: a model with LoRA layers (`apply_lora`).
        path: destination; `.npz` is appended when missing.
        include_head: also store the `head` block's weights.

    Returns:
        The path written, as a string.

    Example:

    >>> import keras, keras_transfer as kt, tempfile, os
    >>> from keras_transfer import demo
    >>> model = kt.apply_lora(kt.build_classifier(demo.build_demo_backbone(), num_classes=4), rank=2)
    >>> os.path.basename(kt.save_adapters(model, os.path.join(tempfile.mkdtemp(), "adapters")))
    'adapters.npz'
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    if not isinstance(include_head, bool):
        raise ValueError(f"`include_head` must be True or False. Received: include_head={include_head!r}")
    layers = _lora_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name!r} has no LoRA layers to save; call `kt.apply_lora(model)` first.")
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays, entries = {}, []
    for i, layer in enumerate(layers):
        arrays[f"a{i}"] = keras.ops.convert_to_numpy(layer.lora_a)
        arrays[f"b{i}"] = keras.ops.convert_to_numpy(layer.lora_b)
        entries.append({"path": layer.path, "class": type(layer).__name__, "kernel_shape": list(compat.base_kernel(layer).shape),
                        **layer._lora_config()})
    head = []
    if include_head:
        head_block = next((b for b in get_blocks(model) if b.is_head), None)
        if head_block is None:
            raise ValueError(f"`include_head=True` but model {model.name!r} has no `head` block.")
        for i, variable in enumerate(head_block.weights):
            arrays[f"h{i}"] = keras.ops.convert_to_numpy(variable)
            head.append(variable.path)
    meta = {"format": ADAPTER_FORMAT, "version": ADAPTER_VERSION, "model": model.name, "layers": entries, "head": head}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, __metadata__=np.array(json.dumps(meta)), **arrays)
    return str(path)


def load_adapters(model, path):
    """Loads adapters written by `save_adapters`, applying LoRA first if needed.

    On a model without LoRA layers the adapters are first added where the
    file says, with its rank, alpha and rsLoRA flag. On a model with LoRA
    layers, they must be the same layers with the same ranks and kernel
    shapes; alpha and rsLoRA are taken from the file.

    Args:
        model: a model of the architecture the adapters were trained on.
        path: a file written by `save_adapters` (the name given to it
            without the `.npz` it added works too).

    Returns:
        The model.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: if the file is not an adapter file, or the model's
            layers, ranks or shapes differ from the file's (named in the message).

    Example:

    >>> import keras, keras_transfer as kt, tempfile, os
    >>> from keras_transfer import demo
    >>> model = kt.apply_lora(kt.build_classifier(demo.build_demo_backbone(), num_classes=4), rank=2)
    >>> path = kt.save_adapters(model, os.path.join(tempfile.mkdtemp(), "adapters"))
    >>> fresh = kt.build_classifier(demo.build_demo_backbone(), num_classes=4)
    >>> [layer.rank for layer in kt.load_adapters(fresh, path).get_layer("demo_convnet").layers
    ...  if hasattr(layer, "lora_a")]
    [2]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    path = pathlib.Path(path)
    if not path.is_file() and path.suffix != ".npz" and path.with_name(path.name + ".npz").is_file():
        path = path.with_name(path.name + ".npz")  # `save_adapters` adds the suffix; users repeat their own name
    if path.is_dir():
        raise ValueError(f"`path` is a folder; pass the adapter file inside it that `save_adapters` wrote. "
                         f"Received: path='{path}'")
    if not path.is_file():
        raise FileNotFoundError(f"No adapter file found at '{path}' (nor '{path}.npz'). Received: path='{path}'")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError):
        raise ValueError(f"`path` is not a keras_transfer adapter file. Received: path='{path}'") from None
    try:
        meta = json.loads(str(arrays.pop("__metadata__")))
        assert meta["format"] == ADAPTER_FORMAT
    except (KeyError, ValueError, AssertionError, TypeError):
        raise ValueError(f"`path` is not a keras_transfer adapter file. Received: path='{path}'") from None
    entries = meta["layers"]
    if not _lora_layers(model):
        _apply_from_entries(model, entries)
    by_path = {layer.path: layer for layer in _lora_layers(model)}
    wanted = [e["path"] for e in entries]
    missing = [p for p in wanted if p not in by_path]
    extra = sorted(p for p in by_path if p not in set(wanted))
    if missing or extra:
        raise ValueError(
            f"The adapters in '{path}' do not fit model {model.name!r}: LoRA layers in the file but not "
            f"in the model: {missing}; in the model but not in the file: {extra}."
        )
    for entry in entries:
        layer = by_path[entry["path"]]
        for key, actual in (("rank", layer.rank), ("kernel_shape", list(compat.base_kernel(layer).shape))):
            if entry[key] != actual:
                raise ValueError(
                    f"The adapter for layer {entry['path']!r} in '{path}' has {key}={entry[key]}, "
                    f"but the model's layer has {key}={actual}."
                )
    head = _head_variables(model, meta["head"], arrays, path)
    for i, entry in enumerate(entries):
        layer = by_path[entry["path"]]
        layer.alpha, layer.use_rslora = float(entry["alpha"]), bool(entry["use_rslora"])
        layer.lora_a.assign(arrays[f"a{i}"])
        layer.lora_b.assign(arrays[f"b{i}"])
    for i, variable in enumerate(head):
        variable.assign(arrays[f"h{i}"])
    return model


def lora_summary(model):
    """One row per block: parameters, trainable parameters and LoRA parameters.

    Args:
        model: a `keras.Model`.

    Returns:
        A `pandas.DataFrame` with columns `block`, `params`,
        `trainable_params`, `lora_params` and `trainable_fraction`
        (trainable / params).

    Example:

    >>> import keras, keras_transfer as kt
    >>> from keras_transfer import demo
    >>> model = kt.apply_lora(kt.build_classifier(demo.build_demo_backbone(), num_classes=4), rank=2)
    >>> kt.lora_summary(model).set_index("block").loc["top"].to_dict()
    {'params': 12864.0, 'trainable_params': 448.0, 'lora_params': 448.0, 'trainable_fraction': 0.03482587064676617}
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    rows = []
    for block in get_blocks(model):
        lora = [
            w for layer in block.layers for sub in compat.walk_layers(layer)
            if isinstance(sub, _LoRAMixin) for w in (sub.lora_a, sub.lora_b)
        ]
        params = block.num_params
        rows.append({
            "block": block.name,
            "params": params,
            "trainable_params": block.trainable_params,
            "lora_params": count_params(lora),
            "trainable_fraction": block.trainable_params / params if params else 0.0,
        })
    return pd.DataFrame(rows, columns=["block", "params", "trainable_params", "lora_params", "trainable_fraction"])


# --- internals ---------------------------------------------------------------


def _check_lora_args(rank, alpha, dropout, use_rslora):
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank <= 0:
        raise ValueError(f"`rank` must be a positive integer. Received: rank={rank!r}")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not alpha > 0
        or not math.isfinite(alpha)
    ):
        raise ValueError(f"`alpha` must be a positive number or None (= rank). Received: alpha={alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.number)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1). Received: dropout={dropout!r}")
    if not isinstance(use_rslora, bool):
        raise ValueError(f"`use_rslora` must be True or False. Received: use_rslora={use_rslora!r}")


def _check_convertible(layer, argument):
    if not isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)) or isinstance(layer, _LoRAMixin):
        raise ValueError(
            f"`{argument}` must be a keras Dense or EinsumDense layer without LoRA. "
            f"Received: {argument}={layer!r} of type {type(layer).__name__}"
        )
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} must be built before LoRA can be added to it.")
    if layer.lora_enabled or layer.quantization_mode is not None or layer.kernel_constraint is not None:
        raise ValueError(
            f"Layer {layer.name!r} already has Keras' own LoRA, a quantized kernel or a kernel "
            "constraint; keras_transfer LoRA needs a plain float kernel."
        )


def _candidates(blocks):
    """(block name, layer) for every Dense / EinsumDense outside the head, in model order."""
    out = []
    for block in blocks:
        if block.is_head:
            continue
        for layer in block.layers:
            for sub in compat.walk_layers(layer):
                if type(sub) in _LORA_CLASSES:
                    out.append((block.name, sub))
    return out


def _resolve_targets(model, blocks, targets):
    candidates = _candidates(blocks)
    names = [b.name for b in blocks]
    if targets is None:
        spec = find_spec(model)
        if spec is not None and spec.lora_targets:
            patterns = [re.compile(regex) for regex in spec.lora_targets]
            chosen = [layer for _, layer in candidates if any(p.fullmatch(layer.name) for p in patterns)]
            if chosen:
                return chosen
        chosen = [layer for _, layer in candidates if layer.name in ATTENTION_TARGETS]
        if not chosen:
            dense_blocks = [name for name, layer in candidates if isinstance(layer, keras.layers.Dense)]
            chosen = [layer for name, layer in candidates if dense_blocks and name == dense_blocks[-1]
                      and isinstance(layer, keras.layers.Dense)]
        if not chosen:
            raise ValueError(
                f"Model {model.name!r} has no Dense or EinsumDense layer outside the head to put LoRA "
                f"on. Valid block names: {names}"
            )
        return chosen
    selectors = [targets] if isinstance(targets, str) else targets
    if not isinstance(selectors, (list, tuple)) or not selectors or not all(
        isinstance(s, str) and s for s in selectors
    ):
        raise ValueError(
            f"`targets` must be a block name or regex, or a list of them. Received: targets={targets!r}"
        )
    if "head" in selectors:
        raise ValueError(
            "`targets` cannot include 'head': the head trains fully. "
            f"Received: targets={targets!r}. Valid block names: {[n for n in names if n != 'head']}"
        )
    chosen, seen = [], set()
    for selector in selectors:
        if selector in names:
            matched = [layer for name, layer in candidates if name == selector]
        else:
            pattern = compile_selector(selector, names, what="Target")
            matched = [layer for _, layer in candidates
                       if pattern.fullmatch(layer.name) or pattern.fullmatch(layer.path)]
        if not matched:
            raise ValueError(
                f"Target {selector!r} matches no Dense or EinsumDense layer. Received: targets={targets!r}. "
                f"Valid block names: {names}. Candidate layers: {[layer.path for _, layer in candidates]}"
            )
        for layer in matched:
            if id(layer) not in seen:
                seen.add(id(layer))
                chosen.append(layer)
    return chosen


def _convert(layer, rank, alpha, dropout, use_rslora):
    compat.retype(layer, _LORA_CLASSES[type(layer)])
    with compat.tracking_unlocked(layer):
        layer._init_lora(rank, alpha, dropout, use_rslora)
        layer._build_lora()
    layer.trainable = True


def _unconvert(layer, kernel):
    plain = next(base for base, lora in _LORA_CLASSES.items() if isinstance(layer, lora))
    compat.base_kernel(layer).assign(kernel)
    with compat.tracking_unlocked(layer):
        compat.untrack(
            layer,
            variables=(layer.lora_a, layer.lora_b),
            sublayers=[layer.lora_dropout] if layer.lora_dropout is not None else [],
            attributes=("lora_a", "lora_b", "lora_dropout", "rank", "alpha", "dropout", "use_rslora",
                        "_save_merged"),
        )
    compat.retype(layer, plain)
    # Frozen, as its base kernel was: what trained is now folded in, and the
    # model's trainable set (and a saved optimizer's slots) must not grow.
    layer.trainable = False


def _lora_layers(model):
    return [layer for layer in compat.walk_layers(model, include_self=False)
            if isinstance(layer, _LoRAMixin)]


def _parents(model):
    parents, stack = {}, [model]
    while stack:
        layer = stack.pop()
        for child in compat.child_layers(layer):
            if id(child) not in parents:
                parents[id(child)] = layer
                stack.append(child)
    return parents


def _config_owned_layers(model):
    """Layers whose class and config a `.keras` file records (layers of plain functional/sequential models)."""
    owned, stack = set(), [model]
    while stack:
        layer = stack.pop()
        if compat.is_functional(layer):
            for child in layer.layers:
                owned.add(id(child))
                if isinstance(child, keras.Model):
                    stack.append(child)
    return owned


def _check_ranks(layers, rank):
    for layer in layers:
        _check_convertible(layer, "targets")
        kernel_shape = tuple(layer.kernel.shape)
        limit = min(int(np.prod(kernel_shape[:-1])), kernel_shape[-1])
        if rank > limit:
            raise ValueError(
                f"`rank` must be at most min(input_dim, output_dim) = {limit} for target layer "
                f"{layer.path!r} (kernel shape {kernel_shape}). Received: rank={rank}"
            )


def _forget_traced_functions(model):
    """Drops cached train/test/predict functions: traced before, they would run the old layers."""
    for layer in compat.walk_layers(model):
        if isinstance(layer, keras.Model):
            layer.train_function = layer.test_function = layer.predict_function = None


def _add_lora(model, layers, rank, alpha, dropout, use_rslora):
    _forget_traced_functions(model)
    config_owned = _config_owned_layers(model)
    parents = _parents(model)
    for layer in layers:
        _convert(layer, rank, alpha, dropout, use_rslora)
        layer._save_merged = id(layer) not in config_owned
        parent = parents.get(id(layer))
        while parent is not None:
            # Not the setter: it would unfreeze the parent's other layers.
            compat.set_trainable_flag(parent, True)
            parent = parents.get(id(parent))


def _apply_from_entries(model, entries):
    """Adds LoRA where an adapter file says, each layer with its own rank and alpha."""
    blocks = get_blocks(model)
    by_path = {layer.path: layer for _, layer in _candidates(blocks)}
    missing = [e["path"] for e in entries if e["path"] not in by_path]
    if missing:
        raise ValueError(
            f"The adapter file names layers that model {model.name!r} does not have: {missing}. "
            f"Candidate layers: {list(by_path)}"
        )
    for entry in entries:
        _check_ranks([by_path[entry["path"]]], entry["rank"])
    freeze(model)
    for entry in entries:
        _add_lora(model, [by_path[entry["path"]]], entry["rank"], entry["alpha"], entry["dropout"],
                  entry["use_rslora"])


def _head_variables(model, paths, arrays, path):
    if not paths:
        return []
    head_block = next((b for b in get_blocks(model) if b.is_head), None)
    by_path = {v.path: v for v in head_block.weights} if head_block is not None else {}
    missing = [p for p in paths if p not in by_path]
    if not missing:
        missing = [f"{p} (shape {list(by_path[p].shape)} vs {list(arrays[f'h{i}'].shape)} in the file)"
                   for i, p in enumerate(paths) if tuple(by_path[p].shape) != arrays[f"h{i}"].shape]
    if missing:
        raise ValueError(
            f"The head weights in '{path}' do not fit model {model.name!r}: head variables missing or of another shape: {missing}; "
            f"the model's head has {list(by_path)}."
        )
    return [by_path[p] for p in paths]
