"""The offline demo: transfer learning shown for real in a few minutes on a CPU.

1. A deterministic generator draws a *source* task (6 kinds of shape) and a
   related *target* task (4 other kinds of shape) on noisy, coloured
   backgrounds. The target has only a few labels per class.
2. A small backbone (`demo_convnet`: stem, block1..block3, top) is pretrained on
   the source task once and cached (`~/.cache/keras_transfer`, or
   `$KERAS_TRANSFER_HOME`).
3. `fine_tune` runs on the target task under each strategy, on the same splits
   and epoch budget: scratch, feature extraction, fine-tuning with per-block
   rates, and LoRA.
4. One table (accuracy, trainable parameters, wall time) and a bar plot;
   `verdict(table)` puts in words what that table measured.

`run_real()` does the same with the real ImageNet MobileNetV2 weights and the
ants/bees photos from `../shared/assets`, when they exist.
"""

import os
import pathlib
import tempfile
import time

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks, data
from keras_transfer._random import seeded
from keras_transfer.blocks import BlockSpec, register_block_spec
from keras_transfer.workflow import fine_tune

SOURCE_SHAPES = ("disk", "square", "triangle", "plus", "ring", "hollow_square")
TARGET_SHAPES = ("diamond", "x_cross", "half_disk", "hollow_diamond")
IMAGE_SIZE = 32
BACKBONE_VERSION = 1
# The demo backbone's blocks, registered as any user's own architecture would be.
SPEC = register_block_spec(BlockSpec(
    "keras_transfer.demo",
    r"demo_convnet",
    (("stem", r"stem_.*"), (r"\1", r"(block\d+)_.*"), ("top", r"top_.*")),
))


def _mask(kind, dx, dy, r):
    d = np.sqrt(dx**2 + dy**2)
    box = np.maximum(abs(dx), abs(dy))
    l1 = abs(dx) + abs(dy)
    masks = {
        "disk": d <= r,
        "ring": (d <= r) & (d > 0.6 * r),
        "square": box <= r * 0.85,
        "hollow_square": (box <= r * 0.85) & (box > 0.5 * r),
        "triangle": (dy <= 0.5 * r) & (dy >= 2 * abs(dx) - r),
        "plus": ((abs(dx) <= r / 4) & (abs(dy) <= r)) | ((abs(dy) <= r / 4) & (abs(dx) <= r)),
        "diamond": l1 <= r,
        "hollow_diamond": (l1 <= r) & (l1 > 0.55 * r),
        "x_cross": ((abs(dx - dy) <= r / 3) | (abs(dx + dy) <= r / 3)) & (box <= 0.8 * r),
        "half_disk": (d <= r) & (dy >= 0),
    }
    return masks[kind]


