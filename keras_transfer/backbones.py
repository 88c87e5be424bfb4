"""The backbone registry: name -> model, preprocessing, input size, block spec.

`get_backbone("efficientnet_b0")` returns a `Backbone`: the pretrained model
without its classification top, the preprocessing its weights expect, the
family's default input size and the block spec that splits it into blocks.
Names cover the keras.applications families (a table, `BACKBONES`) and
keras-hub presets (`"hub:dinov2_small"`, or `"hub:/local/dir"`): image
backbones, the vision tower of SigLIP / CLIP, text encoders and decoder LLMs,
each pooled the way its family is read (a table, `HUB_FAMILIES`).

Preprocessing of keras.applications families is plain arithmetic on
channels-last RGB images in 0..255, so one function serves numpy arrays,
backend tensors and `tf.data.map` alike; a keras-hub preset's is its own
`ImageConverter` or text preprocessor (`HubPreprocessing`), which also runs
inside `tf.data.map`.
"""

import dataclasses
import difflib
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
import warnings

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks, _inputs
from keras_transfer.blocks import find_spec, get_blocks

HUB_PREFIX = "hub:"
POOLINGS = (None, "avg", "max")

# ImageNet channel statistics, exactly as keras.applications.imagenet_utils uses them.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
MODES = ("none", "tf", "torch", "caffe", "scale_offset")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One keras.applications backbone in the registry.

    Attributes:
        constructor: the `keras.applications` function that builds it.
        module: the `keras.applications` module holding its `preprocess_input`.
        mode: its preprocessing (`"none"` where the model rescales itself).
        input_size: the side of the images its ImageNet weights were trained on.
        min_size: the smallest side Keras accepts without the top.
        params: parameters without the top (checked by the registry's tests).
        kwargs: further constructor arguments.
    """

    constructor: str
    module: str
    mode: str
    input_size: int
    params: int
    min_size: int = 32
    kwargs: tuple = ()


BACKBONES = {
    **{
        f"efficientnet_b{i}": Entry(f"EfficientNetB{i}", "efficientnet", "none", size, params)
        for i, (size, params) in enumerate([
            (224, 4049571), (240, 6575239), (260, 7768569), (300, 10783535),
            (380, 17673823), (456, 28513527), (528, 40960143), (600, 64097687),
        ])
    },
    **{
        f"efficientnetv2_{v.lower()}": Entry(f"EfficientNetV2{v}", "efficientnet_v2", "none", size, params)
        for v, size, params in [
            ("B0", 224, 5919312), ("B1", 240, 6931124), ("B2", 260, 8769374), ("B3", 300, 12930622),
            ("S", 384, 20331360), ("M", 480, 53150388), ("L", 480, 117746848),
        ]
    },
    "resnet50": Entry("ResNet50", "resnet", "caffe", 224, 23587712),
    "resnet101": Entry("ResNet101", "resnet", "caffe", 224, 42658176),
    "resnet152": Entry("ResNet152", "resnet", "caffe", 224, 58370944),
    "resnet50_v2": Entry("ResNet50V2", "resnet_v2", "tf", 224, 23564800),
    "resnet101_v2": Entry("ResNet101V2", "resnet_v2", "tf", 224, 42626560),
    "resnet152_v2": Entry("ResNet152V2", "resnet_v2", "tf", 224, 58331648),
    "mobilenet_v2": Entry("MobileNetV2", "mobilenet_v2", "tf", 224, 2257984, kwargs=(("alpha", 1.0),)),
    "mobilenet_v3_small": Entry("MobileNetV3Small", "mobilenet_v3", "none", 224, 939120),
    "mobilenet_v3_large": Entry("MobileNetV3Large", "mobilenet_v3", "none", 224, 2996352),
    "convnext_tiny": Entry("ConvNeXtTiny", "convnext", "none", 224, 27820128),
    "convnext_small": Entry("ConvNeXtSmall", "convnext", "none", 224, 49454688),
    "convnext_base": Entry("ConvNeXtBase", "convnext", "none", 224, 87566464),
    "convnext_large": Entry("ConvNeXtLarge", "convnext", "none", 224, 196230336),
    "convnext_xlarge": Entry("ConvNeXtXLarge", "convnext", "none", 224, 348147968),
    "densenet121": Entry("DenseNet121", "densenet", "torch", 224, 7037504),
    "densenet169": Entry("DenseNet169", "densenet", "torch", 224, 12642880),
    "densenet201": Entry("DenseNet201", "densenet", "torch", 224, 18321984),
    "vgg16": Entry("VGG16", "vgg16", "caffe", 224, 14714688),
    "vgg19": Entry("VGG19", "vgg19", "caffe", 224, 20024384),
    "xception": Entry("Xception", "xception", "tf", 299, 20861480, min_size=71),
    "inception_v3": Entry("InceptionV3", "inception_v3", "tf", 299, 21802784, min_size=75),
}

# Keras' own spellings ("EfficientNetB0", "ResNet50V2") resolve to registry names.
_ALIASES = {entry.constructor.lower(): name for name, entry in BACKBONES.items()}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Maps float RGB images in 0..255 (channels last) to what a backbone expects.

    The modes are those of `keras.applications.imagenet_utils.preprocess_input`,
    written as plain arithmetic and slicing so the same object works on numpy
    arrays, backend tensors and inside `tf.data.Dataset.map`:

    - `"tf"`: `x / 127.5 - 1` (MobileNetV2, ResNetV2, Xception, InceptionV3).
    - `"torch"`: `(x / 255 - mean) / std` with ImageNet statistics (DenseNet).
    - `"caffe"`: RGB -> BGR, then minus the ImageNet BGR mean (ResNet, VGG).
    - `"none"`: unchanged; the model rescales itself (EfficientNet(V2),
      ConvNeXt, MobileNetV3).
    - `"scale_offset"`: `x * scale + offset`, a keras-hub image converter's
      rescaling (without its resizing, which the data pipeline does).

    Unlike `preprocess_input`, it never modifies its input in place.

    Args:
        mode: one of `MODES`.
        scale: `"scale_offset"` only: a number or one number per channel.
        offset: `"scale_offset"` only: a number or one number per channel.

    Example:

    >>> import numpy as np
    >>> from keras_transfer.backbones import Preprocessing
    >>> Preprocessing("tf")(np.array([[0.0, 127.5, 255.0]])).tolist()
    [[-1.0, 0.0, 1.0]]
    """

    mode: str
    scale: object = None
    offset: object = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {list(MODES)}. Received: mode={self.mode!r}")
        if self.mode != "scale_offset" and (self.scale is not None or self.offset is not None):
            raise ValueError(
                f"`scale` and `offset` apply to mode='scale_offset' only. Received: mode={self.mode!r}, "
                f"scale={self.scale!r}, offset={self.offset!r}"
            )

    def __call__(self, images):
        x = _as_float(images)
        channels = _last_dim(x)
        if channels is not None and channels != 3:
            raise ValueError(
                f"`images` must be RGB with the 3 channels last. Received: images.shape={tuple(x.shape)}"
            )
        if self.mode == "none":
            return x
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - _constant(_TORCH_MEAN, x)) / _constant(_TORCH_STD, x)
        if self.mode == "caffe":
            return x[..., ::-1] - _constant(_CAFFE_MEAN_BGR, x)
        scale = 1.0 if self.scale is None else _constant(self.scale, x)
        offset = 0.0 if self.offset is None else _constant(self.offset, x)
        return x * scale + offset

    def __repr__(self):
        if self.mode == "scale_offset":
            return f"Preprocessing('scale_offset', scale={self.scale!r}, offset={self.offset!r})"
        return f"Preprocessing({self.mode!r})"


