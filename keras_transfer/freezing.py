"""Freezing by blocks: which blocks train, and what BatchNormalization does.

`freeze(model)` trains only the head; `unfreeze(model, top_blocks=2)` also
trains the top two backbone blocks. BatchNormalization layers of the backbone
stay frozen by default, so they run in inference mode and keep their ImageNet
statistics, as the Keras transfer-learning guide requires.

After trainability changes, a compiled model must be compiled again (Keras
captures the trainable variables and builds the optimizer at compile time;
without a new `compile`, `fit` silently keeps training the old set). So when
they change a compiled model's trainable weights, both functions mark it as
not compiled (`model.compiled = False`): Keras then refuses to `fit` or
`evaluate` it until it is compiled again, instead of training the wrong
weights. `recompile(model)` compiles it again with the same loss and metrics
and a fresh optimizer. (Keras 3.15 has a check for this,
`Trainer._warn_if_trainable_state_changed`, but it is unreachable code.)
"""

import warnings

import keras
import pandas as pd

from keras_transfer import _keras_compat as compat
from keras_transfer.blocks import count_params, get_blocks


def freeze(model, *, train_bn=False):
    """Freezes every backbone block; only the `head` block trains.

    Args:
        model: a `keras.Model`, usually `inputs -> backbone -> head layers`.
        train_bn: if True, BatchNormalization layers keep training their
            gamma/beta even in frozen blocks (fastai's `train_bn`). Keras'
            BatchNormalization runs in training mode whenever it is trainable,
            so call the backbone with `training=False` to keep its statistics.

    Returns:
        The model, for chaining.

    Example:

    >>> import keras, keras_transfer as kt
    >>> backbone = keras.applications.MobileNetV2(
    ...     alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    >>> model = keras.Model(inputs, keras.layers.Dense(2)(x))
    >>> kt.freeze(model).count_params() - sum(
    ...     int(keras.ops.size(w)) for w in model.non_trainable_weights)
    2562
    """
    blocks = get_blocks(model)
    backbone = [b for b in blocks if not b.is_head]
    return _set_trainable(model, blocks, trainable=[], train_bn=train_bn, backbone=backbone)


def unfreeze(model, *, top_blocks=None, from_block=None, train_bn=False):
    """Trains the top backbone blocks (and the head); freezes the rest.

    Give exactly one of `top_blocks` or `from_block`. Blocks count from the
    output side: with EfficientNet's `stem, block1..block7, top`,
    `top_blocks=2` trains `block7` and `top`, and `from_block="block6"` trains
    `block6`, `block7` and `top`. The `head` block always trains and is not
    counted.

    Args:
        model: a `keras.Model`.
        top_blocks: how many backbone blocks to train, from the top; between 0
            and the number of backbone blocks.
        from_block: name of the lowest block to train.
        train_bn: keep BatchNormalization layers trainable everywhere (see
            `freeze`); by default they stay frozen, in inference mode, even
            inside trainable blocks.

    Returns:
        The model, for chaining.

    Example:

    >>> import keras, keras_transfer as kt
    >>> vgg = keras.applications.VGG16(weights=None, include_top=False)
    >>> kt.unfreeze(vgg, top_blocks=1).trainable_weights[0].path
    'block5_conv1/kernel'
    """
    blocks = get_blocks(model)
    backbone = [b for b in blocks if not b.is_head]
    names = [b.name for b in backbone]
    if (top_blocks is None) == (from_block is None):
        raise ValueError(
            "Pass exactly one of `top_blocks` or `from_block`. "
            f"Received: top_blocks={top_blocks!r}, from_block={from_block!r}"
        )
    if top_blocks is not None:
        if isinstance(top_blocks, bool) or not isinstance(top_blocks, int) or not (
            0 <= top_blocks <= len(backbone)
        ):
            raise ValueError(
                f"`top_blocks` must be an integer between 0 and {len(backbone)} "
                f"(the number of backbone blocks: {names}). Received: top_blocks={top_blocks!r}"
            )
        chosen = backbone[len(backbone) - top_blocks :]
    else:
        if from_block not in names:
            head = " (`head` always trains; it cannot be a starting block)" if from_block == "head" else ""
            raise ValueError(
                f"Unknown block for `from_block`{head}. Received: from_block={from_block!r}. "
                f"Valid block names: {names}"
            )
        chosen = backbone[names.index(from_block) :]
    return _set_trainable(model, blocks, trainable=chosen, train_bn=train_bn, backbone=backbone)


