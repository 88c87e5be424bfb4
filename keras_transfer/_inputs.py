"""One reading of the data users hand to the analysis tools.

`kt.evaluate`, the diagnostics, `kt.wise_ft` and the backbone ranking all run a
model over user data and need its labels. They all read it here, so each
accepts the same inputs and fails with the same words: a tuple `(x, y)` of
arrays, bare `x` arrays where labels are not needed, a `tf.data.Dataset`
(read as NumPy, so every backend can take it), or any iterable of `(x, y)`
batches.

Where a tool caps its examples (`max_examples`), `sample` picks them so that
they stand for the whole data, the same ones on every call: a folder read
class by class must not lend the first classes only.
"""

import warnings

import keras
import numpy as np


def is_batch_iterable(data):
    """True for a dataset or an iterable (a list too) of batches; False for arrays and tuples of arrays."""
    return hasattr(data, "__iter__") and not isinstance(data, (tuple, dict, str)) and not hasattr(
        data, "__array__"
    )


def is_array_pair(data):
    """True for a tuple `(x, y)` of arrays (not a tuple of datasets)."""
    return isinstance(data, tuple) and len(data) == 2 and not is_batch_iterable(data[0])


def length(arrays, name):
    """The number of examples in `arrays` (a structure of arrays)."""
    leaves = keras.tree.flatten(arrays)
    if not leaves or not hasattr(leaves[0], "__len__"):
        raise TypeError(f"`{name}` must hold arrays. Received: {short(arrays)}")
    return len(leaves[0])


def _pair_length(data, name):
    """The number of examples of an `(x, y)` pair, which must hold as many x as y."""
    x, y = data
    n = length(y, name)
    if length(x, name) != n:
        raise ValueError(f"`{name}` must be (x, y) with as many x as y. Received: {length(x, name)} x, {n} y")
    return n


def batches(data, name, batch_size, labels=True):
    """Yields `(x, y)` batches of `data`; `y` is None for label-free data when `labels` is False."""
    if is_array_pair(data):
        x, y = data
        n = _pair_length(data, name)
        for start in range(0, n, batch_size):
            yield keras.tree.map_structure(lambda a: a[start:start + batch_size], x), y[start:start + batch_size]
        return
    if not labels and isinstance(data, np.ndarray):
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size], None
        return
    if not is_batch_iterable(data):
        raise TypeError(
            f"`{name}` must be (x, y) arrays or a dataset of (x, y) batches. "
            f"Received: {name}={short(data)} of type {type(data).__name__}"
        )
    for batch in data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data:
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            yield batch[0], batch[1]
        elif labels:
            raise ValueError(
                f"`{name}` must yield (x, y) batches with labels. Received a batch of type {type(batch).__name__}"
            )
        else:
            yield (batch[0] if isinstance(batch, (tuple, list)) else batch), None