@dataclasses.dataclass(frozen=True)
class HubFamily:
    """How `get_backbone("hub:...")` reads one keras-hub backbone class: its features and their poolings.

    Attributes:
        poolings: the `pooling` values the family accepts, its default first
            (`pooling="auto"` picks it). None leaves the features unpooled.
            `"cls"`: the first token. `"mean"`: the mean over the patch
            tokens (after `prefix_tokens`), or over the non-padding tokens
            of a text. `"pooled"`: the model's own pooled output (`pooled`).
            `"last"`: the hidden state at the last non-padding token.
            `"avg"` / `"max"`: global pooling of a feature map.
        modality: `"image"`, `"text"` (an encoder: `[CLS] ... [SEP]`) or
            `"decoder"` (a decoder LLM: a start token and no end token).
        features: where the unpooled features are: `"output"` (the model's
            output), `"sequence_output"` (that entry of its output dict),
            `"post_layer_norm"` (the output of that layer: SigLIP's tokens,
            before its attention-pooling head) or `"last_stage"` (the last of
            its `stage_names` in its output dict).
        pooled: where the model's own pooled output is: `"output"` (SigLIP's
            attention-pooling head), `"pooled_output"` (that entry of its
            output dict: BERT's `tanh(Dense(CLS))`) or `"first_token"`
            (CLIP's pooler: the first token after the final layer norm).
        prefix_tokens: the tokens before the patch tokens (class,
            distillation, register tokens), summed from numbers and the
            names of the model's attributes that count them.
        tower: the attribute of a dual encoder that holds the backbone used
            (SigLIP's and CLIP's `vision_encoder`).
    """

    poolings: tuple
    modality: str = "image"
    features: str = "output"
    pooled: str = None
    prefix_tokens: tuple = ()
    tower: str = None


_CONV_FAMILY = HubFamily(("avg", "max", None))
_ENCODER = dict(modality="text", features="sequence_output", pooled="pooled_output")
_DECODER = HubFamily(("last", "mean", None), modality="decoder")
_DINO = HubFamily(("cls", "mean", None), prefix_tokens=(1, "num_register_tokens"))
_SIGLIP = dict(poolings=("pooled", "mean", None), features="post_layer_norm", pooled="output")
_CLIP = dict(poolings=("pooled", "mean", None), pooled="first_token", prefix_tokens=(1,))

# Keyed by the keras-hub backbone class. A class not here is pooled as a feature map (`_CONV_FAMILY`).
HUB_FAMILIES = {
    "ViTBackbone": HubFamily(("cls", "mean", None), prefix_tokens=("use_class_token",)),
    "DeiTBackbone": HubFamily(("cls", "mean", None), prefix_tokens=(2,)),
    "DINOV2Backbone": _DINO,
    "DINOV3Backbone": _DINO,
    "SigLIPBackbone": HubFamily(**_SIGLIP, tower="vision_encoder"),
    "SigLIPVisionEncoder": HubFamily(**_SIGLIP),
    "CLIPBackbone": HubFamily(**_CLIP, tower="vision_encoder"),
    "CLIPVisionEncoder": HubFamily(**_CLIP),
    "SwinTransformerBackbone": HubFamily(("mean", None)),
    "ResNetBackbone": _CONV_FAMILY,
    "EfficientNetBackbone": _CONV_FAMILY,
    "MobileNetBackbone": _CONV_FAMILY,
    "CSPNetBackbone": _CONV_FAMILY,
    "HGNetV2Backbone": HubFamily(("avg", "max", None), features="last_stage"),
    "BertBackbone": HubFamily(("cls", "mean", "pooled", None), **_ENCODER),
    "AlbertBackbone": HubFamily(("cls", "mean", "pooled", None), **_ENCODER),
    "ElectraBackbone": HubFamily(("cls", "mean", "pooled", None), **_ENCODER),
    "RobertaBackbone": HubFamily(("cls", "mean", None), modality="text"),
    "XLMRobertaBackbone": HubFamily(("cls", "mean", None), modality="text"),
    "DebertaV3Backbone": HubFamily(("cls", "mean", None), modality="text"),
    "DistilBertBackbone": HubFamily(("cls", "mean", None), modality="text"),
    **{
        f"{family}Backbone": _DECODER
        for family in ("Gemma", "Gemma3", "Llama", "Llama3", "Mistral", "Qwen", "Qwen3", "Phi3", "GPT2")
    },
}


