"""What every recipe shares: a config dataclass and the calls that run it.

A recipe module in `recipes/` holds only its published defaults (a `Config`)
and `run(**overrides)`, which calls `run_image_recipe` or `run_text_recipe`
here. No recipe builds a pipeline or a training loop of its own.
"""

import dataclasses
import pathlib
import time

import keras
import pandas as pd


@dataclasses.dataclass
class ImageRecipeConfig:
    """Published defaults of an image-classification recipe.

    Every field can be overridden through the recipe's `run(**overrides)`.
    """

    dataset: str
    num_classes: int
    train_split: str = "train"
    val_split: str = "test"
    backbone: str = "efficientnet_b0"
    weights: str = "imagenet"
    image_size: int = 224
    batch_size: int = 64
    strategy: str = "fine_tune"
    head_epochs: int = 5
    fine_tune_epochs: int = 10
    unfreeze_top_blocks: int = 3
    head_lr: float = 1e-3
    backbone_lr: float = 1e-5
    layer_decay: float = 0.6
    label_smoothing: float = 0.1
    dropout: float = 0.3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    augment: str = "default"
    data_dir: str = None
    max_examples: int = None
    output_dir: str = "keras_transfer_runs"
    verbose: str = "auto"


@dataclasses.dataclass
class RecipeResult:
    """What a recipe's `run` returns.

    Attributes:
        name: the recipe.
        config: the configuration that ran, overrides applied.
        history: `fine_tune`'s history, one row per epoch.
        metrics: final validation metrics.
        evaluation: `kt.evaluate`'s result on the validation split (or None).
        model: the trained model.
        paths: files written (checkpoints, exported model, plots).
        wall_time: seconds.
    """

    name: str
    config: object
    history: pd.DataFrame
    metrics: dict
    evaluation: object
    model: keras.Model
    paths: dict
    wall_time: float


def configure(config, overrides):
    """Applies `overrides` to a recipe config, rejecting unknown names.

    `epochs=N` is shorthand for `fine_tune_epochs=N`: the head phase keeps its
    published length, and the phase people usually mean gets `N`.

    Example:

    >>> from keras_transfer.recipe import ImageRecipeConfig, configure
    >>> configure(ImageRecipeConfig("tf_flowers", 5), {"head_epochs": 1}).head_epochs
    1
    >>> configure(ImageRecipeConfig("tf_flowers", 5), {"epochs": 3}).fine_tune_epochs
    3
    """
    overrides = dict(overrides)
    if "epochs" in overrides:
        if "fine_tune_epochs" in overrides:
            raise ValueError(
                "`epochs` is shorthand for `fine_tune_epochs`; pass one of them. Received: "
                f"epochs={overrides['epochs']!r}, fine_tune_epochs={overrides['fine_tune_epochs']!r}"
            )
        overrides["fine_tune_epochs"] = overrides.pop("epochs")
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown recipe options {unknown}. Valid options: {sorted(fields)}")
    return dataclasses.replace(config, **overrides)


