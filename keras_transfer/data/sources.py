"""tf.data input pipelines, augmentation and feature caching.

Every loader returns a `tf.data.Dataset` of `(image, label)` batches, like
`keras.utils.image_dataset_from_directory`, with the same `class_names`
attribute plus `skipped` (how many files could not be used) and `report` (a
`pandas.DataFrame` naming each of them and why). Per image the pipeline runs

    read -> decode (at reduced scale for large JPEGs) -> resize -> [cache]
         -> shuffle -> batch -> augment -> preprocess -> prefetch

Files are checked up front with a cheap pass over their first and last bytes
(or, with `check="decode"`, by decoding them), so empty, truncated and
non-image files are counted and left out before training starts, and every
epoch holds exactly the same images. Grayscale, CMYK and alpha-channel images
are converted to RGB. A file that passes the check but still fails to decode
is dropped by `ignore_errors`, counted in the dataset's `decode_failures` and
logged; its place in the epoch is taken by an image of the next pass, so
training never stops on one bad file and Keras always knows the number of
batches.

Augmentation runs on batches of 0..255 RGB pixels, before the backbone's
preprocessing, because Keras' augmentation layers (contrast, RandAugment)
assume that value range whatever the backbone expects afterwards.
"""

import concurrent.futures
import dataclasses
import io
import logging
import os
import pathlib

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_transfer.random_affine import RandomAffine