@keras.saving.register_keras_serializable(package="keras_transfer")
class TokenPooling(keras.layers.Layer):
    """Pools a token sequence `(batch, tokens, features)` into one vector per example.

    Args:
        mode: `"first"`: the first token (a class token). `"mean"`: the mean
            of the tokens after the first `skip`, or, given a
            `padding_mask`, of the tokens it marks. `"last"`: the token at
            the last position the `padding_mask` marks (a decoder's summary
            of the whole text, right- or left-padded).
        skip: `"mean"` without a mask: how many leading tokens (class,
            distillation, register tokens) to leave out.

    Call arguments:
        tokens: `(batch, tokens, features)`.
        padding_mask: `(batch, tokens)`, true at real tokens; needed by `"last"`.

    Example:

    >>> import numpy as np
    >>> from keras_transfer.backbones import TokenPooling
    >>> tokens = np.arange(12, dtype="float32").reshape(1, 4, 3)
    >>> mask = np.array([[True, True, True, False]])
    >>> [np.asarray(TokenPooling(mode)(tokens, mask)).tolist() for mode in ("first", "mean", "last")]
    [[[0.0, 1.0, 2.0]], [[3.0, 4.0, 5.0]], [[6.0, 7.0, 8.0]]]
    >>> np.asarray(TokenPooling("mean", skip=1)(tokens)).tolist()
    [[6.0, 7.0, 8.0]]
    """

    MODES = ("first", "mean", "last")

    def __init__(self, mode, skip=0, **kwargs):
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {list(self.MODES)}. Received: mode={mode!r}")
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ValueError(f"`skip` must be a non-negative integer. Received: skip={skip!r}")
        super().__init__(**kwargs)
        self.mode = mode
        self.skip = skip

    def call(self, tokens, padding_mask=None):
        if self.mode == "first":
            return tokens[:, 0, :]
        if self.mode == "mean" and padding_mask is None:
            return keras.ops.mean(tokens[:, self.skip:, :], axis=1)
        if padding_mask is None:
            raise ValueError("TokenPooling('last') needs the `padding_mask` of the tokens.")
        if self.mode == "mean":
            weights = keras.ops.expand_dims(keras.ops.cast(padding_mask, tokens.dtype), -1)
            return keras.ops.sum(tokens * weights, axis=1) / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1)
        positions = keras.ops.arange(keras.ops.shape(tokens)[1], dtype="int32")
        last = keras.ops.argmax(keras.ops.cast(padding_mask, "int32") * positions, axis=1)
        return keras.ops.take_along_axis(tokens, keras.ops.reshape(last, (-1, 1, 1)), axis=1)[:, 0, :]

    def compute_output_shape(self, tokens_shape, padding_mask_shape=None):
        return (tokens_shape[0], tokens_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "skip": self.skip}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class HubPreprocessing:
    """A keras-hub preset's own preprocessing, as one function that also runs in `tf.data.Dataset.map`.

    - An image preset's `ImageConverter`: images (uint8 or float in 0..255,
      channels last, one or a batch, any size) are resized to the
      backbone's input size and rescaled as the preset's weights expect.
    - A text encoder's preprocessor (`BertTextClassifierPreprocessor`, ...):
      raw strings are tokenized and packed as `[CLS] text [SEP]`, padded or
      truncated to `sequence_length`, into the dict of inputs the backbone
      takes (`token_ids`, `padding_mask`, and `segment_ids` where it has them).
    - A decoder LLM's `CausalLMPreprocessor`: raw strings get the start token
      and no end token, as for generation (its `generate_preprocess`).

    Called with more than one argument (`(text, label)` elements of a
    dataset, `ds.map(backbone.preprocess)`), it preprocesses the first and
    passes the rest through.

    Args:
        layer: the keras-hub `ImageConverter` or preprocessor.
        modality: `"image"`, `"text"` or `"decoder"`.
        keys: text only: the backbone's input names, the entries kept.

    Example:

    >>> import keras_hub, numpy as np
    >>> from keras_transfer.backbones import HubPreprocessing
    >>> converter = keras_hub.layers.ImageConverter(image_size=(2, 2), scale=1 / 255)
    >>> preprocess = HubPreprocessing(converter, "image")
    >>> np.asarray(preprocess(np.full((4, 4, 3), 255, dtype="uint8")))[0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    layer: object
    modality: str
    keys: tuple = ()

    def __post_init__(self):
        _checks.choice("modality", self.modality, ("image", "text", "decoder"))

    def __call__(self, inputs, *passed):
        if self.modality == "image":
            if isinstance(inputs, np.ndarray) and not np.issubdtype(inputs.dtype, np.floating):
                # Eagerly, the converter would round integer images after resizing; in tf.data it does not.
                inputs = inputs.astype("float32")
            outputs = self.layer(inputs)
        else:
            packed = self.layer.generate_preprocess(inputs) if self.modality == "decoder" else self.layer(inputs)
            outputs = {key: packed[key] for key in self.keys}
        return (outputs, *passed) if passed else outputs

    @property
    def sequence_length(self):
        """The length texts are padded or truncated to (None for images)."""
        return getattr(self.layer, "sequence_length", None)

    def __repr__(self):
        if self.modality == "image":
            details = (f"image_size={self.layer.image_size}, scale={_plain(self.layer.scale)!r}, "
                       f"offset={_plain(self.layer.offset)!r}")
        else:
            details = f"sequence_length={self.sequence_length}"
        return f"HubPreprocessing({type(self.layer).__name__}, {details})"


@dataclasses.dataclass(frozen=True, repr=False)
class Backbone:
    """A pretrained backbone (no classification top) with what it needs to be used.

    Attributes:
        name: the registry name (`"efficientnet_b0"`, `"hub:resnet_50_imagenet"`).
        model: the `keras.Model`, built without its top. A keras-hub image
            backbone takes one image tensor; a text one the dict of inputs
            its preprocessing gives (`token_ids`, `padding_mask`, ...).
        preprocess: a `Preprocessing` (float RGB images in 0..255 -> model
            input), or for a keras-hub preset a `HubPreprocessing`: its own
            image converter (images -> model input), or its text
            preprocessor (raw strings -> model inputs); None where a text
            preset has no tokenizer.
        input_size: the side of the images the pretrained weights were trained
            on; for a text preset, the sequence length of its preprocessor
            (None where a keras-hub preset does not say).
        spec: the family's `BlockSpec` (None: the generic block fallback).
        family: the `keras.applications` module (`"efficientnet"`), or
            `"keras_hub.<family>"`.
        weights: what the weights came from: `"imagenet"`, a file, a preset, or None.
    """

    name: str
    model: keras.Model
    preprocess: Preprocessing
    input_size: int
    spec: object
    family: str
    weights: str = None

    @property
    def blocks(self):
        """The model's blocks, by the family's spec."""
        return get_blocks(self.model, spec=self.spec)

    def __repr__(self):
        return (
            f"Backbone({self.name!r}, family={self.family!r}, input_shape={_input_shape(self.model)}, "
            f"params={self.model.count_params():,}, preprocess={self.preprocess!r}, weights={self.weights!r})"
        )


class OfflineError(ConnectionError):
    """A download that cannot happen (no network), and the argument that supplies a local copy instead.

    `str(error)` names that argument as Python spells it (`weights='/path/to/file.h5'`);
    `error.spelled(option)` lets a caller spell it its own way, as the
    `keras-transfer` command does with its flags (`--weights /path/to/file.h5`).

    Attributes:
        argument: the argument's name (`"weights"`, `"data_dir"`).
        value: an example value for it (`"/path/to/tfds"`).

    Example:

    >>> from keras_transfer.backbones import OfflineError
    >>> error = OfflineError("No network. Pass ", "data_dir", "/path/to/tfds", ".")
    >>> str(error), error.spelled(lambda argument, value: f"--data-dir {value}")
    ("No network. Pass data_dir='/path/to/tfds'.", 'No network. Pass --data-dir /path/to/tfds.')
    """

    def __init__(self, before, argument, value, after):
        self.before, self.argument, self.value, self.after = before, argument, value, after
        super().__init__(self.spelled(lambda argument, value: f"{argument}={value!r}"))

    def spelled(self, option):
        """The message, with `option(argument, value)` where the argument is named."""
        return f"{self.before}{option(self.argument, self.value)}{self.after}"


def get_backbone(name, weights="imagenet", input_shape=None, pooling="auto"):
    """Builds a pretrained backbone without its top, with its preprocessing.

    keras-hub presets (`"hub:<preset>"`) cover these families, each pooled
    the way it is read, with the choices `pooling` accepts (default first):

    | family (keras-hub backbone) | `pooling` |
    |---|---|
    | ViT, DeiT, DINOv2, DINOv3 | `"cls"`, `"mean"` (patch tokens), None |
    | SigLIP / SigLIP2, CLIP: the vision tower | `"pooled"`, `"mean"`, None |
    | Swin | `"mean"`, None |
    | ResNet, EfficientNet, MobileNet(V3), CSPNet, HGNetV2, any other image backbone | `"avg"`, `"max"`, None |
    | BERT, ALBERT, ELECTRA | `"cls"`, `"mean"`, `"pooled"`, None |
    | RoBERTa, XLM-RoBERTa, DeBERTaV3, DistilBERT | `"cls"`, `"mean"`, None |
    | Gemma, Gemma3, Llama, Llama3, Mistral, Qwen, Qwen3, Phi3, GPT-2 | `"last"`, `"mean"`, None |

    `"cls"` is the first token's hidden state (the class token). `"mean"`
    averages the patch tokens (class, distillation and register tokens left
    out, as timm's `global_pool="avg"`), or a text's non-padding tokens.
    `"pooled"` is the model's own pooled output: SigLIP's attention-pooling
    head, CLIP's class token after the final layer norm (before the
    projection into the shared embedding space), BERT's `pooled_output`.
    `"last"` is a decoder LLM's hidden state at the last non-padding token.
    None gives the features unpooled: the token sequence, or the feature map
    (HGNetV2: of its last stage).

    For SigLIP and CLIP presets the backbone is the vision encoder (their
    text towers are not offered). Vision backbones take one image tensor;
    text backbones take the dict their preprocessing gives (`token_ids`,
    `padding_mask`, and `segment_ids` for BERT, ALBERT and ELECTRA).

    Args:
        name: a registry name (see `list_backbones()`; Keras' spelling such as
            `"EfficientNetB0"` works too), or `"hub:<preset>"` for a keras-hub
            preset name, a Kaggle / Hugging Face handle, or a local preset
            directory (`"hub:/path/to/preset"`, written by `save_to_preset`;
            the way to use a preset offline).
        weights: `"imagenet"` (downloaded once, cached in `~/.keras/models`;
            offline, an `OfflineError` names the file to pass instead),
            None (random initialisation), or the path of a local weights file
            (`.h5` / `.weights.h5`) of the same architecture without its top.
            For a keras-hub preset, `"imagenet"` means the preset's weights.
        input_shape: `(height, width, 3)`; sides may be None for any size.
            Defaults to the family's `input_size` square (a keras-hub
            preset's image size; SigLIP and CLIP presets keep theirs). For a
            text preset, `(sequence_length,)`: the length its preprocessing
            pads and truncates to (default: the preset's).
        pooling: `"auto"` (the family's default: `"avg"` for keras.applications),
            one of the family's choices above (`"avg"` or `"max"` for
            keras.applications), or None for the unpooled features.

    Returns:
        A `Backbone`.

    Example:

    >>> import keras_transfer as kt
    >>> backbone = kt.get_backbone("mobilenet_v2", weights=None, input_shape=(96, 96, 3))
    >>> backbone.model.output.shape, backbone.input_size, backbone.spec.family
    ((None, 1280), 224, 'mobilenet_v2')

    A keras-hub preset, here a tiny DINOv2 saved to a local directory (a
    preset name such as `"hub:dinov2_small"` downloads instead):

    >>> import keras_hub, tempfile
    >>> preset = tempfile.mkdtemp()
    >>> keras_hub.models.DINOV2Backbone(
    ...     patch_size=8, num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
    ...     image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3)).save_to_preset(preset)
    >>> keras_hub.layers.ImageConverter(image_size=(32, 32), scale=1 / 255).save_to_preset(preset)
    >>> dino = kt.get_backbone("hub:" + preset, pooling="cls")
    >>> dino.model.output.shape, dino.input_size, dino.family
    ((None, 16), 32, 'keras_hub.dinov2')
    >>> kt.get_backbone("hub:" + preset, pooling="avg")
    Traceback (most recent call last):
    ...
    ValueError: `pooling` must be one of 'auto' (= 'cls'), 'cls', 'mean', None for keras-hub DINOV2Backbone. \
