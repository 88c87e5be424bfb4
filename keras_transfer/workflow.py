"""The transfer-learning workflow in one call: fastai's `fine_tune`, for Keras.

Phase 1 trains a new head on the frozen backbone (on cached backbone features
where the strategy allows). Phase 2 unfreezes as the strategy says, compiles
again with per-block learning rates, and continues. BatchNormalization layers
of the backbone stay in inference mode throughout: the backbone is always
called with `training=False` and its BatchNorm layers stay frozen.

Strategies, all on the same epoch budget (`head_epochs + fine_tune_epochs`):

| strategy             | phase 1 (head_epochs)   | phase 2 (fine_tune_epochs)                      |
|----------------------|-------------------------|-------------------------------------------------|
| `scratch`            | whole model, random init, `head_lr`, both phases' epochs  |                   |
| `feature_extraction` | head on frozen backbone, both phases' epochs               |                   |
| `fine_tune`          | head                    | top `top_blocks` blocks (default half), per-block rates |
| `full`               | head                    | every block, per-block rates                    |
| `lora`               | head                    | LoRA adapters (rank `lora_rank`) + head, at `head_lr` |
| `auto`               | head                    | candidates of every depth and rate, by successive halving; the winner to the end |

With validation data, every phase ends at its best epoch by `monitor`
(validation accuracy unless you pick another), and the model returned is the
best across phases: fine-tuning can never hand back a model worse than the
head it started from.
"""

import dataclasses
import json
import os
import pathlib
import tempfile
import time
import warnings

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks
from keras_transfer import _keras_compat as compat
from keras_transfer.backbones import Backbone, check_image_size
from keras_transfer.blocks import count_params, get_blocks
from keras_transfer.callbacks import AtomicBackupAndRestore, checkpoint_callbacks
from keras_transfer.config import STRATEGIES, FineTuneConfig, take_renamed  # noqa: F401 (STRATEGIES: public here too)
from keras_transfer.distribute import scale_batch_size
from keras_transfer.freezing import freeze, unfreeze
from keras_transfer.lora import apply_lora, merge_lora
from keras_transfer.losses import SparseCategoricalCrossentropy
from keras_transfer.metrics import Accuracy, TopKAccuracy
from keras_transfer.optimizers import differential_optimizer, optimizer_for, scale_learning_rates
from keras_transfer.search import Candidate, default_candidates, plot_search, successive_halving

# `Candidate.top_blocks` of the LoRA candidate: adapters, not a depth.
_LORA = -1
_RATE = "rate:"  # history columns of each block's rate, moved into `FineTuneResult.block_rates`



@dataclasses.dataclass
class FineTuneResult:
    """What `fine_tune` returns.

    Attributes:
        model: the trained classifier.
        history: one row per epoch across all phases: `phase`, `epoch`,
            `head_lr`, `backbone_lr`, then Keras' logs (`loss`, `accuracy`,
            `val_loss`, ...).
        metrics: the final validation metrics (training metrics when no
            validation data was given).
        paths: files written (`best`, `last` checkpoints per phase, `history`,
            `block_rates`).
        strategy: the strategy that ran.
        trainable_params: parameters trained in the last phase.
        wall_time: seconds spent in `fine_tune`.
        best_phase: the phase whose best epoch the returned model holds (with
            `strategy="auto"`, the candidate's name), or None without
            validation data.
        search: for `strategy="auto"`, one row per candidate run of the
            successive halving (`rung`, `candidate`, `epochs`,
            `total_epochs`, `score`, `seconds`, `kept`); `plot_search()`
            draws it. None for other strategies.
        learning_rates: the rates `lr_find` chose (`head_lr`, `backbone_lr`)
            when they were `"find"`; empty otherwise.
        config: the `FineTuneConfig` that ran.
        block_rates: every block's learning rate at the end of each epoch:
            `phase`, `epoch` (as in `history`), then one column per block
            that trained in some phase (NaN while it was frozen).

    History columns are named after `fine_tune`'s arguments: `head_lr` and
    `backbone_lr` (the top trainable backbone block's rate, the highest a
    pretrained block trains at; NaN while no backbone block trains). There
    is no `learning_rate` column: the highest rate that callbacks such as
    `kt.ReduceLROnPlateau` log under that name is one of those two.
    """

    model: keras.Model
    history: pd.DataFrame
    metrics: dict
    paths: dict
    strategy: str
    trainable_params: int
    wall_time: float
    best_phase: object = None
    search: object = None
    learning_rates: dict = dataclasses.field(default_factory=dict)
    config: object = None
    block_rates: pd.DataFrame = None

    def plot_search(self):
        """The halving as a `matplotlib.figure.Figure`: each candidate's score against epochs spent."""
        if self.search is None:
            raise ValueError(f"Only `strategy='auto'` searches. This result's strategy: {self.strategy!r}")
        return plot_search(self.search)


def build_classifier(backbone, num_classes, *, dropout=0.2, hidden_units=(), backbone_training=False, name=None):
    """Puts a new head on a backbone: pooling -> dropout -> [Dense ->] Dense.

    The backbone is called with `training=False`, so its BatchNormalization
    layers run in inference mode even when they are unfrozen.

    Args:
        backbone: a `keras.Model` with one image input, or a text model's
            dict of inputs (token ids, masks), whose output may be a feature
            map, a token sequence or already pooled; or the
            `kt.Backbone` that `kt.get_backbone` returns (its `model`).
        num_classes: number of output classes (logits); at least 2.
        dropout: dropout rate before the output layer, in [0, 1).
        hidden_units: sizes of optional hidden Dense layers (ReLU).
        backbone_training: the `training` argument the backbone is called
            with. `False` (default) keeps BatchNorm in inference mode, as
            fine-tuning needs; `None` lets it use batch statistics while
            training, as training from scratch needs.
        name: the classifier's name.

    Returns:
        A `keras.Model` whose blocks are the backbone's plus `head`.

    Example:

    >>> import keras, keras_transfer as kt
    >>> backbone = keras.applications.MobileNetV2(
    ...     alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> model = kt.build_classifier(backbone, num_classes=5)
    >>> kt.get_blocks(model)[-1].num_params
    6405
    """
    if isinstance(backbone, Backbone):
        backbone = backbone.model
    if not isinstance(backbone, keras.Model):
        hint = f" For a backbone by name, pass kt.get_backbone({backbone!r})." if isinstance(backbone, str) else ""
        raise TypeError(
            f"`backbone` must be a keras.Model or a kt.Backbone. Received: backbone={backbone!r} "
            f"of type {type(backbone).__name__}.{hint}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    # === Layers ===
    head_layers = []
    rank = len(backbone.output.shape)
    if rank == 4:
        head_layers.append(keras.layers.GlobalAveragePooling2D(name="head_pool"))
    elif rank == 3:
        head_layers.append(keras.layers.GlobalAveragePooling1D(name="head_pool"))
    for i, units in enumerate(hidden_units):
        head_layers.append(keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}"))
    head_layers.append(keras.layers.Dropout(dropout, name="head_dropout"))
    head_layers.append(keras.layers.Dense(num_classes, name="head_logits", dtype="float32"))
    # === Functional Model ===
    inputs = _inputs_like(backbone)
    x = backbone(inputs, training=backbone_training)
    for layer in head_layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name or f"{backbone.name}_classifier")


