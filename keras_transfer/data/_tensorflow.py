"""TensorFlow, which the tf.data pipelines need and the rest of keras_transfer does not.

Every module of `keras_transfer.data` that builds pipelines imports `tf` from
here, so a missing TensorFlow reads the same everywhere and says what to do.
"""

try:
    import tensorflow as tf  # noqa: F401
except ImportError as error:
    raise ImportError(
        "keras_transfer.data builds its input pipelines with tf.data, which needs TensorFlow. Install it with "
        "`pip install tensorflow` (the datasets then feed a model on any Keras backend, JAX included)."
    ) from error
