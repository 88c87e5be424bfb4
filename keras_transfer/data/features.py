"""Feature caching: run a frozen backbone once, then train a head on its outputs."""

import logging
import os
import pathlib

import keras
import numpy as np

from keras_transfer import _checks
from keras_transfer._inputs import predict_batch
from keras_transfer.data._tensorflow import tf
from keras_transfer.data.pipeline import _shuffle

logger = logging.getLogger("keras_transfer")


def cache_features(model, dataset, path=None, verbose=1):
    """Runs a frozen feature model once over a dataset and returns the features.

    Feature-extraction training then trains the head on `(features, label)`
    batches instead of running the backbone every epoch.

    A loader's dataset (one with a `pipeline`, see `Pipeline`) is cached
    from `dataset.pipeline.unshuffled`: its images without augmentation, in
    a fixed order. When the dataset shuffles, the cached features are
    reshuffled every epoch with the same seeds, so epoch `k` of the cached
    dataset holds the same examples in the same batches as epoch `k` of a
    freshly built input pipeline.

    Any other dataset (built elsewhere, or a loader's dataset after `map`,
    `filter`, ..., which drop the `pipeline`) is cached from one pass, in
    the order that pass yields, and replayed in that order every epoch.
    That is exact when every pass is the same; when the dataset shuffles or
    draws random numbers (augmentation), one pass's order and augmentation
    are frozen, and a warning says so. `cacheable` tells the cases apart;
    `fine_tune` trains through the backbone instead of caching a training
    set it cannot cache exactly.

    Args:
        model: a `keras.Model` mapping the dataset's images to features
            (e.g. a frozen backbone with pooling).
        dataset: a `tf.data.Dataset` of `(images, labels)` batches.
        path: optional `.npz` file: features are saved there, and loaded
            from there (without running the model) when the file exists and
            was written by a model with the same name and parameter count.
        verbose: 0 shows nothing; 1, 2 or `"auto"` a progress bar.

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
    verbose = _checks.verbose(verbose)
    plan = getattr(dataset, "pipeline", None)
    if plan is None and _varies(dataset):
        logger.warning("`dataset` shuffles or augments and carries no `pipeline` (it was not built by "
                       "keras_transfer.data, or was transformed after loading): its features come from one pass and "
                       "replay that pass's order and augmentation every epoch. Pass the transformation as the "
                       "loader's `preprocess` to keep the pipeline, or cache a dataset that does not shuffle.")
    source = plan.unshuffled if plan is not None else dataset
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
        if plan.shuffle_seeds is not None:
            ds = _shuffle(ds, plan.shuffle_buffer, plan.shuffle_seeds)
        ds = ds.batch(plan.batch_size, drop_remainder=plan.drop_remainder)
    else:
        ds = ds.batch(int(first_batch))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    for attr in ("class_names", "skipped", "report"):
        if hasattr(dataset, attr):
            setattr(ds, attr, getattr(dataset, attr))
    return ds


def cacheable(dataset):
    """Whether `cache_features` reproduces every epoch of `dataset` exactly.

    True for a loader's dataset (it carries a `pipeline`) and for a dataset
    whose passes are all the same (no shuffle, no random draws); False for
    one that shuffles or augments and carries no `pipeline`, e.g. a loader's
    shuffled dataset after `map`, and for anything not a `tf.data.Dataset`.

    Args:
        dataset: a `tf.data.Dataset` (or anything else, which is False).

    Returns:
        A bool.

    Example:

    >>> import numpy as np
    >>> from keras_transfer import data
    >>> ds = data.from_arrays(np.zeros((8, 2, 2, 3), "uint8"), np.zeros(8, int), shuffle=True, seed=0)
    >>> data.cacheable(ds), data.cacheable(ds.map(lambda x, y: (x, y)))
    (True, False)
    """
    if not isinstance(dataset, tf.data.Dataset):
        return False
    return getattr(dataset, "pipeline", None) is not None or not _varies(dataset)


def _varies(dataset):
    """Whether passes over `dataset` can differ: its graph shuffles or draws random numbers.

    Read from the serialized dataset graph (the functions of its `map`s
    included), so no element is produced and no shuffle state moves. A graph
    that cannot be serialized counts as varying.
    """
    try:
        graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(dataset),
                                            external_state_policy=1)  # 1: ignore stateful resources
        graph = tf.compat.v1.GraphDef.FromString(graph.numpy())
    except (tf.errors.OpError, ValueError):
        return True
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    return any("Shuffle" in op or "Random" in op for op in ops)


def _extract(model, source, verbose):
    from tqdm.auto import tqdm

    total = int(source.cardinality())
    features, labels = [], []
    with tqdm(total=total if total >= 0 else None, desc="caching features", unit="batch",
              disable=not verbose) as bar:
        for images, batch_labels in source.as_numpy_iterator():
            features.append(keras.ops.convert_to_numpy(predict_batch(model, images)))
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