logger = logging.getLogger("keras_transfer")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
AUGMENTATIONS = ("default", "randaugment", "mixup", "cutmix")
CHECKS = ("header", "decode")
RATIOS = (1, 2, 4, 8)  # the scales libjpeg decodes at
# Decoded, resized images held in a shuffle buffer cost h * w * 3 bytes each.
_DECODED_SHUFFLE_BUFFER = 1024
_TFDS_SHUFFLE_BUFFER = 1024
_TAIL_BYTES = 1024
# Enough for the start-of-frame marker of all but JPEGs with large embedded thumbnails.
_HEAD_BYTES = 16384


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a loader built its dataset, so `cache_features` can reproduce its order.

    `canonical` is the same pipeline without shuffling; `buffer` and `seeds`
    are those of the shuffle (None when the dataset does not shuffle).
    """

    canonical: tf.data.Dataset
    batch_size: int
    drop_remainder: bool
    buffer: int = None
    seeds: tuple = None


# --- public loaders ------------------------------------------------------------


def from_arrays(images, labels, batch_size=32, shuffle=False, seed=None, *, preprocess=None, augment=None,
                class_names=None, drop_remainder=None):
    """Builds a batched dataset from in-memory images and integer labels.

    Args:
        images: array of shape `(n, height, width, channels)`, uint8 or float.
        labels: integer array of shape `(n,)`, values in `[0, num_classes)`.
        batch_size: examples per batch.
        shuffle: reshuffle the examples every epoch.
        seed: seed of the shuffling and augmentation.
        preprocess: optional function applied to float32 batches (the
            backbone's preprocessing).
        augment: None, a name (`"default"`, `"randaugment"`, `"mixup"`,
            `"cutmix"`) or a list of names and Keras preprocessing layers
            (see `augmentation`). With MixUp or CutMix the labels become
            class probabilities.
        class_names: names of the classes; `"0"`, `"1"`, ... by default.
        drop_remainder: drop the last partial batch; by default only when a
            TPU is in use, which needs static shapes.

    Returns:
        A `tf.data.Dataset` of `(float32 images, int32 labels)` batches with
        `class_names`, `skipped` (always 0) and `report` attributes.

    Example:

    >>> import numpy as np
    >>> from keras_transfer import data
    >>> ds = data.from_arrays(np.zeros((10, 8, 8, 3), "uint8"), np.arange(10) % 2, batch_size=4)
    >>> [int(x.shape[0]) for x, _ in ds], ds.class_names
    ([4, 4, 2], ['0', '1'])
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError("`images` must be a non-empty array of shape (n, height, width, channels). "
                         f"Received: images.shape={images.shape}")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be {images.shape[0]} integers, one per image. "
                         f"Received: labels.shape={labels.shape}, labels.dtype={labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"`labels` must be non-negative. Received: min(labels)={labels.min()}")
    class_names = _check_class_names(class_names, int(labels.max()) + 1)
    elements = tf.data.Dataset.from_tensor_slices((images.astype("float32"), labels.astype("int32")))
    return _finish(elements, len(labels), batch_size=batch_size, shuffle=shuffle, seed=seed, buffer=len(labels),
                   cache=None, preprocess=preprocess, augment=augment, drop_remainder=drop_remainder,
                   class_names=class_names, report=_empty_report())


def from_directory(path, image_size=(224, 224), batch_size=32, validation_split=None, preprocess=None,
                   augment=None, shuffle=False, seed=None, cache=None, *, crop_to_aspect_ratio=False,
                   pad_to_aspect_ratio=False, fast_decode=True, drop_remainder=None, check="header"):
    """Loads images from one folder per class, like `keras.utils.image_dataset_from_directory`.

    Args:
        path: a folder holding one subfolder per class (local or `gs://`).
            Classes are the subfolder names, sorted.
        image_size: `(height, width)` of the output images.
        batch_size: examples per batch.
        validation_split: if set, a fraction in (0, 1): the last fraction of
            each class, after a permutation fixed by `seed` (0 when None),
            becomes a validation set, and a `(train, val)` pair is returned.
            Only the training set shuffles and augments.
        preprocess: optional function applied to float32 0..255 batches (the
            backbone's preprocessing, e.g. `backbone.preprocess`).
        augment: None, a name (`"default"`, `"randaugment"`, `"mixup"`,
            `"cutmix"`) or a list of names and Keras preprocessing layers
            (see `augmentation`); runs on every batch of every epoch. With
            MixUp or CutMix the labels become class probabilities.
        shuffle: reshuffle the files every epoch.
        seed: seed of the split, the shuffling and the augmentation.
        cache: None (no cache), True (decoded, resized images in memory) or a
            file path (the same on disk): later epochs skip reading and
            decoding; shuffling and augmentation still run every epoch.
        crop_to_aspect_ratio: resize without distortion by cropping the
            centre to the target aspect ratio.
        pad_to_aspect_ratio: resize without distortion by padding with zeros.
        fast_decode: decode JPEGs much larger than `image_size` at 1/2, 1/4
            or 1/8 scale (never below `image_size`) before resizing.
        drop_remainder: drop the last partial batch; by default only on TPU.
        check: how files are checked before training: `"header"` reads
            their first and last bytes (empty, truncated and non-image files
            are skipped); `"decode"` also decodes each one, so files damaged
            in the middle are skipped and named too, at the cost of one more
            decoding pass. A file that still fails to decode during training
            is counted in `decode_failures` and logged, and its place in the
            epoch goes to an image of the next pass.

    Returns:
        A `tf.data.Dataset` of `(float32 images, int32 labels)` batches, or
        a `(train, val)` pair with `validation_split`; each has
        `class_names`, `skipped`, `report` and `decode_failures` attributes.

    Example:

    >>> import os, tempfile, numpy as np, tensorflow as tf
    >>> from keras_transfer import data
    >>> root = tempfile.mkdtemp()
    >>> for name in ("cat", "dog"):
    ...     os.makedirs(os.path.join(root, name))
    ...     png = tf.io.encode_png(np.zeros((20, 30, 3), "uint8")).numpy()
    ...     for i in range(3):
    ...         _ = open(os.path.join(root, name, f"{i}.png"), "wb").write(png)
    >>> _ = open(os.path.join(root, "dog", "broken.jpg"), "wb").write(b"not an image")
    >>> ds = data.from_directory(root, image_size=(16, 16), batch_size=4)
    >>> ds.class_names, ds.skipped, sum(int(y.shape[0]) for _, y in ds)
    (['cat', 'dog'], 1, 6)
    """
    path = _check_path(path)
    # GCS listings end folder names with "/".
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(path))
    class_names = sorted(name for name in names if tf.io.gfile.isdir(os.path.join(path, name)))
    if not class_names:
        raise ValueError(f"`path` must hold one subfolder per class; found none in path='{path}'.")
    paths, labels = [], []
    for index, name in enumerate(class_names):
        folder = os.path.join(path, name)
        files = sorted(os.path.join(folder, f) for f in tf.io.gfile.listdir(folder)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"The class folder '{folder}' holds no image files "
                             f"(looked for {', '.join(IMAGE_EXTENSIONS)}).")
        paths += files
        labels += [index] * len(files)
    return _from_files(paths, labels, class_names, str(path), image_size=image_size, batch_size=batch_size,
                       validation_split=validation_split, preprocess=preprocess, augment=augment,
                       shuffle=shuffle, seed=seed, cache=cache, crop_to_aspect_ratio=crop_to_aspect_ratio,
                       pad_to_aspect_ratio=pad_to_aspect_ratio, fast_decode=fast_decode,
                       drop_remainder=drop_remainder, check=check)


