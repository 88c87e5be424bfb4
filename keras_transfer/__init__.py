"""keras_transfer: transfer learning for Keras 3, spoken in blocks."""

import os
import pathlib

# TensorFlow's C++ start-up chatter buries the tables this package prints, so
# we quiet it unless the user chose a level: setting TF_CPP_MIN_LOG_LEVEL (to
# "0" for all of it) before importing keras_transfer wins.
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
    block_specs,
    find_spec,
    get_block,
    get_blocks,
    register_block_spec,
    select_variables,
    unregister_block_spec,
)
from keras_transfer import losses, metrics  # noqa: E402
from keras_transfer.freezing import freeze, recompile, trainable_summary, unfreeze  # noqa: E402
from keras_transfer.optimizers import (  # noqa: E402
    DifferentialOptimizer,
    LearningRateScheduler,
    ReduceLROnPlateau,
    describe_learning_rates,
    differential_optimizer,
    scale_learning_rates,
)
from keras_transfer.lora import (  # noqa: E402
    LoRADense,
    LoRAEinsumDense,
    apply_lora,
    load_adapters,
    lora_summary,
    merge_lora,
    save_adapters,
)
from keras_transfer.backbones import Backbone, OfflineError, get_backbone, list_backbones, load_hub_task  # noqa: E402
from keras_transfer.distribute import auto_distribution, auto_strategy, model_parallel, scale_batch_size  # noqa: E402
# `data` imports TensorFlow only when a loader is first used, so the package
# imports on JAX without TensorFlow installed.
from keras_transfer import data  # noqa: E402
from keras_transfer.data.augment import RandomAffine  # noqa: E402
from keras_transfer.callbacks import GradualUnfreezing, checkpoint_callbacks  # noqa: E402
from keras_transfer.evaluation import Evaluation, evaluate, plot_confusion, plot_history  # noqa: E402
from keras_transfer.search import Candidate  # noqa: E402
from keras_transfer.config import FineTuneConfig  # noqa: E402
from keras_transfer.workflow import FineTuneResult, build_classifier, export, fine_tune  # noqa: E402
from keras_transfer.diagnostics import (  # noqa: E402
    bn_shift,
    domain_shift,
    forgetting,
    negative_transfer,
    probe_blocks,
    suggest_unfreeze,
)
from keras_transfer.anchoring import (  # noqa: E402
    PullToPretrained,
    WiseFTResult,
    apply_l2_sp,
    interpolate_weights,
    remove_l2_sp,
    wise_ft,
)
from keras_transfer.lr_finder import LRFinderResult, lr_find  # noqa: E402
from keras_transfer.ranking import logme, logme_blocks, rank_backbones  # noqa: E402
from keras_transfer.version import __version__  # noqa: E402


def __getattr__(name):
    # Needs TensorFlow: resolved on first use (see `keras_transfer.data`).
    if name == "cache_features":
        return data.cache_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    # blocks
    "BLOCK_SPECS", "Block", "BlockSpec", "block_names", "block_specs", "find_spec", "get_block", "get_blocks", "register_block_spec",
    "select_variables", "unregister_block_spec",
    # freezing
    "freeze", "recompile", "trainable_summary", "unfreeze",
    # optimizers
    "DifferentialOptimizer", "LearningRateScheduler", "ReduceLROnPlateau", "describe_learning_rates",
    "differential_optimizer", "scale_learning_rates",
    # LoRA
    "LoRADense", "LoRAEinsumDense", "apply_lora", "load_adapters", "lora_summary", "merge_lora", "save_adapters",
    # backbones and distribution
    "Backbone", "OfflineError", "get_backbone", "list_backbones", "load_hub_task", "auto_distribution", "auto_strategy",
    "model_parallel", "scale_batch_size",
    # data
    "data", "RandomAffine", "cache_features",
    # workflow, evaluation, search
    "GradualUnfreezing", "checkpoint_callbacks", "Evaluation", "evaluate", "plot_confusion", "plot_history",
    "Candidate", "FineTuneConfig", "FineTuneResult", "build_classifier", "export", "fine_tune",
    # choosing: diagnostics, forgetting guards, learning rates, ranking
    "bn_shift", "domain_shift", "forgetting", "negative_transfer", "probe_blocks", "suggest_unfreeze",
    "PullToPretrained", "WiseFTResult", "apply_l2_sp", "interpolate_weights", "remove_l2_sp", "wise_ft",
    "LRFinderResult", "lr_find", "logme", "logme_blocks", "rank_backbones",
    # losses and metrics
    "losses", "metrics",
    "__version__",
]