def trainable_summary(model):
    """One row per block: how many layers and parameters, and how many train.

    Args:
        model: a `keras.Model`.

    Returns:
        A `pandas.DataFrame` with columns `block`, `layers`, `params`,
        `trainable_params` and `state`: `trainable` when every weight that
        can train does (moving statistics never can), `frozen` when none
        does, `partial` otherwise (a trainable block whose BatchNorm stays
        frozen, say).

    Example:

    >>> import keras, keras_transfer as kt
    >>> vgg = keras.applications.VGG16(weights=None, include_top=False)
    >>> kt.trainable_summary(kt.unfreeze(vgg, top_blocks=1)).iloc[-1].to_dict()
    {'block': 'block5', 'layers': 4, 'params': 7079424, 'trainable_params': 7079424, 'state': 'trainable'}
    """
    blocks = get_blocks(model)
    rows = []
    for block in blocks:
        params, trainable = block.num_params, block.trainable_params
        trainable_at_most = _count_trainable_at_most(block)
        state = "frozen" if not trainable else "trainable" if trainable == trainable_at_most else "partial"
        rows.append(
            {
                "block": block.name,
                "layers": len(block.layers),
                "params": params,
                "trainable_params": trainable,
                "state": state,
            }
        )
    return pd.DataFrame(rows, columns=["block", "layers", "params", "trainable_params", "state"])


def recompile(model, optimizer=None, **compile_overrides):
    """Compiles a model again after its trainability changed.

    Keeps the loss, metrics and other `compile` arguments of the last
    `compile` call (also after `freeze` / `unfreeze` marked the model as not
    compiled). The optimizer is a fresh copy of the old one (same class
    and config, new state) unless `optimizer` is given; pass one built for the
    new trainable set, such as `kt.differential_optimizer(model)`.

    Args:
        model: a compiled `keras.Model`.
        optimizer: optional optimizer (instance or name) to use instead.
        **compile_overrides: other `compile` arguments to change.

    Returns:
        The model, for chaining.

    Example:

    >>> import keras, keras_transfer as kt
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> kt.recompile(model).optimizer.__class__.__name__
    'SGD'
    """
    arguments = compat.compile_arguments(model)
    if arguments is None:
        raise ValueError(
            f"`model` has not been compiled yet, so there is nothing to recompile. "
            f"Received: model={model.name!r}. Call `model.compile(...)` instead."
        )
    kwargs = arguments
    if optimizer is None:
        old = model.optimizer
        optimizer = old.__class__.from_config(old.get_config())
    kwargs["optimizer"] = optimizer
    kwargs.update(compile_overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.compile(**kwargs)
    return model


# --- internals ---------------------------------------------------------------


def _count_trainable_at_most(block):
    """Scalars that would train if every layer of the block were trainable."""
    variables = {id(v): v for layer in block.layers for sub in compat.walk_layers(layer)
                 for v in compat.trainable_kind_variables(sub)}
    return count_params(variables.values())


def _set_trainable(model, blocks, trainable, train_bn, backbone):
    before = {id(v) for v in model.trainable_weights}
    chosen = {id(b) for b in trainable}
    # Containers are enabled without recursing, so no `trainable=True` setter
    # undoes the per-layer choices made below (and no frozen LoRA kernel is
    # re-enabled on the way).
    for container in _containers(model, blocks):
        compat.set_trainable_flag(container, True)
    for block in blocks:
        train = block.is_head or id(block) in chosen
        for layer in block.layers:
            layer.trainable = train
    for block in backbone:
        for layer in block.layers:
            for sub in compat.walk_layers(layer):
                if isinstance(sub, keras.layers.BatchNormalization):
                    sub.trainable = bool(train_bn)
    after = {id(v) for v in model.trainable_weights}
    if before != after and getattr(model, "compiled", False):
        # An error at the next `fit` when the user forgets, and no false alarm
        # before the `recompile` they were about to call (see the module docstring).
        model.compiled = False
    return model


def _containers(model, blocks):
    """Every layer that holds a block's layer without being in a block itself."""
    in_blocks = {id(layer) for b in blocks for layer in b.layers}
    out = []
    for layer in compat.walk_layers(model):
        if id(layer) in in_blocks:
            continue
        inner = compat.walk_layers(layer, include_self=False)
        if any(id(sub) in in_blocks for sub in inner):
            out.append(layer)
    return out
