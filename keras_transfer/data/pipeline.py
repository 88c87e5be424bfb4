"""The pipeline every loader ends with: decode, cache, shuffle, batch, augment, preprocess, prefetch.

Per image it runs

    read -> decode -> resize -> [cache] -> shuffle -> batch -> augment -> preprocess -> prefetch

and the dataset it returns carries a `Pipeline`: the same images without
shuffling and augmentation, and the shuffle's seeds, so `cache_features` can
compute features once and still replay every epoch's order.
"""

import dataclasses
import os

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks
from keras_transfer.data._tensorflow import tf
from keras_transfer.data.augment import MIXING, augmentation
from keras_transfer.data.checks import DecodeFailures
from keras_transfer.distribute import accelerator_kind


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """How a loader built its dataset: what `cache_features` needs to cache it exactly.

    Every loader's dataset carries one as `dataset.pipeline`. A tf.data
    transformation (`map`, `filter`, `take`, ...) returns a new dataset
    without it, and `cache_features` cannot see through that dataset to the
    images before shuffling and augmentation (see `cache_features` for what
    it does then). To transform a loader's images and keep exact caching,
    pass the transformation as the loader's `preprocess`.

    Attributes:
        unshuffled: the same images and labels, preprocessed and batched
            alike, in a fixed order (the loader's file order) and without
            augmentation.
        batch_size: examples per batch.
        drop_remainder: whether the last partial batch is dropped.
        shuffle_buffer: size of the shuffle buffer; None when the dataset
            does not shuffle.
        shuffle_seeds: the `(seed, seed2)` pair of the shuffle, resolved
            once, so a twin shuffle yields the same order in every epoch;
            None when the dataset does not shuffle.

    Example:

    >>> import numpy as np
    >>> from keras_transfer import data
    >>> ds = data.from_arrays(np.zeros((10, 2, 2, 3), "uint8"), np.arange(10) % 2, batch_size=4,
    ...                       shuffle=True, seed=0, augment="mixup")
    >>> ds.pipeline.batch_size, ds.pipeline.shuffle_buffer, ds.pipeline.unshuffled.element_spec[1].shape.as_list()
    (4, 10, [None])
    >>> hasattr(ds.map(lambda x, y: (x, y)), "pipeline")
    False
    """

    unshuffled: tf.data.Dataset
    batch_size: int
    drop_remainder: bool
    shuffle_buffer: int = None
    shuffle_seeds: tuple = None