def from_dataframe(df, path_col, label_col, image_size=(224, 224), batch_size=32, validation_split=None,
                   preprocess=None, augment=None, shuffle=False, seed=None, cache=None, *, root=None,
                   class_names=None, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, fast_decode=True,
                   drop_remainder=None, check="header"):
    """Loads images listed in a pandas table of file paths and labels.

    Args:
        df: a `pandas.DataFrame`.
        path_col: the column of image paths (absolute, or relative to `root`).
        label_col: the column of labels: strings (classes are the sorted
            unique values, unless `class_names` is given) or integers in
            `[0, num_classes)`.
        root: optional folder the paths are relative to.
        class_names: optional list of class names; string labels must be
            among them, and their order gives the label indices.
        image_size, batch_size, validation_split, preprocess, augment,
        shuffle, seed, cache, crop_to_aspect_ratio, pad_to_aspect_ratio,
        fast_decode, drop_remainder, check: as in `from_directory`.

    Returns:
        A `tf.data.Dataset` of `(float32 images, int32 labels)` batches (or a
        `(train, val)` pair) with `class_names`, `skipped` and `report`.

    Example:

    >>> import os, tempfile, numpy as np, pandas as pd, tensorflow as tf
    >>> from keras_transfer import data
    >>> root = tempfile.mkdtemp()
    >>> png = tf.io.encode_png(np.zeros((20, 30, 3), "uint8")).numpy()
    >>> for i in range(4):
    ...     _ = open(os.path.join(root, f"{i}.png"), "wb").write(png)
    >>> df = pd.DataFrame({"file": [f"{i}.png" for i in range(4)], "kind": ["b", "a", "b", "a"]})
    >>> ds = data.from_dataframe(df, "file", "kind", root=root, image_size=(8, 8), batch_size=4)
    >>> ds.class_names, next(iter(ds))[1].numpy().tolist()
    (['a', 'b'], [1, 0, 1, 0])
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be a pandas DataFrame. Received: df={type(df).__name__}")
    for arg, col in (("path_col", path_col), ("label_col", label_col)):
        if col not in df.columns:
            raise ValueError(f"`{arg}` must name a column of `df`. Received: {arg}={col!r}; "
                             f"columns: {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("`df` has no rows.")
    if df[path_col].isna().any() or df[label_col].isna().any():
        rows = df.index[df[path_col].isna() | df[label_col].isna()].tolist()
        raise ValueError(f"`df` has missing paths or labels in rows {rows[:10]}.")
    values = df[label_col].to_numpy()
    if pd.api.types.is_integer_dtype(df[label_col]):
        if values.min() < 0:
            raise ValueError(f"Integer labels in `{label_col}` must be non-negative. Received: min={values.min()}")
        class_names = _check_class_names(class_names, int(values.max()) + 1)
        labels = values.astype(int).tolist()
    else:
        found = sorted({str(v) for v in values})
        class_names = found if class_names is None else [str(c) for c in class_names]
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise ValueError(f"Labels {unknown} in `{label_col}` are not among class_names={class_names}.")
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index[str(v)] for v in values]
    paths = [str(p) if root is None else os.path.join(str(root), str(p)) for p in df[path_col]]
    return _from_files(paths, labels, class_names, f"DataFrame column '{path_col}'", image_size=image_size,
                       batch_size=batch_size, validation_split=validation_split, preprocess=preprocess,
                       augment=augment, shuffle=shuffle, seed=seed, cache=cache,
                       crop_to_aspect_ratio=crop_to_aspect_ratio, pad_to_aspect_ratio=pad_to_aspect_ratio,
                       fast_decode=fast_decode, drop_remainder=drop_remainder, check=check)


def from_tfds(name, split, image_size=(224, 224), batch_size=32, preprocess=None, augment=None, shuffle=False,
              seed=None, data_dir=None, max_examples=None, cache=None, *, image_key=None, label_key=None,
              shuffle_buffer=_TFDS_SHUFFLE_BUFFER, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
              fast_decode=True, drop_remainder=None, download=True):
    """Loads an image-classification dataset from TensorFlow Datasets.

    Works for `stanford_dogs`, `oxford_iiit_pet`, `tf_flowers`,
    `cats_vs_dogs` and any other TFDS dataset with an `Image` and a
    `ClassLabel` feature. Images are read still encoded and decoded here, so
    large JPEGs decode at reduced scale.

    Args:
        name: the TFDS name, e.g. `"stanford_dogs"`.
        split: a TFDS split, e.g. `"train"` or `"train[:80%]"`.
        image_size, batch_size, preprocess, augment, shuffle, seed, cache,
        crop_to_aspect_ratio, pad_to_aspect_ratio, fast_decode,
        drop_remainder: as in `from_directory`.
        data_dir: where TFDS data lives or goes (may be a `gs://` path).
        max_examples: use only the first `max_examples` examples of the split.
        image_key, label_key: the features to use; found from the builder's
            features by default (`image` / `label` first, then the first
            `Image` / `ClassLabel` feature).
        shuffle_buffer: size of the buffer of encoded examples shuffled.
        download: download and prepare the data when it is not in `data_dir`.

    Returns:
        A `tf.data.Dataset` of `(float32 images, int32 labels)` batches with
        `class_names` (from the `ClassLabel` feature), `skipped` and `report`.

    Example:

    >>> import tensorflow_datasets as tfds
    >>> from keras_transfer import data
    >>> with tfds.testing.mock_data(num_examples=6):
    ...     ds = data.from_tfds("tf_flowers", "train", image_size=(32, 32), batch_size=4)
    >>> ds.class_names[:2], ds.element_spec[0].shape.as_list()
    (['dandelion', 'daisy'], [None, 32, 32, 3])
    """
    elements, count, buffer, class_names = _tfds_examples(
        name, split, "image", image_key, label_key, data_dir=data_dir, download=download,
        max_examples=max_examples, shuffle_buffer=shuffle_buffer)
    decode = _decoder(_check_image_size(image_size), crop_to_aspect_ratio, pad_to_aspect_ratio, fast_decode)
    return _finish(elements, count, batch_size=batch_size, shuffle=shuffle, seed=seed, buffer=buffer,
                   cache=cache, preprocess=preprocess, augment=augment, drop_remainder=drop_remainder,
                   class_names=class_names, report=_empty_report(), decode=decode, where=f"TFDS '{name}'")


def text_from_tfds(name, split, batch_size=32, shuffle=False, seed=None, data_dir=None, max_examples=None, *,
                   text_key=None, label_key=None, shuffle_buffer=10000, download=True):
    """Loads a text-classification dataset from TensorFlow Datasets (e.g. `imdb_reviews`).

    Args:
        name: the TFDS name.
        split: a TFDS split.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch.
        seed: seed of the shuffling.
        data_dir: where TFDS data lives or goes (may be a `gs://` path).
        max_examples: use only the first `max_examples` examples.
        text_key, label_key: the features to use; found from the builder's
            features by default (the first `Text` / `ClassLabel` feature).
        shuffle_buffer: size of the shuffle buffer.
        download: download and prepare the data when it is not in `data_dir`.

    Returns:
        A `tf.data.Dataset` of `(string texts, int32 labels)` batches with
        `class_names`, `skipped` and `report`.

    Example:

    >>> import tensorflow_datasets as tfds
    >>> from keras_transfer import data
    >>> with tfds.testing.mock_data(num_examples=5):
    ...     ds = data.text_from_tfds("imdb_reviews", "train", batch_size=2)
    >>> ds.class_names, [int(y.shape[0]) for _, y in ds]
    (['neg', 'pos'], [2, 2, 1])
    """
    elements, count, buffer, class_names = _tfds_examples(
        name, split, "text", text_key, label_key, data_dir=data_dir, download=download,
        max_examples=max_examples, shuffle_buffer=shuffle_buffer)
    return _finish(elements, count, batch_size=batch_size, shuffle=shuffle, seed=seed, buffer=buffer, cache=None,
                   preprocess=None, augment=None, drop_remainder=None, class_names=class_names,
                   report=_empty_report())


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
        (MixUp and CutMix take `{"images", "labels"}` dicts).

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
            layers += _NAMED_AUGMENTATIONS[item](seed)
        elif callable(item):
            layers.append(item)
        else:
            raise ValueError(f"`augment` must list names and Keras layers. Received the item {item!r} "
                             f"in augment={augment!r}")
    return layers


_NAMED_AUGMENTATIONS = {
    "default": lambda seed: [RandomAffine(flip="horizontal", rotation=0.1, zoom=0.1, seed=seed),
                             keras.layers.RandomContrast(0.1, seed=seed)],
    "randaugment": lambda seed: [keras.layers.RandomFlip("horizontal", seed=seed),
                                 keras.layers.RandAugment(value_range=(0, 255), seed=seed)],
    "mixup": lambda seed: [keras.layers.MixUp(alpha=0.2, seed=seed)],
    "cutmix": lambda seed: [keras.layers.CutMix(seed=seed)],
}
_MIXING = (keras.layers.MixUp, keras.layers.CutMix)


def cache_features(model, dataset, path=None, verbose=1):
    """Runs a frozen feature model once over a dataset and returns the features.

    Feature-extraction training then trains the head on `(features, label)`
    batches instead of running the backbone every epoch.

    Order and shuffling: for datasets built by this module, features are
    computed in the dataset's unshuffled order; when the dataset shuffles,
    the cached features are reshuffled every epoch with the same seeds, so
    epoch `k` of the cached dataset holds the same batches as epoch `k` of a
    freshly built input pipeline, and a head trained on them is the same as
    one trained through the frozen backbone. Any other dataset is cached in
    the order of one pass over it and replayed in that order. Augmentation
    in the input runs once, in that pass.

    Args:
        model: a `keras.Model` mapping the dataset's images to features
            (e.g. a frozen backbone with pooling).
        dataset: a `tf.data.Dataset` of `(images, labels)` batches.
        path: optional `.npz` file: features are saved there, and loaded
            from there (without running the model) when the file exists and
            was written by a model with the same name and parameter count.
        verbose: 1 shows a progress bar, 0 nothing.

    Returns:
        A `tf.data.Dataset` of `(features, labels)` batches, batched like
        `dataset`, with its `class_names`, `skipped` and `report`.

    Example:

    >>> import keras, numpy as np
    >>> from keras_transfer import data
    >>> model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D()])
    >>> ds = data.from_arrays(np.ones((5, 4, 4, 3)), np.arange(5) % 2, batch_size=2)
    >>> features = data.cache_features(model, ds, verbose=0)
    >>> [tuple(x.shape) for x, _ in features]
    [(2, 3), (2, 3), (1, 3)]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"`dataset` must be a tf.data.Dataset of (images, labels) batches. "
                        f"Received: dataset={type(dataset).__name__}")
    if not isinstance(dataset.element_spec, tuple) or len(dataset.element_spec) != 2:
        raise ValueError("`dataset` must yield (images, labels) pairs. "
                         f"Received: element_spec={dataset.element_spec}")
    if verbose not in (0, 1, True, False):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    plan = getattr(dataset, "_kt_plan", None)
    source = plan.canonical if plan is not None else dataset
    path = None if path is None else pathlib.Path(path).with_suffix(".npz")
    fingerprint = np.asarray([model.name, str(model.count_params())])
    loaded = _load_features(path, fingerprint) if path is not None else None
    if loaded is not None:
        features, labels, first_batch = loaded
    else:
        features, labels, first_batch = _extract(model, source, verbose)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, features=features, labels=labels, first_batch=first_batch, fingerprint=fingerprint)
            os.replace(tmp, path)
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    if plan is not None:
        if plan.seeds is not None:
            ds = _shuffle(ds, plan.buffer, plan.seeds)
        ds = ds.batch(plan.batch_size, drop_remainder=plan.drop_remainder)
    else:
        ds = ds.batch(int(first_batch))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    for attr in ("class_names", "skipped", "report"):
        if hasattr(dataset, attr):
            setattr(ds, attr, getattr(dataset, attr))
    return ds


