"""Blocks: a pretrained model seen as its architecture's own natural units.

A backbone is a sequence of blocks ordered from input to output (EfficientNet
`stem`, `block1`..`block7`, `top`; ResNet `stem`, `conv2`..`conv5`; a BERT's
`embeddings`, `transformer_layer_0`.., `pooler`). Layers added after the
backbone form the block `head`. Freezing, learning rates, LoRA, diagnostics and
reports all speak in blocks.

How layers are grouped is data, not code: `BLOCK_SPECS` (in
`keras_transfer.specs`) holds one `BlockSpec` per family, a small table of
regular expressions over layer names. Any other model falls back to a
generic grouping (nested models, then name prefixes).
"""

import dataclasses
import re
import warnings
import weakref

import keras

from keras_transfer import _keras_compat as compat
from keras_transfer.specs import BLOCK_SPECS, BlockSpec

HEAD = "head"
_WARNED = weakref.WeakSet()  # models already told they fall back to generic blocks
# Specs added with `register_block_spec`, newest first; tried before BLOCK_SPECS.
_REGISTERED = []


@dataclasses.dataclass(frozen=True, eq=False)
class Block:
    """One natural unit of a model: a named, ordered group of layers.

    Attributes:
        name: the block's name, from the architecture's own layer names.
        layers: the layers in the block, in model order.
        family: the spec family that produced it (`"generic"` for the
            fallback, `"head"` for layers added after a backbone).
    """

    name: str
    layers: tuple
    family: str = "generic"

    @property
    def weights(self):
        """Every variable of the block's layers, each once."""
        return _unique([w for layer in self.layers for w in layer.weights])

    @property
    def trainable_weights(self):
        """The variables an optimizer would update, under current flags."""
        return _unique([w for layer in self.layers for w in layer.trainable_weights])

    @property
    def num_params(self):
        """Number of scalars in the block's weights."""
        return count_params(self.weights)

    @property
    def trainable_params(self):
        """Number of scalars that would train under current flags."""
        return count_params(self.trainable_weights)

    @property
    def is_head(self):
        return self.name == HEAD

    def __repr__(self):
        return f"Block({self.name!r}, layers={len(self.layers)}, params={self.num_params})"


def get_blocks(model, spec=None):
    """Splits a model into its blocks, ordered from input to output.

    A known backbone (see `BLOCK_SPECS`) is split by its family's spec. A
    classifier built as `inputs -> backbone -> new layers` is split into the
    backbone's blocks (any layers before the backbone join its first block)
    followed by a `head` block holding the new layers. Any other model falls
    back to a generic grouping with a `UserWarning`: nested models become
    blocks (layers after the last one form the `head`), otherwise consecutive
    layers sharing a name prefix (`block3_conv1`, `block3_pool` -> `block3`).

    Args:
        model: a built `keras.Model`.
        spec: optional `BlockSpec` to use instead of looking one up.

    Returns:
        A list of `Block`s. Every layer holding weights is in exactly one.

    Example:

    >>> import keras, keras_transfer as kt
    >>> backbone = keras.applications.EfficientNetB0(
    ...     include_top=False, weights=None, input_shape=(64, 64, 3))
    >>> [b.name for b in kt.get_blocks(backbone)]
    ['stem', 'block1', 'block2', 'block3', 'block4', 'block5', 'block6', 'block7', 'top']
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model={model!r} of type "
            f"{type(model).__name__}"
        )
    if spec is not None:
        if not isinstance(spec, BlockSpec):
            raise TypeError(f"`spec` must be a BlockSpec. Received: spec={spec!r}")
        return _apply_spec(_layers_of(model), spec)
    spec = _own_spec(model)
    if spec is not None:
        return _apply_spec(_layers_of(model), spec)
    layers = _layers_of(model)
    for index, layer, inner_spec in _nested_backbones(model):
        blocks = _apply_spec(_layers_of(layer), inner_spec)
        before, after = layers[:index], layers[index + 1 :]
        if before:
            first = blocks[0]
            blocks[0] = Block(first.name, tuple(before) + first.layers, first.family)
        if after:
            blocks.append(Block(HEAD, tuple(after), HEAD))
        return blocks
    return _generic_blocks(model, layers)


def find_spec(model):
    """Returns the `BlockSpec` for a model's family, or None if unknown.

    Specs registered with `register_block_spec` are tried first (the latest
    first), then the built-in `BLOCK_SPECS`. A classifier built around a
    known backbone (`kt.build_classifier`, or `inputs -> backbone -> new
    layers`) has its backbone's spec.

    Example:

    >>> import keras, keras_transfer as kt
    >>> kt.find_spec(keras.applications.VGG16(weights=None)).family
    'vgg'
    >>> backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> kt.find_spec(kt.build_classifier(backbone, 2)).family
    'vgg'
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r} of type {type(model).__name__}")
    spec = _own_spec(model)
    if spec is None:
        spec = next((inner for _, _, inner in _nested_backbones(model)), None)
    return spec


