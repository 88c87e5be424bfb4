"""Checking image files before training, and counting the ones that still fail during it.

Files are checked up front with a cheap pass over their first and last bytes
(or, with `check="decode"`, by decoding them), so empty, truncated and
non-image files are counted and left out before training starts, and every
epoch holds exactly the same images. A file that passes the check but still
fails to decode during training is counted by `DecodeFailures` and logged.
"""

import concurrent.futures
import io
import logging

import pandas as pd

from keras_transfer.data._tensorflow import tf

logger = logging.getLogger("keras_transfer")

CHECKS = ("header", "decode")
_TAIL_BYTES = 1024
# Enough for the start-of-frame marker of all but JPEGs with large embedded thumbnails.
_HEAD_BYTES = 16384


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