def make_shapes(shapes, per_class, seed, size=IMAGE_SIZE):
    """Draws `per_class` images of each shape kind: (uint8 images, int labels).

    Each image has a random smooth-coloured noisy background and one shape of
    random colour, size, position and (for most kinds) orientation. The same
    `seed` gives the same images on every machine.

    Args:
        shapes: shape kinds (see `SOURCE_SHAPES`, `TARGET_SHAPES`).
        per_class: images per kind, at least 1.
        seed: integer seed.
        size: image side in pixels, at least 16.

    Returns:
        `(images, labels)`: uint8 array `(n, size, size, 3)`, int32 array `(n,)`.

    Example:

    >>> from keras_transfer import demo
    >>> x, y = demo.make_shapes(("disk", "ring"), per_class=3, seed=0)
    >>> x.shape, y.tolist()
    ((6, 32, 32, 3), [0, 0, 0, 1, 1, 1])
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"`per_class` must be a positive integer. Received: per_class={per_class!r}")
    if size < 16:
        raise ValueError(f"`size` must be at least 16. Received: size={size!r}")
    unknown = [s for s in shapes if s not in SOURCE_SHAPES + TARGET_SHAPES]
    if unknown:
        raise ValueError(f"Unknown shape kinds {unknown}. Valid: {list(SOURCE_SHAPES + TARGET_SHAPES)}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    images = np.empty((len(shapes) * per_class, size, size, 3), "uint8")
    labels = np.repeat(np.arange(len(shapes), dtype="int32"), per_class)
    for i, label in enumerate(labels):
        base = rng.uniform(40, 200, 3)
        slope = rng.uniform(-2, 2, (2, 3))
        background = base + xx[..., None] * slope[0] + yy[..., None] * slope[1] - size * slope.sum(0) / 2
        r = rng.uniform(0.22, 0.38) * size
        cx, cy = rng.uniform(r, size - r, 2)
        angle = rng.uniform(-0.35, 0.35)
        dx, dy = xx - cx, yy - cy
        dx, dy = dx * np.cos(angle) - dy * np.sin(angle), dx * np.sin(angle) + dy * np.cos(angle)
        mask = _mask(shapes[label], dx, dy, r)[..., None]
        colour = (base + rng.choice([-1, 1], 3) * rng.uniform(50, 110, 3)) % 256
        image = np.where(mask, colour, background) + rng.normal(0, 18, (size, size, 3))
        images[i] = np.clip(image, 0, 255).astype("uint8")
    return images, labels


def build_demo_backbone(size=IMAGE_SIZE):
    """The demo's small backbone: `stem`, `block1`..`block3`, `top` (pooled 128-d features).

    Example:

    >>> import keras_transfer as kt
    >>> from keras_transfer import demo
    >>> kt.block_names(demo.build_demo_backbone())
    ['stem', 'block1', 'block2', 'block3', 'top']
    """
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="stem_rescale")(inputs)
    x = keras.layers.Conv2D(24, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate((32, 64, 96), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="top_pool")(x)
    x = keras.layers.Dense(128, activation="relu", name="top_dense")(x)
    return keras.Model(inputs, x, name="demo_convnet")


def cache_dir():
    """Where the demo keeps its pretrained backbone."""
    return pathlib.Path(os.environ.get("KERAS_TRANSFER_HOME", pathlib.Path.home() / ".cache" / "keras_transfer"))


def pretrained_backbone(verbose=1):
    """Pretrains the demo backbone on the source task, or loads it from the cache.

    Example:

    >>> from keras_transfer import demo
    >>> demo.pretrained_backbone(verbose=0).name
    'demo_convnet'
    """
    path = cache_dir() / f"demo_convnet_v{BACKBONE_VERSION}.keras"
    if path.exists():
        return keras.saving.load_model(path)
    if verbose:
        print(f"Pretraining the demo backbone on the source task ({len(SOURCE_SHAPES)} shapes); cached at {path}")
    with seeded(1):
        x, y = make_shapes(SOURCE_SHAPES, per_class=500, seed=1)
        backbone = build_demo_backbone()
        logits = keras.layers.Dense(len(SOURCE_SHAPES), name="source_logits")(backbone.output)
        source_model = keras.Model(backbone.input, logits)
        source_model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        source_model.fit(x, y, batch_size=64, epochs=6, shuffle=True, verbose=verbose)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own: two processes pretraining at once must not write one file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    backbone.save(tmp, overwrite=True)
    os.replace(tmp, path)
    return backbone


def run(strategies=("scratch", "feature_extraction", "fine_tune", "lora"), labels_per_class=12,
        out_dir=".", verbose=0, seed=0):
    """Runs the synthetic demo and returns its table (one row per strategy).

    Args:
        strategies: `fine_tune` strategies to compare.
        labels_per_class: labelled target images per class (few, on purpose).
        out_dir: where the plot `keras_transfer_demo.png` and the CSV go.
        verbose: Keras verbosity of the fine-tuning runs.
        seed: seed of the target split.

    Returns:
        A `pandas.DataFrame`: strategy, accuracy, trainable_params, wall_time_s.

    Example:

    >>> from keras_transfer import demo
    >>> table = demo.run(strategies=("feature_extraction",), out_dir="/tmp")  # doctest: +SKIP
    """
    backbone = pretrained_backbone(verbose=1)
    x_train, y_train = make_shapes(TARGET_SHAPES, per_class=labels_per_class, seed=100 + seed)
    x_val, y_val = make_shapes(TARGET_SHAPES, per_class=150, seed=200 + seed)
    train_ds = data.from_arrays(x_train, y_train, batch_size=16, shuffle=True, seed=seed)
    val_ds = data.from_arrays(x_val, y_val, batch_size=128)
    # The source task is synthetic, not ImageNet: its blocks take rates near the head's (the top one
    # half of it, the next a quarter), which the 12 labels per class reward.
    settings = dict(num_classes=len(TARGET_SHAPES), head_epochs=15, fine_tune_epochs=15, head_lr=3e-3,
                    backbone_lr=1.5e-3, layer_decay=0.5, top_blocks=2, lora_rank=4,
                    early_stopping=False, verbose=verbose)
    return _compare(backbone, train_ds, val_ds, strategies, settings, out_dir, "keras_transfer_demo")


def run_real(assets_dir, strategies=("scratch", "feature_extraction", "fine_tune"), image_size=160,
             out_dir=".", verbose=0):
    """The demo on real data: ImageNet MobileNetV2 -> ants/bees photos.

    Ants and bees are ImageNet photos, a near domain: feature extraction is
    expected to do as well as fine-tuning here (see `verdict`). Scratch takes
    most of the time, and fairly so: it trains every weight of MobileNetV2
    through every photo for all the epochs the others get, with nothing to
    cache. The one saving that changes no result is shared by every strategy:
    the photos are decoded and resized once and kept in memory.

    Args:
        assets_dir: the `assets` folder holding `weights/` and `hymenoptera_data/`.
        strategies: strategies to compare.
        image_size: input side in pixels, or a (height, width) pair.
        out_dir: where the plot and CSV go.
        verbose: Keras verbosity.

    Returns:
        A `pandas.DataFrame` like `run`'s.

    Example:

    >>> from keras_transfer import demo
    >>> table = demo.run_real("../shared/assets")  # doctest: +SKIP
    """
    from keras_transfer.backbones import get_backbone

    assets_dir = pathlib.Path(assets_dir)
    weights = assets_dir / "weights" / "mobilenet_v2_1.0_224_imagenet_torchvision_no_top.weights.h5"
    photos = assets_dir / "hymenoptera_data"
    if not weights.exists() or not photos.exists():
        raise FileNotFoundError(
            f"`assets_dir` must hold weights/ and hymenoptera_data/. Received: assets_dir='{assets_dir}'"
        )
    size = _checks.image_size(image_size)
    backbone = get_backbone("mobilenet_v2", weights=str(weights), input_shape=(*size, 3),
                            pooling=None)
    # Decoding JPEGs of up to 2592x1944 again every epoch cost scratch, which reads the
    # photos every epoch, seconds an epoch; the cache gives each strategy the same pixels.
    loader = dict(image_size=size, preprocess=backbone.preprocess, cache=True)
    train_ds = data.from_directory(photos / "train", batch_size=32, shuffle=True, seed=0, **loader)
    val_ds = data.from_directory(photos / "val", batch_size=64, **loader)
    settings = dict(num_classes=2, head_epochs=5, fine_tune_epochs=3, head_lr=1e-3, backbone_lr=1e-5,
                    layer_decay=0.7, top_blocks=3, early_stopping=False, verbose=verbose)
    return _compare(backbone, train_ds, val_ds, strategies, settings, out_dir, "keras_transfer_demo_real")


def verdict(table, near_domain=False, tolerance=0.02):
    """The demo's conclusion, in words that follow its measured table.

    One line names the best strategy and its margin over scratch; one says
    whether fine-tuning beat feature extraction and by how much. Where it did
    not on a near domain (target images like the source's), that is said to
    be the expected lesson there rather than a failure of transfer, and so
    is a win by less than `tolerance`. A last line says why scratch is the
    slowest, when it is.

    Args:
        table: the table `run` or `run_real` returns (`strategy`,
            `accuracy`, `wall_time_s` columns).
        near_domain: whether the target is near the source's domain, as
            ants/bees photos are to ImageNet (`run_real`).
        tolerance: on a near domain, fine-tuning's wins by less than this
            count as a tie (`kt.suggest_unfreeze`'s default, 0.02: three
            of the 153 ants/bees validation photos).

    Returns:
        A str, one sentence a line.

    Example:

    >>> import pandas as pd
    >>> from keras_transfer import demo
    >>> table = pd.DataFrame({"strategy": ["scratch", "feature_extraction", "fine_tune"],
    ...                       "accuracy": [0.33, 0.75, 0.92], "wall_time_s": [17.0, 4.0, 9.0]})
    >>> print(demo.verdict(table).splitlines()[1])
    Fine-tuning beats feature extraction by +0.170 (0.920 vs 0.750).
    """
    needed = ["strategy", "accuracy", "wall_time_s"]
    if not isinstance(table, pd.DataFrame) or not set(needed) <= set(table.columns) or table.empty:
        columns = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise ValueError(f"`table` must have the columns {needed} of demo.run's table. Received columns: {columns}")
    if not isinstance(near_domain, bool):
        raise ValueError(f"`near_domain` must be a bool. Received: near_domain={near_domain!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be a number in [0, 1). Received: tolerance={tolerance!r}")
    accuracy = dict(zip(table.strategy, table.accuracy))
    seconds = dict(zip(table.strategy, table.wall_time_s))
    best = max(accuracy.values())
    winners = [s for s, a in accuracy.items() if a == best]
    line = f"Best: {' and '.join(winners)}, {best:.3f} accuracy"
    if winners == ["scratch"]:
        line += (": no transfer strategy beat training from scratch, so the pretrained features did not help "
                 "this target.")
    elif "scratch" in accuracy:
        line += f", {best - accuracy['scratch']:+.3f} over scratch ({accuracy['scratch']:.3f})."
    else:
        line += "."
    lines = [line]
    if {"fine_tune", "feature_extraction"} <= set(accuracy):
        tuned, frozen = accuracy["fine_tune"], accuracy["feature_extraction"]
        if tuned > frozen:
            line = f"Fine-tuning beats feature extraction by {tuned - frozen:+.3f} ({tuned:.3f} vs {frozen:.3f})"
            lines.append(line + (
                f", under the {tolerance:g} that counts as a tie: on a near domain the frozen features already fit "
                "the target, so fine-tuning has little to add." if near_domain and tuned - frozen < tolerance
                else "."))
        else:
            line = f"Fine-tuning does not beat feature extraction ({tuned:.3f} vs {frozen:.3f}, {tuned - frozen:+.3f})"
            lines.append(line + (
                ": the expected lesson on a near domain. The target looks like the source's images, so the frozen "
                "features already fit it and fine-tuning has little to add (on few images it can lose a little); "
                "fine-tuning pays off on targets far from the source." if near_domain
                else " on this target and budget."))
    if "scratch" in seconds and len(seconds) > 1 and seconds["scratch"] == max(seconds.values()):
        lines.append(f"Scratch is the slowest ({seconds['scratch']} s) at the same epochs: it trains every weight "
                     "through every image each epoch, where feature extraction trains a head on features computed "
                     "once.")
    return "\n".join(lines)


def _compare(backbone, train_ds, val_ds, strategies, settings, out_dir, stem):
    rows = []
    for strategy in strategies:
        start = time.perf_counter()
        with seeded(0):
            result = fine_tune(backbone, train_ds, val_ds, strategy=strategy, **settings)
        rows.append({
            "strategy": strategy,
            "accuracy": round(result.metrics["accuracy"], 4),
            "trainable_params": result.trainable_params,
            "wall_time_s": round(time.perf_counter() - start, 1),
        })
        print(f"  {strategy:<20} accuracy {rows[-1]['accuracy']:.3f}  ({rows[-1]['wall_time_s']} s)", flush=True)
    table = pd.DataFrame(rows)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / f"{stem}.csv", index=False)
    _plot(table, out_dir / f"{stem}.png")
    return table


def _plot(table, path):
    # A Figure of its own: no pyplot state, no backend change for the caller.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    bars = ax.bar(table.strategy, table.accuracy, color=["#999999"] + ["#3b75af"] * (len(table) - 1))
    for bar, acc in zip(bars, table.accuracy):
        ax.text(bar.get_x() + bar.get_width() / 2, acc + 0.01, f"{acc:.2f}", ha="center", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("validation accuracy")
    ax.set_title("Transfer vs scratch, same data and epoch budget")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
