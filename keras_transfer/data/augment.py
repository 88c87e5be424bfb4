"""Augmentation: the named `augment` options and `RandomAffine`, which they use.

`augmentation` turns a loader's `augment` option into Keras preprocessing
layers. They run on batches of 0..255 RGB pixels, before the backbone's
preprocessing, because Keras' augmentation layers (contrast, RandAugment)
assume that value range whatever the backbone expects afterwards.

Keras' `RandomFlip`, `RandomRotation`, `RandomZoom` and `RandomTranslation`
each resample the whole batch; chained, they cost four passes over every
pixel (and blur the image once per interpolating pass). The four are affine
maps, so their product is one affine map: `RandomAffine` draws the same random
parameters, multiplies them into one matrix per image and resamples once,
through the same `affine_transform` op Keras uses. On the tf.data pipeline of
`keras_transfer.data` that makes the default augmentation several times
faster (see `benchmarks/perf_data.py`).

Only Keras is needed here, not TensorFlow: `RandomAffine` is part of saved
models, which must load on any backend.
"""

import math

import keras

from keras_transfer._keras_compat import BaseImagePreprocessingLayer

AUGMENTATIONS = ("default", "randaugment", "mixup", "cutmix")
# Layers that blend pairs of images and their labels, so they take and return {"images", "labels"}.
MIXING = (keras.layers.MixUp, keras.layers.CutMix)
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")


def augmentation(augment, seed=None):
    """The Keras preprocessing layers an `augment` option stands for.

    Args:
        augment: a name, or a list of names and Keras layers / callables
            applied in order. Names:
            - `"default"`: `RandomAffine` (horizontal flip, rotation 0.1,
              zoom 0.1, resampled once) and contrast 0.1;
            - `"randaugment"`: horizontal flip + `keras.layers.RandAugment`;
            - `"mixup"`: `keras.layers.MixUp(alpha=0.2)`;
            - `"cutmix"`: `keras.layers.CutMix()`.
            MixUp and CutMix blend pairs of images and their labels, so a
            dataset that uses them yields class probabilities, shape
            `(batch, num_classes)`, instead of integer labels.
        seed: seed of the layers' random draws.

    Returns:
        A list of callables, each taking a batch of 0..255 float images
        (MixUp and CutMix, the `MIXING` layers, take `{"images", "labels"}`
        dicts).

    Example:

    >>> from keras_transfer import data
    >>> [type(layer).__name__ for layer in data.augmentation(["default", "mixup"], seed=0)]
    ['RandomAffine', 'RandomContrast', 'MixUp']
    """
    items = [augment] if isinstance(augment, str) or callable(augment) else augment
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"`augment` must be None, one of {list(AUGMENTATIONS)} or a list of names and Keras "
                         f"layers. Received: augment={augment!r}")
    layers = []
    for item in items:
        if isinstance(item, str):
            if item not in AUGMENTATIONS:
                raise ValueError(f"Unknown `augment`. Received: augment={item!r}. "
                                 f"Valid names: {list(AUGMENTATIONS)}, or a list of Keras layers.")
            layers += _NAMED[item](seed)
        elif callable(item):
            layers.append(item)
        else:
            raise ValueError(f"`augment` must list names and Keras layers. Received the item {item!r} "
                             f"in augment={augment!r}")
    return layers


_NAMED = {
    "default": lambda seed: [RandomAffine(flip="horizontal", rotation=0.1, zoom=0.1, seed=seed),
                             keras.layers.RandomContrast(0.1, seed=seed)],
    "randaugment": lambda seed: [keras.layers.RandomFlip("horizontal", seed=seed),
                                 keras.layers.RandAugment(value_range=(0, 255), seed=seed)],
    "mixup": lambda seed: [keras.layers.MixUp(alpha=0.2, seed=seed)],
    "cutmix": lambda seed: [keras.layers.CutMix(seed=seed)],
}