def _inputs_like(backbone):
    """New inputs shaped as the backbone's: one image tensor, or a dict (a text model's token ids and masks)."""
    if isinstance(backbone.input, dict):
        return {key: keras.Input(t.shape[1:], dtype=t.dtype, name=key) for key, t in backbone.input.items()}
    return keras.Input(backbone.input.shape[1:], name="image")


def fine_tune(model_or_backbone, train_ds, val_ds=None, config=None, *, callbacks=None, **options):
    """Runs the whole transfer-learning workflow: head first, then fine-tuning.

    The options come as keywords (`num_classes=4, strategy="full"`), as a
    `FineTuneConfig` (`config=...`), or both: keywords then override the
    config's fields. They are checked, alone and together, before anything
    trains (see `FineTuneConfig`).

    Args:
        model_or_backbone: a backbone (`keras.Model` with a known block spec,
            or a `kt.Backbone` from `kt.get_backbone`), which gets a new head
            (`build_classifier`), or a classifier that already has a `head`
            block.
        train_ds: `tf.data.Dataset` of `(images, labels)` batches: integer
            labels, or class probabilities (`augment="mixup"` / `"cutmix"`).
        val_ds: optional validation dataset of the same form.
        config: a `FineTuneConfig` (or a recipe config, which derives from
            it), or None to take the options from the keywords.
        callbacks: extra Keras callbacks for every phase's `fit` (in the
            head phase on cached features they see the head model).
        **options: `FineTuneConfig` fields, as below.
        num_classes: number of classes (required without `config`).
        head_epochs: epochs of phase 1 (new head on the frozen backbone).
        fine_tune_epochs: epochs of phase 2.
        strategy: one of `"scratch"`, `"feature_extraction"`, `"fine_tune"`,
            `"full"`, `"lora"`, `"auto"` (see the module docstring).
        top_blocks: backbone blocks phase 2 of `fine_tune` trains;
            None (default) trains the top half of them. Measured on a near
            (ants/bees) and a far (steel defects) real set with ImageNet
            MobileNetV2: the top half at 1e-4 tied the best hand-picked depth
            on the near set and won on the far one, where the top 2 at 1e-5
            left a point behind (`benchmarks/RESULTS.md`). Formerly
            `unfreeze_top_blocks` (still accepted, with a FutureWarning).
        head_lr: learning rate of the head (and of everything in `scratch`),
            or `"find"`: `kt.lr_find` sweeps the head phase (on cached
            features) and its suggestion is used.
        backbone_lr: learning rate of unfrozen backbone blocks in phase 2
            (of the top one, when `layer_decay` is set: no pretrained block
            trains faster), or `"find"`:
            `kt.lr_find` sweeps phase 2 with every rate group scaled together
            (the backbone starting at a tenth of the head's rate, ratios and
            `layer_decay` kept) and all groups are scaled by its suggestion.
        layer_decay: if set, rates decay block by block from the top
            backbone block down: `backbone_lr`, `backbone_lr * layer_decay`,
            `backbone_lr * layer_decay**2`, ... (`result.block_rates` has
            every block's rate per epoch).
        lora_rank: rank of the LoRA adapters of `strategy="lora"` (and of
            `"auto"`'s LoRA candidate); None (default): 8.
        lora_alpha: their scale (`scaling = lora_alpha / lora_rank`); None
            (default): equal to the rank.
        cache_features: in phase 1 (and `feature_extraction`), run the frozen
            backbone once over `train_ds`'s images without augmentation and
            train the head on the cached features, in the same order every
            epoch as `train_ds` (see `kt.data.cache_features`). A dataset
            that cannot be replayed exactly (`kt.data.cacheable`) trains
            through the backbone instead, with a warning.
        early_stopping: stop a phase when `monitor` stops improving for
            `patience` epochs and restore its best weights (needs `val_ds`).
        mixed_precision: `"auto"` (mixed_float16 on a GPU, mixed_bfloat16 on
            a TPU, none on a CPU), `None`, or a Keras dtype policy name. The
            policy applies to the layers this function builds; build the
            backbone under the same policy (`keras.config.set_dtype_policy`)
            for the full speed-up.
        jit_compile: passed to `model.compile`.
        checkpoint_dir: if set, each phase writes atomic `best.keras` and
            `last.keras` checkpoints and a backup there, so a killed run
            started again resumes where it stopped.
        label_smoothing: label smoothing of the cross-entropy loss.
        dropout: dropout of the new head.
        optimizer, weight_decay, warmup_steps, decay_steps: passed to
            `kt.differential_optimizer` for every phase.
        patience: early-stopping patience in epochs.
        verbose: Keras `fit` verbosity: 0, 1, 2 or `"auto"` (bools too).
        monitor: the selection metric, a log name such as `"val_accuracy"`
            (default) or `"val_loss"`; `loss` in its name means lower is
            better. Early stopping, `best.keras` checkpoints, the end of
            every phase (its best epoch) and the model returned (the best
            across phases) all follow it. Ties on accuracy go to the lower
            `val_loss`, then to the earlier phase.
        l2_sp: if set (a number >= 0), L2-SP pulls the pretrained weights
            that train in phase 2 toward their starting values after every
            step (`kt.apply_l2_sp`), a guard against catastrophic
            forgetting. Only with `"fine_tune"`, `"full"` or `"auto"`.
        candidates: for `strategy="auto"` only: what to try in phase 2, a
            list of `keras_transfer.search.Candidate`s or names:
            `"feature_extraction"`, `"fine_tune"` (`top_blocks` at
            `backbone_lr`), `"full"` (every block, `backbone_lr`,
            `layer_decay`), `"lora"`, or a name of
            `keras_transfer.search.default_candidates`. Default: those
            default candidates (none, 2, half and all blocks; 1e-5 and 1e-4)
            less the depths the backbone's BatchNorm statistics argue against
            (`kt.bn_shift`: no feature extraction for a far target, never
            every block for a near one), plus `"lora"` when the backbone has
            Dense layers to adapt.
        budget: for `strategy="auto"` only: the most phase-2 epochs spent
            over all candidates together (a positive integer); default: what
            the halving schedule needs (about twice `fine_tune_epochs`).

    Options a strategy does not use (`top_blocks` under `"full"`,
    `lora_rank` under `"fine_tune"`) are ignored, so one dict of settings
    can compare strategies.

    Returns:
        A `FineTuneResult`.

    Example:

    >>> import numpy as np, tensorflow as tf, keras, keras_transfer as kt
    >>> from keras_transfer.config import FineTuneConfig
    >>> backbone = keras.applications.MobileNetV2(
    ...     alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> x = np.random.rand(16, 32, 32, 3).astype("float32"); y = np.arange(16) % 2
    >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    >>> result = kt.fine_tune(backbone, ds, ds, num_classes=2, head_epochs=1,
    ...                       fine_tune_epochs=1, verbose=0)
    >>> list(result.history.phase)
    ['head', 'fine_tune']
    >>> config = FineTuneConfig(num_classes=2, head_epochs=1, fine_tune_epochs=0, verbose=0)
    >>> list(kt.fine_tune(backbone, ds, ds, config).history.phase)
    ['head']
    """
    start = time.perf_counter()
    config = _config(config, options)
    strategy = config.strategy
    bad = [cb for cb in callbacks or () if not isinstance(cb, keras.callbacks.Callback)]
    if bad:
        raise TypeError(f"`callbacks` must hold keras.callbacks.Callback instances. Received: {bad!r}")
    for name, dataset in (("train_ds", train_ds), ("val_ds", val_ds)):
        if dataset is not None and isinstance(model_or_backbone, (Backbone, keras.Model)):
            check_image_size(model_or_backbone, dataset, name)
    early_stopping = config.early_stopping and val_ds is not None
    policy = _resolve_mixed_precision(config.mixed_precision)
    with _dtype_policy(policy):
        model = _as_classifier(model_or_backbone, config.num_classes, config.dropout, scratch=strategy == "scratch")
    blocks = get_blocks(model)
    backbone_blocks = [b for b in blocks if not b.is_head]
    if config.top_blocks is not None and strategy in ("fine_tune", "auto") and config.top_blocks > len(backbone_blocks):
        names = [b.name for b in backbone_blocks]
        raise ValueError(
            f"`top_blocks` must be at most the number of backbone blocks, {len(names)}: {names} "
            f"(`strategy='full'` trains them all). Received: top_blocks={config.top_blocks}"
        )
    top_blocks = config.top_blocks if config.top_blocks is not None else max(1, len(backbone_blocks) // 2)
    for name, dataset in (("train_ds", train_ds), ("val_ds", val_ds)):
        _check_classes(config.num_classes, dataset, name)
    loss = SparseCategoricalCrossentropy(label_smoothing=config.label_smoothing, from_logits=True)
    # Hard or soft labels alike: MixUp / CutMix training batches carry class probabilities.
    # A factory, not a list: each compile gets metric objects of its own. Keras does not reset a metric
    # that another model used at its first evaluate, so a shared one averaged the head phase's last
    # validation epoch into the final result.
    def metrics():
        return [Accuracy()] + ([TopKAccuracy(5)] if config.num_classes > 5 else [])

    opt_kwargs = dict(optimizer=config.optimizer, weight_decay=config.weight_decay, warmup_steps=config.warmup_steps,
                      decay_steps=config.decay_steps)
    common = dict(
        loss=loss, metrics=metrics, jit_compile=config.jit_compile, val_ds=val_ds, early_stopping=early_stopping,
        patience=config.patience, checkpoint_dir=config.checkpoint_dir, verbose=config.verbose,
        extra_callbacks=list(callbacks or ()), monitor=config.monitor if val_ds is not None else None,
        first_epoch=0,
    )
    head_lr, head_epochs, fine_tune_epochs = config.head_lr, config.head_epochs, config.fine_tune_epochs
    found = {}
    phases = []
    if strategy == "scratch":
        unfreeze(model, top_blocks=len(backbone_blocks), train_bn=True)
        rate = _found_head_lr(model, train_ds, head_lr, opt_kwargs, common, found)
        phases.append(_run_phase(model, "scratch", train_ds, head_epochs + fine_tune_epochs,
                                 differential_optimizer(model, head_lr=rate, backbone_lr=rate, **opt_kwargs),
                                 rate_model=model, **common))
    else:
        freeze(model)
        epochs = head_epochs + (fine_tune_epochs if strategy == "feature_extraction" else 0)
        phase_name = "feature_extraction" if strategy == "feature_extraction" else "head"
        phases.append(_run_head_phase(model, phase_name, train_ds, epochs, head_lr, opt_kwargs, config.cache_features,
                                      common, found))
        head_lr = found.get("head_lr", head_lr)
        lora = dict(rank=config.lora_rank or 8, alpha=config.lora_alpha)
        # Phase 2's progress bar goes on counting where the head's stopped, as the history does.
        common = {**common, "first_epoch": len(phases[0]["history"])}
        phase2 = dict(train_ds=train_ds, epochs=fine_tune_epochs, head_lr=head_lr, lora=lora,
                      l2_sp=config.l2_sp, opt_kwargs=opt_kwargs, common=common, found=found)
        if strategy == "auto" and fine_tune_epochs > 0:
            chosen = _resolve_candidates(config.candidates, model, top_blocks, config.backbone_lr, config.layer_decay,
                                         train_ds, config.verbose)
            phases.extend(_search(model, chosen, budget=config.budget, **phase2))
        elif strategy in ("fine_tune", "full", "lora") and fine_tune_epochs > 0:
            top = len(backbone_blocks) if strategy == "full" else min(top_blocks, len(backbone_blocks))
            candidate = Candidate(strategy, -1 if strategy == "lora" else top, config.backbone_lr, config.layer_decay)
            phases.append(_run_candidate(model, candidate, phase=strategy, **phase2))
    best = _best_phase(phases) if val_ds is not None else None
    if best is not None:
        model = best["model"]
        _restore(model, best["snapshot"])
    history = pd.concat([p["history"] for p in phases], ignore_index=True)
    history.insert(1, "epoch", np.arange(1, len(history) + 1))
    first = ["phase", "epoch", "head_lr", "backbone_lr"]
    # Rate callbacks (`kt.ReduceLROnPlateau`, ...) log the highest group's rate as `learning_rate`:
    # `head_lr` and `backbone_lr` already hold it, under fine_tune's own names.
    order = [_RATE + b.name for b in get_blocks(model)]
    rate_columns = sorted((c for c in history.columns if c.startswith(_RATE)),
                          key=lambda c: order.index(c) if c in order else len(order))
    block_rates = history[["phase", "epoch", *rate_columns]].rename(columns=lambda c: c.removeprefix(_RATE))
    history = history[first + [c for c in history.columns
                               if c not in first and c != "learning_rate" and c not in rate_columns]]
    paths = {}
    for p in phases:
        paths.update(p["paths"])
    if config.checkpoint_dir is not None:
        paths["history"] = str(pathlib.Path(config.checkpoint_dir) / "history.csv")
        history.to_csv(paths["history"], index=False)
        paths["block_rates"] = str(pathlib.Path(config.checkpoint_dir) / "block_rates.csv")
        block_rates.to_csv(paths["block_rates"], index=False)
    final = {k: float(v) for k, v in history.iloc[-1].items() if k not in first}
    if val_ds is not None:
        if not model.compiled:  # the head trained on cached features; the whole model never compiled
            model.compile(loss=loss, metrics=metrics(), jit_compile=config.jit_compile)
        final = {k: float(v) for k, v in model.evaluate(val_ds, verbose=0, return_dict=True).items()}
    search = next((p["search"] for p in phases if "search" in p), None)
    return FineTuneResult(
        model=model,
        history=history,
        metrics=final,
        paths=paths,
        strategy=strategy,
        trainable_params=count_params(model.trainable_weights),
        wall_time=time.perf_counter() - start,
        best_phase=best["name"] if best is not None else None,
        search=search,
        learning_rates=found,
        config=config,
        block_rates=block_rates,
    )


def _config(config, options):
    """`fine_tune`'s options as one `FineTuneConfig`: `config` with `options` (keywords) over it."""
    options = take_renamed(options, "fine_tune")
    fields = {f.name for f in dataclasses.fields(FineTuneConfig)}
    _checks.no_unknown({k: v for k, v in options.items() if k not in fields}, "fine_tune")
    if config is None:
        if "num_classes" not in options:
            raise TypeError("fine_tune() needs `num_classes` (or a `config`).")
        return FineTuneConfig(**options)
    if not isinstance(config, FineTuneConfig):
        raise TypeError(f"`config` must be a FineTuneConfig. Received: config={config!r}")
    return dataclasses.replace(config, **options) if options else config


def export(model, path):
    """Writes a model for deployment: `<path>.keras` and a SavedModel at `<path>/`.

    LoRA adapters are merged into their base weights first, so the exported
    model has no LoRA layers and runs as fast as the plain model. The merge
    happens on a copy: `model` keeps its adapters and can train on (save them
    alone with `kt.save_adapters`).

    Args:
        model: a trained `keras.Model`.
        path: destination without extension.

    Returns:
        A dict with the paths written (`keras`, `saved_model`).

    Example:

    >>> import keras, keras_transfer as kt, tempfile, os
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> paths = kt.export(model, os.path.join(tempfile.mkdtemp(), "model"))
    >>> sorted(paths)
    ['keras', 'saved_model']
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    path = pathlib.Path(path)
    if path.suffix == ".keras":
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = merge_lora(_copy_if_lora(model, path.parent))
    keras_path = path.with_suffix(".keras")
    merged.save(keras_path)
    paths = {"keras": str(keras_path)}
    if keras.backend.backend() in ("tensorflow", "jax"):
        merged.export(str(path), format="tf_saved_model", verbose=False)
        paths["saved_model"] = str(path)
    return paths


# --- internals ---------------------------------------------------------------


def _copy_if_lora(model, scratch_dir):
    """`model` itself, or a copy through a `.keras` file when merging would change it."""
    if not any("LoRA" in type(layer).__name__ for layer in compat.walk_layers(model)):
        return model
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=scratch_dir)
    os.close(fd)
    try:
        model.save(tmp)
        return keras.saving.load_model(tmp, compile=False)
    finally:
        os.remove(tmp)


def _as_classifier(model_or_backbone, num_classes, dropout, scratch):
    """A classifier with a `head` block; for `scratch`, a fresh copy with random weights."""
    model = getattr(model_or_backbone, "model", model_or_backbone)
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model_or_backbone` must be a keras.Model or a kt.Backbone. "
            f"Received: model_or_backbone={model_or_backbone!r}"
        )
    if any(b.is_head for b in get_blocks(model)):
        return _fresh_copy(model) if scratch else model
    if scratch:
        # From scratch, BatchNorm must learn its statistics from batches.
        return build_classifier(_fresh_copy(model), num_classes, dropout=dropout, backbone_training=None)
    return build_classifier(model, num_classes, dropout=dropout)


def _fresh_copy(model):
    """`model`'s architecture with new weights; over several replicas, BatchNorm synchronized across them.

    Trained from scratch, BatchNorm normalizes by the statistics of each batch. Under a `tf.distribute`
    strategy each replica would use those of its own share of the batch: synchronized, they are the
    global batch's, as on one device (and under JAX's `DataParallel`, which computes them globally).
    """
    if keras.backend.backend() != "tensorflow" or scale_batch_size(1) == 1:  # JAX computes them globally
        return keras.models.clone_model(model)

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def _check_classes(num_classes, dataset, name):
    """`num_classes` against what the data says: its `class_names` (our loaders) or one-hot label width."""
    class_names = getattr(dataset, "class_names", None)
    # Validation data may lack a class (a small split); training data that lacks one, or data with more
    # classes than the head has outputs, is a mistake.
    if class_names is not None and (len(class_names) > num_classes or
                                    (name == "train_ds" and len(class_names) != num_classes)):
        raise ValueError(
            f"`num_classes` is {num_classes} but `{name}` holds {len(class_names)} classes: {list(class_names)}. "
            f"Pass num_classes={len(class_names)} (`len({name}.class_names)`). Received: num_classes={num_classes}"
        )
    spec = getattr(dataset, "element_spec", None)
    if isinstance(spec, tuple) and len(spec) >= 2 and getattr(spec[1], "shape", None) is not None:
        shape = spec[1].shape
        if len(shape) == 2 and shape[-1] is not None and shape[-1] != num_classes:
            raise ValueError(
                f"`num_classes` is {num_classes} but the labels of `{name}` are one-hot over {shape[-1]} classes. "
                f"Received: num_classes={num_classes}"
            )


def _resolve_mixed_precision(mixed_precision):
    """The dtype policy to build under: `FineTuneConfig` checked the name; "auto" asks the accelerator."""
    if mixed_precision == "auto":
        from keras_transfer.distribute import accelerator_kind

        return {"gpu": "mixed_float16", "tpu": "mixed_bfloat16"}.get(accelerator_kind())
    return None if mixed_precision in (None, "float32") else mixed_precision


class _dtype_policy:
    def __init__(self, policy):
        self.policy = policy

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        if self.policy:
            keras.config.set_dtype_policy(self.policy)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)


def _head_submodel(model):
    """Splits a classifier into (feature model, head model) sharing layers.

    The feature model ends where the head starts (after pooling, when the
    head pools); the head model maps cached features to logits.
    """
    head = next(b for b in get_blocks(model) if b.is_head)
    layers = list(head.layers)
    feature_layers = []
    while layers and not layers[0].weights and isinstance(
        layers[0], (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling1D)
    ):
        feature_layers.append(layers.pop(0))
    first = feature_layers[-1] if feature_layers else None
    features = first.output if first is not None else layers[0].input
    feature_model = keras.Model(model.input, features, name="features")
    head_in = keras.Input(features.shape[1:], name="features")
    x = head_in
    for layer in layers:
        x = layer(x)
    return feature_model, keras.Model(head_in, x, name="head")


def _run_head_phase(model, phase, train_ds, epochs, head_lr, opt_kwargs, use_cache, common, found):
    if epochs == 0:
        return {"name": phase, "history": pd.DataFrame(), "paths": {}, "score": None, "model": model,
                "snapshot": _snapshot(model)}
    # Built on the whole classifier either way: the head model below shares its
    # layers, so its variables (and their paths) are the classifier's, and the
    # cached and uncached runs get the very same optimizer.
    optimizer = differential_optimizer(model, head_lr=1e-3 if head_lr == "find" else head_lr, **opt_kwargs)
    fit_model, val_ds = model, common["val_ds"]
    if use_cache and _is_simple_chain(model) and _can_cache(train_ds):
        from keras_transfer.data.features import cache_features

        feature_model, fit_model = _head_submodel(model)
        progress = 0 if common["verbose"] == 0 else 1
        train_ds = cache_features(feature_model, train_ds, verbose=progress)
        val_ds = cache_features(feature_model, val_ds, verbose=progress) if val_ds is not None else None
    if head_lr == "find":
        found["head_lr"] = _find_rates(fit_model, train_ds, optimizer, common)[0]
    return _run_phase(fit_model, phase, train_ds, epochs, optimizer, rate_model=model, **{**common, "val_ds": val_ds})


def _can_cache(train_ds):
    """Whether phase 1 on cached features of `train_ds` trains the same head as through the backbone."""
    try:
        from keras_transfer.data.features import cacheable
    except ImportError:  # no TensorFlow: no tf.data dataset to cache
        return False
    if cacheable(train_ds):
        return True
    warnings.warn("Phase 1 runs the frozen backbone every epoch: `train_ds` is not a tf.data.Dataset, or it "
                  "shuffles or augments and carries no `pipeline` (a kt.data loader's dataset after `map` loses "
                  "it), so cached features could not replay its epochs (see kt.data.cacheable). Pass the "
                  "transformation as the loader's `preprocess`, or cache_features=False to silence this.")
    return False


def _found_head_lr(model, train_ds, head_lr, opt_kwargs, common, found):
    """`head_lr`, or for `"find"` the rate `lr_find` suggests for `model` as it is."""
    if head_lr != "find":
        return head_lr
    optimizer = differential_optimizer(model, head_lr=1e-3, backbone_lr=1e-3, **opt_kwargs)
    found["head_lr"] = _find_rates(model, train_ds, optimizer, common)[0]
    return found["head_lr"]


def _find_rates(model, train_ds, optimizer, common):
    """Runs `lr_find` with `optimizer` and scales its groups to the suggestion; returns the new rates."""
    from keras_transfer.lr_finder import lr_find

    model.compile(optimizer=optimizer, loss=common["loss"], metrics=common["metrics"](),
                  jit_compile=common["jit_compile"])
    sweep = lr_find(model, train_ds, verbose=0 if common["verbose"] == 0 else 1)
    return sorted(scale_learning_rates(optimizer, sweep.scale), reverse=True)


def _phase2_optimizer(model, candidate, head_lr, lora, opt_kwargs, common, train_ds, found):
    """Sets what trains for `candidate` and builds its optimizer. Returns (model, optimizer)."""
    if candidate.top_blocks == _LORA:
        # Adapters start at zero and are new weights, like the head: they
        # train at the head's rate (PEFT's usual 1e-4..1e-3), not at the
        # low rate that protects pretrained weights.
        model = apply_lora(model, **lora)
        return model, differential_optimizer(model, head_lr=head_lr, backbone_lr=head_lr, **opt_kwargs)
    freeze(model)
    if candidate.top_blocks:
        unfreeze(model, top_blocks=candidate.top_blocks)
    finding = candidate.backbone_lr == "find"
    backbone_lr = head_lr / 10 if finding else candidate.backbone_lr
    layer_decay = candidate.layer_decay if candidate.top_blocks else None
    optimizer = differential_optimizer(model, head_lr=head_lr, backbone_lr=backbone_lr, layer_decay=layer_decay,
                                       **opt_kwargs)
    if finding and candidate.top_blocks:
        found["backbone_lr"] = _find_rates(model, train_ds, optimizer, common)[-1]
    return model, optimizer


def _run_candidate(model, candidate, *, phase, train_ds, epochs, head_lr, lora, l2_sp, opt_kwargs, common,
                   found, initial_epoch=0, optimizer=None, recompile=True, pretrained=None):
    """Phase 2 for one candidate (depth and rates): returns `_run_phase`'s record.

    L2-SP anchors at the weights `model` holds now, or at `pretrained` (a
    snapshot) when a candidate continues from weights it already moved.
    """
    if optimizer is None:
        model, optimizer = _phase2_optimizer(model, candidate, head_lr, lora, opt_kwargs, common, train_ds, found)
    anchored = bool(l2_sp) and candidate.top_blocks not in (0, _LORA)
    if anchored:
        from keras_transfer.anchoring import apply_l2_sp, remove_l2_sp

        current = _snapshot(model) if pretrained is not None else None
        if current is not None:
            _restore(model, pretrained)
        apply_l2_sp(model, l2_sp, optimizer)
        if current is not None:
            _restore(model, current)
    try:
        record = _run_phase(model, phase, train_ds, epochs, optimizer, rate_model=model, initial_epoch=initial_epoch,
                            recompile=recompile, **common)
    finally:
        if anchored:
            remove_l2_sp(model)
    return {**record, "optimizer": optimizer}


def _resolve_candidates(candidates, model, top_blocks, backbone_lr, layer_decay, train_ds, verbose):
    """`fine_tune`'s `candidates` argument as `Candidate`s (the defaults when None)."""
    n = sum(not b.is_head for b in get_blocks(model))
    defaults = default_candidates(n, backbone_lr="find" if backbone_lr == "find" else None)
    has_dense = any(isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
                    for b in get_blocks(model) if not b.is_head for layer in b.layers)
    named = {c.name: c for c in defaults}
    named.update({
        "feature_extraction": Candidate("feature_extraction", 0),
        "fine_tune": Candidate("fine_tune", min(top_blocks, n), backbone_lr, layer_decay),
        "full": Candidate("full", n, backbone_lr, layer_decay),
        "lora": Candidate("lora", _LORA),
    })
    if candidates is None:
        return _near_the_evidence(defaults, model, train_ds, verbose) + ([named["lora"]] if has_dense else [])
    chosen = []
    for c in candidates:
        if isinstance(c, Candidate):
            chosen.append(c)
        elif isinstance(c, str) and c in named:
            chosen.append(named[c])
        else:
            raise ValueError(
                f"Unknown candidate in `candidates`: {c!r}. Valid names: {sorted(named)}, or "
                "keras_transfer.search.Candidate objects."
            )
    return chosen