def run_image_recipe(name, config):
    """Runs an image recipe: backbone, tfds pipelines, `fine_tune`, evaluation, export.

    Args:
        name: the recipe's name (folder name of its outputs).
        config: an `ImageRecipeConfig`.

    Returns:
        A `RecipeResult`.

    Example:

    >>> from keras_transfer.recipes import flowers
    >>> result = flowers.run(head_epochs=1, fine_tune_epochs=1)  # doctest: +SKIP
    """
    from keras_transfer import data
    from keras_transfer.backbones import get_backbone
    from keras_transfer.distribute import auto_strategy
    from keras_transfer.evaluation import evaluate, plot_confusion, plot_history
    from keras_transfer.workflow import export, fine_tune

    start = time.perf_counter()
    out = pathlib.Path(config.output_dir) / name
    strategy = auto_strategy()
    size = (config.image_size, config.image_size)
    with strategy.scope():
        backbone = get_backbone(config.backbone, weights=config.weights, input_shape=size + (3,), pooling=None)
    loader = dict(image_size=size, batch_size=config.batch_size, preprocess=backbone.preprocess,
                  data_dir=config.data_dir, max_examples=config.max_examples)
    train_ds = data.from_tfds(config.dataset, split=config.train_split, augment=config.augment, shuffle=True,
                              seed=0, **loader)
    val_ds = data.from_tfds(config.dataset, split=config.val_split, **loader)
    with strategy.scope():
        result = fine_tune(
            backbone, train_ds, val_ds, num_classes=config.num_classes, strategy=config.strategy,
            head_epochs=config.head_epochs, fine_tune_epochs=config.fine_tune_epochs,
            unfreeze_top_blocks=config.unfreeze_top_blocks, head_lr=config.head_lr,
            backbone_lr=config.backbone_lr, layer_decay=config.layer_decay,
            label_smoothing=config.label_smoothing, dropout=config.dropout, optimizer=config.optimizer,
            weight_decay=config.weight_decay, warmup_steps=config.warmup_steps,
            checkpoint_dir=str(out / "checkpoints"), verbose=config.verbose,
        )
    class_names = getattr(val_ds, "class_names", None)
    evaluation = evaluate(result.model, val_ds, class_names=class_names)
    paths = dict(result.paths)
    paths["history_plot"] = str(plot_history(result.history, out / "history.png"))
    paths["confusion_plot"] = str(plot_confusion(evaluation.confusion, out / "confusion.png"))
    paths.update({f"export_{k}": v for k, v in export(result.model, out / "model").items()})
    return RecipeResult(name, config, result.history, result.metrics, evaluation, result.model, paths,
                        time.perf_counter() - start)


@dataclasses.dataclass
class TextRecipeConfig:
    """Published defaults of a text-classification recipe (keras-hub backbone + LoRA).

    `weights` is a keras-hub preset name (downloaded on first use) or a local
    preset directory (written by `task.save_to_preset(dir)`), which runs offline.
    """

    dataset: str
    num_classes: int
    weights: str = "bert_tiny_en_uncased"
    task: str = "BertTextClassifier"
    train_split: str = "train"
    val_split: str = "test"
    sequence_length: int = 256
    batch_size: int = 32
    strategy: str = "lora"
    lora_rank: int = 8
    head_epochs: int = 1
    fine_tune_epochs: int = 3
    head_lr: float = 1e-3
    backbone_lr: float = 5e-5
    optimizer: str = "adamw"
    weight_decay: float = 1e-2
    data_dir: str = None
    max_examples: int = None
    output_dir: str = "keras_transfer_runs"
    verbose: str = "auto"


def run_text_recipe(name, config):
    """Runs a text recipe: keras-hub task from a preset, tfds text pipeline, `fine_tune`.

    Args:
        name: the recipe's name (folder name of its outputs).
        config: a `TextRecipeConfig`.

    Returns:
        A `RecipeResult`.

    Example:

    >>> from keras_transfer.recipes import imdb
    >>> result = imdb.run(fine_tune_epochs=1)  # doctest: +SKIP
    """
    from keras_transfer import data
    from keras_transfer.backbones import load_hub_task
    from keras_transfer.workflow import export, fine_tune

    start = time.perf_counter()
    out = pathlib.Path(config.output_dir) / name
    model = load_hub_task(config.task, config.weights, num_classes=config.num_classes,
                          sequence_length=config.sequence_length)
    loader = dict(batch_size=config.batch_size, data_dir=config.data_dir, max_examples=config.max_examples)
    train_ds = data.text_from_tfds(config.dataset, split=config.train_split, shuffle=True, seed=0, **loader)
    val_ds = data.text_from_tfds(config.dataset, split=config.val_split, **loader)
    result = fine_tune(
        model, train_ds, val_ds, num_classes=config.num_classes, strategy=config.strategy,
        head_epochs=config.head_epochs, fine_tune_epochs=config.fine_tune_epochs, lora_rank=config.lora_rank,
        head_lr=config.head_lr, backbone_lr=config.backbone_lr, optimizer=config.optimizer,
        weight_decay=config.weight_decay, cache_features=False, checkpoint_dir=str(out / "checkpoints"),
        verbose=config.verbose,
    )
    paths = dict(result.paths)
    paths.update({f"export_{k}": v for k, v in export(result.model, out / "model").items()})
    return RecipeResult(name, config, result.history, result.metrics, None, result.model, paths,
                        time.perf_counter() - start)
