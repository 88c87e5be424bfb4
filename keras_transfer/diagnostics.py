"""Transfer diagnostics: how far to unfreeze, and the pitfalls, measured.

Guides say: freeze more when the target is like the source, unfreeze more when
it differs, and beware of negative transfer, catastrophic forgetting and domain
shift. These functions measure each of them, block by block:

- `probe_blocks`: how linearly decodable the target labels are from the pooled
  features after each block (a linear probe per block).
- `bn_shift`: how far the target's activation statistics are from the
  source's, at every BatchNormalization layer (which stores the source's).
- `suggest_unfreeze`: reads the probe curve and the BatchNorm shift and says
  how far to unfreeze (none, a few top blocks, most), and why;
  `kt.unfreeze(model, top_blocks=s.top_blocks)` applies it.
- `domain_shift`: how far the target's feature distribution is from the
  source's after each block (MMD, with a null reference and a p-value).
- `negative_transfer`: pretrained start vs scratch start at an equal budget.
- `forgetting`: how much source-task accuracy survives fine-tuning.

Features for every block come from ONE pass of Keras `predict` over a
multi-output model (each block's last layer, pooled globally); that pass is
the cache, held in memory as numpy arrays. Everything after it (ridge probes,
kernels) is small-matrix numpy on those arrays, so it is the same on every
Keras backend.

Data is model-ready: `(x, y)` numpy arrays, or a `tf.data.Dataset` (or any
iterable) of `(x, y)` batches, already preprocessed for the backbone (as
`kt.data.from_directory(..., preprocess=backbone.preprocess)` gives). Labels
are integer class ids (one-hot labels are accepted and argmax-ed).

`max_examples` caps the examples read, with a sample that stands for the whole
data and is the same on every run: a class-stratified one (seed 0, or
`domain_shift`'s `seed`) of `(x, y)` arrays and of datasets from the
`kt.data` loaders (read from their unshuffled, un-augmented twin after one
pass over their labels), a random one of `x` arrays without labels, and the
first examples of any other dataset, with a warning when their labels come
sorted (a folder read class by class).
"""

import dataclasses
import math
import warnings

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks
from keras_transfer import _inputs as inputs
from keras_transfer import _keras_compat as compat
from keras_transfer._random import seeded
from keras_transfer.blocks import get_blocks

# Ridge penalties tried by the probe, relative to the largest squared singular
# value of the standardized features; leave-one-out error picks one per block.
_RIDGE_GRID = np.logspace(-6, 1, 15)


# --- probing and freeze-point advice ------------------------------------------


def probe_blocks(backbone, train_ds, val_ds, blocks=None, *, batch_size=32, max_examples=None, verbose=1):
    """Fits a linear probe on the pooled features after each block.

    The probe is ridge regression on one-hot labels (a regularized
    least-squares classifier), in closed form with numpy on standardized
    features, with the ridge penalty chosen per block by exact leave-one-out
    error on the training features (as `RidgeClassifierCV` does). It is
    deterministic (no seeds, no epochs), takes milliseconds per block even
    with thousands of feature dimensions, never diverges, and tunes itself
    without looking at the validation data, so blocks are compared fairly.

    Args:
        backbone: a `keras.Model` (a backbone, or a classifier whose `head`
            block is skipped) or a `kt.Backbone`.
        train_ds: training data: `(x, y)` arrays or a dataset of `(x, y)`
            batches, preprocessed for the backbone.
        val_ds: validation data, in the same form.
        blocks: block names to probe, in any order; default every backbone
            block.
        batch_size: batch size of the feature pass for array inputs.
        max_examples: use at most this many examples of each dataset: a
            class-stratified sample with a fixed seed (every class keeps its
            share, and at least one example) of `(x, y)` arrays and of a
            `kt.data` loader's dataset (read without shuffling and
            augmentation, after one pass over its labels); the first ones of
            any other dataset, with a warning when their labels come sorted
            by class (shuffle such data once, with a fixed seed).
        verbose: 0 silent, 1 a progress bar per feature pass.

    Returns:
        A `pandas.DataFrame`, one row per probed block from input to output:
        `block`, `depth` (index among the backbone blocks, 0 = first),
        `blocks_above` (backbone blocks after it), `feature_dim`, `params`
        (the block's parameters), `train_accuracy` and `probe_accuracy`
        (validation accuracy of the probe). `table.attrs["backbone_blocks"]`
        lists every backbone block; `table.attrs["train_class_counts"]` and
        `["val_class_counts"]` the examples of each class id the probe
        read (the second sets the chance level `suggest_unfreeze` checks).

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((2,))
    >>> x = keras.layers.Dense(2, name="stem_dense")(inputs)
    >>> x = keras.layers.Dense(2, name="block1_dense", kernel_initializer="zeros")(x)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> table = kt.probe_blocks(backbone, (x[:20], y[:20]), (x[20:], y[20:]), verbose=0)
    >>> table[["block", "feature_dim"]].values.tolist()
    [['stem', 2], ['block1', 2]]
    """
    model, chosen, names = _resolve_blocks(backbone, blocks)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("max_examples", max_examples, optional=True)
    train_ds = inputs.sample(train_ds, "train_ds", max_examples)
    val_ds = inputs.sample(val_ds, "val_ds", max_examples)
    # One feature model for both passes: Keras traces its predict function once, not once per dataset.
    extractor = _feature_model(model, chosen)
    train_features, train_y = _pooled(extractor, train_ds, "train_ds", batch_size, max_examples, verbose)
    val_features, val_y = _pooled(extractor, val_ds, "val_ds", batch_size, max_examples, verbose)
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(
            "`train_ds` must hold at least 2 classes for a probe to separate. "
            f"Received labels: {classes.tolist()}"
            + ("" if max_examples is None else f" in the {len(train_y)} examples read (max_examples={max_examples})")
        )
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    train_counts = np.bincount(train_y, minlength=num_classes).tolist()
    unseen = sorted(set(np.unique(val_y).tolist()) - set(classes.tolist()))
    if unseen:
        warnings.warn(
            f"`val_ds` holds classes {unseen} that the training sample lacks (examples per class: {train_counts}); "
            "the probe cannot predict them, so its accuracy says little about the features.",
            UserWarning, stacklevel=2,
        )
    rows = []
    for block, depth, train_x, val_x in zip(chosen, _depths(chosen, names), train_features, val_features):
        train_acc, val_acc = _ridge_probe(train_x, train_y, val_x, val_y, num_classes)
        rows.append({
            "block": block.name,
            "depth": depth,
            "blocks_above": len(names) - 1 - depth,
            "feature_dim": train_x.shape[1],
            "params": block.num_params,
            "train_accuracy": train_acc,
            "probe_accuracy": val_acc,
        })
    table = pd.DataFrame(rows).sort_values("depth", ignore_index=True)
    table.attrs["backbone_blocks"] = names
    table.attrs["train_class_counts"] = train_counts
    table.attrs["val_class_counts"] = np.bincount(val_y, minlength=num_classes).tolist()
    return table


# How far to unfreeze, in three classes, from none to most. `Suggestion.depth_class`
# is one of them, or "unknown" when the probe is at chance (not a depth, so not
# in this ordered list).
DEPTH_CLASSES = ("none", "few", "most")

# The probe's best validation accuracy counts as above chance (the largest
# class's share of the validation labels) when a one-sided exact binomial test
# rejects "no better than chance" at this level, divided by the number of
# probed blocks: the best of B blocks is the best of B tries (Bonferroni).
# With 100 validation examples, half of them one class, and 5 blocks, that
# takes 65 right.
CHANCE_ALPHA = 0.01