# --- files -------------------------------------------------------------------------


def inspect_files(paths, decode=False):
    """Checks image files cheaply, from their first and last bytes, or by decoding them.

    Args:
        paths: file paths (local or `gs://`).
        decode: also decode every file that passes the byte check, which
            finds files damaged in the middle (`"corrupt"`) at the cost of
            one full decoding pass.

    Returns:
        A `pandas.DataFrame` with one row per file: `path`, `problem`
        (None for a usable file, else `"missing"`, `"empty"`,
        `"not an image"`, `"truncated"` or, with `decode`, `"corrupt"`),
        and, for JPEGs, `height` and `width` from their header (-1 when it
        lies beyond the first 16 KB; 0 for other formats).

    Example:

    >>> import os, tempfile
    >>> from keras_transfer import data
    >>> path = os.path.join(tempfile.mkdtemp(), "empty.jpg"); _ = open(path, "wb").close()
    >>> data.inspect_files([path]).problem.tolist()
    ['empty']
    """
    paths = [str(p) for p in paths]
    check = _decode_problem if decode else _file_problem
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        found = list(pool.map(check, paths))
    problems, heights, widths = zip(*found) if found else ((), (), ())
    return pd.DataFrame({"path": paths, "problem": list(problems), "height": list(heights), "width": list(widths)})