@keras.saving.register_keras_serializable(package="keras_transfer")
class RandomAffine(BaseImagePreprocessingLayer):
    """Randomly flips, rotates, zooms and shifts images, resampling them once.

    Each argument means what it means in the Keras layer of the same job, so
    `RandomAffine(flip="horizontal", rotation=0.1, zoom=0.1)` draws from the
    same distributions as `RandomFlip("horizontal")`, `RandomRotation(0.1)`
    and `RandomZoom(0.1)` in a row, at a fraction of their cost. Like them it
    is safe inside a `tf.data` pipeline on any backend, acts only in
    training, and passes labels through unchanged.

    Args:
        flip: None, `"horizontal"`, `"vertical"` or
            `"horizontal_and_vertical"`: each direction is mirrored with
            probability 1/2.
        rotation: a fraction of a full turn, or a `(lower, upper)` pair; 0.1
            draws angles in [-36°, 36°] (positive is counter-clockwise).
        zoom: a fraction, or a `(lower, upper)` pair in (-1, 1): a positive
            value zooms out (shows more), a negative one zooms in, as in
            `RandomZoom`; height and width zoom together.
        translation: a fraction of the image size, or a `(lower, upper)` pair,
            drawn separately for the height and the width.
        fill_mode: how points outside the input are filled: `"reflect"`,
            `"wrap"`, `"constant"` or `"nearest"`.
        interpolation: `"bilinear"` or `"nearest"` (faster, blockier).
        fill_value: the value used with `fill_mode="constant"`.
        seed: seed of the random draws.
        data_format: `"channels_last"` or `"channels_first"`.

    Example:

    >>> import numpy as np
    >>> from keras_transfer import RandomAffine
    >>> image = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> turn = RandomAffine(rotation=(0.25, 0.25), interpolation="nearest")
    >>> turn(image, training=True)[0, ..., 0].numpy().tolist()
    [[2.0, 5.0, 8.0], [1.0, 4.0, 7.0], [0.0, 3.0, 6.0]]
    """

    _USE_BASE_FACTOR = False

    def __init__(self, flip=None, rotation=0.0, zoom=0.0, translation=0.0, fill_mode="reflect",
                 interpolation="bilinear", fill_value=0.0, seed=None, data_format=None, **kwargs):
        if flip is not None and flip not in FLIP_MODES:
            raise ValueError(f"`flip` must be None or one of {list(FLIP_MODES)}. Received: flip={flip!r}")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"`fill_mode` must be one of {list(FILL_MODES)}. Received: fill_mode={fill_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"`interpolation` must be one of {list(INTERPOLATIONS)}. "
                             f"Received: interpolation={interpolation!r}")
        super().__init__(data_format=data_format, **kwargs)
        self.flip = flip
        self.rotation = _range("rotation", rotation, bound=1.0)
        self.zoom = _range("zoom", zoom, bound=1.0, open_bound=True)
        self.translation = _range("translation", translation, bound=1.0)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_jit = False

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        ops = self.backend
        images = data["images"] if isinstance(data, dict) else data
        shape = ops.core.shape(images)
        batch = shape[0] if len(shape) == 4 else 1
        height, width = (shape[-3], shape[-2]) if self.data_format == "channels_last" else (shape[-2], shape[-1])
        seed = self._get_seed_generator(ops._backend) if seed is None else seed

        def uniform(bounds):
            return ops.random.uniform((batch,), minval=bounds[0], maxval=bounds[1], seed=seed)

        def mirror(applies):
            if not applies:
                return ops.numpy.ones((batch,))
            return ops.numpy.where(uniform((0.0, 1.0)) < 0.5, -1.0, 1.0)

        flip_x = mirror(self.flip in ("horizontal", "horizontal_and_vertical"))
        flip_y = mirror(self.flip in ("vertical", "horizontal_and_vertical"))
        angle = uniform(self.rotation) * (2.0 * math.pi)
        scale = 1.0 + uniform(self.zoom)
        height, width = ops.cast(height, "float32"), ops.cast(width, "float32")
        shift_y = uniform(self.translation) * height
        shift_x = uniform(self.translation) * width
        # Output pixel p reads input pixel c + R(angle) @ diag(scale * flip) @ (p - c) + shift,
        # c the image centre: the product of Keras' flip, rotation, zoom and translation maps.
        cos, sin = ops.numpy.cos(angle), ops.numpy.sin(angle)
        a0, a1 = cos * scale * flip_x, -sin * scale * flip_y
        b0, b1 = sin * scale * flip_x, cos * scale * flip_y
        cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a2 = cx - a0 * cx - a1 * cy - shift_x
        b2 = cy - b0 * cx - b1 * cy - shift_y
        zeros = ops.numpy.zeros((batch,))
        matrix = ops.numpy.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return {"matrix": matrix if len(shape) == 4 else matrix[0]}

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        return self._resample(images, transformation, self.interpolation)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        if not training or transformation is None:
            return segmentation_masks
        return self._resample(segmentation_masks, transformation, "nearest")

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        raise NotImplementedError("RandomAffine does not transform bounding boxes; use Keras' RandomFlip, "
                                  "RandomRotation and RandomZoom with a `bounding_box_format` for detection data.")

    def _resample(self, images, transformation, interpolation):
        return self.backend.image.affine_transform(
            images=images,
            transform=transformation["matrix"],
            interpolation=interpolation,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "flip": self.flip,
            "rotation": self.rotation,
            "zoom": self.zoom,
            "translation": self.translation,
            "fill_mode": self.fill_mode,
            "interpolation": self.interpolation,
            "fill_value": self.fill_value,
            "seed": self.seed,
            "data_format": self.data_format,
        }


def _range(name, value, bound, open_bound=False):
    """A number `f` -> `(-f, f)`; a pair -> itself; both within the bound."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        lower, upper = float(value[0]), float(value[1])
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        lower, upper = -float(value), float(value)
    else:
        raise ValueError(f"`{name}` must be a non-negative number or a (lower, upper) pair. "
                         f"Received: {name}={value!r}")
    inside = (lambda v: -bound < v < bound) if open_bound else (lambda v: -bound <= v <= bound)
    if lower > upper or not (inside(lower) and inside(upper)):
        raise ValueError(f"`{name}` must lie in {'(' if open_bound else '['}-{bound}, {bound}"
                         f"{')' if open_bound else ']'} with lower <= upper. Received: {name}={value!r}")
    return lower, upper
