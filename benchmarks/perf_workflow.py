"""`fine_tune` against a hand-written Keras loop of the same model: steady-state throughput and setup cost.

    python -m benchmarks.perf_workflow [--quick] [--backbone efficientnet_b0] [--image-size 224] [--repeats 3]

Both sides train the same classifier (an EfficientNetB0 backbone, MobileNetV2
with `--quick`, and a new head) with the top two blocks unfrozen and
BatchNorm frozen, on the same in-memory data. The hand-written side is what
the Keras transfer-learning guide shows: `build_classifier`, set `trainable`
by layer name, `compile(Adam)`, `fit`. Ours is `kt.fine_tune(...,
strategy="fine_tune", head_epochs=0)`, which adds block discovery, per-block
learning rates and its callbacks.

Setup and training are measured apart, because a short run mixes them: 16
steps of a 224 px EfficientNetB0 take about as long as tracing its train step.
- Setup: seconds from the call (the hand-written side: from
  `build_classifier`) to the end of the first training step, compiling and
  tracing included. Each is the first thing a fresh process does, so neither
  side inherits the other's warm caches; the sides alternate.
- Steady state: images per second over the epochs after the first, the same
  steps on both sides. In one process per repeat, the sides take turns epoch
  by epoch: after each `fine_tune` epoch, a callback runs one epoch of the
  hand-written model's `fit` on the same data. Runs that take turns by
  process are a minute apart, and on a shared machine the load changes more
  between them than the sides differ; alternating epochs a few seconds long
  see nearly the same load.

Each repeat pairs the sides (setup: the two runs side by side; steady
state: one run), so `ratio` is the median of the per-repeat ratios, whose
range is `ratio_range`: a load burst in one repeat moves one pair, where a
ratio of the two sides' medians would pair runs that never shared a load.
`value` and `baseline_value` are each side's median.
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
    has finished.
    """

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


class _TakeTurns(_StepClock):
    """In `fine_tune`'s `fit`: times each of its epochs, then runs and times one epoch of `model_by_hand`.

    A hand-written epoch is a `fit` of one epoch of `dataset`, from the call
    to its return; a `fine_tune` epoch runs from the end of the hand-written
    one before it to its own `on_epoch_end`. So each side pays its own epoch
    boundary (a new iterator, and the teardown of the old one).
    """

    def __init__(self, model_by_hand, dataset):
        super().__init__()
        self.model_by_hand, self._dataset, self._mark = model_by_hand, dataset, None
        self.epoch_seconds = {side: [] for side in SIDES}

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        if self._mark is not None:
            self.epoch_seconds["fine_tune"].append(end - self._mark)
        began = time.perf_counter()
        # A batch hook of its own, so that both sides wait for each step's logs alike.
        self.model_by_hand.fit(self._dataset, epochs=1, verbose=0, shuffle=False, callbacks=[_StepClock()])
        self._mark = time.perf_counter()
        self.epoch_seconds["hand_written"].append(self._mark - began)


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


def _hand_written(name, backbone, ds):
    """The Keras guide's way, up to the end of its first training step. Returns (model, setup seconds)."""
    from keras_transfer.workflow import build_classifier

    clock = _StepClock()
    start = time.perf_counter()
    model = build_classifier(backbone, NUM_CLASSES)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith(TOP_TWO_BLOCKS[name]) and not isinstance(
            layer, keras.layers.BatchNormalization)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.take(1), epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    return model, clock.times[0] - start


def _fine_tune(backbone, ds, epochs, clock):
    """Ours, timed by `clock` (its first time ends the setup). Returns (result, call time)."""
    from keras_transfer.workflow import fine_tune

    start = time.perf_counter()
    result = fine_tune(backbone, ds, num_classes=NUM_CLASSES, head_epochs=0, fine_tune_epochs=epochs,
                       strategy="fine_tune", top_blocks=2, early_stopping=False, mixed_precision=None, verbose=0,
                       callbacks=[clock])
    return result, start


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _setup_run(side, name, size, queue):
    """In a fresh process: one side's setup seconds and trainable parameters."""
    ds, backbone = _data(BATCH_SIZE, size), _backbone(name, size)
    if side == "hand_written":
        model, seconds = _hand_written(name, backbone, ds)
        queue.put({"seconds": seconds, "params": _trainable_params(model)})
    else:
        clock = _StepClock()
        result, start = _fine_tune(backbone, ds, 1, clock)
        queue.put({"seconds": clock.times[0] - start, "params": result.trainable_params})