Received: pooling='avg'
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"`name` must be a backbone name (see list_backbones()). Received: name={name!r}")
    weights = _check_weights(weights)
    if name.startswith(HUB_PREFIX):
        if weights not in ("imagenet", None):
            raise ValueError(
                "A keras-hub preset brings its own weights: use weights='imagenet' (the preset's) or None, and "
                f"pass a local preset directory as name='hub:/path/to/preset'. Received: weights={weights!r}"
            )
        return _hub_backbone(name, weights, input_shape, pooling)
    pooling = "avg" if pooling == "auto" else pooling
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {list(POOLINGS)}. Received: pooling={pooling!r}")
    key = _resolve(name)
    entry = BACKBONES[key]
    if input_shape is None:
        input_shape = (entry.input_size, entry.input_size, 3)
    input_shape = _check_input_shape(input_shape, entry.min_size, key)
    constructor = getattr(keras.applications, entry.constructor)
    # Keras warns once per layer it cannot load before it raises; our error below says it once, so those
    # warnings are kept back, and said only if the model builds after all.
    with warnings.catch_warnings(record=True) as said:
        try:
            model = constructor(include_top=False, weights=weights, input_shape=input_shape, pooling=pooling,
                                **dict(entry.kwargs))
        except Exception as error:
            failure = error
        else:
            failure = None
    if failure is None:
        for w in said:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    else:
        e = failure
        if weights == "imagenet" and str(e).startswith("URL fetch failure"):
            # Keras' words are in the message: a second traceback of them would add nothing.
            raise _offline_weights_error(key, entry, e) from None
        if weights not in ("imagenet", None) and isinstance(e, ValueError):
            # Keras follows its first mismatch with every layer it could not load; the first says enough.
            reason = str(e).split("\n\nList of objects")[0].replace("\n\n", " ")
            raise ValueError(
                f"Could not load the weights file '{weights}' into backbone {key!r} "
                f"(keras.applications.{entry.constructor}, include_top=False): {reason} The file must hold the "
                "weights of this architecture without its classification top (a '..._notop.h5' or "
                "'..._no_top.weights.h5' file)."
            ) from e
        raise e
    return Backbone(key, model, Preprocessing(entry.mode), entry.input_size, find_spec(model), entry.module, weights)