def _own_spec(model):
    """The spec matching `model` itself (its name, class or signature), not a model nested in it."""
    specs = block_specs()
    names = (model.name, type(model).__name__)
    for spec in specs:
        if any(re.fullmatch(spec.model, n) for n in names):
            if not spec.signature or _has_signature(model, spec):
                return spec
    for spec in specs:
        if spec.signature and _has_signature(model, spec):
            return spec
    return None


def register_block_spec(spec):
    """Makes every block-aware function use `spec` for the models it matches.

    `freeze`, `unfreeze`, `differential_optimizer`, `apply_lora`,
    `GradualUnfreezing`, `fine_tune`, the diagnostics and the reports all find
    blocks through `get_blocks`, which consults registered specs before the
    built-in table. Registering a spec whose `family` is already registered
    replaces it.

    Args:
        spec: a `BlockSpec`; its `model` regex is full-matched against a
            model's `name` or class name.

    Returns:
        The spec.

    Example:

    >>> import keras, keras_transfer as kt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="low_dense"),
    ...                           keras.layers.Dense(4, name="high_dense")], name="my_net")
    >>> spec = kt.register_block_spec(kt.BlockSpec(
    ...     "my_net", r"my_net", (("low", r"low_.*"), ("high", r"high_.*"))))
    >>> kt.block_names(model)
    ['low', 'high']
    >>> kt.unregister_block_spec("my_net")
    """
    if not isinstance(spec, BlockSpec):
        raise TypeError(f"`spec` must be a kt.BlockSpec. Received: spec={spec!r}")
    _REGISTERED[:] = [s for s in _REGISTERED if s.family != spec.family]
    _REGISTERED.insert(0, spec)
    return spec


def unregister_block_spec(family):
    """Removes the registered spec of `family` (built-in specs cannot be removed).

    Example:

    >>> import keras_transfer as kt
    >>> _ = kt.register_block_spec(kt.BlockSpec("tmp", r"tmp_net", (("all", r".*"),)))
    >>> kt.unregister_block_spec("tmp")
    """
    registered = [s.family for s in _REGISTERED]
    if family not in registered:
        raise ValueError(f"No block spec is registered for `family`. Received: family={family!r}. "
                         f"Registered families: {registered}")
    _REGISTERED[:] = [s for s in _REGISTERED if s.family != family]


def block_specs():
    """Every spec `get_blocks` tries, in order: registered ones (latest first), then `BLOCK_SPECS`.

    Example:

    >>> import keras_transfer as kt
    >>> kt.block_specs()[-1].family
    'keras_hub.transformer'
    """
    return tuple(_REGISTERED) + BLOCK_SPECS


def block_names(model):
    """The names of a model's blocks, in order.

    Example:

    >>> import keras, keras_transfer as kt
    >>> kt.block_names(keras.applications.VGG16(weights=None, include_top=False))
    ['block1', 'block2', 'block3', 'block4', 'block5']
    """
    return [b.name for b in get_blocks(model)]


def get_block(model, name):
    """Returns the block called `name`, or raises a ValueError listing valid names.

    Example:

    >>> import keras, keras_transfer as kt
    >>> vgg = keras.applications.VGG16(weights=None, include_top=False)
    >>> kt.get_block(vgg, "block5").num_params
    7079424
    """
    blocks = get_blocks(model)
    for block in blocks:
        if block.name == name:
            return block
    raise ValueError(
        f"Unknown block {name!r}. Valid block names: {[b.name for b in blocks]}"
    )


def select_variables(model, selector, trainable_only=False):
    """Resolves one selector to the variables it names.

    The selector language is shared by the whole toolkit: a block name
    (`"block7"`, `"head"`), or a regex full-matched against `variable.path`
    as Keras' `OptimizerMap` does (`"block7.*/kernel"`). A name that is a
    block name always means the block.

    Args:
        model: the model.
        selector: a block name or a regex over variable paths.
        trainable_only: keep only variables that would currently train.

    Returns:
        The list of matching variables (empty only if `trainable_only`
        removed every match).

    Raises:
        ValueError: if the selector is neither a block name nor a regex
            matching any variable path; the message lists the block names.

    Example:

    >>> import keras, keras_transfer as kt
    >>> vgg = keras.applications.VGG16(weights=None, include_top=False)
    >>> [v.path for v in kt.select_variables(vgg, "block1_conv1/.*")]
    ['block1_conv1/kernel', 'block1_conv1/bias']
    """
    return _select(get_blocks(model), selector, trainable_only)


def _select(blocks, selector, trainable_only=False):
    """`select_variables` on blocks already found."""
    if not isinstance(selector, str) or not selector:
        raise ValueError(
            "A selector must be a block name or a regex over variable paths. "
            f"Received: selector={selector!r}"
        )
    by_name = {b.name: b for b in blocks}
    if selector in by_name:
        block = by_name[selector]
        return block.trainable_weights if trainable_only else block.weights
    pattern = compile_selector(selector, by_name)
    variables = [v for b in blocks for v in b.weights if pattern.fullmatch(v.path)]
    if not variables:
        raise ValueError(
            f"Selector {selector!r} matches no block name and no variable path. "
            f"Valid block names: {list(by_name)}"
        )
    if trainable_only:
        trainable = {id(v) for b in blocks for v in b.trainable_weights}
        variables = [v for v in variables if id(v) in trainable]
    return variables