def _decode_problem(path):
    problem, height, width = _file_problem(path)
    if problem is not None:
        return problem, height, width
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        return "corrupt", height, width
    return None, height, width


def _file_problem(path):
    """`(problem or None, jpeg height, jpeg width)`, from the file's first and last bytes."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            size = f.size()
            if size == 0:
                return "empty", 0, 0
            head = f.read(_HEAD_BYTES)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read(_TAIL_BYTES)
    except (tf.errors.OpError, OSError):
        return "missing", 0, 0
    if head.startswith(b"\xff\xd8\xff"):
        return (None if b"\xff\xd9" in tail else "truncated"), *_jpeg_size(head)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        problem = None if b"IEND" in tail else "truncated"
    elif head.startswith(b"GIF8"):
        problem = None if b";" in tail else "truncated"
    elif head.startswith(b"BM") and len(head) >= 6:
        problem = None if int.from_bytes(head[2:6], "little") <= size else "truncated"
    else:
        problem = "not an image"
    return problem, 0, 0


def _jpeg_size(head):
    """`(height, width)` of the JPEG whose first bytes are `head`, or `(-1, -1)` if its frame header lies beyond."""
    from PIL import Image

    try:
        # Pillow reads markers only up to the frame header when opening.
        with Image.open(io.BytesIO(head)) as image:
            return image.height, image.width
    except (OSError, SyntaxError, ValueError):
        return -1, -1


def _from_files(paths, labels, class_names, where, *, image_size, batch_size, validation_split, preprocess,
                augment, shuffle, seed, cache, crop_to_aspect_ratio, pad_to_aspect_ratio, fast_decode,
                drop_remainder, check):
    image_size = _check_image_size(image_size)
    if validation_split is not None and not (isinstance(validation_split, float) and 0 < validation_split < 1):
        raise ValueError(f"`validation_split` must be a float in (0, 1). Received: validation_split={validation_split!r}")
    if cache is not None and not isinstance(cache, (bool, str, os.PathLike)):
        raise ValueError(f"`cache` must be None, True or a file path. Received: cache={cache!r}")
    if check not in CHECKS:
        raise ValueError(f"`check` must be one of {list(CHECKS)}. Received: check={check!r}")
    checked = inspect_files(paths, decode=check == "decode")
    checked["label"] = labels
    usable = checked[checked.problem.isna()]
    report = checked[checked.problem.notna()][["path", "problem", "label"]].reset_index(drop=True)
    if len(report):
        counts = ", ".join(f"{n} {kind}" for kind, n in report.problem.value_counts().items())
        logger.warning("Skipped %d of %d image files in %s (%s): %s", len(report), len(checked), where, counts,
                       ", ".join(report.path.head(5)) + (" ..." if len(report) > 5 else ""))
    if usable.empty:
        raise ValueError(f"No usable images in {where}: all {len(checked)} files were skipped "
                         f"({', '.join(sorted(set(report.problem)))}).")
    usable = usable.assign(code=_decode_codes(usable, image_size, fast_decode))
    decoder = _decoder(image_size, crop_to_aspect_ratio, pad_to_aspect_ratio, fast_decode, usable.code.tolist())
    options = dict(batch_size=batch_size, cache=cache, preprocess=preprocess, drop_remainder=drop_remainder,
                   class_names=class_names, report=report, where=where,
                   decode=lambda path, label, code: decoder(tf.io.read_file(path), label, code))

    def build(part, shuffle_, augment_, cache_suffix=""):
        # Paths, not file contents, go through the shuffle buffer; each file is
        # read in the same map that decodes it (one tf.data stage fewer).
        elements = tf.data.Dataset.from_tensor_slices((part.path.tolist(), part.label.to_numpy("int32"),
                                                       part.code.to_numpy("int32")))
        buffer = len(part) if not cache else min(len(part), _DECODED_SHUFFLE_BUFFER)
        part_cache = cache if not isinstance(cache, (str, os.PathLike)) else f"{os.fspath(cache)}{cache_suffix}"
        return _finish(elements, len(part), **{**options, "cache": part_cache}, shuffle=shuffle_, seed=seed,
                       buffer=buffer, augment=augment_)

    if validation_split is None:
        return build(usable, shuffle, augment)
    train, val = _split(usable, validation_split, 0 if seed is None else seed, where, class_names)
    return build(train, shuffle, augment, ".train"), build(val, False, None, ".val")


def _split(usable, fraction, seed, where, class_names):
    """Per class, the last `fraction` of a seeded permutation is the validation set."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for label, group in usable.groupby("label", sort=True):
        order = rng.permutation(len(group))
        n_val = int(round(len(group) * fraction))
        if n_val == 0 or n_val == len(group):
            raise ValueError(f"validation_split={fraction} leaves class '{class_names[label]}' in {where} "
                             f"({len(group)} usable images) without training or validation images.")
        train.append(group.iloc[np.sort(order[:-n_val])])
        val.append(group.iloc[np.sort(order[-n_val:])])
    return pd.concat(train), pd.concat(val)