def _near_the_evidence(candidates, model, train_ds, verbose):
    """The default candidates within one class of what the BatchNorm statistics say.

    One epoch of a candidate says little on a small validation set: on steel
    defects, feature extraction led every deeper candidate after one epoch in
    some runs and lost to all of them after five. The shift of the target's
    statistics from those the backbone's BatchNorm layers stored
    (`kt.bn_shift`, one pass over a few hundred images) rules out the depths
    it argues against: feature extraction for a far target ('most'), every
    block for a target that is not far, and any 'most' depth for a near one
    ('none'). Without BatchNorm, every candidate stays.
    """
    from keras_transfer.diagnostics import _shift_class, bn_shift, depth_class, shift_level

    backbone = next((layer for layer in model.layers if isinstance(layer, keras.Model)), model)
    try:
        level = shift_level(bn_shift(backbone, train_ds, max_examples=256, verbose=0))
    except ValueError:  # no BatchNorm layer to compare, or no data it can read
        return candidates
    n = sum(not b.is_head for b in get_blocks(model))
    shift = _shift_class(level)
    if shift == "most":
        kept = [c for c in candidates if c.top_blocks != 0]
    else:
        kept = [c for c in candidates if c.top_blocks != n
                and (shift == "few" or depth_class(c.top_blocks, n) != "most")]
    if verbose != 0:
        print(f"auto: median BatchNorm shift {level:.3f} ({shift!r}); candidates {[c.name for c in kept]}")
    return kept or candidates


