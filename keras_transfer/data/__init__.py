"""tf.data input pipelines, augmentation and feature caching.

Every loader returns a `tf.data.Dataset` of `(image, label)` batches, like
`keras.utils.image_dataset_from_directory`, with the same `class_names`
attribute plus `skipped`, `report`, `decode_failures` and `pipeline`.

| module     | holds                                                                     |
|------------|---------------------------------------------------------------------------|
| `sources`  | the loaders: `from_arrays`, `from_directory`, `from_dataframe`, `from_tfds`, `text_from_tfds` |
| `checks`   | `inspect_files` (files checked before training), `DecodeFailures` (during) |
| `decoding` | encoded bytes to RGB images of one size, JPEGs at reduced scale            |
| `pipeline` | cache, shuffle, batch, augment, preprocess, prefetch; `Pipeline`          |
| `augment`  | `augmentation` (the `augment` option) and `RandomAffine`                  |
| `features` | `cache_features`, `cacheable`                                             |

Only `augment` works without TensorFlow (it is Keras layers, part of saved
models). The rest is imported on first use, so `import keras_transfer` works
on JAX with TensorFlow not installed; touching it then raises an ImportError
that says to `pip install tensorflow`.
"""

import importlib

from keras_transfer.data.augment import AUGMENTATIONS, RandomAffine, augmentation

# Public name -> the module defining it; these need TensorFlow.
_WITH_TENSORFLOW = {
    "from_arrays": "sources",
    "from_directory": "sources",
    "from_dataframe": "sources",
    "from_tfds": "sources",
    "text_from_tfds": "sources",
    "IMAGE_EXTENSIONS": "sources",
    "inspect_files": "checks",
    "DecodeFailures": "checks",
    "CHECKS": "checks",
    "Pipeline": "pipeline",
    "cache_features": "features",
    "cacheable": "features",
}

__all__ = ["AUGMENTATIONS", "RandomAffine", "augmentation", *_WITH_TENSORFLOW]


def __getattr__(name):
    module = _WITH_TENSORFLOW.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_WITH_TENSORFLOW))