# --- decoding ------------------------------------------------------------------


def _decoder(image_size, crop, pad, fast, codes=None):
    """A tf.data map function: `(encoded bytes, label[, code])` -> `(float32 0..255 image of image_size, label)`.

    `codes`, when the loader knows each file's JPEG size up front, says per
    file how to decode it (see `_decode_codes`); the function then takes each
    file's code, and a dataset of full-scale files decodes exactly as the
    Keras utility does. Without `codes` every image is probed in the graph.
    """
    if crop and pad:
        raise ValueError("`crop_to_aspect_ratio` and `pad_to_aspect_ratio` cannot both be True.")
    height, width = image_size

    def plain(contents):
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    def reduced(ratio):
        return lambda contents: tf.io.decode_jpeg(contents, channels=3, ratio=ratio)

    def probe(contents):
        if not fast:
            return plain(contents)

        def decode_jpeg():
            shape = tf.cast(tf.io.extract_jpeg_shape(contents), tf.float32)
            scale = tf.minimum(shape[0] / height, shape[1] / width)
            branch = tf.reduce_sum(tf.cast(scale >= tf.constant(RATIOS[1:], tf.float32), tf.int32))
            return tf.switch_case(branch, [lambda r=r: reduced(r)(contents) for r in RATIOS])

        return tf.cond(tf.io.is_jpeg(contents), decode_jpeg, lambda: plain(contents))

    def finish(image, label):
        image.set_shape([None, None, 3])
        if pad:
            image = tf.image.resize_with_pad(image, height, width)
        else:
            if crop:
                image = _center_crop(image, height / width)
            image = tf.image.resize(image, (height, width))
        return image, label

    if codes is None:
        return lambda contents, label: finish(probe(contents), label)
    if all(code == 1 for code in codes):
        return lambda contents, label, code: finish(plain(contents), label)
    branches = [probe, plain] + [reduced(r) for r in RATIOS[1:]]
    return lambda contents, label, code: finish(
        tf.switch_case(code, [lambda f=f: f(contents) for f in branches]), label)


def _decode_codes(checked, image_size, fast):
    """Per file: 0 probe in the graph (a JPEG of unknown size), 1 full scale, 2/3/4 JPEG at 1/2, 1/4, 1/8.

    libjpeg decodes at 1/2, 1/4 or 1/8 scale almost for free; each JPEG gets
    the largest ratio that keeps it at least as large as `image_size`.
    """
    if not fast:
        return np.ones(len(checked), np.int32)
    scale = np.minimum(checked.height.to_numpy(float) / image_size[0], checked.width.to_numpy(float) / image_size[1])
    codes = 1 + (scale[:, None] >= np.asarray(RATIOS[1:], float)).sum(axis=1)
    height = checked.height.to_numpy()
    return np.where(height > 0, codes, np.where(height < 0, 0, 1)).astype(np.int32)


