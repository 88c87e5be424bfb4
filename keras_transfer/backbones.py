"""The backbone registry: name -> model, preprocessing, input size, block spec.

`get_backbone("efficientnet_b0")` returns a `Backbone`: the pretrained model
without its classification top, the preprocessing its weights expect, the
family's default input size and the block spec that splits it into blocks.
Names cover the keras.applications families (a table, `BACKBONES`) and any
keras-hub image preset (`"hub:resnet_50_imagenet"`, or `"hub:/local/dir"`).

Preprocessing is plain arithmetic on channels-last RGB images in 0..255, so
one function serves numpy arrays, backend tensors and `tf.data.map` alike.
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

from keras_transfer import _inputs
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


@dataclasses.dataclass(frozen=True, repr=False)
class Backbone:
    """A pretrained backbone (no classification top) with what it needs to be used.

    Attributes:
        name: the registry name (`"efficientnet_b0"`, `"hub:resnet_50_imagenet"`).
        model: the `keras.Model`, built without its top.
        preprocess: a `Preprocessing`: float RGB images in 0..255 -> model input.
        input_size: the side of the images the pretrained weights were trained
            on (None where a keras-hub preset does not say).
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
            f"Backbone({self.name!r}, family={self.family!r}, input_shape={tuple(self.model.input.shape[1:])}, "
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


def get_backbone(name, weights="imagenet", input_shape=None, pooling="avg"):
    """Builds a pretrained backbone without its top, with its preprocessing.

    Args:
        name: a registry name (see `list_backbones()`; Keras' spelling such as
            `"EfficientNetB0"` works too), or `"hub:<preset>"` for a keras-hub
            image preset name or a local preset directory.
        weights: `"imagenet"` (downloaded once, cached in `~/.keras/models`;
            offline, an `OfflineError` names the file to pass instead),
            None (random initialisation), or the path of a local weights file
            (`.h5` / `.weights.h5`) of the same architecture without its top.
            For a keras-hub preset, `"imagenet"` means the preset's weights.
        input_shape: `(height, width, 3)`; sides may be None for any size.
            Defaults to the family's `input_size` square.
        pooling: `"avg"` or `"max"` for a pooled feature vector, None for the
            feature map.

    Returns:
        A `Backbone`.

    Example:

    >>> import keras_transfer as kt
    >>> backbone = kt.get_backbone("mobilenet_v2", weights=None, input_shape=(96, 96, 3))
    >>> backbone.model.output.shape, backbone.input_size, backbone.spec.family
    ((None, 1280), 224, 'mobilenet_v2')
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"`name` must be a backbone name (see list_backbones()). Received: name={name!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {list(POOLINGS)}. Received: pooling={pooling!r}")
    weights = _check_weights(weights)
    if name.startswith(HUB_PREFIX):
        if weights not in ("imagenet", None):
            raise ValueError(
                "A keras-hub preset brings its own weights: use weights='imagenet' (the preset's) or None, and "
                f"pass a local preset directory as name='hub:/path/to/preset'. Received: weights={weights!r}"
            )
        return _hub_backbone(name, weights, _check_input_shape(input_shape, None, name), pooling)
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
    kwargs = {"load_weights": weights is not None}
    if input_shape is not None:
        kwargs["image_shape"] = input_shape
    backbone = _from_preset(keras_hub.models.Backbone, preset, kwargs, ("name", "hub:/path/to/preset"))
    converter = _hub_converter(keras_hub, preset)
    if converter is None:
        preprocess, input_size = Preprocessing("none"), None
    else:
        preprocess = Preprocessing("scale_offset", _plain(converter.scale), _plain(converter.offset))
        input_size = converter.image_size[0] if converter.image_size else None
    model = backbone if pooling is None else _pooled(backbone, pooling)
    family = f"keras_hub.{type(backbone).__name__.removesuffix('Backbone').lower()}"
    return Backbone(name, model, preprocess, input_size, find_spec(model), family,
                    None if weights is None else preset)


def _pooled(backbone, pooling):
    output = backbone.output
    rank = len(getattr(output, "shape", ()))
    if rank not in (3, 4):
        raise ValueError(
            f"`pooling` needs a backbone with one feature-map (or token) output; {type(backbone).__name__} "
            f"has output={output!r}. Use pooling=None. Received: pooling={pooling!r}"
        )
    layer = {
        ("avg", 4): keras.layers.GlobalAveragePooling2D, ("max", 4): keras.layers.GlobalMaxPooling2D,
        ("avg", 3): keras.layers.GlobalAveragePooling1D, ("max", 3): keras.layers.GlobalMaxPooling1D,
    }[pooling, rank]
    pooled = layer(name=f"{pooling}_pool")(output)
    # Named after the keras-hub class, so find_spec's class-name rule still finds the family's blocks.
    return keras.Model(backbone.input, pooled, name=type(backbone).__name__)


def _hub_converter(keras_hub, preset):
    try:
        return keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError):
        return None


def _from_preset(cls, preset, kwargs, local_option):
    """`cls.from_preset(preset, **kwargs)`; offline, the error names `local_option`, an (argument, example value)."""
    local = os.path.isdir(preset)
    if not local and (os.sep in preset or preset.startswith(".")) and "://" not in preset:
        raise FileNotFoundError(f"No keras-hub preset directory at {preset!r}. Received: preset={preset!r}")
    try:
        return cls.from_preset(preset, **kwargs)
    except ValueError as e:
        if "Unknown preset identifier" not in str(e):
            raise
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
        raise OfflineError(
            f"Could not download keras-hub preset {preset!r} (no network?): {e}. Offline, save the preset "
            "once where there is a network (`task.save_to_preset('/path/to/preset')`) and pass that directory: ",
            *local_option, "."
        ) from None


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
