"""One reading of the data users hand to the analysis tools.

`kt.evaluate`, the diagnostics, `kt.wise_ft` and the backbone ranking all run a
model over user data and need its labels. They all read it here, so each
accepts the same inputs and fails with the same words: a tuple `(x, y)` of
arrays, bare `x` arrays where labels are not needed, a `tf.data.Dataset`
(read as NumPy, so every backend can take it), or any iterable of `(x, y)`
batches.
"""

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


def batches(data, name, batch_size, labels=True):
    """Yields `(x, y)` batches of `data`; `y` is None for label-free data when `labels` is False."""
    if is_array_pair(data):
        x, y = data
        n = length(y, name)
        if length(x, name) != n:
            raise ValueError(f"`{name}` must be (x, y) with as many x as y. Received: {length(x, name)} x, {n} y")
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


def run_model(model, data, name, *, batch_size=32, max_examples=None, verbose=0, labels=True):
    """Runs `model` over `data` once.

    Returns:
        `(outputs, y)`: a list with one array per model output, and the labels
        as given (concatenated), or None when the data has none. At most
        `max_examples` rows of each.
    """
    steps = num_batches(data, batch_size)
    progbar = keras.utils.Progbar(steps, unit_name="batch") if verbose else None
    outputs, ys, seen = [], [], 0
    for step, (x, y) in enumerate(batches(data, name, batch_size, labels), start=1):
        output = model.predict_on_batch(x)
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
    return merged, y


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
