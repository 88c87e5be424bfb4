"""tf.data input pipelines, augmentation and feature caching. (placeholder: being written.)"""


def from_arrays(*args, **kwargs):
    raise NotImplementedError


def from_directory(*args, **kwargs):
    raise NotImplementedError


def from_dataframe(*args, **kwargs):
    raise NotImplementedError


def from_tfds(*args, **kwargs):
    raise NotImplementedError


def text_from_tfds(*args, **kwargs):
    raise NotImplementedError


def cache_features(*args, **kwargs):
    raise NotImplementedError