# Thresholds on the median, over the backbone's blocks, of `bn_shift`'s block
# shift (Gaussian KL per channel). Calibrated on ImageNet MobileNetV2
# (torchvision weights) at 160x160 px, up to 300 shuffled images per split:
# hymenoptera_data (ants/bees, photos like ImageNet's) gave 0.053 (train) and
# 0.050 (val), the same photos in greyscale 0.055 and at 40% contrast 0.050;
# neu_steel_defects (steel-surface close-ups) gave 0.108 (train) and 0.105
# (val). Photos with channels swapped (0.066) or inverted (0.071) land
# between; blurred to 40x40 px, 0.088. Trained by hand for the same epochs
# (`python -m benchmarks.choosing`), ants/bees gained 2 points from the top 2
# blocks at 1e-5 over feature extraction (0.889 vs 0.869) and lost 1 with all
# blocks; steel gained 3 from the top 8 at 1e-4 (0.993 vs 0.964). So a near
# target like ants/bees is "few", not "none": "none" is left for targets
# closer still. The median, not the mean: MobileNetV2's top blocks are
# shifted on every target at 160 px (block_16: 0.28 to 0.34 on all of these),
# and would dominate a mean.
NEAR_SHIFT = 0.03
FAR_SHIFT = 0.08
# Blocks a "few" answer unfreezes when only the shift asks for them.
FEW_TOP_BLOCKS = 2


@dataclasses.dataclass
class Suggestion:
    """How far to unfreeze, read by `suggest_unfreeze` off the probe curve and the BatchNorm shift.

    Attributes:
        top_blocks: backbone blocks to unfreeze from the top (0: keep the
            backbone frozen, train the head only); pass it straight to
            `kt.unfreeze(model, top_blocks=...)` or `fine_tune(...,
            top_blocks=...)`. None when `depth_class` is `"unknown"`.
        from_block: the lowest block to unfreeze (None when `top_blocks` is
            0 or None, or the block names are unknown); the same choice for
            `kt.unfreeze(model, from_block=...)`.
        peak_block: the highest block whose probe accuracy is within
            `tolerance` of the best.
        reason: the advice and its evidence, in words.
        table: the probe table it was read from.
        depth_class: `"none"` (feature extraction), `"few"` (a few top
            blocks) or `"most"` (most or all blocks), one of
            `DEPTH_CLASSES`; or `"unknown"` when the probe's best accuracy
            is not clearly above chance, so no depth can be read from it.
        strategy: the matching `fine_tune` strategy: `"feature_extraction"`,
            `"fine_tune"` (the top `top_blocks`) or `"full"` (every block);
            `"auto"` (candidate depths chosen by trial) with `"unknown"`.
        shift: the `bn_shift` table it read (None when the shift was not
            measured).
        shift_level: the median block shift of `shift` (None without it).
    """

    top_blocks: int
    from_block: object
    peak_block: str
    reason: str
    table: pd.DataFrame
    depth_class: str = None
    strategy: str = None
    shift: pd.DataFrame = None
    shift_level: float = None

    @property
    def fine_tune_kwargs(self):
        """The advice as `kt.fine_tune` arguments: `fine_tune(model, ..., **s.fine_tune_kwargs)`."""
        return {"strategy": self.strategy, "top_blocks": self.top_blocks}

    def __str__(self):
        return self.reason


