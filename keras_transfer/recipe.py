"""What every recipe shares: a config dataclass and the calls that run it.

A recipe module in `recipes/` holds only its published defaults (a `Config`)
and `run(**overrides)`, which calls `run_image_recipe` or `run_text_recipe`
here. No recipe builds a pipeline or a training loop of its own.
"""

import dataclasses
import os
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
class _TextRecipeFields(FineTuneConfig, _Task):
    # What every text recipe has, encoder task or decoder LLM.
    weights: str
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
        if not isinstance(self.weights, (str, os.PathLike)) or not str(self.weights):
            raise ValueError("`weights` must be a keras-hub preset name or a local preset directory. "
                             f"Received: weights={self.weights!r}")
        _check_recipe_fields(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextRecipeConfig(_TextRecipeFields):
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderTextRecipeConfig(_TextRecipeFields):
    """Published defaults of a text-classification recipe on a decoder LLM (Gemma, Llama, ...).

    keras-hub has no text-classifier task for decoder LLMs, so the model is
    assembled as in KerasHub's getting-started guide (`build_decoder_classifier`):
    the preset's backbone and tokenizer, the features of each text's last
    token (the only one that attends to the whole text), then a head of
    `hidden_units` ReLU units (None: none), dropout and a Dense layer.
    Texts are tokenized in the tf.data pipeline, padded or cut to
    `sequence_length` tokens between the tokenizer's start and end tokens.

    The fields are `TextRecipeConfig`'s without `task`, and:
        hidden_units: width of the head's hidden layer, or None.
        dtype: the backbone's dtype (`"bfloat16"` halves its memory on
            GPUs that compute in it: A100, L4, TPU); None keeps the preset's.
        export_model: also write the merged model (`kt.export`, a `.keras`
            file and a SavedModel, each as large as the LLM, and a second
            copy of it in memory while merging). The LoRA adapters and the
            head are always saved, to `<output_dir>/<recipe>/adapters.npz`.

    Example:

    >>> from keras_transfer.recipe import DecoderTextRecipeConfig
    >>> config = DecoderTextRecipeConfig("imdb_reviews", 2, lora_rank=4)
    >>> config.weights, config.hidden_units, config.strategy
    ('gemma2_instruct_2b_en', 2048, 'lora')
    """

    weights: str = "gemma2_instruct_2b_en"
    hidden_units: int | None = 2048
    dtype: str | None = None
    export_model: bool = False

    def __post_init__(self):
        super().__post_init__()
        _checks.positive_int("hidden_units", self.hidden_units, optional=True)
        if self.dtype is not None:
            try:
                keras.dtype_policies.get(self.dtype)
            except (ValueError, TypeError):
                raise ValueError("`dtype` must be None or a Keras dtype or dtype policy name, such as 'bfloat16'. "
                                 f"Received: dtype={self.dtype!r}") from None
        if not isinstance(self.export_model, bool):
            raise ValueError(f"`export_model` must be True or False. Received: export_model={self.export_model!r}")


def _check_recipe_fields(config):
    for name in ("batch_size", "sequence_length"):
        if hasattr(config, name):
            _checks.positive_int(name, getattr(config, name))
    _checks.positive_int("max_examples", config.max_examples, optional=True)


def build_decoder_classifier(backbone, num_classes, hidden_units=2048, dropout=0.1):
    """A classifier on a keras-hub decoder LLM backbone, pooled at each text's last token.

    The model of KerasHub's getting-started guide: `backbone ->
    TokenPooling("last") -> Dense(hidden_units, relu) -> Dropout -> Dense(num_classes)`,
    a functional model whose new layers form the `head` block, so `fine_tune`,
    `kt.apply_lora` and `kt.load_adapters` treat it as any classifier. Its
    outputs are logits; its inputs the backbone's (`token_ids`, `padding_mask`).

    Args:
        backbone: a keras-hub backbone whose inputs include `token_ids` and
            `padding_mask` and whose output is `(batch, length, dim)` (Gemma,
            Llama, Mistral, ...).
        num_classes: classes of the head (>= 2).
        hidden_units: width of the hidden ReLU layer, or None for none.
        dropout: dropout rate before the last layer, in [0, 1).

    Returns:
        A `keras.Model`.

    Example:

    >>> import keras_hub
    >>> from keras_transfer.recipe import build_decoder_classifier
    >>> backbone = keras_hub.models.GemmaBackbone(vocabulary_size=16, num_layers=1, num_query_heads=2,
    ...     num_key_value_heads=1, hidden_dim=8, intermediate_dim=16, head_dim=4)
    >>> model = build_decoder_classifier(backbone, num_classes=2, hidden_units=4)
    >>> [layer.name for layer in model.layers[-4:]], model.output.shape
    (['last_token', 'pooled_dense', 'head_dropout', 'logits'], (None, 2))
    """
    inputs = getattr(backbone, "input", None) if isinstance(backbone, keras.Model) else None
    if not isinstance(inputs, dict) or not {"token_ids", "padding_mask"} <= set(inputs):
        raise ValueError("`backbone` must be a keras-hub backbone with `token_ids` and `padding_mask` inputs. "
                         f"Received: backbone={backbone!r} with inputs {inputs!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
    _checks.positive_int("hidden_units", hidden_units, optional=True)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1). Received: dropout={dropout!r}")
    from keras_transfer.backbones import TokenPooling

    # In a decoder LLM only the last token has attended to the whole text.
    x = TokenPooling("last", name="last_token")(backbone(inputs), inputs["padding_mask"])
    if hidden_units is not None:
        x = keras.layers.Dense(hidden_units, activation="relu", name="pooled_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_classifier")


def _decoder_model(config):
    """(classifier, tokenizer) of a `DecoderTextRecipeConfig`, from its preset; offline, our `OfflineError`."""
    import keras_hub

    from keras_transfer.backbones import _from_preset

    local = ("weights", "/path/to/preset")
    tokenizer = _from_preset(keras_hub.tokenizers.Tokenizer, os.fspath(config.weights), {}, local)
    kwargs = {} if config.dtype is None else {"dtype": config.dtype}
    backbone = _from_preset(keras_hub.models.Backbone, os.fspath(config.weights), kwargs, local)
    model = build_decoder_classifier(backbone, config.num_classes, config.hidden_units, config.dropout)
    return model, tokenizer


def _tokenized(dataset, tokenizer, sequence_length):
    """`(texts, labels)` batches as `({"token_ids", "padding_mask"}, labels)`, between start and end tokens."""
    import keras_hub

    packer = keras_hub.layers.StartEndPacker(
        start_value=getattr(tokenizer, "start_token_id", None), end_value=getattr(tokenizer, "end_token_id", None),
        pad_value=getattr(tokenizer, "pad_token_id", None) or 0, sequence_length=sequence_length,
        return_padding_mask=True)

    def tokenize(texts, labels):
        token_ids, padding_mask = packer(tokenizer(texts))
        return {"token_ids": token_ids, "padding_mask": padding_mask}, labels

    tokenized = dataset.map(tokenize, num_parallel_calls=-1).prefetch(-1)  # -1: tf.data.AUTOTUNE
    tokenized.class_names = getattr(dataset, "class_names", None)
    return tokenized


def run_text_recipe(name, config):
    """Runs a text recipe: keras-hub model from a preset, tfds text pipeline, `fine_tune`, export.

    A `TextRecipeConfig` loads its keras-hub task (preprocessing inside);
    a `DecoderTextRecipeConfig` assembles `build_decoder_classifier` from the
    preset's backbone and tokenizer, tokenizes in the pipeline, and saves the
    LoRA adapters and head (`kt.save_adapters`) rather than the whole LLM
    unless `export_model`.

    Args:
        name: the recipe's name (folder name of its outputs).
        config: a `TextRecipeConfig` or `DecoderTextRecipeConfig`.

    Returns:
        A `RecipeResult`.

    Example:

    >>> from keras_transfer.recipes import imdb
    >>> result = imdb.run(fine_tune_epochs=1)  # doctest: +SKIP
    """
    from keras_transfer import _keras_compat as compat
    from keras_transfer import data
    from keras_transfer.backbones import load_hub_task
    from keras_transfer.lora import LoRADense, LoRAEinsumDense, save_adapters
    from keras_transfer.workflow import export, fine_tune

    if not isinstance(config, (TextRecipeConfig, DecoderTextRecipeConfig)):
        raise TypeError(f"`config` must be a TextRecipeConfig or DecoderTextRecipeConfig. Received: config={config!r}")
    start = time.perf_counter()
    out = pathlib.Path(config.output_dir) / name
    decoder = isinstance(config, DecoderTextRecipeConfig)
    if decoder:
        model, tokenizer = _decoder_model(config)
    else:
        model = load_hub_task(config.task, config.weights, num_classes=config.num_classes,
                              sequence_length=config.sequence_length)
    loader = dict(batch_size=config.batch_size, data_dir=config.data_dir, max_examples=config.max_examples)
    train_ds = data.text_from_tfds(config.dataset, split=config.train_split, shuffle=True, seed=0, **loader)
    val_ds = data.text_from_tfds(config.dataset, split=config.val_split, **loader)
    if decoder:
        train_ds, val_ds = (_tokenized(ds, tokenizer, config.sequence_length) for ds in (train_ds, val_ds))
    result = fine_tune(model, train_ds, val_ds, config, checkpoint_dir=config.checkpoint_dir or str(out / "checkpoints"))
    paths = dict(result.paths)
    if decoder and any(isinstance(layer, (LoRADense, LoRAEinsumDense)) for layer in compat.walk_layers(result.model)):
        out.mkdir(parents=True, exist_ok=True)
        paths["adapters"] = save_adapters(result.model, out / "adapters", include_head=True)
    if not decoder or config.export_model:
        paths.update({f"export_{k}": v for k, v in export(result.model, out / "model").items()})
    return RecipeResult(name, config, result.history, result.metrics, None, result.model, paths,
                        time.perf_counter() - start)