def _to_uint8(image, label):
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label


def _center_crop(image, aspect):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    crop_h = tf.minimum(shape[0], shape[1] * aspect)
    crop_w = tf.minimum(shape[1], shape[0] / aspect)
    top = tf.cast((shape[0] - crop_h) / 2, tf.int32)
    left = tf.cast((shape[1] - crop_w) / 2, tf.int32)
    return image[top:top + tf.cast(crop_h, tf.int32), left:left + tf.cast(crop_w, tf.int32)]


# --- the shared pipeline -------------------------------------------------------------


def _finish(elements, count, *, batch_size, shuffle, seed, buffer, cache, preprocess, augment, drop_remainder,
            class_names, report, decode=None, where="the dataset"):
    """Decode, cache, shuffle, batch, augment, preprocess and prefetch `elements`."""
    _check_positive_int("batch_size", batch_size)
    if preprocess is not None and not callable(preprocess):
        raise ValueError(f"`preprocess` must be a function or None. Received: preprocess={preprocess!r}")
    if shuffle and seed is None:
        seed = int(np.random.randint(1_000_000))
    layers = [] if augment is None else augmentation(augment, seed=seed)
    if drop_remainder is None:
        drop_remainder = _on_tpu()
    seeds = tf.compat.v1.random.get_seed(seed) if shuffle else None

    mixing = any(isinstance(layer, _MIXING) for layer in layers)

    def batch_map(images, labels):
        images = tf.cast(images, tf.float32)
        if mixing:
            labels = tf.one_hot(labels, len(class_names), dtype=tf.float32)
        for layer in layers:
            if isinstance(layer, _MIXING):
                mixed = layer({"images": images, "labels": labels}, training=True)
                images, labels = mixed["images"], mixed["labels"]
            else:
                images = layer(images, training=True) if isinstance(layer, keras.layers.Layer) else layer(images)
        if preprocess is not None:
            images = preprocess(images)
        return images, labels

    failures = DecodeFailures(where)

    def build(shuffled):
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
        if ds.element_spec[0].dtype != tf.string and (layers or preprocess or ds.element_spec[0].dtype != tf.float32):
            ds = ds.map(batch_map, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    ds = build(shuffle)
    ds._kt_plan = _Plan(build(False) if shuffle else ds, batch_size, drop_remainder,
                        buffer if shuffle else None, seeds)
    ds.class_names = class_names
    ds.report = report
    ds.skipped = len(report)
    ds.decode_failures = failures
    return ds


class DecodeFailures:
    """Counts files that passed the up-front check but failed to decode during training.

    A loader's dataset carries one as `decode_failures`; `int(...)` is the
    number of failed reads so far (a bad file fails once per epoch that
    reads it, and a cached dataset reads files only in its first epoch).
    Each failure is logged; `check="decode"` finds such files, by name,
    before training.

    Example:

    >>> import numpy as np
    >>> from keras_transfer import data
    >>> ds = data.from_arrays(np.zeros((4, 2, 2, 3), "uint8"), np.zeros(4, int))
    >>> int(ds.decode_failures)
    0
    """

    def __init__(self, where):
        self.where = where
        self.count = 0

    def __int__(self):
        return self.count

    def __repr__(self):
        return f"DecodeFailures({self.count} in {self.where})"

    def watch(self, ds, count):
        """Strips the positions from `(position, image, label)` elements or batches, counting gaps.

        Positions rise through a pass of `count` files and restart at 0 with
        the next pass; a position skipped is a file that failed to decode.
        With `count` unknown (< 0), positions are only stripped.
        """
        if count < 0:
            return ds.map(lambda position, image, label: (image, label))

        def step(last, element):
            position, image, label = element
            positions = tf.reshape(position, [-1])
            before = tf.concat([[last], positions[:-1]], axis=0)
            gaps = tf.where(positions > before, positions - before - 1, count - 1 - before + positions)
            missed = tf.reduce_sum(gaps)
            noted = tf.cond(missed > 0, lambda: tf.py_function(self._note, [missed], tf.int64),
                            lambda: tf.constant(0, tf.int64))
            # `noted` feeds the state so that tf.data cannot prune the logging away.
            return positions[-1] + 0 * noted, (image, label)

        return ds.scan(tf.constant(-1, tf.int64), step)

    def _note(self, missed):
        self.count += int(missed)
        logger.warning("%d image file(s) in %s passed the up-front check but failed to decode; each was replaced "
                       "in its epoch by an image of the next pass (%d failed reads so far). Load with "
                       "check='decode' to find and report them before training.", int(missed), self.where,
                       self.count)
        return missed


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


def _on_tpu():
    """True under a TPU strategy, or when TPU devices are initialised at all."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy):
        return True
    return bool(tf.config.list_logical_devices("TPU"))


# --- feature caching -------------------------------------------------------------


def _extract(model, source, verbose):
    from tqdm.auto import tqdm

    total = int(source.cardinality())
    features, labels = [], []
    with tqdm(total=total if total >= 0 else None, desc="caching features", unit="batch",
              disable=not verbose) as bar:
        for images, batch_labels in source.as_numpy_iterator():
            # `predict`, not `predict_on_batch`: under a MirroredStrategy the latter runs
            # the whole batch on every replica and returns one copy per replica.
            features.append(keras.ops.convert_to_numpy(model.predict(images, batch_size=len(images), verbose=0)))
            labels.append(batch_labels)
            bar.update(1)
    if not features:
        raise ValueError("`dataset` is empty: there is nothing to cache.")
    return np.concatenate(features), np.concatenate(labels), len(labels[0])


def _load_features(path, fingerprint):
    if not path.exists():
        return None
    with np.load(path) as stored:
        if not np.array_equal(stored["fingerprint"], fingerprint):
            raise ValueError(f"The features cached at path='{path}' come from another model "
                             f"({stored['fingerprint'].tolist()}, not {fingerprint.tolist()}); "
                             "delete the file or pass another `path`.")
        return stored["features"], stored["labels"], int(stored["first_batch"])


# --- TFDS ----------------------------------------------------------------------


def _tfds_examples(name, split, kind, key, label_key, *, data_dir, download, max_examples, shuffle_buffer):
    """`(input, int32 label)` examples of a TFDS split, their count (-1 if unknown), shuffle buffer and class names.

    `kind` is `"image"` (kept encoded for the reduced-scale decoder) or `"text"`;
    only the input and label features are read (a segmentation mask or boxes
    would cost time).
    """
    import tensorflow_datasets as tfds

    _check_positive_int("max_examples", max_examples, optional=True)
    _check_positive_int("shuffle_buffer", shuffle_buffer)
    builder = _tfds_builder(name, data_dir, download)
    features = builder.info.features
    feature = {"image": tfds.features.Image, "text": tfds.features.Text}[kind]
    key = _feature_key(features, key, feature, kind, f"{kind}_key", name)
    label_key = _feature_key(features, label_key, tfds.features.ClassLabel, "label", "label_key", name)
    skip = {"decoders": {key: tfds.decode.SkipDecoding()}} if kind == "image" else {}
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders=tfds.decode.PartialDecoding({key: True, label_key: True}, **skip))
    if max_examples is not None:
        ds = ds.take(max_examples)
    elements = ds.map(lambda ex: (ex[key], tf.cast(ex[label_key], tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    count = int(elements.cardinality())
    if count == 0:
        raise ValueError(f"The split '{split}' of the TFDS dataset '{name}' holds no examples.")
    buffer = shuffle_buffer if count < 0 else min(count, shuffle_buffer)
    return elements, count, buffer, list(features[label_key].names)


def _tfds_builder(name, data_dir, download):
    import tensorflow_datasets as tfds

    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a TFDS dataset name such as 'tf_flowers'. Received: name={name!r}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"Unknown TFDS dataset. Received: name={name!r}. See tfds.list_builders().") from error
    if download:
        try:
            builder.download_and_prepare()
        except Exception as error:
            raise RuntimeError(
                f"The TFDS dataset '{name}' could not be downloaded and prepared in "
                f"data_dir={builder.data_dir_root!r} ({type(error).__name__}: {error}). Prepare it where there "
                f"is network access (`tfds build {name} --data_dir DIR`, or `tfds.builder('{name}', "
                "data_dir=DIR).download_and_prepare()`), copy DIR here or to a GCS bucket, and pass "
                "`data_dir=DIR`."
            ) from error
    return builder


def _feature_key(features, key, kind, preferred, arg, name):
    candidates = [k for k, feature in features.items() if isinstance(feature, kind)]
    if key is not None:
        if key not in candidates:
            raise ValueError(f"`{arg}` must name a {kind.__name__} feature of '{name}'. Received: {arg}={key!r}; "
                             f"valid choices: {candidates}")
        return key
    if not candidates:
        raise ValueError(f"The TFDS dataset '{name}' has no {kind.__name__} feature; its features are "
                         f"{list(features.keys())}.")
    return preferred if preferred in candidates else candidates[0]


# --- argument checks ----------------------------------------------------------------


def _check_path(path):
    path = os.fspath(path)
    if not tf.io.gfile.isdir(path):
        raise ValueError(f"`path` must be an existing folder. Received: path='{path}'")
    return path


def _check_image_size(image_size):
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)):
        raise ValueError(f"`image_size` must be a (height, width) pair of positive integers. "
                         f"Received: image_size={image_size!r}")
    return tuple(image_size)


def _check_positive_int(name, value, optional=False):
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def _check_class_names(class_names, needed):
    if class_names is None:
        return [str(i) for i in range(needed)]
    class_names = [str(c) for c in class_names]
    if len(class_names) < needed:
        raise ValueError(f"Labels go up to {needed - 1}, but class_names has only {len(class_names)} names: "
                         f"{class_names}")
    return class_names


def _empty_report():
    return pd.DataFrame({"path": pd.Series(dtype=str), "problem": pd.Series(dtype=str),
                         "label": pd.Series(dtype="int64")})
