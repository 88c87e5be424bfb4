"""keras_transfer: transfer learning for Keras 3, spoken in blocks."""

from keras_transfer.blocks import (
    BLOCK_SPECS,
    Block,
    BlockSpec,
    block_names,
    find_spec,
    get_block,
    get_blocks,
    select_variables,
)
from keras_transfer.version import __version__
