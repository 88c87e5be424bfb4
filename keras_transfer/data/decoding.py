"""Decoding: encoded image bytes to float32 RGB images of one size.

JPEGs much larger than the target decode at 1/2, 1/4 or 1/8 scale (libjpeg
does that almost for free) before resizing; grayscale, CMYK and alpha-channel
images arrive as RGB; crops and pads keep the aspect ratio when asked.
"""

import numpy as np

from keras_transfer.data._tensorflow import tf

RATIOS = (1, 2, 4, 8)  # the scales libjpeg decodes at


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


def _center_crop(image, aspect):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    crop_h = tf.minimum(shape[0], shape[1] * aspect)
    crop_w = tf.minimum(shape[1], shape[0] / aspect)
    top = tf.cast((shape[0] - crop_h) / 2, tf.int32)
    left = tf.cast((shape[1] - crop_w) / 2, tf.int32)
    return image[top:top + tf.cast(crop_h, tf.int32), left:left + tf.cast(crop_w, tf.int32)]
