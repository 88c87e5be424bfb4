"""`fine_tune` against a hand-written Keras loop of the same model: training throughput.

    python -m benchmarks.perf_workflow [--quick] [--image-size 224] [--backbone efficientnet_b0]

Both sides train the same classifier (EfficientNetB0 backbone, new head) with
the top two blocks unfrozen, BatchNorm frozen, for the same epochs on the same
in-memory data. The hand-written side is what the Keras transfer-learning
guide shows: set `trainable` by hand, `compile(Adam)`, `fit`. Ours is
`kt.fine_tune(..., strategy="fine_tune", head_epochs=0)`, which adds block
discovery, per-block learning rates and the checkpoint callbacks. Each side
runs twice, alternating, and the faster run counts (the first run of a
process pays one-off graph tracing costs that the second does not).
"""

import argparse
import sys
import time

import keras
import numpy as np
import pandas as pd

from benchmarks import common


def _data(n, size, num_classes, batch_size):
    from keras_transfer import data

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype="uint8")
    y = (np.arange(n) % num_classes).astype("int32")
    return data.from_arrays(x, y, batch_size=batch_size)


def _backbone(name, size):
    from keras_transfer.backbones import get_backbone

    keras.utils.set_random_seed(0)
    return get_backbone(name, weights=None, input_shape=(size, size, 3), pooling=None).model


def _hand_written(name, size, ds, num_classes, epochs):
    from keras_transfer.workflow import build_classifier

    backbone = _backbone(name, size)
    model = build_classifier(backbone, num_classes)
    # The Keras guide's way: freeze all, then reopen the top layers by name.
    backbone.trainable = True
    top_prefixes = ("block7", "top")
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith(top_prefixes) and not isinstance(
            layer, keras.layers.BatchNormalization)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=0, shuffle=False)
    return time.perf_counter() - start, sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _ours(name, size, ds, num_classes, epochs):
    from keras_transfer.workflow import fine_tune

    backbone = _backbone(name, size)
    start = time.perf_counter()
    result = fine_tune(backbone, ds, num_classes=num_classes, head_epochs=0, fine_tune_epochs=epochs,
                       strategy="fine_tune", top_blocks=2, early_stopping=False,
                       mixed_precision=None, verbose=0)
    return time.perf_counter() - start, result.trainable_params


def run(quick=False, backbone="efficientnet_b0", image_size=None):
    """Returns the benchmark table (see the module docstring)."""
    size = image_size or (64 if quick else 224)
    n, epochs, num_classes = (64, 1, 10) if quick else (256, 2, 10)
    ds = _data(n, size, num_classes, batch_size=32)
    times = {"hand_written": [], "fine_tune": []}
    params = {}
    for _ in range(1 if quick else 2):
        for label, fn in (("hand_written", _hand_written), ("fine_tune", _ours)):
            keras.utils.clear_session()
            seconds, params[label] = fn(backbone, size, ds, num_classes, epochs)
            times[label].append(seconds)
    if params["hand_written"] != params["fine_tune"]:
        raise RuntimeError(f"the two sides train different parameter sets: {params}")
    baseline = n * epochs / min(times["hand_written"])
    ours = n * epochs / min(times["fine_tune"])
    ratio = ours / baseline
    return pd.DataFrame([{
        "benchmark": "workflow",
        "measure": f"fine_tune training throughput, {backbone} {size}px, top 2 blocks",
        "baseline": "hand-written Keras compile+fit",
        "baseline_value": round(baseline, 1),
        "value": round(ours, 1),
        "unit": "images/s",
        "ratio": round(ratio, 3),
        "target": ">= 0.95",
        "meets_target": bool(ratio >= 0.95),
    }])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int)
    args = parser.parse_args(argv)
    table = run(quick=args.quick, backbone=args.backbone, image_size=args.image_size)
    common.report(table, "perf_workflow" + ("_quick" if args.quick else ""),
                  title="fine_tune vs a hand-written Keras loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
