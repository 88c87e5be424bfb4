"""The loaders: arrays, a folder per class, a pandas table, TensorFlow Datasets.

Every loader returns a `tf.data.Dataset` of `(image, label)` batches, like
`keras.utils.image_dataset_from_directory`, with the same `class_names`
attribute plus `skipped` (how many files could not be used), `report` (a
`pandas.DataFrame` naming each of them and why), `decode_failures` and
`pipeline` (see `keras_transfer.data.pipeline`).
"""

import logging
import os
import warnings

import numpy as np
import pandas as pd

from keras_transfer import _checks, backbones
from keras_transfer.data._tensorflow import tf
from keras_transfer.data.checks import CHECKS, inspect_files
from keras_transfer.data.decoding import _decode_codes, _decoder
from keras_transfer.data.pipeline import _empty_report, _finish

logger = logging.getLogger("keras_transfer")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Reaching the host of TFDS' own bucket tells a network from none; a dataset's
# own server may still be down, which TFDS retries and then reports.
_TFDS_HOST = "https://storage.googleapis.com"
# Decoded, resized images held in a shuffle buffer cost h * w * 3 bytes each.
_DECODED_SHUFFLE_BUFFER = 1024
_TFDS_SHUFFLE_BUFFER = 1024


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
            TPU is in use, which needs static shapes, or a JAX distribution
            over several devices, which splits every batch evenly.

    Returns:
        A `tf.data.Dataset` of `(float32 images, int32 labels)` batches with
        `class_names`, `skipped` (always 0), `report` and `pipeline`
        attributes.

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
            Classes are the subfolder names, sorted. A single class folder
            loads with a warning (its labels are all 0).
        image_size: `(height, width)` of the output images, or one int for
            square images.
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
        drop_remainder: drop the last partial batch; by default only on TPU
            and under a JAX distribution over several devices (see `from_arrays`).
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
        `class_names`, `skipped`, `report`, `decode_failures` and `pipeline`
        attributes (see `Pipeline`).

    Example:

    >>> import os, pathlib, tempfile, numpy as np, tensorflow as tf
    >>> from keras_transfer import data
    >>> root = tempfile.mkdtemp()
    >>> for name in ("cat", "dog"):
    ...     os.makedirs(os.path.join(root, name))
    ...     png = tf.io.encode_png(np.zeros((20, 30, 3), "uint8")).numpy()
    ...     for i in range(3):
    ...         _ = pathlib.Path(root, name, f"{i}.png").write_bytes(png)
    >>> _ = pathlib.Path(root, "dog", "broken.jpg").write_bytes(b"not an image")
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
        files = _image_files(folder)
        if not files:
            raise ValueError(_dataset_root_message(path, class_names)
                             or f"The class folder '{folder}' holds no image files "
                             f"(looked for {', '.join(IMAGE_EXTENSIONS)}).")
        paths += files
        labels += [index] * len(files)
    loaded = _from_files(paths, labels, class_names, str(path), image_size=image_size, batch_size=batch_size,
                         validation_split=validation_split, preprocess=preprocess, augment=augment,
                         shuffle=shuffle, seed=seed, cache=cache, crop_to_aspect_ratio=crop_to_aspect_ratio,
                         pad_to_aspect_ratio=pad_to_aspect_ratio, fast_decode=fast_decode,
                         drop_remainder=drop_remainder, check=check)
    if len(class_names) == 1:
        warnings.warn(f"'{path}' holds one class folder, '{class_names[0]}', so every label is 0. Classification "
                      "needs at least 2 classes, one folder each: pass the folder that holds all of them. One class "
                      "suits only label-free uses, such as the source images of kt.domain_shift.", stacklevel=2)
    return loaded


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
        `(train, val)` pair) with `class_names`, `skipped`, `report`,
        `decode_failures` and `pipeline`.

    Example:

    >>> import os, pathlib, tempfile, numpy as np, pandas as pd, tensorflow as tf
    >>> from keras_transfer import data
    >>> root = tempfile.mkdtemp()
    >>> png = tf.io.encode_png(np.zeros((20, 30, 3), "uint8")).numpy()
    >>> for i in range(4):
    ...     _ = pathlib.Path(root, f"{i}.png").write_bytes(png)
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
            Without a network no download is tried: data missing from
            `data_dir` fails at once with a `backbones.OfflineError`.

    Returns:
        A `tf.data.Dataset` of `(float32 images, int32 labels)` batches with
        `class_names` (from the `ClassLabel` feature), `skipped`, `report`,
        `decode_failures` and `pipeline`.

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
    decode = _decoder(_checks.image_size(image_size), crop_to_aspect_ratio, pad_to_aspect_ratio, fast_decode)
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
        download: download and prepare the data when it is not in `data_dir`
            (offline, as in `from_tfds`).

    Returns:
        A `tf.data.Dataset` of `(string texts, int32 labels)` batches with
        `class_names`, `skipped`, `report` and `pipeline`.

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