def _finish(elements, count, *, batch_size, shuffle, seed, buffer, cache, preprocess, augment, drop_remainder,
            class_names, report, decode=None, where="the dataset"):
    """Decode, cache, shuffle, batch, augment, preprocess and prefetch `elements`.

    Returns the dataset, with `class_names`, `report`, `skipped`,
    `decode_failures` and `pipeline` attached.
    """
    batch_size = _checks.positive_int("batch_size", batch_size)
    if preprocess is not None and not callable(preprocess):
        raise ValueError(f"`preprocess` must be a function or None. Received: preprocess={preprocess!r}")
    if shuffle and seed is None:
        seed = int(np.random.randint(1_000_000))
    layers = [] if augment is None else augmentation(augment, seed=seed)
    devices = _jax_devices()
    if devices > 1 and batch_size % devices:
        raise ValueError(
            f"`batch_size` must be a multiple of the {devices} devices of the JAX distribution in effect, which "
            f"splits every batch evenly over them (kt.scale_batch_size gives one). Received: batch_size={batch_size}"
        )
    if drop_remainder is None:
        # A TPU compiles for static shapes; a JAX distribution cannot split a last batch its devices do not divide.
        drop_remainder = accelerator_kind() == "tpu" or devices > 1
    seeds = tf.compat.v1.random.get_seed(seed) if shuffle else None

    def batch_map(augmented):
        mixing = augmented and any(isinstance(layer, MIXING) for layer in layers)

        def apply(images, labels):
            images = tf.cast(images, tf.float32)
            if mixing:
                labels = tf.one_hot(labels, len(class_names), dtype=tf.float32)
            for layer in layers if augmented else ():
                if isinstance(layer, MIXING):
                    mixed = layer({"images": images, "labels": labels}, training=True)
                    images, labels = mixed["images"], mixed["labels"]
                else:
                    images = layer(images, training=True) if isinstance(layer, keras.layers.Layer) else layer(images)
            if preprocess is not None:
                images = preprocess(images)
            return images, labels

        return apply

    failures = DecodeFailures(where)

    def build(shuffled, augmented):
        ds = elements
        if shuffled and not cache:
            ds = _shuffle(ds, buffer, seeds)
        if decode is not None:
            # A cache holds uint8 pixels, a quarter of the memory of float32.
            step = decode if not cache else lambda *e: _to_uint8(*decode(*e))
            # Each element keeps its position in the pass, so a file dropped by
            # `ignore_errors` leaves a gap that `failures.watch` counts.
            ds = ds.enumerate().map(lambda position, e: (position, *step(*e)), num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.ignore_errors()
            # `ignore_errors` hides the length from Keras (no progress-bar total, a
            # "ran out of data" warning every epoch). Every file passed the
            # up-front check, so the length is `count`; should one still fail to
            # decode, the epoch takes its place from the next pass instead of
            # ending short (`repeat` of a pass that yields nothing ends at once).
            if count > 0:
                ds = ds.repeat().take(count)
            # Without a cache, gaps are counted per batch, a scan step per batch
            # rather than per image; a cache is filled once, image by image.
            ds = failures.watch(ds, count) if cache else ds.batch(batch_size, drop_remainder=drop_remainder)
        if cache:
            ds = ds.cache("" if cache is True else os.fspath(cache))
            if shuffled:
                ds = _shuffle(ds, buffer, seeds)
        if decode is None or cache:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        else:
            ds = failures.watch(ds, count)
        changes = (augmented and layers) or preprocess or ds.element_spec[0].dtype != tf.float32
        if ds.element_spec[0].dtype != tf.string and changes:
            ds = ds.map(batch_map(augmented), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    ds = build(shuffle, augmented=True)
    unshuffled = build(False, augmented=False) if shuffle or layers else ds
    ds.pipeline = Pipeline(unshuffled, batch_size, drop_remainder, buffer if shuffle else None, seeds)
    ds.class_names = class_names
    ds.report = report
    ds.skipped = len(report)
    ds.decode_failures = failures
    return ds


def _shuffle(ds, buffer, seeds):
    """`ds.shuffle(buffer, reshuffle_each_iteration=True)` with an explicit pair of seeds.

    `Dataset.shuffle(seed=s)` mixes the global seed of the moment into `s`;
    holding the resolved pair lets `cache_features` build a twin that yields
    exactly the orders of a fresh copy of the input, whatever the global seed
    is by then.
    """
    flat = tf.nest.flatten(ds.element_spec)
    variant = tf.raw_ops.ShuffleDatasetV3(
        input_dataset=tf.data.experimental.to_variant(ds),
        buffer_size=tf.constant(buffer, tf.int64),
        seed=tf.constant(seeds[0], tf.int64),
        seed2=tf.constant(seeds[1], tf.int64),
        seed_generator=tf.raw_ops.DummySeedGenerator(),
        output_types=[spec.dtype for spec in flat],
        output_shapes=[spec.shape for spec in flat],
        reshuffle_each_iteration=True,
    )
    return tf.data.experimental.from_variant(variant, ds.element_spec)


def _jax_devices():
    """How many devices a JAX distribution in effect splits each batch over; 1 on other backends."""
    if keras.backend.backend() != "jax":
        return 1
    from keras_transfer.distribute import _current_replicas

    return _current_replicas()


def _to_uint8(image, label):
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label


def _empty_report():
    return pd.DataFrame({"path": pd.Series(dtype=str), "problem": pd.Series(dtype=str),
                         "label": pd.Series(dtype="int64")})
