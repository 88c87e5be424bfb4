"""What every recipe shares: a config dataclass and the calls that run it.

A recipe module in `recipes/` holds only its published defaults (a `Config`)
and `run(**overrides)`, which calls `run_image_recipe` or `run_text_recipe`
here. No recipe builds a pipeline or a training loop of its own.
"""

import dataclasses
import pathlib
import time
from typing import Literal

import keras
import pandas as pd

from keras_transfer import _checks
from keras_transfer.config import STRATEGIES, FineTuneConfig, take_renamed


@dataclasses.dataclass(frozen=True)
class _Task:
    # A base of its own so that `dataset` comes first: `ImageRecipeConfig("tf_flowers", 5)`.
    dataset: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageRecipeConfig(FineTuneConfig, _Task):
    """Published defaults of an image-classification recipe.

    Every `FineTuneConfig` field is one too (checked the same way), under the
    same name; the fields below are the recipe's own, and the fine-tuning
    defaults a recipe publishes in place of `fine_tune`'s. Every field can
    be overridden through the recipe's `run(**overrides)`.
    `image_size` is a side (square) or a `(height, width)` pair; it is kept
    as a pair. `checkpoint_dir` defaults to `<output_dir>/<recipe>/checkpoints`.

    Example:

    >>> from keras_transfer.recipe import ImageRecipeConfig
    >>> config = ImageRecipeConfig("tf_flowers", 5, image_size=160, top_blocks=2)
    >>> config.image_size, config.top_blocks, config.strategy
    ((160, 160), 2, 'fine_tune')
    """

    train_split: str = "train"
    val_split: str = "test"
    backbone: str = "efficientnet_b0"
    weights: str | None = "imagenet"
    image_size: int | tuple[int, int] = 224
    batch_size: int = 64
    augment: str = "default"
    data_dir: str | None = None
    max_examples: int | None = None
    output_dir: str = "keras_transfer_runs"
    # Published defaults that differ from fine_tune's.
    fine_tune_epochs: int = 10
    top_blocks: int | None = 3
    backbone_lr: float | Literal["find"] = 1e-5
    layer_decay: float | None = 0.6
    label_smoothing: float = 0.1
    dropout: float = 0.3
    optimizer: str = "adamw"
    weight_decay: float | None = 1e-4

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "image_size", _checks.image_size(self.image_size))
        _check_recipe_fields(self)


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
    published length, and the phase people usually mean gets `N`. Old option
    names (`unfreeze_top_blocks`) still work, with a FutureWarning. The
    result is checked as a whole, so options that do not fit together fail
    here, before any data is read.

    Example:

    >>> from keras_transfer.recipe import ImageRecipeConfig, configure
    >>> configure(ImageRecipeConfig("tf_flowers", 5), {"head_epochs": 1}).head_epochs
    1
    >>> configure(ImageRecipeConfig("tf_flowers", 5), {"epochs": 3}).fine_tune_epochs
    3
    """
    overrides = take_renamed(overrides, "run")
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
    from keras_transfer.distribute import auto_distribution
    from keras_transfer.evaluation import evaluate, plot_confusion, plot_history
    from keras_transfer.workflow import export, fine_tune

    start = time.perf_counter()
    out = pathlib.Path(config.output_dir) / name
    distribution = auto_distribution()
    with distribution.scope():
        backbone = get_backbone(config.backbone, weights=config.weights, input_shape=config.image_size + (3,),
                                pooling=None)
    loader = dict(image_size=config.image_size, batch_size=config.batch_size, preprocess=backbone.preprocess,
                  data_dir=config.data_dir, max_examples=config.max_examples)
    train_ds = data.from_tfds(config.dataset, split=config.train_split, augment=config.augment, shuffle=True,
                              seed=0, **loader)
    val_ds = data.from_tfds(config.dataset, split=config.val_split, **loader)
    with distribution.scope():
        result = fine_tune(backbone, train_ds, val_ds, config,
                           checkpoint_dir=config.checkpoint_dir or str(out / "checkpoints"))
    class_names = getattr(val_ds, "class_names", None)
    evaluation = evaluate(result.model, val_ds, class_names=class_names)
    paths = dict(result.paths)
    paths["history_plot"], paths["confusion_plot"] = str(out / "history.png"), str(out / "confusion.png")
    plot_history(result.history, paths["history_plot"])
    plot_confusion(evaluation.confusion, paths["confusion_plot"])
    paths.update({f"export_{k}": v for k, v in export(result.model, out / "model").items()})
    return RecipeResult(name, config, result.history, result.metrics, evaluation, result.model, paths,
                        time.perf_counter() - start)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextRecipeConfig(FineTuneConfig, _Task):
    """Published defaults of a text-classification recipe (keras-hub backbone + LoRA).

    As `ImageRecipeConfig`: every `FineTuneConfig` field is one too.
    `weights` is a keras-hub preset name (downloaded on first use) or a local
    preset directory (written by `task.save_to_preset(dir)`), which runs offline.
    `lora_rank=None` is rank 8.

    Example:

    >>> from keras_transfer.recipe import TextRecipeConfig
    >>> TextRecipeConfig("imdb_reviews", 2, lora_rank=4).strategy
    'lora'
    """

    weights: str = "bert_tiny_en_uncased"
    task: str = "BertTextClassifier"
    train_split: str = "train"
    val_split: str = "test"
    sequence_length: int = 256
    batch_size: int = 32
    data_dir: str | None = None
    max_examples: int | None = None
    output_dir: str = "keras_transfer_runs"
    # Published defaults that differ from fine_tune's.
    strategy: Literal[STRATEGIES] = "lora"
    head_epochs: int = 1
    fine_tune_epochs: int = 3
    backbone_lr: float | Literal["find"] = 5e-5
    optimizer: str = "adamw"
    weight_decay: float | None = 1e-2
    cache_features: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_recipe_fields(self)


def _check_recipe_fields(config):
    for name in ("batch_size", "sequence_length"):
        if hasattr(config, name):
            _checks.positive_int(name, getattr(config, name))
    _checks.positive_int("max_examples", config.max_examples, optional=True)


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
    result = fine_tune(model, train_ds, val_ds, config, checkpoint_dir=config.checkpoint_dir or str(out / "checkpoints"))
    paths = dict(result.paths)
    paths.update({f"export_{k}": v for k, v in export(result.model, out / "model").items()})
    return RecipeResult(name, config, result.history, result.metrics, None, result.model, paths,
                        time.perf_counter() - start)