def list_backbones(details=False, hub=True):
    """The names `get_backbone` accepts, without building any model.

    Args:
        details: return a `pandas.DataFrame` with one row per backbone instead.
        hub: include the keras-hub image classifier presets (`"hub:<preset>"`),
            as listed by keras-hub's offline preset registry. Any other preset
            (a Kaggle / Hugging Face handle, a local directory) works too.

    Returns:
        A sorted list of names, or a DataFrame with columns `name`, `source`,
        `family`, `constructor` (the keras.applications function, or the
        preset's handle), `input_size`, `preprocessing` and `params` (for
        keras.applications without the top; for presets as keras-hub reports).

    Example:

    >>> import keras_transfer as kt
    >>> kt.list_backbones(hub=False)[:3]
    ['convnext_base', 'convnext_large', 'convnext_small']
    """
    if not isinstance(details, bool) or not isinstance(hub, bool):
        raise TypeError(f"`details` and `hub` must be booleans. Received: details={details!r}, hub={hub!r}")
    rows = [
        dict(name=name, source="keras.applications", family=entry.module, constructor=entry.constructor,
             input_size=entry.input_size, preprocessing=entry.mode, params=entry.params)
        for name, entry in BACKBONES.items()
    ]
    if hub:
        for preset, info in _hub_presets().items():
            metadata = info.get("metadata", {})
            rows.append(dict(name=HUB_PREFIX + preset, source="keras_hub",
                             family=f"keras_hub.{metadata.get('path', '?')}",
                             constructor=info.get("kaggle_handle"), input_size=None,
                             preprocessing="scale_offset", params=metadata.get("params")))
    rows.sort(key=lambda row: row["name"])
    if not details:
        return [row["name"] for row in rows]
    table = pd.DataFrame(rows)
    table["input_size"] = table["input_size"].astype("Int64")
    table["params"] = table["params"].astype("Int64")
    return table


def load_hub_task(task, weights, num_classes, sequence_length=None):
    """Builds a keras-hub task (such as `"BertTextClassifier"`) from a preset.

    Args:
        task: the name of a `keras_hub.models` task class, or the class.
        weights: a keras-hub preset name (`"bert_tiny_en_uncased"`, downloaded
            on first use), a Kaggle / Hugging Face handle, or a local preset
            directory (written by `task.save_to_preset(dir)`), which works offline.
        num_classes: the number of classes of the task's new head.
        sequence_length: if given, the length the preprocessor pads and
            truncates token sequences to.

    Returns:
        The task, a `keras.Model` with its preprocessor attached.

    Example:

    >>> from keras_transfer.backbones import load_hub_task
    >>> model = load_hub_task("BertTextClassifier", "bert_tiny_en_uncased",
    ...                       num_classes=2, sequence_length=128)  # doctest: +SKIP
    """
    import keras_hub

    cls = _hub_task_class(task, keras_hub)
    if not isinstance(weights, (str, os.PathLike)) or not str(weights):
        raise ValueError(
            f"`weights` must be a keras-hub preset name or a local preset directory. Received: weights={weights!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes!r}")
    if sequence_length is not None and (
        isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1
    ):
        raise ValueError(
            f"`sequence_length` must be None or a positive integer. Received: sequence_length={sequence_length!r}"
        )
    preset = os.fspath(weights)
    model = _from_preset(cls, preset, dict(num_classes=num_classes), ("weights", "/path/to/preset"))
    if sequence_length is not None:
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None or not hasattr(preprocessor, "sequence_length"):
            raise ValueError(
                f"`sequence_length` needs a task whose preprocessor has one; {cls.__name__} from {preset!r} "
                f"has preprocessor={preprocessor!r}. Received: sequence_length={sequence_length}"
            )
        preprocessor.sequence_length = sequence_length
    return model