def _steady_run(name, size, n, epochs, queue):
    """In a fresh process: both sides' epoch seconds, taking turns (see the module docstring)."""
    ds = _data(n, size)
    # Both backbones before anything is traced: seeding for the second would make TensorFlow trace the
    # first one's train step again.
    backbones = {side: _backbone(name, size) for side in SIDES}
    model_by_hand, _ = _hand_written(name, backbones["hand_written"], ds)
    turns = _TakeTurns(model_by_hand, ds)
    result, _ = _fine_tune(backbones["fine_tune"], ds, epochs, turns)
    queue.put({"epoch_seconds": turns.epoch_seconds, "steps": len(turns.times),
               "params": {"hand_written": _trainable_params(model_by_hand), "fine_tune": result.trainable_params}})


def _row(measure, baseline, ours, theirs, unit, target, higher_is_better):
    per_repeat = [a / b for a, b in zip(ours, theirs)]
    ratio = statistics.median(per_repeat)
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
        "repeats": len(ours),
        "ratio_range": f"{min(per_repeat):.3f}-{max(per_repeat):.3f}",
    }


def run(quick=False, backbone=None, image_size=None, repeats=None):
    """Returns the benchmark table: a steady-state throughput row and a setup row (see the module docstring)."""
    backbone = backbone or ("mobilenet_v2" if quick else "efficientnet_b0")
    if backbone not in TOP_TWO_BLOCKS:
        raise ValueError(f"Unknown `backbone`: {backbone!r}. Valid names: {sorted(TOP_TWO_BLOCKS)}")
    repeats = repeats or (1 if quick else 3)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive integer. Received: repeats={repeats!r}")
    size = image_size or (64 if quick else 224)
    # Quick mode times 6 steps: fewer would time one epoch boundary more than training.
    n, epochs = (64, 4) if quick else (256, 3)
    steps_per_epoch = n // BATCH_SIZE
    setup = {side: [] for side in SIDES}
    throughput = {side: [] for side in SIDES}
    for r in range(repeats):
        params = {}
        # Alternate who goes first, so drift on a shared machine hits both sides alike.
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            record = common.in_fresh_process(_setup_run, side, backbone, size, label=f"{side} setup")
            setup[side].append(record["seconds"])
            params[side] = record["params"]
        record = common.in_fresh_process(_steady_run, backbone, size, n, epochs, label="steady-state run")
        for p in (params, record["params"]):
            if p["hand_written"] != p["fine_tune"]:
                raise RuntimeError(f"the two sides train different parameter sets: {p}")
        if record["steps"] != steps_per_epoch * epochs:
            raise RuntimeError(f"fine_tune trained {record['steps']} steps, not {steps_per_epoch * epochs}")
        # The first epoch is the warm-up; fine_tune's has no hand-written turn before it to be timed from.
        timed = {"fine_tune": record["epoch_seconds"]["fine_tune"],
                 "hand_written": record["epoch_seconds"]["hand_written"][1:]}
        for side in SIDES:
            throughput[side].append(BATCH_SIZE * steps_per_epoch * len(timed[side]) / sum(timed[side]))
        print(f"  setup: hand-written {setup['hand_written'][-1]:6.2f} s, fine_tune {setup['fine_tune'][-1]:6.2f} s; "
              f"steady state: hand-written {throughput['hand_written'][-1]:6.1f}, "
              f"fine_tune {throughput['fine_tune'][-1]:6.1f} images/s", flush=True)
    setting = f"{backbone} {size}px, top 2 blocks"
    return pd.DataFrame([
        _row(f"fine_tune steady-state training throughput, {setting}, steps {steps_per_epoch + 1}-"
             f"{steps_per_epoch * epochs}, sides taking turns epoch by epoch",
             "hand-written Keras compile+fit, same steps", throughput["fine_tune"], throughput["hand_written"],
             "images/s", THROUGHPUT_TARGET, True),
        _row(f"fine_tune setup, call to end of first step (discovery, optimizer, compile, tracing), {setting}",
             "hand-written build_classifier+trainable+compile+first step", setup["fine_tune"],
             setup["hand_written"], "s", SETUP_TARGET, False),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MobileNetV2, tiny sizes, one repeat, for CI")
    parser.add_argument("--backbone", choices=sorted(TOP_TWO_BLOCKS),
                        help="default: efficientnet_b0, or mobilenet_v2 with --quick")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--repeats", type=int, help="default: 3, or 1 with --quick")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, backbone=args.backbone, image_size=args.image_size, repeats=args.repeats)
    common.report(table, "perf_workflow" + ("_quick" if args.quick else ""),
                  title="fine_tune vs a hand-written Keras loop: steady state and setup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