def _search(model, candidates, *, budget, train_ds, epochs, head_lr, lora, l2_sp, opt_kwargs, common, found):
    """Successive halving over `candidates`, all from the head `model` holds now. Returns one record each."""
    start = _snapshot(model)
    state = {}
    last = []  # the candidate that trained last: it continues without a restore or a recompile
    # A search cannot resume a candidate's rung from a checkpoint; it reruns.
    common = {**common, "checkpoint_dir": None, "early_stopping": False}

    def train(candidate, more):
        st = state.get(candidate.name)
        if st is None:
            target = _copy_model(model) if candidate.top_blocks == _LORA else model
            _restore(target, start)
            st = state[candidate.name] = {"model": target, "optimizer": None, "records": [], "done": 0}
        elif last != [candidate.name]:
            _restore(st["model"], st["records"][-1]["snapshot"])
            if candidate.top_blocks != _LORA:
                _set_depth(st["model"], candidate.top_blocks)
        record = _run_candidate(
            st["model"], candidate, phase=f"auto:{candidate.name}", train_ds=train_ds, epochs=st["done"] + more,
            head_lr=head_lr, lora=lora, l2_sp=l2_sp, opt_kwargs=opt_kwargs, common=common, found=found,
            initial_epoch=st["done"], optimizer=st["optimizer"], recompile=last != [candidate.name],
            pretrained=start,
        )
        last[:] = [candidate.name]
        st["model"], st["optimizer"] = record["model"], record["optimizer"]
        st["done"] += more
        st["records"].append(record)
        best = max((r for r in st["records"] if r["score"] is not None), key=lambda r: r["score"], default=None)
        return best["score"] if best is not None else (-np.inf,)

    winner, table = successive_halving(candidates, train, max_epochs=epochs, budget=budget,
                                       verbose=0 if common["verbose"] == 0 else 1)
    records = []
    for candidate in candidates:
        st = state.get(candidate.name)
        if st is None:
            continue
        scored = [r for r in st["records"] if r["score"] is not None]
        best = max(scored, key=lambda r: r["score"]) if scored else st["records"][-1]
        records.append({
            "name": candidate.name, "model": st["model"], "score": best["score"], "snapshot": best["snapshot"],
            "history": pd.concat([r["history"] for r in st["records"]], ignore_index=True), "paths": {},
            "top_blocks": candidate.top_blocks,
        })
    records[0]["search"] = table.assign(winner=table.candidate == winner.name)
    return records


