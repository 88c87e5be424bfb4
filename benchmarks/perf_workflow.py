"""`fine_tune` against a hand-written Keras loop of the same model: steady-state throughput and setup cost.

    python -m benchmarks.perf_workflow [--quick] [--image-size 224] [--backbone efficientnet_b0] [--repeats 3]

Both sides train the same classifier (an EfficientNetB0 backbone, new head)
with the top two blocks unfrozen and BatchNorm frozen, on the same in-memory
data, for the same steps. The hand-written side is what the Keras
transfer-learning guide shows: `build_classifier`, set `trainable` by layer
name, `compile(Adam)`, `fit`. Ours is `kt.fine_tune(..., strategy="fine_tune",
head_epochs=0)`, which adds block discovery, per-block learning rates and its
callbacks.

Training and setup are measured apart, because a short run mixes them: 16
steps of a 224 px EfficientNetB0 take about as long as tracing its train step.
- Steady state: images per second over the steps after the first epoch (the
  warm-up), the same steps on both sides.
- Setup: seconds from the call (the hand-written side: from
  `build_classifier`) to the end of the first training step, which includes
  compiling and tracing the train step.

Each run is a fresh process, so neither side inherits the other's traced
functions; the sides alternate, and the table gives medians over the repeats
with the range of the per-repeat ratios.
"""

import argparse
import statistics
import sys
import time

import keras
import numpy as np
import pandas as pd

from benchmarks import common

# The layer-name prefixes of each backbone's top two blocks, as someone who
# reads `model.summary()` writes them; fine_tune finds the same blocks itself.
TOP_TWO_BLOCKS = {
    "efficientnet_b0": ("block7", "top"),
    "mobilenet_v2": ("block_16", "Conv_1", "out_relu"),
}
SIDES = ("hand_written", "fine_tune")
THROUGHPUT_TARGET = 0.95
SETUP_TARGET = 1.1
BATCH_SIZE = 32
NUM_CLASSES = 10


class _StepClock(keras.callbacks.Callback):
    """Records `time.perf_counter()` at the end of every training batch.

    A callback with a batch hook makes Keras convert the batch's logs to
    Python numbers before calling it, so each time is taken after the step
    has finished (on every backend), and both sides pay that alike.
    """

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _data(n, size):
    from keras_transfer import data

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype="uint8")
    y = (np.arange(n) % NUM_CLASSES).astype("int32")
    return data.from_arrays(x, y, batch_size=BATCH_SIZE)


def _backbone(name, size):
    from keras_transfer.backbones import get_backbone

    keras.utils.set_random_seed(0)
    return get_backbone(name, weights=None, input_shape=(size, size, 3), pooling=None).model


def _hand_written(name, backbone, ds, epochs, clock):
    from keras_transfer.workflow import build_classifier

    start = time.perf_counter()
    model = build_classifier(backbone, NUM_CLASSES)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith(TOP_TWO_BLOCKS[name]) and not isinstance(
            layer, keras.layers.BatchNormalization)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds, epochs=epochs, verbose=0, shuffle=False, callbacks=[clock])
    return start, sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _ours(name, backbone, ds, epochs, clock):
    from keras_transfer.workflow import fine_tune

    start = time.perf_counter()
    result = fine_tune(backbone, ds, num_classes=NUM_CLASSES, head_epochs=0, fine_tune_epochs=epochs,
                       strategy="fine_tune", top_blocks=2, early_stopping=False, mixed_precision=None, verbose=0,
                       callbacks=[clock])
    return start, result.trainable_params


def _one_run(side, name, size, n, epochs, queue):
    """One side's run in this (fresh) process: puts its start, step end times and trainable parameters."""
    ds = _data(n, size)
    backbone = _backbone(name, size)
    clock = _StepClock()
    start, params = (_hand_written if side == "hand_written" else _ours)(name, backbone, ds, epochs, clock)
    queue.put({"start": start, "steps": clock.times, "params": params})


def _measure(run, warmup_steps):
    """(setup seconds, steady-state images/s) of one run's record."""
    steps = run["steps"]
    setup = steps[0] - run["start"]
    throughput = BATCH_SIZE * (len(steps) - warmup_steps) / (steps[-1] - steps[warmup_steps - 1])
    return setup, throughput


def run(quick=False, backbone="efficientnet_b0", image_size=None, repeats=None):
    """Returns the benchmark table: a steady-state throughput row and a setup row (see the module docstring)."""
    if backbone not in TOP_TWO_BLOCKS:
        raise ValueError(f"Unknown `backbone`: {backbone!r}. Valid names: {sorted(TOP_TWO_BLOCKS)}")
    repeats = repeats or (1 if quick else 3)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive integer. Received: repeats={repeats!r}")
    size = image_size or (64 if quick else 224)
    # Quick mode measures 6 steps: fewer would time one epoch boundary more than training.
    n, epochs = (64, 4) if quick else (256, 3)
    steps_per_epoch = n // BATCH_SIZE
    total_steps, warmup_steps = steps_per_epoch * epochs, steps_per_epoch
    results = {side: [] for side in SIDES}
    params = {}
    for r in range(repeats):
        # Alternate who goes first, so drift on a shared machine hits both sides alike.
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            record = common.in_fresh_process(_one_run, side, backbone, size, n, epochs, label=f"{side} run")
            if len(record["steps"]) != total_steps:
                raise RuntimeError(f"{side} trained {len(record['steps'])} steps, not {total_steps}")
            params[side] = record["params"]
            results[side].append(_measure(record, warmup_steps))
            setup, throughput = results[side][-1]
            print(f"  {side:<12} setup {setup:6.2f} s, steady state {throughput:6.1f} images/s", flush=True)
    if params["hand_written"] != params["fine_tune"]:
        raise RuntimeError(f"the two sides train different parameter sets: {params}")

    def row(measure, baseline, index, unit, target, higher_is_better):
        ours = [r[index] for r in results["fine_tune"]]
        theirs = [r[index] for r in results["hand_written"]]
        ratio = statistics.median(ours) / statistics.median(theirs)
        per_repeat = [a / b for a, b in zip(ours, theirs)]
        return {
            "benchmark": "workflow",
            "measure": measure,
            "baseline": baseline,
            "baseline_value": round(statistics.median(theirs), 2),
            "value": round(statistics.median(ours), 2),
            "unit": unit,
            "ratio": round(ratio, 3),
            "target": f">= {target}" if higher_is_better else f"<= {target}",
            "meets_target": bool(ratio >= target if higher_is_better else ratio <= target),
            "repeats": repeats,
            "ratio_range": f"{min(per_repeat):.3f}-{max(per_repeat):.3f}",
        }

    setting = f"{backbone} {size}px, top 2 blocks"
    return pd.DataFrame([
        row(f"fine_tune steady-state training throughput, {setting}, steps {warmup_steps + 1}-{total_steps}",
            "hand-written Keras compile+fit, same steps", 1, "images/s", THROUGHPUT_TARGET, True),
        row(f"fine_tune setup, call to end of first step (discovery, optimizer, compile, tracing), {setting}",
            "hand-written build_classifier+trainable+compile+first step", 0, "s", SETUP_TARGET, False),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run per side, for CI smoke tests")
    parser.add_argument("--backbone", default="efficientnet_b0", choices=sorted(TOP_TWO_BLOCKS))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--repeats", type=int, help="runs per side (default: 3, or 1 with --quick)")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, backbone=args.backbone, image_size=args.image_size, repeats=args.repeats)
    common.report(table, "perf_workflow" + ("_quick" if args.quick else ""),
                  title="fine_tune vs a hand-written Keras loop: steady state and setup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
