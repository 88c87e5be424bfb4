"""keras_transfer: transfer learning for Keras 3, spoken in blocks."""

import os
import pathlib

# TensorFlow's C++ start-up chatter buries the tables this package prints;
# a value the user already set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# setup.py installs the top-level recipes/ as keras_transfer.recipes; in a source
# checkout (`python -m benchmarks...` from the repo root) it sits beside us instead.
_here = pathlib.Path(__file__).resolve().parent
if not (_here / "recipes").is_dir() and (_here.parent / "recipes" / "__init__.py").is_file():
    __path__.append(str(_here.parent))

from keras_transfer.blocks import (  # noqa: E402
    BLOCK_SPECS,
    Block,
    BlockSpec,
    block_names,
    find_spec,
    get_block,
    get_blocks,
    select_variables,
)
from keras_transfer import losses  # noqa: E402
from keras_transfer.freezing import freeze, recompile, trainable_summary, unfreeze  # noqa: E402
from keras_transfer.version import __version__  # noqa: E402