def _set_depth(model, top_blocks):
    freeze(model)
    if top_blocks:
        unfreeze(model, top_blocks=top_blocks)


def _copy_model(model):
    """An independent copy of `model`, through a `.keras` file (clone_model misses nested functional backbones)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "copy.keras")
        model.save(path)
        return keras.saving.load_model(path, compile=False)


def _snapshot(model):
    """Every variable of `model` with its current value."""
    return [(v, keras.ops.convert_to_numpy(v)) for v in model.variables]


def _restore(model, snapshot):
    """Puts `snapshot`'s values back; LoRA `B` matrices added since start at zero (the base function)."""
    known = set()
    for variable, value in snapshot:
        variable.assign(value)
        known.add(id(variable))
    for variable in model.variables:
        if id(variable) not in known and variable.path.endswith("lora_b"):
            variable.assign(np.zeros(variable.shape, variable.dtype))


def _score(logs, monitor):
    """A comparable score (higher is better) of one epoch's logs, or None."""
    value = (logs or {}).get(monitor)
    if value is None or not np.isfinite(value):
        return None
    primary = -float(value) if "loss" in monitor else float(value)
    tie = (logs or {}).get("val_loss")
    if monitor != "val_loss" and tie is not None and np.isfinite(tie):
        return (primary, -float(tie))
    return (primary,)