def compile_selector(selector, block_names, what="Selector"):
    """The regex a selector that is not a block name stands for.

    Raises a ValueError that lists the valid block names when `selector` is
    not a valid regex either, so every tool that takes selectors fails alike.

    Example:

    >>> from keras_transfer.blocks import compile_selector
    >>> compile_selector("block7.*/kernel", ["block6", "block7"]).pattern
    'block7.*/kernel'
    """
    try:
        return re.compile(selector)
    except re.error as e:
        raise ValueError(
            f"{what} {selector!r} is not a block name and not a valid regex ({e}). "
            f"Valid block names: {list(block_names)}"
        ) from None


# --- internals ---------------------------------------------------------------


def _layers_of(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _sublayers(layer):
    return list(compat.child_layers(layer))


def _has_signature(model, spec):
    names = [layer.name for layer in model.layers]
    return all(any(re.fullmatch(sig, n) for n in names) for sig in spec.signature)


def _apply_spec(layers, spec):
    if spec.expand:
        expanded = []
        for layer in layers:
            if re.fullmatch(spec.expand, layer.name):
                expanded.extend(_sublayers(layer))
            else:
                expanded.append(layer)
        layers = expanded
    rules = [(target, re.compile(regex)) for target, regex in spec.rules]
    order, members = [], {}
    current_rule, current_block, pending = 0, None, []

    def add(block, layer_list):
        if block not in members:
            order.append(block)
            members[block] = []
        members[block].extend(layer_list)

    for layer in layers:
        for index in range(current_rule, len(rules)):
            match = rules[index][1].fullmatch(layer.name)
            if match:
                block = match.expand(rules[index][0])
                if spec.unmatched == "next" or current_block is None:
                    add(block, pending)
                else:
                    add(current_block, pending)
                pending = []
                add(block, [layer])
                current_rule, current_block = index, block
                break
        else:
            if spec.unmatched == "previous" and current_block is not None:
                add(current_block, [layer])
            else:
                pending.append(layer)
    if pending:
        if current_block is None:
            raise ValueError(
                f"Block spec {spec.family!r} matched none of the model's layers "
                f"({[layer.name for layer in layers][:8]}...)."
            )
        add(current_block, pending)
    return [Block(name, tuple(members[name]), spec.family) for name in order]


def _nested_backbones(model):
    """(index, layer, spec) of each top-level layer of `model` that is a model with a spec of its own."""
    for index, layer in enumerate(_layers_of(model)):
        spec = _own_spec(layer) if isinstance(layer, keras.Model) else None
        if spec is not None:
            yield index, layer, spec


def _prefix(name):
    head, sep, rest = name.partition("_")
    if not sep or rest.isdigit():
        return name
    return head


def _generic_blocks(model, layers):
    nested = [i for i, layer in enumerate(layers) if isinstance(layer, keras.Model)]
    groups = []
    if nested:
        head_start = nested[-1] + 1
        for layer in layers[:head_start]:
            if isinstance(layer, keras.Model) or not groups:
                groups.append([layer.name, [layer]])
            else:
                groups[-1][1].append(layer)
        if layers[head_start:]:
            groups.append([HEAD, list(layers[head_start:])])
        how = "each nested model is a block"
    else:
        for layer in layers:
            key = _prefix(layer.name)
            if groups and (groups[-1][0] == key or not layer.weights):
                groups[-1][1].append(layer)
            elif groups and not any(lay.weights for lay in groups[-1][1]):
                groups[-1][0] = key
                groups[-1][1].append(layer)
            else:
                groups.append([key, [layer]])
        how = "blocks are runs of layers sharing a name prefix"
    if model in _WARNED:
        return _named_blocks(groups)
    # Once per model: every block-aware call on it would repeat the same words.
    _WARNED.add(model)
    warnings.warn(
        f"keras_transfer has no block spec for model {model.name!r} "
        f"({type(model).__name__}); using the generic fallback: {how}. "
        "For exact blocks, register a spec for it: `kt.register_block_spec(kt.BlockSpec(...))`.",
        stacklevel=3,
    )
    return _named_blocks(groups)


def _named_blocks(groups):
    seen = {}
    blocks = []
    for name, group in groups:
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name}_{seen[name] - 1}"
        blocks.append(Block(unique, tuple(group), HEAD if unique == HEAD else "generic"))
    return blocks


def _unique(variables):
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def count_params(variables):
    """How many scalars `variables` hold (the one parameter count of the package)."""
    total = 0
    for v in variables:
        n = 1
        for d in v.shape:
            n *= int(d)
        total += n
    return total