def _from_files(paths, labels, class_names, where, *, image_size, batch_size, validation_split, preprocess,
                augment, shuffle, seed, cache, crop_to_aspect_ratio, pad_to_aspect_ratio, fast_decode,
                drop_remainder, check):
    image_size = _checks.image_size(image_size)
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


def _tfds_examples(name, split, kind, key, label_key, *, data_dir, download, max_examples, shuffle_buffer):
    """`(input, int32 label)` examples of a TFDS split, their count (-1 if unknown), shuffle buffer and class names.

    `kind` is `"image"` (kept encoded for the reduced-scale decoder) or `"text"`;
    only the input and label features are read (a segmentation mask or boxes
    would cost time).
    """
    import tensorflow_datasets as tfds

    _checks.positive_int("max_examples", max_examples, optional=True)
    _checks.positive_int("shuffle_buffer", shuffle_buffer)
    builder = _tfds_builder(name, data_dir)
    features = builder.info.features
    feature = {"image": tfds.features.Image, "text": tfds.features.Text}[kind]
    key = _feature_key(features, key, feature, kind, f"{kind}_key", name)
    label_key = _feature_key(features, label_key, tfds.features.ClassLabel, "label", "label_key", name)
    skip = {"decoders": {key: tfds.decode.SkipDecoding()}} if kind == "image" else {}
    ds = _read_or_download(builder, name, download, lambda: builder.as_dataset(
        split=split, shuffle_files=False, decoders=tfds.decode.PartialDecoding({key: True, label_key: True}, **skip)))
    if max_examples is not None:
        ds = ds.take(max_examples)
    elements = ds.map(lambda ex: (ex[key], tf.cast(ex[label_key], tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    count = int(elements.cardinality())
    if count == 0:
        raise ValueError(f"The split '{split}' of the TFDS dataset '{name}' holds no examples.")
    buffer = shuffle_buffer if count < 0 else min(count, shuffle_buffer)
    return elements, count, buffer, list(features[label_key].names)


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a TFDS dataset name such as 'tf_flowers'. Received: name={name!r}")
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"Unknown TFDS dataset. Received: name={name!r}. See tfds.list_builders().") from error


def _read_or_download(builder, name, download, read):
    """`read()`; where the data is missing and `download` allows, after downloading and preparing it.

    Without a network nothing is downloaded (TFDS would retry for minutes): a
    missing dataset fails at once. Data that is there, or TFDS' mock, reads
    without asking the network.
    """
    try:
        return read()
    except AssertionError:
        # TFDS asserts that the prepared data is there before it reads any of it.
        if not download:
            raise
    problem = backbones._network_problem(_TFDS_HOST)
    if problem:
        raise backbones.OfflineError(
            f"The TFDS dataset '{name}' is not in {builder.data_dir_root} and cannot be downloaded: no network "
            f"({problem}). Prepare it where there is network access (`tfds build {name} --data_dir "
            "/path/to/tfds`), copy that folder here and pass ", "data_dir", "/path/to/tfds", "."
        ) from None
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
    return read()


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


def _dataset_root_message(path, subfolders):
    """What to pass instead where the subfolders of `path` hold class folders (train/, val/): else None."""
    splits = [name for name in subfolders if _holds_class_folders(os.path.join(path, name))]
    if not splits:
        return None
    first = "train" if "train" in splits else splits[0]
    others = [name for name in splits if name != first]
    use = f"Pass path='{os.path.join(path, first)}'"
    if others:
        listed = " or ".join(f"'{os.path.join(path, name)}'" for name in others)
        use += f" (and {listed} for validation)" if first == "train" else f", or {listed}"
    return (f"`path` must hold one folder of images per class, but '{path}' looks like a dataset root: its "
            f"subfolders {', '.join(splits)} hold class folders. {use}. Received: path='{path}'")


def _holds_class_folders(folder):
    for name in tf.io.gfile.listdir(folder):
        sub = os.path.join(folder, name.rstrip("/"))
        if tf.io.gfile.isdir(sub) and _image_files(sub):
            return True
    return False


def _image_files(folder):
    """The image files directly in `folder` (by extension, any case), sorted, as full paths."""
    return sorted(os.path.join(folder, f) for f in tf.io.gfile.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def _check_path(path):
    path = os.fspath(path)
    if not tf.io.gfile.isdir(path):
        raise ValueError(f"`path` must be an existing folder. Received: path='{path}'")
    return path


def _check_class_names(class_names, needed):
    if class_names is None:
        return [str(i) for i in range(needed)]
    class_names = [str(c) for c in class_names]
    if len(class_names) < needed:
        raise ValueError(f"Labels go up to {needed - 1}, but class_names has only {len(class_names)} names: "
                         f"{class_names}")
    return class_names