def _best_phase(phases):
    """The phase record with the best score; the earliest among equals. None when none was scored."""
    best = None
    for phase in phases:
        if phase.get("score") is not None and (best is None or phase["score"] > best["score"]):
            best = phase
    if best is not None and best.get("top_blocks", _LORA) != _LORA:
        _set_depth(best["model"], best["top_blocks"])  # a search's winner trains as it did
    return best


class _KeepBest(keras.callbacks.Callback):
    """Snapshots `model` at each best epoch by `monitor`, and goes back to it when training ends."""

    def __init__(self, model, monitor):
        super().__init__()
        self.watched, self.monitor = model, monitor
        self.score, self.snapshot = None, None

    def on_epoch_end(self, epoch, logs=None):
        score = _score(logs, self.monitor)
        if score is not None and (self.score is None or score > self.score):
            self.score, self.snapshot = score, _snapshot(self.watched)

    def on_train_end(self, logs=None):
        if self.snapshot is not None:
            _restore(self.watched, self.snapshot)


def _is_simple_chain(model):
    """True when the head is a plain chain after one backbone, so features can be cached."""
    try:
        _head_submodel(model)
    except (ValueError, StopIteration, AttributeError):
        return False
    return True


def _run_phase(model, phase, train_ds, epochs, optimizer, *, rate_model, loss, metrics, jit_compile, val_ds,
               early_stopping, patience, checkpoint_dir, verbose, extra_callbacks, monitor, first_epoch=0,
               initial_epoch=0, recompile=True):
    """Compiles and fits one phase; it ends at its best epoch by `monitor`.

    Returns a record: `name`, `history`, `paths`, `model`, `score` (of the
    best epoch, None without validation data) and `snapshot` (the weights
    the phase ended with).
    """
    if recompile or not model.compiled:
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics(), jit_compile=jit_compile)
    rate_log = _LearningRateLog(rate_model, None if checkpoint_dir is None else
                                pathlib.Path(checkpoint_dir) / phase / "rates.jsonl")
    callbacks, paths = [rate_log, *extra_callbacks], {}
    if verbose != 0:
        callbacks.append(_RunProgbar(first_epoch))
    keep = _KeepBest(rate_model, monitor) if monitor is not None else None
    mode = "min" if monitor is not None and "loss" in monitor else "max"
    phase_dir = None
    if checkpoint_dir is not None:
        phase_dir = pathlib.Path(checkpoint_dir) / phase
        done = phase_dir / "done.json"
        if done.exists():
            record = json.loads(done.read_text())
            _load_final_weights(model, phase_dir)
            if verbose != 0:
                print(f"Phase {phase!r} finished in an earlier run: skipped, its weights loaded from {phase_dir}")
            history = pd.DataFrame(record["history"])
            scores = [_score(row, monitor) for row in history.to_dict("records")] if monitor else []
            scores = [s for s in scores if s is not None]
            return {"name": phase, "history": history, "paths": record["paths"], "model": rate_model,
                    "score": max(scores) if scores else None, "snapshot": _snapshot(rate_model)}
        phase_dir.mkdir(parents=True, exist_ok=True)
        # Logged before the backup commits an epoch: a kill between the two
        # repeats that epoch, and the repeat's row replaces the first below.
        callbacks.append(keras.callbacks.CSVLogger(str(phase_dir / "epochs.csv"), append=True))
        saving = checkpoint_callbacks(phase_dir, monitor=monitor or "loss", mode=mode if monitor else "min")
        callbacks.extend(saving)
        resumed = next((c.backed_up_epoch() for c in saving if isinstance(c, AtomicBackupAndRestore)), None)
        if resumed is not None and verbose != 0:
            print(f"Resuming phase {phase!r} after epoch {resumed} of {epochs}, from the backup in {phase_dir}")
        paths = {f"{phase}_best": str(phase_dir / "best.keras"), f"{phase}_last": str(phase_dir / "last.keras")}
    if early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience))
    if keep is not None:
        callbacks.append(keep)
    # The datasets shuffle themselves (seeded); Keras' own flag does nothing for them.
    with compat.build_without_reading(model, train_ds):
        fit = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose,
                        shuffle=False, initial_epoch=initial_epoch)
    if phase_dir is not None:
        # A resumed `fit` reports only the epochs it ran; the log has them all.
        history = pd.read_csv(phase_dir / "epochs.csv").drop_duplicates("epoch", keep="last").drop(columns="epoch")
        # CSVLogger adds empty `val_*` twins of every column when there is no validation data.
        history = history.drop(columns=[c for c in history if c.startswith("val_") and history[c].isna().all()])
    else:
        history = pd.DataFrame(fit.history)
    history = history.reset_index(drop=True)
    rates = rate_log.table()
    history = pd.concat([history, rates.add_prefix(_RATE).reindex(history.index)], axis=1)
    history.insert(0, "phase", phase)
    if len(history) and not np.isfinite(history["loss"].iloc[-1]):
        _recover_from_nan(model, phase, paths.get(f"{phase}_best"), kept=keep is not None and keep.snapshot is not None)
    if phase_dir is not None:
        _save_final_weights(model, phase_dir)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps({"history": history.to_dict(orient="list"), "paths": paths}))
        os.replace(tmp, done)
    return {"name": phase, "history": history, "paths": paths, "model": rate_model,
            "score": keep.score if keep is not None else None, "snapshot": _snapshot(rate_model)}