def num_batches(data, batch_size):
    """How many batches `batches` will yield, or None when the data does not say."""
    if is_array_pair(data):
        return -(-length(data[1], "data") // batch_size)
    if isinstance(data, np.ndarray):
        return -(-len(data) // batch_size)
    try:
        steps = len(data)
    except TypeError:  # unknown or infinite cardinality
        return None
    return steps if steps >= 0 else None


def sample(data, name, max_examples, *, seed=0):
    """At most `max_examples` examples of `data` that stand for all of it, the same ones on every call.

    - `(x, y)` arrays: a class-stratified sample (`stratified_indices`).
    - `x` arrays without labels: a random sample drawn with `seed`.
    - a dataset from a `kt.data` loader (it carries `pipeline`): its labels
      are read in one pass that decodes the images and runs no model, then
      the same class-stratified sample is taken from its twin in file order
      without augmentation (`pipeline.unshuffled`), batched alike.
    - any other dataset or iterable: `data` itself. Its order is its own and
      may change from pass to pass, so no sample can be drawn without
      running everything through the model; `run_model` reads its first
      `max_examples` and warns when their labels come sorted.

    The examples chosen keep their order in `data`. Returns `data` itself
    when `max_examples` is None or `data` holds no more examples.
    """
    if max_examples is None:
        return data
    if is_array_pair(data):
        x, y = data
        if _pair_length(data, name) <= max_examples:
            return data
        keep = stratified_indices(class_ids(y, name), max_examples, seed)
        return keras.tree.map_structure(lambda a: np.asarray(a)[keep], x), np.asarray(y)[keep]
    if isinstance(data, np.ndarray):
        if len(data) <= max_examples:
            return data
        return data[np.sort(np.random.default_rng(seed).choice(len(data), max_examples, replace=False))]
    pipeline = getattr(data, "pipeline", None)
    if pipeline is not None and is_batch_iterable(data):
        return _loader_sample(data, pipeline, name, max_examples, seed)
    return data


def _loader_sample(data, pipeline, name, max_examples, seed):
    """`sample` of a `kt.data` loader's dataset, from the unshuffled, un-augmented twin its `pipeline` holds."""
    from keras_transfer.data._tensorflow import tf

    steps = num_batches(data, pipeline.batch_size)
    if steps is not None and steps * pipeline.batch_size <= max_examples:
        return data
    labels = class_ids(np.concatenate(list(pipeline.unshuffled.map(lambda *e: e[1]).as_numpy_iterator())), name)
    if len(labels) <= max_examples:
        return data
    keep = np.zeros(len(labels), bool)
    keep[stratified_indices(labels, max_examples, seed)] = True
    keep = tf.constant(keep)

    # Named, not lambdas: AutoGraph cannot tell apart two lambdas on one line.
    def kept(position, example):
        return tf.gather(keep, position)

    def without_position(position, example):
        return example

    chosen = pipeline.unshuffled.unbatch().enumerate().filter(kept).map(without_position)
    # The filter hides the length; stating it gives the progress bar its total.
    length_known = tf.data.experimental.assert_cardinality(-(-max_examples // pipeline.batch_size))
    return chosen.batch(pipeline.batch_size).apply(length_known).prefetch(tf.data.AUTOTUNE)


def stratified_indices(labels, max_examples, seed=0):
    """Indices of a class-stratified sample of `max_examples` of `labels` (class ids), in increasing order.

    Each class gets its share of `max_examples` (largest remainders), and
    at least one example while there are enough for one per class (taken
    from the class given most above its share); within a class, examples
    are drawn at random with `seed`. All indices when `max_examples` covers
    every label.

    Example:

    >>> import numpy as np
    >>> from keras_transfer._inputs import stratified_indices
    >>> labels = np.repeat([0, 1, 2], [60, 36, 4])
    >>> np.bincount(labels[stratified_indices(labels, 10)]).tolist()
    [6, 3, 1]
    """
    labels = np.asarray(labels)
    if max_examples >= len(labels):
        return np.arange(len(labels))
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = max_examples * counts / len(labels)
    quota = np.floor(share).astype(int)
    quota[np.argsort(quota - share, kind="stable")[: max_examples - quota.sum()]] += 1
    for k in np.flatnonzero(quota == 0):
        if quota.max() < 2:
            break
        donor = int(np.argmax(np.where(quota >= 2, quota - share, -np.inf)))
        quota[donor] -= 1
        quota[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(inverse == k), q, replace=False) for k, q in enumerate(quota)]
    return np.sort(np.concatenate(chosen))


def run_model(model, data, name, *, batch_size=32, max_examples=None, verbose=0, labels=True):
    """Runs `model` over `data` once.

    Returns:
        `(outputs, y)`: a list with one array per model output, and the labels
        as given (concatenated), or None when the data has none. At most
        `max_examples` rows of each: the first ones (`sample` chooses
        representative ones beforehand), with a warning when data was left
        unread and the labels read come sorted, as the start of data sorted
        by class does.
    """
    steps = num_batches(data, batch_size)
    progbar = keras.utils.Progbar(steps, unit_name="batch") if verbose else None
    outputs, ys, seen = [], [], 0
    read = batches(data, name, batch_size, labels)
    for step, (x, y) in enumerate(read, start=1):
        output = predict_batch(model, x)
        output = list(output) if isinstance(output, (list, tuple)) else [output]
        outputs.append([np.asarray(keras.ops.convert_to_numpy(o)) for o in output])
        if y is not None:
            ys.append(np.asarray(y))
        seen += len(outputs[-1][0])
        if progbar is not None:
            progbar.update(step)
        if max_examples is not None and seen >= max_examples:
            break
    if not outputs:
        raise ValueError(f"`{name}` is empty.")
    merged = [np.concatenate([o[i] for o in outputs])[:max_examples] for i in range(len(outputs[0]))]
    y = np.concatenate(ys)[:max_examples] if ys else None
    if y is not None and max_examples is not None and (seen > max_examples or next(read, None) is not None):
        _warn_if_sorted(y, name, max_examples)
    return merged, y


def predict_batch(model, x):
    """`model`'s outputs for the batch `x` (a structure of arrays), under any distribution in effect.

    With one replica, `predict_on_batch`. Under a `tf.distribute` strategy
    with several, `predict_on_batch` runs the whole batch on every replica and
    returns one copy per replica (a batch of 64 gave 128 rows on 2 replicas);
    Keras' `predict` splits the batch over them. A JAX `DataParallel` shards
    the batch over its devices and needs a size they divide, so a batch that
    does not (the last one of a dataset, say) is padded with copies of its
    last example, and their outputs are dropped: inference is per example.
    """
    replicas = _replicas(model)
    if replicas == 1:
        return model.predict_on_batch(x)
    n = length(x, "x")
    pad = -n % replicas if keras.backend.backend() == "jax" else 0
    if pad:
        x = keras.tree.map_structure(lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), x)
    outputs = model.predict(x, batch_size=n + pad, verbose=0)
    return keras.tree.map_structure(lambda o: o[:n], outputs)


def _replicas(model):
    """How many devices share a batch of `model`: its `tf.distribute` strategy's replicas, or the JAX distribution's."""
    strategy = getattr(model, "distribute_strategy", None)  # the TensorFlow trainer's, from where it was built
    if strategy is not None:
        return strategy.num_replicas_in_sync
    from keras_transfer.distribute import _current_replicas

    return _current_replicas()


def _warn_if_sorted(y, name, max_examples):
    """Warns that the first `max_examples` of data that goes on look like the start of data sorted by class."""
    try:
        ids = class_ids(y, name)
    except ValueError:  # labels that are not class ids say nothing about classes
        return
    if len(ids) > 1 and np.all(np.diff(ids) >= 0):
        warnings.warn(
            f"`{name}`: its first {max_examples} examples (max_examples={max_examples}) come sorted by label "
            f"(classes {np.unique(ids).tolist()}), as the start of data sorted by class does, and may stand for "
            "its first classes only. Shuffle it once with a fixed seed (e.g. `ds.unbatch().shuffle(n, seed=0, "
            "reshuffle_each_iteration=False).batch(32)`), or pass (x, y) arrays or a `kt.data` loader's "
            "dataset, which are sampled class by class.",
            UserWarning, stacklevel=4,
        )


def read_examples(data, name, max_examples=None):
    """The first `max_examples` `(x, y)` of `data` as NumPy arrays, labels as given."""
    xs, ys, seen = [], [], 0
    for x, y in batches(data, name, batch_size=max_examples or 1024):
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        seen += len(ys[-1])
        if max_examples is not None and seen >= max_examples:
            break
    if not xs:
        raise ValueError(f"`{name}` is empty.")
    return np.concatenate(xs)[:max_examples], np.concatenate(ys)[:max_examples]


def class_ids(y, name):
    """Integer class ids from integer or one-hot labels; anything else is an error naming `name`."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(-1)
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(y == np.round(y)):
            raise ValueError(f"`{name}` labels must be integer class ids (or one-hot). Received: {y[:5]}...")
        y = y.astype("int64")
    if y.size and y.min() < 0:
        raise ValueError(f"`{name}` labels must be class ids >= 0. Received: min label {y.min()}")
    return y.astype("int64")


def short(value):
    """A repr short enough for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