def suggest_unfreeze(probe_table_or_backbone, train_ds=None, val_ds=None, *, tolerance=0.02, shift_table=None,
                     evidence="auto", **probe_kwargs):
    """Suggests how far to unfreeze: none, a few top blocks, or most of the backbone, and why.

    Two pieces of evidence, each seeing what the other cannot:

    - The linear-probe curve (`probe_blocks`) shows where the features the
      target needs live. The peak is the highest block whose probe accuracy
      is within `tolerance` of the best; blocks above it only lose target
      information (they are specific to the source task), so they are the
      ones to unfreeze. A probe cannot see what fine-tuning would gain.
    - The BatchNorm shift (`bn_shift`): how far the target's activation
      statistics are from the source's, which the BatchNorm layers store.
      A target far from the source (median block shift at least
      `FAR_SHIFT`) runs every block off the distribution it was trained on:
      unfreeze all blocks (`strategy="full"`, at low per-block rates). A
      moderate shift (at least `NEAR_SHIFT`) unfreezes a few top blocks.

    The answer is the deeper of the two: `"none"` when the probe rises to the
    top and the shift is small; `"few"` when the probe peaks in the top
    third or the shift is moderate; `"most"` when the probe peaks lower or
    the shift is far (`depth_class` names a depth). With a probe table
    alone (or a backbone without BatchNorm), the class comes from the probe
    curve alone.

    A probe at chance shows nothing: when its best validation accuracy is
    not clearly above the largest class's share of the validation labels
    (a one-sided exact binomial test at `CHANCE_ALPHA`, divided by the
    number of probed blocks), no depth is advised. `depth_class` is then
    `"unknown"`, `top_blocks` None and `strategy` `"auto"` (let
    `fine_tune` try candidate depths); a measured BatchNorm shift is
    reported but sets no depth alone, since it says how far the statistics
    moved, not whether the features carry the labels. The check needs the
    validation class counts `probe_blocks` stores in
    `table.attrs["val_class_counts"]`; a table without them is not checked.

    Args:
        probe_table_or_backbone: a table from `probe_blocks`, or a backbone
            to probe (then pass `train_ds` and `val_ds`).
        train_ds, val_ds: data for `probe_blocks` (and `bn_shift`, on
            `train_ds`) when a backbone is given.
        tolerance: accuracy differences up to this are treated as equal (a
            fraction in [0, 1)); larger values unfreeze fewer blocks.
        shift_table: a table from `bn_shift`, to read with a probe table.
        evidence: with a backbone, `"auto"` (the probe, plus the BatchNorm
            shift when the backbone has BatchNorm layers), `"probe"` (the
            probe alone) or `"bn_shift"` (both; an error without BatchNorm).
        **probe_kwargs: other `probe_blocks` arguments (`blocks`,
            `batch_size`, `max_examples`, `verbose`); `bn_shift` gets the
            same ones.

    Returns:
        A `Suggestion`.

    Example:

    >>> import pandas as pd, keras_transfer as kt
    >>> table = pd.DataFrame({"block": ["stem", "block1", "block2", "top"],
    ...                       "depth": [0, 1, 2, 3], "blocks_above": [3, 2, 1, 0],
    ...                       "params": [10, 20, 40, 80],
    ...                       "probe_accuracy": [0.6, 0.9, 0.7, 0.65]})
    >>> s = kt.suggest_unfreeze(table)
    >>> s.top_blocks, s.from_block, s.depth_class
    (2, 'block2', 'few')
    >>> rising = table.assign(probe_accuracy=[0.6, 0.7, 0.8, 0.9])
    >>> far = pd.DataFrame({"block": ["stem", "block1", "block2", "top"], "depth": [0, 1, 2, 3],
    ...                     "shift": [0.2, 0.1, 0.12, 0.3]})
    >>> s = kt.suggest_unfreeze(rising, shift_table=far)
    >>> s.depth_class, s.top_blocks, s.from_block, s.strategy
    ('most', 4, 'stem', 'full')
    >>> flat = table.assign(probe_accuracy=[0.5, 0.52, 0.55, 0.54])
    >>> flat.attrs["val_class_counts"] = [50, 50]  # as probe_blocks records them
    >>> s = kt.suggest_unfreeze(flat)
    >>> s.depth_class, s.top_blocks, s.fine_tune_kwargs
    ('unknown', None, {'strategy': 'auto', 'top_blocks': None})
    """
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be a number in [0, 1). Received: tolerance={tolerance!r}")
    if evidence not in ("auto", "probe", "bn_shift"):
        raise ValueError(
            f"`evidence` must be one of ['auto', 'probe', 'bn_shift']. Received: evidence={evidence!r}"
        )
    if isinstance(probe_table_or_backbone, pd.DataFrame):
        if train_ds is not None or val_ds is not None or probe_kwargs or evidence != "auto":
            raise ValueError(
                "Pass either a probe table (and optionally `shift_table`), or a backbone with `train_ds` "
                "and `val_ds`; data, `evidence` and probe arguments are only used with a backbone."
            )
        table = probe_table_or_backbone
        _check_table(table, {"block", "depth", "blocks_above", "probe_accuracy"}, "probe_table_or_backbone",
                     "probe_blocks")
        if shift_table is not None:
            _check_table(shift_table, {"block", "depth", "shift"}, "shift_table", "bn_shift")
    else:
        if shift_table is not None:
            raise ValueError("`shift_table` goes with a probe table; with a backbone, `suggest_unfreeze` "
                             "measures the shift itself.")
        if train_ds is None or val_ds is None:
            raise ValueError(
                "With a backbone, `suggest_unfreeze` probes it and needs `train_ds` and `val_ds`. "
                f"Received: train_ds={inputs.short(train_ds)}, val_ds={inputs.short(val_ds)}"
            )
        table = probe_blocks(probe_table_or_backbone, train_ds, val_ds, **probe_kwargs)
        if evidence == "bn_shift" or (
                evidence == "auto" and _bn_layers(probe_table_or_backbone, probe_kwargs.get("blocks"))):
            shift_kwargs = {k: v for k, v in probe_kwargs.items() if v is not None}
            shift_table = bn_shift(probe_table_or_backbone, train_ds, **shift_kwargs)
    table = table.sort_values("depth", ignore_index=True)
    accuracy = table.probe_accuracy.to_numpy(dtype=float)
    best = int(np.argmax(accuracy))
    peak = int(np.flatnonzero(accuracy >= accuracy[best] - tolerance)[-1])
    peak_row = table.iloc[peak]
    chance = _chance_test(table, best)
    if chance is not None and chance["p_value"] >= chance["alpha"]:
        level = None if shift_table is None else shift_level(shift_table)
        return Suggestion(None, None, str(peak_row.block), _reason_at_chance(table, best, chance, shift_table, level),
                          table, "unknown", "auto", shift_table, level)
    probe_top = int(peak_row.blocks_above)
    # Any row knows the backbone's size: blocks below it, itself, blocks above it.
    total = int(table.depth.iloc[0] + table.blocks_above.iloc[0] + 1)
    names = table.attrs.get("backbone_blocks")
    if names is None and list(table.depth) == list(range(len(table))) and table.blocks_above.iloc[-1] == 0:
        names = list(table.block)
    probe_class = depth_class(probe_top, total)
    if shift_table is None:
        top_blocks, answer, level = probe_top, probe_class, None
        from_block = names[len(names) - top_blocks] if top_blocks and names else None
        reason = _reason(table, peak, top_blocks, from_block, tolerance) + (
            f" Depth class {answer!r} from the probe alone (no BatchNorm statistics were compared)."
        )
    else:
        shift_table = shift_table.sort_values("depth", ignore_index=True)
        level = shift_level(shift_table)
        shift_class = _shift_class(level)
        answer = max(probe_class, shift_class, key=DEPTH_CLASSES.index)
        if answer == probe_class:
            top_blocks = probe_top
        else:
            top_blocks = total if answer == "most" else min(FEW_TOP_BLOCKS, total)
        from_block = names[len(names) - top_blocks] if top_blocks and names else None
        reason = _reason_with_shift(table, peak, probe_top, tolerance, shift_table, level, answer,
                                    top_blocks, total, from_block)
    strategy = "feature_extraction" if top_blocks == 0 else "full" if top_blocks == total else "fine_tune"
    return Suggestion(top_blocks, from_block, str(peak_row.block), reason, table, answer, strategy,
                      shift_table, level)


def _chance_test(table, best):
    """The binomial test of the best block against chance; None without `probe_blocks`' validation counts."""
    counts = table.attrs.get("val_class_counts")
    if not counts or sum(counts) == 0:
        return None
    n = int(sum(counts))
    rate = max(counts) / n
    correct = int(round(float(table.probe_accuracy.iloc[best]) * n))
    return {"n": n, "rate": rate, "correct": correct, "p_value": _binomial_tail(correct, n, rate),
            "alpha": CHANCE_ALPHA / len(table)}


def _binomial_tail(k, n, p):
    """P(K >= k) for K ~ Binomial(n, p), summed exactly (in logs, so large n cannot overflow)."""
    if k <= 0 or p >= 1:
        return 1.0
    if p <= 0:
        return 0.0
    j = np.arange(k, n + 1)
    log_choose = math.lgamma(n + 1) - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in j])
    log_pmf = log_choose + j * math.log(p) + (n - j) * math.log1p(-p)
    top = log_pmf.max()
    return float(min(1.0, math.exp(top) * np.exp(log_pmf - top).sum()))


def _reason_at_chance(table, best, chance, shift, level):
    row = table.iloc[best]
    text = (
        f"No depth can be read from the probe: its best validation accuracy, {row.probe_accuracy:.2f} at "
        f"{row.block!r} ({chance['correct']} of {chance['n']}), is not clearly above chance, {chance['rate']:.2f} "
        f"(the largest class's share of the validation labels): one-sided exact binomial p = "
        f"{chance['p_value']:.2g}, and the best of {len(table)} blocks needs p < {chance['alpha']:.2g} "
        f"({CHANCE_ALPHA:g} / {len(table)}). A probe at chance does not show where the features the target "
        f"needs live, so neither keeping the backbone frozen nor any depth follows from it."
    )
    if "train_accuracy" in table.columns and table.train_accuracy.max() >= 1.0:
        fitted = table.block.iloc[int(np.argmax(table.train_accuracy.to_numpy(dtype=float)))]
        text += (
            f" The probe fits its training sample perfectly (train accuracy 1.00 at {fitted!r}) and still fails "
            f"on validation: it memorised the sample rather than found the classes."
        )
    if shift is not None:
        distance = "far from" if level >= FAR_SHIFT else "moderately far from" if level >= NEAR_SHIFT else "close to"
        text += (
            f" The BatchNorm statistics are {distance} the source's (median block shift {level:.3f}), but that "
            f"says how far the statistics moved, not whether the features carry the labels; `strategy='auto'` "
            f"prunes its candidates by it."
        )
    return text + (
        " Check the data (labels that match the images, the same classes in training and validation, enough "
        "examples: `max_examples`), or let fine-tuning choose by trial: `fine_tune(..., strategy='auto')`."
    )


def _check_table(table, needed, name, producer):
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns) or table.empty:
        columns = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise ValueError(
            f"`{name}` must be a non-empty table from `{producer}`, with columns {sorted(needed)}. "
            f"Received columns: {columns}"
        )