def check_image_size(backbone_or_model, dataset, name):
    """Fails at once, naming the data, when its images do not fit a model's input size.

    Keras finds the mismatch only at the first batch, and names a layer. Sides
    that either side leaves free (None) are not compared, and data whose
    image shape cannot be known without reading it (an iterator) passes.

    Args:
        backbone_or_model: a `Backbone`, or a `keras.Model` with one image input.
        dataset: a `tf.data.Dataset` of `(images, labels)` batches, `(x, y)`
            arrays, or `x` arrays.
        name: the name the data goes by in the caller's arguments (`"train_ds"`).

    Raises:
        ValueError: the images' height or width differs from the model's.

    Example:

    >>> import numpy as np, keras_transfer as kt
    >>> from keras_transfer.backbones import check_image_size
    >>> backbone = kt.get_backbone("mobilenet_v2", weights=None)
    >>> check_image_size(backbone, np.zeros((2, 96, 96, 3)), "x")
    Traceback (most recent call last):
    ...
    ValueError: `x` images are 96x96 but the backbone expects 224x224: load the data with image_size=(224, 224) \
or build the backbone with input_shape=(96, 96, 3). Received: x images of shape (2, 96, 96, 3)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be the name of the data argument. Received: name={name!r}")
    if isinstance(backbone_or_model, Backbone):
        model, which, what = backbone_or_model.model, "the backbone", "the backbone"
    elif isinstance(backbone_or_model, keras.Model):
        model, which, what = backbone_or_model, f"model {backbone_or_model.name!r}", "the model"
    else:
        raise TypeError("`backbone_or_model` must be a Backbone or a keras.Model. "
                        f"Received: backbone_or_model={type(backbone_or_model).__name__}")
    expected, found = _image_input_shape(model), _image_data_shape(dataset)
    if expected is None or found is None:
        return
    if all(e is None or f is None or e == f for e, f in zip(expected[1:3], found[1:3])):
        return
    height, width = (e if e is not None else f for e, f in zip(expected[1:3], found[1:3]))
    raise ValueError(
        f"`{name}` images are {found[1]}x{found[2]} but {which} expects {height}x{width}: load the data with "
        f"image_size=({height}, {width}) or build {what} with input_shape=({found[1]}, {found[2]}, {found[3]}). "
        f"Received: {name} images of shape {found}"
    )


# --- internals ---------------------------------------------------------------


def _resolve(name):
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in BACKBONES:
        return key
    close = difflib.get_close_matches(key, list(BACKBONES) + list(_ALIASES), n=3, cutoff=0.6)
    close = list(dict.fromkeys(_ALIASES.get(c, c) for c in close))
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown backbone name.{hint} Received: name={name!r}. Valid names: {sorted(BACKBONES)}, "
        f"or 'hub:<keras-hub preset>' (see list_backbones())."
    )


def _check_weights(weights):
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "`weights` must be 'imagenet', None, or the path of a local weights file. "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not path.endswith(".h5"):
        raise ValueError(
            "`weights` must be 'imagenet', None, or the path of a `.h5` / `.weights.h5` file. "
            f"Received: weights={path!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights` file not found. Received: weights={path!r}")
    return path


def _check_input_shape(input_shape, min_size, name):
    if input_shape is None:
        return None
    valid = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3 and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in input_shape[:2]
    )
    if not valid:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive integer (or None) sides. "
            f"Received: input_shape={input_shape!r}"
        )
    if input_shape[2] != 3:
        raise ValueError(
            f"`input_shape` must have 3 (RGB) channels, as the pretrained backbones do. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    if min_size is not None and any(d is not None and d < min_size for d in input_shape[:2]):
        raise ValueError(
            f"`input_shape` is too small for {name!r}, whose sides must be at least {min_size}. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return tuple(input_shape)


def _offline_weights_error(key, entry, error):
    match = re.match(r"URL fetch failure on (\S+):", str(error))
    file_name = match.group(1).rsplit("/", 1)[-1] if match else f"<{entry.constructor} no-top weights>.h5"
    problem = _network_problem(match.group(1)) if match else None
    reason = f"no network ({problem})" if problem else f"Keras said: {error}"
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")), "models")
    return OfflineError(
        f"Could not download the ImageNet weights of {key!r}: {reason}. Offline, pass a local copy of the "
        "no-top weights file, ", "weights", f"/path/to/{file_name}",
        f", or copy it to {os.path.join(cache, file_name)}, where Keras caches its downloads."
    )


def _network_problem(url, timeout=3.0):
    """None when `url`'s host (or the proxy set for it) accepts a connection within `timeout` seconds; else why not.

    One attempt, no retries: downloaders retry for minutes before they give
    up, so a missing network is found here first. The name lookup runs in a
    thread, because a resolver that gets no answer waits longer than any
    socket timeout.
    """
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts, what = urllib.parse.urlsplit(proxy), "the proxy "
    else:
        what = ""
    host, port = parts.hostname, parts.port or {"https": 443}.get(parts.scheme, 80)
    outcome = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(str(error))

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    error = outcome[0] if outcome else f"no answer within {timeout:g} s"
    return None if error is None else f"could not reach {what}{host}:{port} ({error})"


def _hub_backbone(name, weights, input_shape, pooling):
    import keras_hub

    preset = name[len(HUB_PREFIX):]
    if not preset:
        raise ValueError(f"`name` must be 'hub:<preset>' with a preset. Received: name={name!r}")
    sequence_length = _check_sequence_length(input_shape)
    input_shape = None if sequence_length is not None else _check_input_shape(input_shape, None, name)

    def load(**kwargs):
        kwargs["load_weights"] = weights is not None
        return _from_preset(keras_hub.models.Backbone, preset, kwargs, ("name", "hub:/path/to/preset"))

    if input_shape is None:
        backbone = load()
    else:
        try:
            backbone = load(image_shape=input_shape)
        except (TypeError, ValueError) as error:
            if "could not be loaded" in str(error):
                reason = str(error).split(". ", 1)[0]
                raise ValueError(
                    f"keras-hub preset {preset!r} cannot take input_shape={input_shape}: its weights do not fit that "
                    f"image size ({reason}). Pass input_shape=None for the preset's own size. "
                    f"Received: input_shape={input_shape}"
                ) from None
            # Text backbones and dual encoders (SigLIP, CLIP) take no image_shape: their checks below say what fits.
            if "image_shape" not in str(error):
                raise
            backbone = load()
    family = HUB_FAMILIES.get(type(backbone).__name__, _CONV_FAMILY)
    source = getattr(backbone, family.tower) if family.tower else backbone
    text = family.modality != "image"
    if text and input_shape is not None:
        raise ValueError(f"{type(backbone).__name__} from {preset!r} reads text: `input_shape` must be "
                         f"(sequence_length,). Received: input_shape={input_shape!r}")
    if not text and sequence_length is not None:
        raise ValueError(f"{type(backbone).__name__} from {preset!r} reads images: `input_shape` must be "
                         f"(height, width, 3). Received: input_shape={(sequence_length,)!r}")
    if input_shape is not None and tuple(source.inputs[0].shape[1:]) != input_shape:
        raise ValueError(
            f"{type(backbone).__name__} from {preset!r} takes the image size of its preset, "
            f"{tuple(source.inputs[0].shape[1:])}: pass that or input_shape=None. Received: input_shape={input_shape}"
        )
    if text:
        preprocess, input_size = _hub_text_preprocessing(keras_hub, preset, family, source, sequence_length)
    else:
        preprocess, input_size = _hub_image_preprocessing(keras_hub, preset, source, input_shape)
    model = _hub_features(source, family, _hub_pooling(pooling, family, source))
    # keras-hub's folder of the class (`keras_hub.src.models.deberta_v3.…`), the `path` list_backbones shows.
    family_name = "keras_hub." + type(backbone).__module__.split(".")[-2]
    return Backbone(name, model, preprocess, input_size, find_spec(model), family_name,
                    None if weights is None else preset)


def _check_sequence_length(input_shape):
    """The sequence length where `input_shape` is a text's `(sequence_length,)`; else None."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 1:
        return None
    (length,) = input_shape
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"`input_shape` of a text backbone must be (sequence_length,) with a positive integer. "
                         f"Received: input_shape={input_shape!r}")
    return length