# A finished phase keeps its model weights without its optimizer: the next phase compiles a new one, and
# `save_weights` files carry the optimizer's variables, which Keras then warns it cannot load into another.
def _save_final_weights(model, phase_dir):
    tmp = phase_dir / "final.weights.tmp.npz"
    np.savez(tmp, *model.get_weights())
    os.replace(tmp, phase_dir / "final.weights.npz")


def _load_final_weights(model, phase_dir):
    with np.load(phase_dir / "final.weights.npz") as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])


def _recover_from_nan(model, phase, best_path, kept=False):
    """After `TerminateOnNaN`, go back to the best finite weights there are."""
    if kept:
        how = "restored the best checkpoint, the phase's best epoch (kept in memory)"
    elif best_path is not None and pathlib.Path(best_path).exists():
        model.load_weights(best_path)
        how = f"restored the best checkpoint {best_path}"
    else:
        how = "no checkpoint to restore (pass `checkpoint_dir`); the weights are not finite"
    warnings.warn(f"Phase {phase!r} stopped on a NaN or infinite loss; {how}. Try a lower learning rate.",
                  stacklevel=3)


class _RunProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs across phases as `history.epoch` does.

    Callbacks still see each phase's own epochs from 0 (`kt.GradualUnfreezing`
    counts blocks from the start of its phase), so `fit`'s `initial_epoch`
    cannot carry the offset; only the printed number moves.
    """

    def __init__(self, first_epoch):
        super().__init__()
        self._first_epoch = first_epoch

    def set_params(self, params):
        super().set_params(params)
        self._last_epoch = self._first_epoch + params["epochs"]
        self.epochs = 1  # Keras' own "Epoch i/n" line is replaced by the one below

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            print(f"Epoch {self._first_epoch + epoch + 1}/{self._last_epoch}")
        super().on_epoch_begin(epoch, logs)


class _LearningRateLog(keras.callbacks.Callback):
    """Adds `head_lr` and `backbone_lr` to each epoch's logs, and keeps every block's rate.

    `backbone_lr` is the top trainable backbone block's rate: the highest
    rate a pretrained block trains at, which is `fine_tune`'s `backbone_lr`
    (under `layer_decay` the blocks below train slower). Every trainable
    block's rate is kept in `rows`, out of the logs, where the progress bar
    would print one column per block; with `path`, each epoch's rates are
    also appended there (JSON lines), so a resumed phase still has them.
    The rates are read from the optimizer at the end of the epoch, so warmup,
    decay, callbacks such as `kt.ReduceLROnPlateau` and blocks that
    `kt.GradualUnfreezing` unfreezes show.
    """

    def __init__(self, rate_model, path=None):
        super().__init__()
        self._rate_model = rate_model
        self._path = path
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
        rates = {}
        for block in get_blocks(self._rate_model):
            trainable = [v for v in block.trainable_weights if v.trainable]
            if trainable:
                rate = optimizer_for(optimizer, trainable[0]).learning_rate
                rates[block.name] = float(keras.ops.convert_to_numpy(rate))
        self.rows.append({"epoch": epoch, **rates})
        if self._path is not None:
            with open(self._path, "a") as f:
                f.write(json.dumps(self.rows[-1]) + "\n")
        if logs is not None:
            backbone = [rate for name, rate in rates.items() if name != "head"]
            logs["head_lr"] = rates.get("head", float("nan"))
            logs["backbone_lr"] = backbone[-1] if backbone else float("nan")

    def table(self):
        """Every block's rate, one row per epoch (all of a resumed phase's epochs when a `path` is kept)."""
        rows = self.rows
        if self._path is not None and pathlib.Path(self._path).exists():
            rows = [json.loads(line) for line in pathlib.Path(self._path).read_text().splitlines() if line]
        table = pd.DataFrame(rows)
        if table.empty:
            return table
        # A kill between this log and the epoch's backup repeats the epoch; the repeat counts.
        return table.drop_duplicates("epoch", keep="last").drop(columns="epoch").reset_index(drop=True)