def shift_level(shift_table):
    """The one number `suggest_unfreeze` reads off a `bn_shift` table: the median block shift.

    Example:

    >>> import pandas as pd
    >>> from keras_transfer.diagnostics import shift_level
    >>> shift_level(pd.DataFrame({"shift": [0.02, 0.05, 0.3]}))
    0.05
    """
    if not isinstance(shift_table, pd.DataFrame) or "shift" not in shift_table or shift_table.empty:
        raise ValueError(f"`shift_table` must be a non-empty table from `bn_shift`. Received: {inputs.short(shift_table)}")
    return float(np.median(shift_table["shift"].to_numpy(dtype=float)))


def _shift_class(level):
    return "most" if level >= FAR_SHIFT else "few" if level >= NEAR_SHIFT else "none"


def depth_class(top_blocks, num_blocks):
    """How far an unfreezing depth goes, in `suggest_unfreeze`'s three words.

    `"none"` for 0 blocks; `"few"` for up to a third of the backbone's blocks
    (at least `FEW_TOP_BLOCKS`, so a short backbone still has a "few");
    `"most"` beyond.

    Args:
        top_blocks: backbone blocks that train, from the top.
        num_blocks: backbone blocks in all.

    Returns:
        One of `DEPTH_CLASSES`.

    Example:

    >>> from keras_transfer.diagnostics import depth_class
    >>> [depth_class(k, 18) for k in (0, 2, 6, 8, 18)]
    ['none', 'few', 'few', 'most', 'most']
    """
    for name, value, low in (("top_blocks", top_blocks, 0), ("num_blocks", num_blocks, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if top_blocks > num_blocks:
        raise ValueError(
            f"`top_blocks` cannot exceed `num_blocks`. Received: top_blocks={top_blocks}, num_blocks={num_blocks}"
        )
    if top_blocks == 0:
        return "none"
    return "few" if top_blocks <= max(FEW_TOP_BLOCKS, num_blocks // 3) else "most"


def _reason(table, peak, top_blocks, from_block, tolerance):
    acc = table.probe_accuracy.to_numpy(dtype=float)
    peak_row, top_row = table.iloc[peak], table.iloc[-1]
    curve = ", ".join(f"{b} {a:.2f}" for b, a in zip(table.block, acc))
    if top_blocks == 0:
        return (
            f"Probe accuracy keeps rising to the top block ({curve}): the pretrained top features already "
            f"suit the target, so keep the backbone frozen and train the head (feature extraction); "
            f"unfreezing the top block at a low learning rate is the most to try."
        )
    where = f"from {from_block!r}" if from_block else f"the top {top_blocks}"
    text = (
        f"Probe accuracy peaks at {peak_row.block!r} ({acc[peak]:.2f}) and falls to {acc[-1]:.2f} at "
        f"{top_row.block!r} ({curve}; differences under {tolerance:.2f} count as equal): the {top_blocks} "
        f"block(s) above the peak are specific to the source task, so unfreeze {where} "
        f"(top_blocks={top_blocks})"
    )
    if "params" in table.columns:
        above = table.params.iloc[peak + 1 :].sum()
        text += f", which trains {int(above):,} of {int(table.params.sum()):,} probed backbone parameters"
    if peak == 0 and len(table) > 1:
        text += "; the target differs from the source even in the lowest block: check `negative_transfer`"
    return text + "."


def _reason_with_shift(table, peak, probe_top, tolerance, shift, level, depth_class, top_blocks, total,
                       from_block):
    where = f", from {from_block!r}" if from_block else ""
    verdict = {
        "none": "Keep the backbone frozen and train the head (depth class 'none': feature extraction, "
                "top_blocks=0)",
        "few": f"Unfreeze a few top blocks (depth class 'few': top_blocks={top_blocks}{where}, "
               f"strategy='fine_tune')",
        "most": f"Unfreeze most of the backbone (depth class 'most': top_blocks={top_blocks} of {total}{where}, "
                + ("strategy='full', at low per-block rates)" if top_blocks == total else "strategy='fine_tune')"),
    }[depth_class]
    values = shift["shift"].to_numpy(dtype=float)
    high, low = int(np.argmax(values)), int(np.argmin(values))
    distance = "far from" if level >= FAR_SHIFT else "moderately far from" if level >= NEAR_SHIFT else "close to"
    shift_text = (
        f"the target's activation statistics are {distance} the source's that the BatchNorm layers store: "
        f"median block shift {level:.3f} (mean Gaussian KL per channel; below {NEAR_SHIFT:g} counts as near, "
        f"{FAR_SHIFT:g} and above as far), highest at {shift.block.iloc[high]!r} ({values[high]:.3f}), lowest "
        f"at {shift.block.iloc[low]!r} ({values[low]:.3f})"
    )
    acc = table.probe_accuracy.to_numpy(dtype=float)
    curve = ", ".join(f"{b} {a:.2f}" for b, a in zip(table.block, acc))
    if probe_top == 0:
        probe_text = f"probe accuracy keeps rising to the top block ({curve})"
        probe_text += (", so the pretrained features suit the target as they are" if depth_class == "none" else
                       ", but a linear probe of frozen features cannot see what fine-tuning gains on a shifted "
                       "target")
    else:
        probe_text = (
            f"probe accuracy peaks at {table.block.iloc[peak]!r} ({acc[peak]:.2f}) and falls to {acc[-1]:.2f} "
            f"at the top ({curve}; differences under {tolerance:.2f} count as equal): the {probe_top} "
            f"block(s) above the peak are specific to the source task"
        )
    if depth_class == "none":
        tail = "; unfreezing the top block at a low learning rate is the most to try"
    elif depth_class == "most" and level >= FAR_SHIFT:
        tail = "; every block runs off the distribution it was trained on, so every block should adapt"
    else:
        tail = ""
    return f"{verdict}: {shift_text}; {probe_text}{tail}."


# --- BatchNorm statistics shift --------------------------------------------------


def bn_shift(backbone, target_ds, *, blocks=None, max_examples=500, batch_size=32, per_layer=False, verbose=1):
    """Measures, block by block, how far the target's activation statistics are from the source's.

    A pretrained BatchNormalization layer stores the source's per-channel
    mean and variance of its input (`moving_mean`, `moving_variance`). One
    pass of the target data through the backbone (in inference mode, as a
    frozen backbone runs) gives the target's per-channel mean `mu_t` and
    variance `var_t` of the same inputs, over examples and positions (each
    example weighs the same). Per channel, the shift is the KL divergence
    between the Gaussians N(mu_t, var_t + eps) and N(mu_s, var_s + eps)
    (`eps` the layer's epsilon, which BatchNorm adds to the variance too):

        shift = mean_shift + var_shift
        mean_shift = (mu_t - mu_s)**2 / (2 (var_s + eps))
        var_shift = (r - 1 - log r) / 2,  r = (var_t + eps) / (var_s + eps)

    It is exactly 0 when the statistics match, grows with the mean offset in
    units of the source's standard deviation and with the variance ratio
    either way, and has no scale: it reads the same at every layer. It is
    averaged over channels, then over a block's BatchNorm layers.

    Args:
        backbone: a `keras.Model` or `kt.Backbone` with BatchNormalization
            layers (top-level layers of its blocks).
        target_ds: target data: `(x, y)` arrays, arrays `x`, or a dataset of
            `(x, y)` batches, preprocessed for the backbone (labels only
            choose the sample).
        blocks: block names to measure; default every backbone block.
        max_examples: examples used; at least 1. A class-stratified sample
            with a fixed seed of `(x, y)` arrays and of a `kt.data` loader's
            dataset (as in `probe_blocks`), a random one of `x` arrays, the
            first ones of any other dataset (shuffle it once, with a fixed
            seed, if it is sorted by class).
        batch_size: batch size of the pass for array inputs.
        per_layer: if True, one row per BatchNormalization layer instead of
            per block, with its `layer` name and `channels`.
        verbose: 0 silent, 1 a progress bar.

    Returns:
        A `pandas.DataFrame`, one row per block that has BatchNormalization
        layers, from input to output: `block`, `depth` (index among the
        backbone blocks), `bn_layers`, `shift`, `mean_shift`, `var_shift`.
        `table.attrs["backbone_blocks"]` lists every backbone block.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((2,))
    >>> x = keras.layers.BatchNormalization(name="stem_bn")(inputs)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> x = np.array([[1.0, 2.0], [-1.0, 4.0]] * 8)  # mean (0, 3), variance (1, 1)
    >>> backbone.get_layer("stem_bn").set_weights(
    ...     [np.ones(2), np.zeros(2), np.array([0.0, 3.0]), np.ones(2)])
    >>> kt.bn_shift(backbone, x, verbose=0)[["block", "bn_layers", "shift"]].round(6).values.tolist()
    [['stem', 1, 0.0]]
    """
    model, chosen, names = _resolve_blocks(backbone, blocks)
    _checks.positive_int("max_examples", max_examples)
    _checks.positive_int("batch_size", batch_size)
    found = [(block, depth, layer) for block, depth in zip(chosen, _depths(chosen, names))
             for layer in block.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not found:
        raise ValueError(
            f"`bn_shift` needs BatchNormalization layers, which store the source's activation statistics; "
            f"`backbone` {model.name!r} has none in blocks {[b.name for b in chosen]}. Without BatchNorm "
            f"(e.g. a LayerNorm transformer), compare with source data (`kt.domain_shift`) or use the probe "
            f"alone (`kt.suggest_unfreeze(..., evidence='probe')`)."
        )
    outputs = [_channel_moments(layer) for _, _, layer in found]
    stats_model = keras.Model(_graph_of(model, chosen).input, [t for pair in outputs for t in pair],
                              name="bn_statistics")
    target_ds = inputs.sample(target_ds, "target_ds", max_examples)
    moments, _ = _collect(stats_model, target_ds, "target_ds", batch_size, max_examples, verbose, labels=False)
    rows = []
    for (block, depth, layer), means, variances in zip(found, moments[::2], moments[1::2]):
        means, variances = means.astype("float64"), variances.astype("float64")
        mu_t = means.mean(0)
        # Law of total variance: within examples (over positions) plus between examples.
        var_t = variances.mean(0) + np.square(means - mu_t).mean(0)
        mu_s = keras.ops.convert_to_numpy(layer.moving_mean).astype("float64")
        var_s = keras.ops.convert_to_numpy(layer.moving_variance).astype("float64")
        mean_part, var_part = _gaussian_kl_parts(mu_t, var_t, mu_s, var_s, float(layer.epsilon))
        rows.append({"block": block.name, "depth": depth, "layer": layer.name, "channels": mu_t.size,
                     "shift": float(np.mean(mean_part + var_part)), "mean_shift": float(np.mean(mean_part)),
                     "var_shift": float(np.mean(var_part))})
    table = pd.DataFrame(rows)
    if not per_layer:
        table = table.groupby(["block", "depth"], sort=False, as_index=False).agg(
            bn_layers=("layer", "size"), shift=("shift", "mean"), mean_shift=("mean_shift", "mean"),
            var_shift=("var_shift", "mean"))
    table = table.sort_values("depth", kind="stable", ignore_index=True)
    table.attrs["backbone_blocks"] = names
    return table


def _gaussian_kl_parts(mu_t, var_t, mu_s, var_s, epsilon):
    """KL(N(mu_t, var_t + eps) || N(mu_s, var_s + eps)) per channel, as (mean part, variance part)."""
    denominator = var_s + epsilon
    mean_part = 0.5 * np.square(mu_t - mu_s) / denominator
    # r - 1 - log r with r = 1 + d, written so that it is exactly 0 at d = 0.
    d = (var_t - var_s) / denominator
    return mean_part, 0.5 * (d - np.log1p(d))


def _channel_moments(layer):
    """Symbolic per-example, per-channel mean and variance (over positions) of a BatchNorm layer's input."""
    x = keras.ops.cast(layer.input, "float32")
    rank = len(x.shape)
    channel = layer.axis % rank
    positions = tuple(a for a in range(1, rank) if a != channel)
    if not positions:
        return x, keras.ops.zeros_like(x)
    mean = keras.ops.mean(x, axis=positions, keepdims=True)
    variance = keras.ops.mean(keras.ops.square(x - mean), axis=positions)
    return keras.ops.squeeze(mean, axis=positions), variance


def _bn_layers(backbone, blocks):
    """Whether the chosen blocks of the backbone hold BatchNormalization layers."""
    _, chosen, _ = _resolve_blocks(backbone, blocks)
    return any(isinstance(layer, keras.layers.BatchNormalization) for b in chosen for layer in b.layers)


# --- domain shift ---------------------------------------------------------------


def domain_shift(backbone, source_ds, target_ds, blocks=None, *, max_examples=500, permutations=200, seed=0,
                 plot_path=None, batch_size=32, verbose=1):
    """Measures, block by block, how far the target's features are from the source's.

    The distance is the squared maximum mean discrepancy (MMD², unbiased
    estimate) with an RBF kernel whose bandwidth is the median pairwise
    distance, on features standardized with the pooled mean and standard
    deviation. MMD compares two *different* samples, needs no pairing (CKA
    compares representations of the same inputs, so it cannot compare two
    datasets) and stays well-behaved when there are fewer examples than
    feature dimensions (a Fréchet distance needs a full covariance estimate,
    which is singular there). Two references make the number readable:
    `null_mmd`, the same statistic between two random halves of the source,
    and `p_value`, from a permutation test of "same distribution".

    Args:
        backbone: a `keras.Model` or `kt.Backbone`.
        source_ds: source-domain data: `(x, y)` arrays, arrays `x`, or a
            dataset of `(x, y)` batches (labels are ignored).
        target_ds: target-domain data, in the same form.
        blocks: block names to measure; default every backbone block.
        max_examples: examples used from each dataset (the kernel is
            quadratic in it); at least 4. A sample drawn with `seed`: class-
            stratified from `(x, y)` arrays and a `kt.data` loader's dataset
            (as in `probe_blocks`), random from `x` arrays; the first ones
            of any other dataset (shuffle it once, with a fixed seed, if it
            is sorted by class).
        permutations: permutations of the test; at least 1.
        seed: seed of the samples, the source split and the permutations.
        plot_path: if given, a per-block plot is written there (PNG).
        batch_size: batch size of the feature pass for array inputs.
        verbose: 0 silent, 1 a progress bar per feature pass.

    Returns:
        A `pandas.DataFrame`, one row per block: `block`, `depth`,
        `feature_dim`, `mmd`, `null_mmd`, `p_value`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((3,))
    >>> x = keras.layers.Dense(3, name="stem_dense", kernel_initializer="identity")(inputs)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> rng = np.random.default_rng(0)
    >>> source = rng.normal(size=(100, 3)).astype("float32")
    >>> shift = kt.domain_shift(backbone, source, source + 2.0, verbose=0)
    >>> bool(shift.p_value[0] < 0.01)
    True
    """
    model, chosen, names = _resolve_blocks(backbone, blocks)
    _checks.positive_int("max_examples", max_examples)
    if max_examples < 4:
        raise ValueError(f"`max_examples` must be at least 4. Received: max_examples={max_examples}")
    _checks.positive_int("permutations", permutations)
    _checks.positive_int("batch_size", batch_size)
    source_ds = inputs.sample(source_ds, "source_ds", max_examples, seed=seed)
    target_ds = inputs.sample(target_ds, "target_ds", max_examples, seed=seed)
    extractor = _feature_model(model, chosen)
    source, _ = _pooled(extractor, source_ds, "source_ds", batch_size, max_examples, verbose, labels=False)
    target, _ = _pooled(extractor, target_ds, "target_ds", batch_size, max_examples, verbose, labels=False)
    for name, features in (("source_ds", source), ("target_ds", target)):
        if len(features[0]) < 4:
            raise ValueError(f"`{name}` must hold at least 4 examples. Received: {len(features[0])}")
    rows = []
    for block, depth, s, t in zip(chosen, _depths(chosen, names), source, target):
        mmd, null, p_value = _mmd_test(s, t, permutations, seed)
        rows.append({"block": block.name, "depth": depth, "feature_dim": s.shape[1],
                     "mmd": mmd, "null_mmd": null, "p_value": p_value})
    table = pd.DataFrame(rows).sort_values("depth", ignore_index=True)
    if plot_path is not None:
        _plot_shift(table, plot_path)
    return table


def _mmd_test(source, target, permutations, seed):
    pooled = np.concatenate([source, target]).astype("float64")
    pooled = _standardize(pooled, pooled)
    sq = np.square(pooled).sum(1)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    n = len(pooled)
    off_diagonal = dist2[~np.eye(n, dtype=bool)]
    median = np.median(off_diagonal)
    # Constant features (a block that erased everything) have zero distances;
    # any bandwidth then gives MMD 0, the right answer.
    kernel = np.exp(-dist2 / (2 * (median if median > 0 else 1.0)))
    rng = np.random.default_rng(seed)
    n_source = len(source)
    observed = np.zeros(n, dtype=bool)
    observed[:n_source] = True
    half = rng.permutation(n_source)[: n_source // 2]
    split_a = np.zeros(n, dtype=bool)
    split_a[half] = True
    split_b = observed & ~split_a
    masks = [rng.permutation(observed) for _ in range(permutations)]
    a = np.stack([observed, split_a] + masks, axis=1).astype("float64")
    b = np.stack([~observed, split_b] + [~m for m in masks], axis=1).astype("float64")
    mmd = _unbiased_mmd2(kernel, a, b)
    p_value = (1 + np.sum(mmd[2:] >= mmd[0])) / (1 + permutations)
    return float(mmd[0]), float(mmd[1]), float(p_value)


def _unbiased_mmd2(kernel, a, b):
    """MMD² of the sample pairs given as indicator columns of `a` and `b` (kernel diagonal is 1)."""
    ka, kb = kernel @ a, kernel @ b
    na, nb = a.sum(0), b.sum(0)
    within_a = ((a * ka).sum(0) - na) / (na * (na - 1))
    within_b = ((b * kb).sum(0) - nb) / (nb * (nb - 1))
    across = (a * kb).sum(0) / (na * nb)
    return within_a + within_b - 2 * across


def _plot_shift(table, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5, 0.45 * len(table) + 2), 3.2))
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.plot(x, table.mmd, "o-", color="#3b75af", label="source vs target")
    ax.plot(x, table.null_mmd, "s--", color="#999999", label="source half vs half (null)")
    significant = table.p_value.to_numpy() < 0.05
    ax.plot(x[significant], table.mmd[significant], "o", color="#c0392b", label="p < 0.05")
    ax.set_xticks(x, table.block, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("MMD² (RBF, median bandwidth)")
    ax.set_title("Domain shift per block")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- negative transfer ----------------------------------------------------------


@dataclasses.dataclass
class NegativeTransferResult:
    """What `negative_transfer` returns.

    Attributes:
        pretrained_accuracy: validation accuracy from the pretrained start.
        scratch_accuracy: validation accuracy from a re-initialised copy.
        margin: `pretrained_accuracy - scratch_accuracy`.
        negative: True when scratch beats the pretrained start by more than
            the tolerance: transfer hurts.
        message: the verdict in one sentence.
        history: both runs' per-epoch histories, with a `start` column.
    """

    pretrained_accuracy: float
    scratch_accuracy: float
    margin: float
    negative: bool
    message: str
    history: pd.DataFrame

    def __str__(self):
        return self.message


def negative_transfer(pretrained_backbone, train_ds, val_ds, *, num_classes=None, epochs=6, strategy="fine_tune",
                      tolerance=0.0, batch_size=32, seed=0, verbose=0, **fine_tune_kwargs):
    """Compares a pretrained start with a scratch start at an equal budget.

    Both runs go through `kt.fine_tune` on the same data, seed and epoch
    budget: the pretrained backbone with `strategy` (half the epochs for the
    head, half for fine-tuning), and the same architecture re-initialised
    (`strategy="scratch"`, `keras.models.clone_model`) trained end to end for
    all the epochs. Transfer is negative when scratch wins.

    Args:
        pretrained_backbone: a `keras.Model` or `kt.Backbone` with pretrained
            weights.
        train_ds: `(x, y)` arrays or a dataset of `(x, y)` batches.
        val_ds: validation data, in the same form.
        num_classes: number of classes; inferred from array labels.
        epochs: the budget of each run, in epochs; at least 2.
        strategy: how the pretrained start trains: `"fine_tune"`,
            `"feature_extraction"`, `"full"` or `"lora"`.
        tolerance: how much more accuracy scratch needs before transfer is
            called negative.
        batch_size: batch size for array inputs.
        seed: seed of both runs (weights of the new head, data order). The
            global random state the caller had is handed back afterwards.
        verbose: Keras `fit` verbosity.
        **fine_tune_kwargs: other `kt.fine_tune` arguments (`head_lr`,
            `backbone_lr`, `top_blocks`, ...), used by both runs.

    Returns:
        A `NegativeTransferResult`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(8, name="stem_dense", kernel_initializer="zeros")(inputs)
    >>> x = keras.layers.Dense(8, name="block1_dense", kernel_initializer="zeros")(x)
    >>> degenerate = keras.Model(inputs, x, name="demo_convnet")
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> result = kt.negative_transfer(degenerate, (x, y), (x, y), epochs=4,
    ...                               head_lr=0.05)  # doctest: +SKIP
    >>> result.negative  # doctest: +SKIP
    True
    """
    from keras_transfer.workflow import fine_tune

    model = _as_model(pretrained_backbone)
    if strategy not in ("fine_tune", "feature_extraction", "full", "lora"):
        raise ValueError(
            "`strategy` is how the pretrained start trains. Received: "
            f"strategy={strategy!r}. Valid strategies: ['fine_tune', 'feature_extraction', 'full', 'lora']"
        )
    _checks.positive_int("epochs", epochs)
    if epochs < 2:
        raise ValueError(f"`epochs` must be at least 2 (head, then fine-tuning). Received: epochs={epochs}")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be a number in [0, 1). Received: tolerance={tolerance!r}")
    taken = {"num_classes", "strategy", "head_epochs", "fine_tune_epochs"} & set(fine_tune_kwargs)
    if taken:
        raise TypeError(
            f"`negative_transfer` sets {sorted(taken)} itself (use `epochs`, `strategy`, `num_classes`). "
            f"Received: {({k: fine_tune_kwargs[k] for k in taken})}"
        )
    train_ds, inferred = _as_dataset(train_ds, "train_ds", batch_size, shuffle=True, seed=seed)
    val_ds, val_inferred = _as_dataset(val_ds, "val_ds", batch_size, shuffle=False, seed=seed)
    if num_classes is None:
        if inferred is None:
            raise ValueError(
                "`num_classes` is needed when `train_ds` is a dataset (it is inferred from array "
                "labels only). Received: num_classes=None"
            )
        num_classes = max(inferred, val_inferred or 0)
    head_epochs = math.ceil(epochs / 2)
    settings = dict(num_classes=num_classes, head_epochs=head_epochs, fine_tune_epochs=epochs - head_epochs,
                    early_stopping=False, verbose=verbose, **fine_tune_kwargs)
    runs = {}
    for start, run_strategy in (("pretrained", strategy), ("scratch", "scratch")):
        with seeded(seed):
            runs[start] = fine_tune(model, train_ds, val_ds, strategy=run_strategy, **settings)
    pretrained = float(runs["pretrained"].metrics["accuracy"])
    scratch = float(runs["scratch"].metrics["accuracy"])
    margin = pretrained - scratch
    negative = -margin > tolerance
    budget = f"{epochs} epochs each"
    if negative:
        message = (f"Negative transfer: training from scratch beats the pretrained start by {-margin:.3f} "
                   f"accuracy ({scratch:.3f} vs {pretrained:.3f}, {budget}); the source features do not "
                   f"help this target.")
    else:
        message = (f"Transfer helps: the pretrained start ({strategy}) is {margin:+.3f} accuracy against "
                   f"scratch ({pretrained:.3f} vs {scratch:.3f}, {budget}).")
    history = pd.concat(
        [r.history.assign(start=start) for start, r in runs.items()], ignore_index=True
    )
    return NegativeTransferResult(pretrained, scratch, margin, negative, message, history)


# --- forgetting -------------------------------------------------------------------


@dataclasses.dataclass
class ForgettingResult:
    """What `forgetting` returns.

    Attributes:
        accuracy_before: source accuracy of the model before fine-tuning.
        accuracy_after: source accuracy with the fine-tuned backbone.
        retained: `accuracy_after / accuracy_before` (NaN if before is 0).
        copied_layers: backbone layers whose fine-tuned weights were copied
            under the source head (0 when `head="after"`).
        message: the verdict in one sentence.
    """

    accuracy_before: float
    accuracy_after: float
    retained: float
    copied_layers: int
    message: str

    def __str__(self):
        return self.message


def forgetting(model_before, model_after, source_ds, *, head="source", batch_size=32, max_examples=None,
               verbose=1):
    """Measures how much source-task accuracy survives fine-tuning.

    With `head="source"` (the default), the source model's own head judges
    the fine-tuned backbone: `model_before` is cloned, and every weight of its
    backbone blocks is replaced by the weights of the layer with the same
    name in the same-named block of `model_after`. So it works when the
    fine-tuned model has a different head (another number of classes), and
    neither input model changes. With `head="after"`, `model_after` is
    evaluated as it is (for a model trained to keep serving the source
    labels).

    Args:
        model_before: the source classifier (backbone + source head), before
            fine-tuning; one score per class.
        model_after: the model after fine-tuning on the target: the same
            backbone architecture (LoRA merged, `kt.merge_lora`), any head.
        source_ds: source-task data: `(x, y)` arrays or a dataset of `(x, y)`
            batches.
        head: `"source"` or `"after"` (see above).
        batch_size: batch size for array inputs.
        max_examples: evaluate on at most this many examples: the same
            class-stratified sample (fixed seed) for both models from `(x,
            y)` arrays and a `kt.data` loader's dataset (as in
            `probe_blocks`), the first ones of any other dataset.
        verbose: 0 silent, 1 a progress bar per pass.

    Returns:
        A `ForgettingResult`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((2,))
    >>> x = keras.layers.Dense(2, name="stem_dense", kernel_initializer="identity")(inputs)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> before = kt.build_classifier(backbone, num_classes=2, dropout=0.0)
    >>> before.get_layer("head_logits").set_weights([np.eye(2), np.zeros(2)])
    >>> tuned = keras.models.clone_model(backbone)  # fine-tuned, badly, for a 5-class target:
    >>> tuned.get_layer("stem_dense").set_weights([np.zeros((2, 2)), np.zeros(2)])
    >>> after = kt.build_classifier(tuned, num_classes=5)
    >>> x = np.array([[1, 0], [0, 1]] * 4, "float32"); y = np.array([0, 1] * 4)
    >>> result = kt.forgetting(before, after, (x, y), verbose=0)
    >>> result.accuracy_before, result.accuracy_after, result.retained
    (1.0, 0.5, 0.5)
    """
    before, after = _as_model(model_before, "model_before"), _as_model(model_after, "model_after")
    if head not in ("source", "after"):
        raise ValueError(f"`head` must be 'source' or 'after'. Received: head={head!r}")
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("max_examples", max_examples, optional=True)
    if before.output.shape[-1] in (None, 1) or len(before.output.shape) != 2:
        raise ValueError(
            "`model_before` must output one score per class, shape (batch, num_classes >= 2). "
            f"Received output shape: {before.output.shape}"
        )
    copied = 0
    if head == "source":
        judge = keras.models.clone_model(before)
        judge.set_weights(before.get_weights())
        copied = _copy_backbone_weights(after, judge)
    else:
        judge = after
    source_ds = inputs.sample(source_ds, "source_ds", max_examples)
    (scores_before,), labels = _collect(before, source_ds, "source_ds", batch_size, max_examples, verbose)
    (scores_after,), labels_after = _collect(judge, source_ds, "source_ds", batch_size, max_examples, verbose)
    if not np.array_equal(labels, labels_after):
        raise ValueError(
            "`source_ds` must yield the same examples in the same order on every pass (do not shuffle "
            "it): the two models are compared example by example."
        )
    acc_before = float(np.mean(np.argmax(scores_before, -1) == labels))
    acc_after = float(np.mean(np.argmax(scores_after, -1) == labels))
    retained = acc_after / acc_before if acc_before > 0 else float("nan")
    judged = "the source head on the fine-tuned backbone" if head == "source" else "the fine-tuned model"
    message = (f"Source accuracy {acc_before:.3f} before and {acc_after:.3f} after fine-tuning ({judged}): "
               f"{retained:.0%} retained.")
    return ForgettingResult(acc_before, acc_after, retained, copied, message)


def _copy_backbone_weights(source, target):
    """Copies `source`'s backbone-block weights into `target`, layer by layer, by name."""
    pairs, unmatched = _matched_backbone_weights(target, source, "model_before", "model_after")
    if unmatched:
        raise ValueError(
            f"`model_after` has no twin of these backbone layers of the source model: {unmatched[:5]}"
            f"{' ...' if len(unmatched) > 5 else ''}. Its backbone blocks: "
            f"{[b.name for b in get_blocks(source) if not b.is_head]}"
        )
    for variable, twin in pairs:
        variable.assign(twin)
    return len({v.path.rsplit("/", 1)[0] for v, _ in pairs})  # layers copied


def _matched_backbone_weights(model, reference, name="model", reference_name="reference"):
    """Pairs each backbone weight of `model` with the same weight of `reference`.

    Blocks and layers are matched by name (the head of either model is
    skipped). A layer both hold must hold weights of the same shapes. Returns
    `(pairs, unmatched)`: `(model variable, reference variable)` pairs, and
    the `block/layer` names of `model`'s backbone layers with weights that
    `reference` lacks.
    """
    reference_model = _as_model(reference, reference_name)
    spec = getattr(reference, "spec", None)
    reference_blocks = {b.name: b for b in get_blocks(reference_model, spec=spec) if not b.is_head}
    pairs, unmatched = [], []
    for block in get_blocks(model):
        if block.is_head:
            continue
        twin_block = reference_blocks.get(block.name)
        layers = {layer.name: layer for layer in twin_block.layers} if twin_block else {}
        for layer in block.layers:
            if not layer.weights:
                continue
            twin = layers.get(layer.name)
            if twin is None:
                unmatched.append(f"{block.name}/{layer.name}")
                continue
            shapes = [tuple(w.shape) for w in layer.weights]
            twin_shapes = [tuple(w.shape) for w in twin.weights]
            if shapes != twin_shapes:
                raise ValueError(
                    f"Layer {layer.name!r} of `{reference_name}` has weights of shapes {twin_shapes}, `{name}`'s "
                    f"has {shapes} (block {block.name!r}). If it carries LoRA adapters, merge them first "
                    "(`kt.merge_lora`)."
                )
            pairs.extend(zip(layer.weights, twin.weights))
    return pairs, unmatched


# --- features: one pass, every block -------------------------------------------------


def _as_model(backbone, name="backbone"):
    model = getattr(backbone, "model", backbone)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{name}` must be a keras.Model or a kt.Backbone. Received: {name}={inputs.short(backbone)} "
            f"of type {type(backbone).__name__}"
        )
    return model


def _resolve_blocks(backbone, blocks):
    """The model, the chosen backbone blocks in model order, and every backbone block name."""
    model = _as_model(backbone)
    # A kt.Backbone knows its family's spec even where its model's names do not say it.
    spec = getattr(backbone, "spec", None)
    all_blocks = [b for b in get_blocks(model, spec=spec) if not b.is_head]
    names = [b.name for b in all_blocks]
    if blocks is None:
        return model, all_blocks, names
    if isinstance(blocks, str) or not all(isinstance(b, str) for b in blocks) or not blocks:
        raise ValueError(f"`blocks` must be a non-empty list of block names. Received: blocks={blocks!r}")
    unknown = [b for b in blocks if b not in names]
    if unknown:
        raise ValueError(f"Unknown blocks in `blocks`: {unknown}. Valid block names: {names}")
    return model, [b for b in all_blocks if b.name in set(blocks)], names


def _depths(chosen, names):
    return [names.index(b.name) for b in chosen]


def _feature_model(model, chosen):
    """One model with a pooled output after each chosen block."""
    graph = _graph_of(model, chosen)
    outputs = []
    for block in chosen:
        x = block.layers[-1].output
        rank = len(x.shape)
        pool = {3: keras.layers.GlobalAveragePooling1D, 4: keras.layers.GlobalAveragePooling2D,
                5: keras.layers.GlobalAveragePooling3D}.get(rank)
        if pool is not None:
            x = pool(name=f"probe_pool_{block.name}")(x)
        elif rank != 2:
            raise ValueError(f"Block {block.name!r} outputs shape {x.shape}; only ranks 2 to 5 can be pooled.")
        outputs.append(x)
    return keras.Model(graph.input, outputs, name="block_features")


def _graph_of(model, chosen):
    """The functional graph the blocks' layers live in: the model, or its nested backbone."""
    top_layers = model.layers
    last = chosen[-1].layers[-1]
    if any(layer is last for layer in top_layers):
        return model
    for index, layer in enumerate(top_layers):
        if isinstance(layer, keras.Model) and any(inner is last for inner in compat.walk_layers(layer)):
            if any(not isinstance(lay, keras.layers.InputLayer) for lay in top_layers[:index]):
                raise ValueError(
                    f"`backbone` runs layers before its nested backbone {layer.name!r}; pass that backbone "
                    f"itself (and data prepared for it). Received: backbone={model.name!r}"
                )
            return layer
    raise ValueError(f"Could not find the layers of block {chosen[-1].name!r} in model {model.name!r}.")


def _block_features(model, chosen, data, name, batch_size, max_examples, verbose, labels=True):
    return _pooled(_feature_model(model, chosen), data, name, batch_size, max_examples, verbose, labels)


def _pooled(extractor, data, name, batch_size, max_examples, verbose, labels=True):
    """The `_feature_model` `extractor`'s features of `data` as float64 rows, and the labels."""
    features, y = _collect(extractor, data, name, batch_size, max_examples, verbose, labels=labels)
    return [f.reshape(len(f), -1).astype("float64") for f in features], y


def _collect(model, data, name, batch_size, max_examples, verbose, labels=True):
    """Runs `model` over `data` once: (list of output arrays, integer labels or None)."""
    outputs, y = inputs.run_model(model, data, name, batch_size=batch_size, max_examples=max_examples,
                                  verbose=verbose, labels=labels)
    return outputs, None if y is None else inputs.class_ids(y, name)


def _as_dataset(data, name, batch_size, shuffle, seed):
    """`fine_tune` wants datasets: arrays go through `kt.data.from_arrays`. Returns (data, classes or None)."""
    if inputs.is_array_pair(data):
        from keras_transfer.data import from_arrays

        x, y = data
        y = inputs.class_ids(y, name)
        return from_arrays(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed), int(y.max()) + 1
    if not inputs.is_batch_iterable(data):
        raise TypeError(
            f"`{name}` must be (x, y) arrays or a dataset of (x, y) batches. "
            f"Received: {name}={inputs.short(data)} of type {type(data).__name__}"
        )
    return data, None


# --- numerics ------------------------------------------------------------------------


def _standardize(x, reference):
    mean, std = reference.mean(0), reference.std(0)
    # Constant features carry nothing; zero them instead of dividing by ~0.
    scale = np.where(std > 1e-8 * (1 + np.abs(mean)), 1 / np.where(std > 0, std, 1), 0.0)
    return (x - mean) * scale


def _ridge_probe(train_x, train_y, val_x, val_y, num_classes):
    """Closed-form ridge classifier; penalty by exact leave-one-out error. Returns (train acc, val acc)."""
    x, v = _standardize(train_x, train_x), _standardize(val_x, train_x)
    targets = np.eye(num_classes)[train_y]
    offset = targets.mean(0)
    centered = targets - offset
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ centered
    n = len(x)
    best = None
    for alpha in _RIDGE_GRID * (s[0] ** 2 if s.size and s[0] > 0 else 1.0):
        shrink = s**2 / (s**2 + alpha)
        fitted = offset + u @ (shrink[:, None] * uty)
        # Hat matrix of ridge with an unpenalized intercept: 1/n + U diag(shrink) U^T.
        leverage = 1 / n + (u**2) @ shrink
        loo = (targets - fitted) / np.maximum(1 - leverage, 1e-12)[:, None]
        press = float(np.sum(loo**2))
        if best is None or press < best[0]:
            best = (press, alpha, fitted)
    _, alpha, fitted = best
    weights = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
    val_scores = offset + v @ weights
    train_acc = float(np.mean(np.argmax(fitted, -1) == train_y))
    val_acc = float(np.mean(np.argmax(val_scores, -1) == val_y))
    return train_acc, val_acc


# --- validation helpers ---------------------------------------------------------------