def _hub_pooling(pooling, family, source):
    choices = family.poolings
    if family.modality == "image" and _prefix_tokens(source, family) == 0:  # a ViT without its class token
        choices = tuple(c for c in choices if c != "cls")
    if pooling == "auto":
        return choices[0]
    if pooling not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`pooling` must be one of 'auto' (= {choices[0]!r}), {listed} for keras-hub "
                         f"{type(source).__name__}. Received: pooling={pooling!r}")
    return pooling


def _prefix_tokens(source, family):
    return sum(int(getattr(source, term)) if isinstance(term, str) else term for term in family.prefix_tokens)


def _hub_features(source, family, pooling):
    """`source` (a keras-hub backbone) as a model from one image tensor (or its text inputs) to its pooled features."""
    inputs = source.input if family.modality != "image" else source.inputs[0]
    output = source.output
    if family.features == "sequence_output":
        features = output["sequence_output"]
    elif family.features == "last_stage":
        features = output[source.stage_names[-1]]
    elif family.features == "post_layer_norm":
        features = source.post_layer_norm.output
    else:
        features = output
    if pooling is None:
        pooled = features
    elif pooling in ("avg", "max"):
        rank = len(getattr(features, "shape", ()))
        if rank not in (3, 4):
            raise ValueError(
                f"`pooling` needs a backbone with one feature-map (or token) output; {type(source).__name__} "
                f"has output={output!r}. Use pooling=None. Received: pooling={pooling!r}"
            )
        layer = {
            ("avg", 4): keras.layers.GlobalAveragePooling2D, ("max", 4): keras.layers.GlobalMaxPooling2D,
            ("avg", 3): keras.layers.GlobalAveragePooling1D, ("max", 3): keras.layers.GlobalMaxPooling1D,
        }[pooling, rank]
        pooled = layer(name=f"{pooling}_pool")(features)
    elif pooling == "pooled" and family.pooled == "first_token":
        pooled = TokenPooling("first", name="pooled")(features)
    elif pooling == "pooled":
        pooled = output if family.pooled == "output" else output[family.pooled]
    elif pooling == "cls":
        pooled = TokenPooling("first", name="cls_pool")(features)
    elif family.modality == "image":
        pooled = TokenPooling("mean", skip=_prefix_tokens(source, family), name="mean_pool")(features)
    else:
        pooled = TokenPooling(pooling, name=f"{pooling}_pool")(features, inputs["padding_mask"])
    if pooled is output and inputs is source.input:
        return source
    # Named after the keras-hub class, so find_spec's class-name rule still finds the family's blocks.
    return keras.Model(inputs, pooled, name=type(source).__name__)


def _hub_image_preprocessing(keras_hub, preset, source, input_shape):
    """The preset's ImageConverter, resizing to the model's input, and the image side the preset was trained on."""
    converter = _hub_converter(keras_hub, preset)
    if converter is None:
        image_shape = getattr(source, "image_shape", None)
        return Preprocessing("none"), image_shape[0] if image_shape else None
    input_size = converter.image_size[0] if converter.image_size else None
    if input_shape is not None and None not in input_shape[:2]:
        converter.image_size = input_shape[:2]
    return HubPreprocessing(converter, "image"), input_size


def _hub_text_preprocessing(keras_hub, preset, family, source, sequence_length):
    """The preset's text preprocessor (raw strings -> the model's inputs) and its sequence length."""
    decoder = family.modality == "decoder"
    kind = keras_hub.models.CausalLMPreprocessor if decoder else keras_hub.models.TextClassifierPreprocessor
    try:
        preprocessor = kind.from_preset(preset)
    except (ValueError, FileNotFoundError):
        preprocessor = None
    if preprocessor is None and not decoder:
        # ELECTRA has no task preprocessor in keras-hub: the generic one packs its tokenizer's [CLS] / [SEP].
        try:
            preprocessor = keras_hub.models.TextClassifierPreprocessor(
                tokenizer=keras_hub.tokenizers.Tokenizer.from_preset(preset))
        except (ValueError, FileNotFoundError):
            preprocessor = None
    if preprocessor is None:
        return None, None
    input_size = preprocessor.sequence_length
    if sequence_length is not None:
        preprocessor.sequence_length = sequence_length
    return HubPreprocessing(preprocessor, family.modality, tuple(sorted(source.input))), input_size


def _hub_converter(keras_hub, preset):
    try:
        return keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError):
        return None


_PRESET_HOSTS = {"hf": "https://huggingface.co", "kaggle": "https://www.kaggle.com"}


def _from_preset(cls, preset, kwargs, local_option):
    """`cls.from_preset(preset, **kwargs)`; offline, the error names `local_option`, an (argument, example value)."""
    local = os.path.isdir(preset)
    if not local and (os.sep in preset or preset.startswith(".")) and "://" not in preset:
        raise FileNotFoundError(f"No keras-hub preset directory at {preset!r}. Received: preset={preset!r}")
    try:
        return cls.from_preset(preset, **kwargs)
    except ValueError as e:
        scheme = preset.split("://", 1)[0] if "://" in preset else None
        if "Unknown preset identifier" not in str(e):
            # Offline, keras-hub says a Hugging Face preset "has no config.json", after half a minute of retries.
            problem = _network_problem(_PRESET_HOSTS[scheme]) if scheme in _PRESET_HOSTS else None
            if problem is None:
                raise
            raise _preset_offline(preset, f"(no network: {problem})", local_option) from None
        close = difflib.get_close_matches(preset, list(cls.presets), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown keras-hub preset for {cls.__name__}.{hint} Received: preset={preset!r}. A preset is a "
            f"keras-hub preset name (print({cls.__name__}.presets.keys())), a 'kaggle://' or 'hf://' handle, "
            "or a local preset directory."
        ) from None
    except OSError as e:
        if local or isinstance(e, FileNotFoundError):
            raise
        raise _preset_offline(preset, f"(no network?): {e}", local_option) from None


def _preset_offline(preset, reason, local_option):
    """The `OfflineError` of a preset that could not be downloaded: why, and how to pass a local copy."""
    return OfflineError(
        f"Could not download keras-hub preset {preset!r} {reason}. Offline, save the preset once where there "
        "is a network (`task.save_to_preset('/path/to/preset')`) and pass that directory: ", *local_option, "."
    )


def _hub_task_class(task, keras_hub):
    tasks = {
        n: c for n, c in vars(keras_hub.models).items()
        if isinstance(c, type) and issubclass(c, keras_hub.models.Task) and c is not keras_hub.models.Task
    }
    if isinstance(task, type) and issubclass(task, keras_hub.models.Task):
        return task
    if isinstance(task, str) and task in tasks:
        return tasks[task]
    close = difflib.get_close_matches(str(task), list(tasks), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"`task` must be a keras_hub.models task class or its name.{hint} Received: task={task!r}. "
        f"Valid tasks: {sorted(tasks)}"
    )


def _hub_presets():
    try:
        import keras_hub
    except ImportError:
        return {}
    return keras_hub.models.ImageClassifier.presets


def _image_input_shape(model):
    """The model's input shape where it has one input of images (rank 4); else None."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4:
        return None
    return tuple(inputs[0].shape)


def _image_data_shape(dataset):
    """The shape of a batch of images (None sides where they vary), where it is known without reading the data."""
    spec = getattr(dataset, "element_spec", None)
    if spec is not None:
        images = spec[0] if isinstance(spec, (tuple, list)) else spec
    elif _inputs.is_array_pair(dataset):
        images = dataset[0]
    else:
        images = dataset
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def _input_shape(model):
    """The input shape without the batch side; a dict of them for a model with named inputs (text)."""
    if isinstance(model.input, dict):
        return {key: tuple(tensor.shape[1:]) for key, tensor in model.input.items()}
    return tuple(model.input.shape[1:])


def _last_dim(x):
    try:
        last = x.shape[-1]
    except (AttributeError, IndexError, ValueError):
        return None
    return None if last is None else int(last)


def _plain(value):
    if value is None:
        return None
    value = np.asarray(value, dtype="float64")
    return float(value) if value.ndim == 0 else tuple(value.reshape(-1).tolist())


def _as_float(images):
    if isinstance(images, (list, tuple, np.ndarray, np.generic, int, float)):
        array = np.asarray(images)
        return array if np.issubdtype(array.dtype, np.floating) else array.astype("float32")
    dtype = keras.backend.standardize_dtype(images.dtype)
    if "float" not in dtype:
        raise TypeError(
            "`images` must be floats in 0..255 (cast them first, e.g. tf.cast(images, 'float32')). "
            f"Received: images.dtype={dtype}"
        )
    return images


def _constant(values, like):
    dtype = keras.backend.standardize_dtype(like.dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return np.asarray(values, dtype=ml_dtypes.bfloat16)
    return np.asarray(values, dtype=dtype)
